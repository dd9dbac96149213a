"""Linearly implicit (Rosenbrock) integration of stiff gradient flows (template).

RODAS4 [HW96, section VI.4]: six stages, order 4 with an embedded order-3
solution, L-stable and stiffly accurate, so its step in the stiff tail of a
small-initialization run is set by accuracy alone, not by the Jacobian's
largest eigenvalue.  Each step factors M = I/(h gamma) - J once with the
model's analytic Jacobian (``newton_factor``: block-diagonal per neuron plus a
rank-n data term, solved by the Woodbury identity in O(P n)) and solves with
it six times; it needs no Newton iteration.

Stages, in the transformed variables U_i of [HW96] (autonomous system):

    M U_i = f(y0 + sum_{j<i} a_ij U_j) + sum_{j<i} (c_ij / h) U_j,
    y1 = y0 + sum_j a_6j U_j + U_6,     error estimate U_6.

Dense output, saving and events are those of :mod:`flowsim.integrate.stiff`
(cubic Hermite interpolant of (y0, f0, y1, f1)).

References
----------
.. [HW96] Hairer, Wanner. Solving Ordinary Differential Equations II, 2nd ed.
   Springer, 1996 (RODAS4 coefficients, table 7.2 of section VI.7).
"""

import math

import numpy as np

from flowsim._jit import jit
from flowsim.integrate._model import (
    flow,
    newton_factor,
    newton_solve,
    newton_work_size,
)
from flowsim.integrate.control import error_norm
from flowsim.integrate.explicit import (
    F_ERR_PREV,
    F_H,
    F_H_MIN,
    F_RTOL,
    F_T,
    F_T_END,
    I_HAVE_K0,
    I_NFEV,
    I_REJECTED,
    I_STATUS,
    S_DONE,
    S_NONFINITE,
    S_RUNNING,
    S_STEP_TOO_SMALL,
    _all_finite,
    initial_step,
    start_run,
)
from flowsim.integrate.stiff import accept_hermite_step, hermite_p

# --- template body ---

RODAS_GAMMA = 0.25
I_FACTORS = 15
"""ist slot: Jacobian factorizations (one per attempted step)."""


@jit
def rodas4_coefficients():
    """(A, C): RODAS4's a_ij and c_ij (transformed form), 6 x 6 lower triangular.

    Built inside the compiled code (see :func:`flowsim.integrate.stiff.hermite_p`)."""
    A = np.zeros((6, 6))
    C = np.zeros((6, 6))
    A[1, 0] = 1.544
    A[2, 0] = 0.9466785280815826
    A[2, 1] = 0.2557011698983284
    A[3, 0] = 3.314825187068521
    A[3, 1] = 2.896124015972201
    A[3, 2] = 0.9986419139977817
    A[4, 0] = 1.221224509226641
    A[4, 1] = 6.019134481288629
    A[4, 2] = 12.53708332932087
    A[4, 3] = -0.6878860361058950
    A[5, 0] = A[4, 0]
    A[5, 1] = A[4, 1]
    A[5, 2] = A[4, 2]
    A[5, 3] = A[4, 3]
    A[5, 4] = 1.0
    C[1, 0] = -5.6688
    C[2, 0] = -2.430093356833875
    C[2, 1] = -0.2063599157091915
    C[3, 0] = -0.1073529058151375
    C[3, 1] = -9.594562251023355
    C[3, 2] = -20.47028614809616
    C[4, 0] = 7.496443313967647
    C[4, 1] = -10.24680431464352
    C[4, 2] = -33.99990352819905
    C[4, 3] = 11.70890893206160
    C[5, 0] = 8.083246795921522
    C[5, 1] = -7.981132988064893
    C[5, 2] = -31.52159432874371
    C[5, 3] = 16.31930543123136
    C[5, 4] = -6.058818238834054
    return A, C


