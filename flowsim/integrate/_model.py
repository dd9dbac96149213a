"""The model as the integrator core sees it (template; see :mod:`flowsim._codegen`).

Each function here has the name and arguments of a model kernel and calls the
model's compiled callback through its address, read from the end of ``dims``
(:mod:`flowsim._abi`).  The stepping loops import these names, so they compile
once for every model and activation.
"""

import numpy as np

from flowsim import _abi
from flowsim._jit import jit, jit_inline

# --- template body ---


@jit_inline
def _address(dims, q):
    return dims[dims.size - _abi.N_FUNCTIONS + q]


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """The model's flow, plus the run's l2 penalty (``c``'s run block): the same for
    every model, ``-T lam theta_bar`` in normalized units.  Returns the model's loss."""
    value = _abi.call(_address(dims, 0), (theta, X, y, c, dims, mode, aux, out))
    l2 = c[c.size - _abi.N_RUN]
    if l2 != 0.0:
        for p in range(theta.size):
            out[p] -= l2 * theta[p]
    return value


@jit
def loss(theta, X, y, c, dims):
    return _abi.call(_address(dims, 1), (theta, X, y, c, dims))


@jit
def layer_norms(theta, dims, out):
    _abi.call(_address(dims, 2), (theta, dims, out))


@jit
def max_neuron_norm(theta, dims):
    return _abi.call(_address(dims, 3), (theta, dims))


@jit
def switch_init(theta, X, y, c, dims, mode, aux):
    _abi.call(_address(dims, 4), (theta, X, y, c, dims, mode, aux))


@jit_inline
def switch_cross(theta, X, y, c, dims, mode, aux, k, i, out):
    return _abi.call(_address(dims, 5), (theta, X, y, c, dims, mode, aux, k, i, out))


@jit
def switch_locate(y0, y1, K, P, h, X, y, c, dims, mode, aux, scratch, scratch_f):
    result = np.empty(3)
    args = (y0, y1, K, P, h, X, y, c, dims, mode, aux, scratch, scratch_f, result)
    _abi.call(_address(dims, 6), args)
    return result[0], int(result[1]), int(result[2])


@jit
def newton_work_size(dims, n):
    return int(_abi.call(_address(dims, 7), (dims, n)))


@jit
def newton_factor(theta, X, y, c, dims, shift, work):
    shift += c[c.size - _abi.N_RUN]  # the l2 penalty's Jacobian, -T lam I
    return _abi.call(_address(dims, 8), (theta, X, y, c, dims, shift, work)) != 0.0


@jit
def newton_solve(work, dims, n, rhs, out):
    _abi.call(_address(dims, 9), (work, dims, n, rhs, out))
