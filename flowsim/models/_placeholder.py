"""Stand-in activation kernels (tanh) for the template modules.

The templates import ``sigma``, ``dsigma``, ``d2sigma``, ``sigma_dsigma`` and
``sigma_derivs``
from here so that they are importable, lintable Python; in a generated module
these names are the kernels printed from the activation's SymPy expression
(see :mod:`flowsim._codegen`).
"""

import math

from flowsim._jit import jit


@jit
def sigma(z):
    return math.tanh(z)


@jit
def dsigma(z):
    t = math.tanh(z)
    return 1.0 - t * t


@jit
def d2sigma(z):
    t = math.tanh(z)
    return -2.0 * t * (1.0 - t * t)


@jit
def sigma_dsigma(z):
    t = math.tanh(z)
    return t, 1.0 - t * t


@jit
def sigma_derivs(z):
    t = math.tanh(z)
    return t, 1.0 - t * t, -2.0 * t * (1.0 - t * t)
