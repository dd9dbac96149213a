"""Dense output of a Runge-Kutta step (template; see :mod:`flowsim._codegen`).

``y(t0 + theta h) = y0 + h sum_j K_j sum_l P[j, l] theta^(l+1)`` with the
tableau's ``P`` (:mod:`flowsim.integrate.tableaus`).
"""

from flowsim._jit import jit

# --- template body ---


@jit
def dense_eval(y0, K, P, h, theta, out):
    """y(t0 + theta h) = y0 + h sum_j K_j sum_l P[j, l] theta^(l+1)."""
    R = P.shape[0]
    q = P.shape[1]
    n = y0.size
    for p in range(n):
        out[p] = y0[p]
    for j in range(R):
        w = 0.0
        power = theta
        for l in range(q):
            w += P[j, l] * power
            power *= theta
        if w != 0.0:
            hw = h * w
            for p in range(n):
                out[p] += hw * K[j, p]
