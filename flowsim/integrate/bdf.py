"""Variable-order BDF integration of stiff gradient flows (template).

The numerical differentiation formulas of orders 1 to 5 [SR97] (the BDFs with
the kappa corrections of MATLAB's ode15s), in backward-difference form with a
quasi-constant step size, as in SciPy's ``BDF``: each step predicts from the
differences ``D`` and corrects by a simplified Newton iteration with
``M = I / c - J``, ``c = h / alpha_k``.  The factor of ``M`` (the model's
analytic Jacobian, block-diagonal per neuron plus a rank-n data term,
``newton_factor``) is kept across steps while ``h`` and the order stay: a
step costs one to four gradients and as many O(P n) solves, against six of
each plus a factor for RODAS.  When Newton does not converge with a factor
from an earlier step, the Jacobian is evaluated afresh; when it does not
converge with a fresh one, the step is halved.  The order and the step change
after ``k + 1`` equal steps, to whichever of the orders k - 1, k, k + 1 allows
the longest step.

Dense output is the interpolating polynomial of the differences, written in
the tableau form of :mod:`flowsim._dense` (pseudo-stages
``D[1..k] / h``), so that saving and event location are shared with the
Runge-Kutta loop.  All state (differences, order, step counters, the factor)
lives in arrays passed in, so a run continues across chunks exactly.

References
----------
.. [SR97] Shampine, Reichelt. The MATLAB ODE suite. SIAM J. Sci. Comput. 18
   (1997) 1-22.
"""

import math

import numpy as np

