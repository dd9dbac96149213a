"""No-op switching kernels (template; see :mod:`flowsim._codegen`).

For an activation without kinks the two-layer template's ``kinks`` region
(frozen activation patterns, Filippov sliding, kink location) is replaced by
these no-ops: the stepping loops keep their one signature, and a cold first
``simulate`` does not compile ~20 s of switching code it can never run.  Three-layer
nets (no kink treatment) use them too.
"""

from flowsim._jit import jit

# --- template body ---

FROZEN_PATTERNS = False
"""No activation pattern is ever frozen: the two-layer flow prunes that code."""


@jit
def _forward_frozen(theta, X, c, dims, mode, out):
    pass


@jit
def _forward_frozen_serial(theta, X, c, dims, mode, out):
    pass


@jit
def _backward_frozen(theta, X, e, c, dims, mode, aux, out):
    pass


@jit
def _backward_frozen_serial(theta, X, e, c, dims, mode, aux, out):
    pass


@jit
def switch_init(theta, X, y, c, dims, mode, aux):
    pass


@jit
def switch_cross(theta, X, y, c, dims, mode, aux, k, i, out):
    return 0.0


@jit
def switch_locate(y0, y1, K, P, h, X, y, c, dims, mode, aux, scratch, scratch_f):
    return 2.0, -1, -1
