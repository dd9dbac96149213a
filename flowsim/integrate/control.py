"""Step-size control (template; see :mod:`flowsim._codegen`).

A PI controller on the scaled RMS error norm ([HNW93] IV.2, Gustafsson's PI
form as in diffrax's ``PIDController``)::

    factor = SAFETY * err^(-PI_ALPHA / k) * err_prev^(PI_BETA / k),  k = error_order + 1

clipped to ``[MIN_FACTOR, MAX_FACTOR]``; no growth right after a rejection.

References
----------
.. [HNW93] Hairer, Norsett, Wanner. Solving Ordinary Differential Equations I/II.
.. [G91] Gustafsson. Control theoretic techniques for stepsize selection in
   explicit Runge-Kutta methods. ACM TOMS 17 (1991).
"""

import math

import numpy as np

from flowsim._jit import jit, jit_inline

# --- template body ---

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
PI_ALPHA = 0.7
PI_BETA = 0.4
ERR_FLOOR = 1e-10


@jit
def error_norm(err, y0, y1, rtol, atol):
    """RMS of err_i / (atol + rtol * max(|y0_i|, |y1_i|))."""
    s = 0.0
    n = err.size
    for i in range(n):
        scale = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        if scale == 0.0:
            if err[i] == 0.0:
                continue  # a component that is exactly 0 and stays 0
            return np.inf
        q = err[i] / scale
        s += q * q
    return math.sqrt(s / max(n, 1))


@jit_inline
def step_factor(err, err_prev, k, rejected_last):
    """Multiplier of the step size after an error estimate ``err`` (<= 1: accept)."""
    if err == 0.0:
        factor = MAX_FACTOR
    else:
        e = max(err, ERR_FLOOR)
        factor = SAFETY * e ** (-PI_ALPHA / k) * max(err_prev, ERR_FLOOR) ** (PI_BETA / k)
    factor = min(MAX_FACTOR, max(MIN_FACTOR, factor))
    if rejected_last and factor > 1.0:
        factor = 1.0
    return factor
