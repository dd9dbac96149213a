"""No analytic Jacobian factor (template; see :mod:`flowsim._codegen`).

Stand-ins for the ``newton_*`` functions of :data:`flowsim._abi.INTERFACE` in a
model family without an analytic Jacobian factor (attention; three layers have an
approximate one for smoothed kinks, :mod:`flowsim.models._three_layer_factor`):
``newton_factor`` reports failure, and :func:`flowsim.simulate` refuses
``rodas`` and ``bdf`` for such a family (``auto`` uses RKC in the stiff tail).
"""

from flowsim._jit import jit

# --- template body ---


@jit
def newton_work_size(dims, n):
    return 1


@jit
def newton_factor(theta, X, y, c, dims, shift, work):
    return False


@jit
def newton_solve(work, dims, n, rhs, out):
    out[:] = rhs