@jit
def rodas_solve(
    y, X, Y, c, dims, fst, ist, K,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss,
    mode, aux, chunk,
):  # fmt: skip
    """RODAS4 steps of the gradient flow (state and outputs as in ``rk_solve``)."""
    n = y.size
    n_data = X.shape[0]
    n_ev = ev_kind.size
    t = fst[F_T]
    h = fst[F_H]
    t_end = fst[F_T_END]
    rtol = fst[F_RTOL]
    atol = fst[6]
    A, C = rodas4_coefficients()
    U = np.zeros((6, n))
    rhs = np.empty(n)
    ys = np.empty(n)
    y1 = np.empty(n)
    yd = np.empty(n)
    scratch = np.empty(n)
    scratch_f = np.empty(n)
    work = np.empty(newton_work_size(dims, n_data))
    hermite = hermite_p()
    g_new = np.empty(n_ev)
    if ist[I_HAVE_K0] == 0:
        if not start_run(y, t, X, Y, c, dims, mode, aux, K[0], fst, ist, save_t, save_state_row,
                         out_t, out_loss, out_norms, out_maxnorm, out_states, ev_kind, ev_thr,
                         ev_g):  # fmt: skip
            return
    if h <= 0.0:
        h = initial_step(y, K[0], 4, rtol, atol, X, Y, c, dims, mode, aux, scratch, scratch_f)
        ist[I_NFEV] += 1
    steps = 0
    rejected_last = False
    while steps < chunk:
        if t >= t_end:
            ist[I_STATUS] = S_DONE
            break
        last = False
        if t + 1.01 * h >= t_end:
            h = t_end - t
            last = True
        if h < fst[F_H_MIN] * max(1.0, abs(t)):
            ist[I_STATUS] = S_STEP_TOO_SMALL
            break
        ist[I_FACTORS] += 1
        ok = newton_factor(y, X, Y, c, dims, 1.0 / (h * RODAS_GAMMA), work)
        finite = ok
        if ok:
            for i in range(6):
                if i == 0:
                    for p in range(n):
                        rhs[p] = K[0, p]
                else:
                    for p in range(n):
                        v = y[p]
                        w = 0.0
                        for j in range(i):
                            v += A[i, j] * U[j, p]
                            w += C[i, j] * U[j, p]
                        ys[p] = v
                        scratch[p] = w / h
                    flow(ys, X, Y, c, dims, mode, aux, rhs)
                    ist[I_NFEV] += 1
                    for p in range(n):
                        rhs[p] += scratch[p]
                newton_solve(work, dims, n_data, rhs, U[i])
            for p in range(n):
                y1[p] = ys[p] + U[5, p]
            loss1 = flow(y1, X, Y, c, dims, mode, aux, K[1])
            ist[I_NFEV] += 1
            finite = math.isfinite(loss1) and _all_finite(y1) and _all_finite(K[1])
        if finite:
            err_norm = error_norm(U[5], y, y1, rtol, atol)
        else:
            err_norm = np.inf
        if not math.isfinite(err_norm) or err_norm > 1.0:
            ist[I_REJECTED] += 1
            factor = 0.2 if not math.isfinite(err_norm) else max(0.2, 0.9 * err_norm ** (-0.25))
            h *= factor
            rejected_last = True
            if not finite and h < 1e-300:
                ist[I_STATUS] = S_NONFINITE
                break
            continue
        t_new = t_end if last else t + h
        t, stopped = accept_hermite_step(
            y, y1, K, hermite, h, t, t_new, loss1, X, Y, c, dims,
            ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
            save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
            fst, ist, yd,
        )  # fmt: skip
        steps += 1
        if stopped:
            break
        factor = 0.9 * max(err_norm, 1e-10) ** (-0.25)
        factor = min(6.0, max(0.2, factor))
        if rejected_last:
            factor = min(factor, 1.0)
        h *= factor
        fst[F_ERR_PREV] = max(err_norm, 1e-10)
        rejected_last = False
    fst[F_T] = t
    fst[F_H] = h
    if ist[I_STATUS] == S_RUNNING and t >= t_end:
        ist[I_STATUS] = S_DONE