from flowsim._jit import jit
from flowsim.integrate._model import flow, loss, newton_factor, newton_solve
from flowsim.integrate.events import EV_NORM_ABOVE
from flowsim.integrate.explicit import (
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
from flowsim.integrate.rosenbrock import I_FACTORS
from flowsim.integrate.stiff import accept_step

# --- template body ---

BDF_MAX_ORDER = 5
BDF_NEWTON_MAXITER = 4
BDF_MIN_FACTOR = 0.2
BDF_MAX_FACTOR = 10.0
I_BDF_ORDER = 16
I_BDF_EQUAL = 17
"""ist slot: accepted steps since the last change of step size or order."""
I_BDF_LU = 18
"""ist slot: 1 when the factor in the work space belongs to the current h and order."""
I_BDF_FRESH = 19
"""ist slot: 1 when that factor's Jacobian was evaluated at the current state."""
BDF_ROWS = BDF_MAX_ORDER + 3


@jit
def bdf_constants():
    """(gamma, alpha, error_const) of the NDFs of orders 0..5 [SR97]."""
    kappa = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
    gamma = np.zeros(BDF_MAX_ORDER + 1)
    for k in range(1, BDF_MAX_ORDER + 1):
        gamma[k] = gamma[k - 1] + 1.0 / k
    alpha = (1.0 - kappa) * gamma
    error_const = np.empty(BDF_MAX_ORDER + 2)
    for k in range(BDF_MAX_ORDER + 1):
        error_const[k] = kappa[k] * gamma[k] + 1.0 / (k + 1)
    error_const[BDF_MAX_ORDER + 1] = 1.0 / (BDF_MAX_ORDER + 2)
    return gamma, alpha, error_const


@jit
def _rms(v, scale):
    s = 0.0
    for i in range(v.size):
        q = v[i] / scale[i]
        s += q * q
    return math.sqrt(s / max(v.size, 1))


@jit
def _difference_matrix(order, factor, out):
    """R of [SR97]: rescales differences of order ``order`` to step ``factor * h``."""
    for j in range(order + 1):
        out[0, j] = 1.0
    for i in range(1, order + 1):
        out[i, 0] = 0.0
        for j in range(1, order + 1):
            out[i, j] = out[i - 1, j] * (i - 1.0 - factor * j) / i


@jit
def change_differences(D, order, factor, scratch):
    """D[:order + 1] <- (R U)^T D[:order + 1]: the differences for the step ``factor * h``."""
    q = order + 1
    R = np.empty((q, q))
    U = np.empty((q, q))
    _difference_matrix(order, factor, R)
    _difference_matrix(order, 1.0, U)
    RU = np.zeros((q, q))
    for a in range(q):
        for k in range(q):
            for b in range(q):
                RU[a, b] += R[a, k] * U[k, b]
    n = D.shape[1]
    for a in range(q):
        row = scratch[a]
        for p in range(n):
            row[p] = 0.0
        for b in range(q):
            w = RU[b, a]
            for p in range(n):
                row[p] += w * D[b, p]
    for a in range(q):
        for p in range(n):
            D[a, p] = scratch[a, p]


@jit
def bdf_dense_p(order):
    """P (order x order) of the dense output: row j - 1 holds the coefficients of
    theta^1..theta^order of p_j(theta) = prod_{i < j} (theta - 1 + i) / (i + 1), the
    Newton basis of the differences on the step's [0, 1]."""
    P = np.zeros((order, order))
    poly = np.zeros(order + 1)
    poly[0] = 1.0
    for j in range(1, order + 1):
        # multiply by (theta + j - 2) / j
        for l in range(j, 0, -1):
            poly[l] = (poly[l - 1] + (j - 2.0) * poly[l]) / j
        poly[0] = (j - 2.0) * poly[0] / j
        for l in range(order):
            P[j - 1, l] = poly[l + 1]
    return P


@jit
def bdf_solve(
    y, X, Y, c, dims, fst, ist, D, work,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss,
    mode, aux, chunk,
):  # fmt: skip
    """BDF steps of the gradient flow (state and outputs as in ``rk_solve``; ``D``
    (BDF_ROWS, n) holds the differences, ``work`` the factor, across calls)."""
    n = y.size
    n_data = X.shape[0]
    n_ev = ev_kind.size
    t = fst[F_T]
    h_abs = fst[F_H]
    t_end = fst[F_T_END]
    rtol = fst[F_RTOL]
    atol = fst[6]
    gamma, alpha, error_const = bdf_constants()
    newton_tol = max(10.0 * 2.220446049250313e-16 / rtol, min(0.03, math.sqrt(rtol)))
    f = np.empty(n)
    y_predict = np.empty(n)
    psi = np.empty(n)
    d = np.empty(n)
    y1 = np.empty(n)
    dy = np.empty(n)
    rhs = np.empty(n)
    scale = np.empty(n)
    yd = np.empty(n)
    scratch = np.empty((BDF_ROWS, n))
    g_new = np.empty(n_ev)
    loss_events = False
    for q in range(n_ev):
        if ev_kind[q] != EV_NORM_ABOVE:
            loss_events = True
    if ist[I_HAVE_K0] == 0:
        if not start_run(y, t, X, Y, c, dims, mode, aux, f, fst, ist, save_t, save_state_row,
                         out_t, out_loss, out_norms, out_maxnorm, out_states, ev_kind, ev_thr,
                         ev_g):  # fmt: skip
            return
        if h_abs <= 0.0:
            h_abs = initial_step(y, f, 1, rtol, atol, X, Y, c, dims, mode, aux, scratch[0],
                                 scratch[1])  # fmt: skip
            ist[I_NFEV] += 1
        D[:, :] = 0.0
        for p in range(n):
            D[0, p] = y[p]
            D[1, p] = h_abs * f[p]
        ist[I_BDF_ORDER] = 1
        ist[I_BDF_EQUAL] = 0
        ist[I_BDF_LU] = 0
    order = ist[I_BDF_ORDER]
    n_equal = ist[I_BDF_EQUAL]
    lu = ist[I_BDF_LU]
    fresh = ist[I_BDF_FRESH]
    steps = 0
    nonfinite = False
    while steps < chunk:
        if t >= t_end:
            ist[I_STATUS] = S_DONE
            break
        last = False
        if t + 1.01 * h_abs >= t_end:
            h_new = t_end - t
            change_differences(D, order, h_new / h_abs, scratch)
            h_abs = h_new
            n_equal = 0
            lu = 0
            last = True
        if h_abs < fst[F_H_MIN] * max(1.0, abs(t)):
            ist[I_STATUS] = S_NONFINITE if nonfinite else S_STEP_TOO_SMALL
            break
        h = h_abs
        for p in range(n):
            v = 0.0
            w = 0.0
            for j in range(order, 0, -1):
                v += D[j, p]
                w += gamma[j] * D[j, p]
            y_predict[p] = D[0, p] + v
            psi[p] = w / alpha[order]
            scale[p] = atol + rtol * abs(y_predict[p])
        cc = h / alpha[order]
        converged = False
        n_iter = 0
        while True:
            if lu == 0:
                ist[I_FACTORS] += 1
                if not newton_factor(y, X, Y, c, dims, 1.0 / cc, work):
                    break
                lu = 1
                fresh = 1
            for p in range(n):
                y1[p] = y_predict[p]
                d[p] = 0.0
            dy_norm_old = -1.0
            nonfinite = False
            for k in range(BDF_NEWTON_MAXITER):
                n_iter = k + 1
                value = flow(y1, X, Y, c, dims, mode, aux, f)
                ist[I_NFEV] += 1
                if not (math.isfinite(value) and _all_finite(f)):
                    nonfinite = True
                    break
                for p in range(n):
                    rhs[p] = f[p] - (psi[p] + d[p]) / cc
                newton_solve(work, dims, n_data, rhs, dy)
                dy_norm = _rms(dy, scale)
                rate = -1.0
                if dy_norm_old > 0.0:
                    rate = dy_norm / dy_norm_old
                    if rate >= 1.0 or (
                        rate ** (BDF_NEWTON_MAXITER - k) / (1.0 - rate) * dy_norm > newton_tol
                    ):
                        break
                for p in range(n):
                    y1[p] += dy[p]
                    d[p] += dy[p]
                if dy_norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * dy_norm < newton_tol):
                    converged = True
                    break
                dy_norm_old = dy_norm
            if converged or fresh == 1:
                break
            lu = 0  # a Jacobian from an earlier state: evaluate it here and retry
        if not converged:
            ist[I_REJECTED] += 1
            h_abs *= 0.5
            change_differences(D, order, 0.5, scratch)
            n_equal = 0
            lu = 0
            continue
        safety = 0.9 * (2 * BDF_NEWTON_MAXITER + 1) / (2 * BDF_NEWTON_MAXITER + n_iter)
        for p in range(n):
            scale[p] = atol + rtol * abs(y1[p])
        err_norm = error_const[order] * _rms(d, scale)
        if not (err_norm <= 1.0):
            ist[I_REJECTED] += 1
            factor = BDF_MIN_FACTOR
            if math.isfinite(err_norm):
                factor = max(BDF_MIN_FACTOR, safety * err_norm ** (-1.0 / (order + 1)))
            h_abs *= factor
            change_differences(D, order, factor, scratch)
            n_equal = 0
            lu = 0
            continue
        # accepted: update the differences (D[0] becomes y1)
        n_equal += 1
        fresh = 0
        for p in range(n):
            D[order + 2, p] = d[p] - D[order + 1, p]
            D[order + 1, p] = d[p]
        for i in range(order, -1, -1):
            for p in range(n):
                D[i, p] += D[i + 1, p]
        t_new = t_end if last else t + h
        loss1 = loss(y1, X, Y, c, dims) if loss_events else math.nan
        Kd = np.empty((order, n))
        for j in range(order):
            for p in range(n):
                Kd[j, p] = D[j + 1, p] / h
        t, stopped = accept_step(
            y, y1, Kd, bdf_dense_p(order), h, t, t_new, loss1, X, Y, c, dims,
            ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
            save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, fst, ist,
            yd,
        )  # fmt: skip
        steps += 1
        if stopped:
            break
        if n_equal < order + 1:
            continue
        # order and step: the longest step among the orders k - 1, k, k + 1
        err_m = math.inf
        err_p = math.inf
        if order > 1:
            err_m = error_const[order - 1] * _rms(D[order], scale)
        if order < BDF_MAX_ORDER:
            err_p = error_const[order + 1] * _rms(D[order + 2], scale)
        best = -1.0
        delta = 0
        for q in range(3):
            e = err_m if q == 0 else (err_norm if q == 1 else err_p)
            fac = math.inf if e == 0.0 else e ** (-1.0 / (order + q))
            if fac > best:
                best = fac
                delta = q - 1
        order += delta
        factor = min(BDF_MAX_FACTOR, safety * best)
        h_abs *= factor
        change_differences(D, order, factor, scratch)
        n_equal = 0
        lu = 0
    fst[F_T] = t
    fst[F_H] = h_abs
    ist[I_BDF_ORDER] = order
    ist[I_BDF_EQUAL] = n_equal
    ist[I_BDF_LU] = lu
    ist[I_BDF_FRESH] = fresh
    if ist[I_STATUS] == S_RUNNING and t >= t_end:
        ist[I_STATUS] = S_DONE
