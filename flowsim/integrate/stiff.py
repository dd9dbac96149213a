"""Stabilized explicit integration for stiff gradient flows (template).

A gradient flow's Jacobian is minus the Hessian of the loss: symmetric, with a
real spectrum.  After the first loss drop of a small-initialization run its
eigenvalues spread from ~10 down to ~1e-5, and an explicit Runge-Kutta method
is held to steps ~ 3/lambda_max for the whole slow tail.  The
Runge-Kutta-Chebyshev method RKC [SSV97] (second order, ``s`` stages from the
shifted Chebyshev polynomials, damping ``eps = 2/13``) is stable on
``[-beta(s), 0]`` with ``beta(s) ~ 0.65 s^2``: it needs only gradients, ``s``
grows like ``sqrt(h * rho)``, and ``rho`` (the spectral radius) comes from a
power iteration on finite-difference Hessian-vector products.

Dense output is the cubic Hermite interpolant of ``(y0, f0, y1, f1)``, written
in the tableau form of :mod:`flowsim._dense` with the pseudo-stages
``K = [f0, f1, (y1 - y0)/h]`` so that saving and event location are shared
with the Runge-Kutta loop.

References
----------
.. [SSV97] Sommeijer, Shampine, Verwer. RKC: an explicit solver for parabolic
   PDEs. J. Comput. Appl. Math. 88 (1997) 315-326.
.. [VHS90] Verwer, Hundsdorfer, Sommeijer. Convergence properties of the
   Runge-Kutta-Chebyshev method. Numer. Math. 57 (1990) 157-178.
"""

import math

import numpy as np

from flowsim._jit import jit
from flowsim.integrate._model import flow
from flowsim.integrate.control import error_norm
from flowsim.integrate.events import event_values
from flowsim.integrate.explicit import (
    F_ERR_PREV,
    F_H,
    F_H_MIN,
    F_LOSS,
    F_RTOL,
    F_T,
    F_T_END,
    I_ACCEPTED,
    I_HAVE_K0,
    I_NFEV,
    I_REJECTED,
    I_STATUS,
    S_DONE,
    S_NONFINITE,
    S_RUNNING,
    S_STEP_TOO_SMALL,
    _all_finite,
    start_run,
    step_outputs,
    stop_at_event,
)

# --- template body ---

RKC_DAMPING = 2.0 / 13.0
RKC_MAX_STAGES = 4000
RHO_SAFETY = 1.2
RHO_EVERY = 25
F_RHO = 8
I_STAGES = 12
I_RHO_AGE = 13
I_MAX_STAGES = 14


@jit
def hermite_p():
    """Hermite dense output in the tableau form: rows f0, f1, (y1 - y0)/h.

    Built inside the compiled code: a global array frozen into a cached function
    crashed when the function was loaded from Numba's cache."""
    P = np.zeros((3, 3))
    P[0, 0] = 1.0
    P[0, 1] = -2.0
    P[0, 2] = 1.0
    P[1, 1] = -1.0
    P[1, 2] = 1.0
    P[2, 1] = 3.0
    P[2, 2] = -2.0
    return P


@jit
def spectral_radius(y, f0, X, Y, c, dims, mode, aux, v, iterations, scratch, scratch_f):
    """Largest |eigenvalue| of the flow's Jacobian by power iteration on
    finite-difference Jacobian-vector products, warm-started from ``v``
    (updated in place).  Returns (rho, evaluations used)."""
    n = y.size
    ynorm = 0.0
    vnorm = 0.0
    for p in range(n):
        ynorm += y[p] * y[p]
        vnorm += v[p] * v[p]
    ynorm = math.sqrt(ynorm)
    vnorm = math.sqrt(vnorm)
    if vnorm == 0.0:
        for p in range(n):
            v[p] = 1.0 + 0.1 * ((p * 7919) % 13)
        vnorm = 0.0
        for p in range(n):
            vnorm += v[p] * v[p]
        vnorm = math.sqrt(vnorm)
    delta = math.sqrt(2.2e-16) * max(ynorm, 1.0)
    rho = 0.0
    used = 0
    for it in range(iterations):
        for p in range(n):
            scratch[p] = y[p] + delta * v[p] / vnorm
        flow(scratch, X, Y, c, dims, mode, aux, scratch_f)
        used += 1
        s = 0.0
        for p in range(n):
            v[p] = (scratch_f[p] - f0[p]) / delta
            s += v[p] * v[p]
        s = math.sqrt(s)
        if s == 0.0 or not math.isfinite(s):
            break
        change = abs(s - rho)
        rho = s
        vnorm = s
        if it > 2 and change <= 0.01 * rho:
            break
    return rho, used


@jit
def rkc_coefficients(s, out):
    """RKC(s) recurrence coefficients [SSV97]: out[j] = (mu_j, nu_j, mu~_j, gamma~_j, c_j)."""
    w0 = 1.0 + RKC_DAMPING / (s * s)
    T = np.zeros(s + 1)
    dT = np.zeros(s + 1)
    d2T = np.zeros(s + 1)
    T[0] = 1.0
    T[1] = w0
    dT[1] = 1.0
    for j in range(2, s + 1):
        T[j] = 2.0 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2.0 * T[j - 1] + 2.0 * w0 * dT[j - 1] - dT[j - 2]
        d2T[j] = 4.0 * dT[j - 1] + 2.0 * w0 * d2T[j - 1] - d2T[j - 2]
    w1 = dT[s] / d2T[s]
    bj = np.zeros(s + 1)
    for j in range(2, s + 1):
        bj[j] = d2T[j] / (dT[j] * dT[j])
    bj[0] = bj[2]
    bj[1] = bj[2]
    aj = np.zeros(s + 1)
    for j in range(s + 1):
        aj[j] = 1.0 - bj[j] * T[j]
    out[1, 2] = bj[1] * w1  # mu~_1
    out[1, 4] = out[1, 2]  # c_1
    for j in range(2, s + 1):
        out[j, 0] = 2.0 * bj[j] * w0 / bj[j - 1]  # mu_j
        out[j, 1] = -bj[j] / bj[j - 2]  # nu_j
        out[j, 2] = 2.0 * bj[j] * w1 / bj[j - 1]  # mu~_j
        out[j, 3] = -aj[j - 1] * out[j, 2]  # gamma~_j
    return w0


@jit
def rkc_stages_for(h, rho):
    """Smallest s with h * rho inside the stability interval, as in the RKC code."""
    s = 1 + int(math.sqrt(1.54 * h * rho + 1.0))
    return min(max(s, 2), RKC_MAX_STAGES)


@jit
def accept_step(
    y, y1, K, P, h, t, t_new, loss1, X, Y, c, dims,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, fst, ist, yd,
):  # fmt: skip
    """Accept a step from (t, y) to (t_new, y1) with the dense output (``K``, ``P``):
    locate events, save, then move to y1.  Returns (the new time, whether a
    terminal event stopped the run)."""
    event_values(ev_kind, ev_thr, t_new, y1, loss1, dims, g_new)
    stop_event = step_outputs(
        y, y1, K, P, h, t, t_new, loss1, X, Y, c, dims,
        ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
        save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, ist, yd,
    )  # fmt: skip
    ist[I_ACCEPTED] += 1
    if stop_event >= 0:
        return stop_at_event(stop_event, y, ev_t, ev_states, ev_loss, fst, ist), True
    for p in range(y.size):
        y[p] = y1[p]
    fst[F_LOSS] = loss1
    return t_new, False


@jit
def accept_hermite_step(
    y, y1, K, hermite, h, t, t_new, loss1, X, Y, c, dims,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, fst, ist, yd,
):  # fmt: skip
    """:func:`accept_step` with the Hermite interpolant as dense output (``K[0]`` =
    f(y), ``K[1]`` = f(y1)); f(y1) becomes the next step's ``K[0]``."""
    n = y.size
    for p in range(n):
        K[2, p] = (y1[p] - y[p]) / h
    t, stopped = accept_step(
        y, y1, K, hermite, h, t, t_new, loss1, X, Y, c, dims,
        ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
        save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, fst, ist, yd,
    )  # fmt: skip
    if not stopped:
        for p in range(n):
            K[0, p] = K[1, p]
    return t, stopped


@jit
def rkc_solve(
    y, X, Y, c, dims, fst, ist, K, v_power,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss,
    mode, aux, chunk,
):  # fmt: skip
    """RKC steps of the gradient flow (state and outputs as in ``rk_solve``)."""
    n = y.size
    n_ev = ev_kind.size
    t = fst[F_T]
    h = fst[F_H]
    t_end = fst[F_T_END]
    rtol = fst[F_RTOL]
    atol = fst[6]
    y1 = np.empty(n)
    ym1 = np.empty(n)
    ym2 = np.empty(n)
    fj = np.empty(n)
    err = np.empty(n)
    yd = np.empty(n)
    scratch = np.empty(n)
    scratch_f = np.empty(n)
    coef = np.zeros((RKC_MAX_STAGES + 1, 5))
    hermite = hermite_p()
    g_new = np.empty(n_ev)
    s_cached = -1
    if ist[I_HAVE_K0] == 0:
        ist[I_RHO_AGE] = RHO_EVERY
        if not start_run(y, t, X, Y, c, dims, mode, aux, K[0], fst, ist, save_t, save_state_row,
                         out_t, out_loss, out_norms, out_maxnorm, out_states, ev_kind, ev_thr,
                         ev_g):  # fmt: skip
            return
    steps = 0
    rejected_last = False
    while steps < chunk:
        if t >= t_end:
            ist[I_STATUS] = S_DONE
            break
        if ist[I_RHO_AGE] >= RHO_EVERY or fst[F_RHO] <= 0.0:
            rho, used = spectral_radius(y, K[0], X, Y, c, dims, mode, aux, v_power, 40,
                                        scratch, scratch_f)  # fmt: skip
            ist[I_NFEV] += used
            fst[F_RHO] = RHO_SAFETY * rho
            ist[I_RHO_AGE] = 0
        if h <= 0.0:
            h = 1.0 / max(fst[F_RHO], 1e-300)
        last = False
        if t + 1.01 * h >= t_end:
            h = t_end - t
            last = True
        if h < fst[F_H_MIN] * max(1.0, abs(t)):
            ist[I_STATUS] = S_STEP_TOO_SMALL
            break
        s = rkc_stages_for(h, fst[F_RHO])
        if s == RKC_MAX_STAGES:
            h = min(h, (((RKC_MAX_STAGES - 1) ** 2 - 1.0) / 1.54) / fst[F_RHO])
        if s != s_cached:
            rkc_coefficients(s, coef)
            s_cached = s
        ist[I_STAGES] = s
        ist[I_MAX_STAGES] = max(ist[I_MAX_STAGES], s)
        # Y0 = y, Y1 = y + mu~_1 h f0
        for p in range(n):
            ym2[p] = y[p]
            ym1[p] = y[p] + coef[1, 2] * h * K[0, p]
        for j in range(2, s + 1):
            flow(ym1, X, Y, c, dims, mode, aux, fj)
            ist[I_NFEV] += 1
            mu = coef[j, 0]
            nu = coef[j, 1]
            mut = coef[j, 2] * h
            gam = coef[j, 3] * h
            one = 1.0 - mu - nu
            for p in range(n):
                yj = one * y[p] + mu * ym1[p] + nu * ym2[p] + mut * fj[p] + gam * K[0, p]
                ym2[p] = ym1[p]
                ym1[p] = yj
        for p in range(n):
            y1[p] = ym1[p]
        loss1 = flow(y1, X, Y, c, dims, mode, aux, K[1])
        ist[I_NFEV] += 1
        finite = math.isfinite(loss1) and _all_finite(y1) and _all_finite(K[1])
        if finite:
            for p in range(n):
                err[p] = (12.0 * (y[p] - y1[p]) + 6.0 * h * (K[0, p] + K[1, p])) / 15.0
            err_norm = error_norm(err, y, y1, rtol, atol)
        else:
            err_norm = np.inf
        if not math.isfinite(err_norm) or err_norm > 1.0:
            ist[I_REJECTED] += 1
            factor = (
                0.1 if not math.isfinite(err_norm) else max(0.1, 0.8 * err_norm ** (-1.0 / 3.0))
            )
            h *= factor
            rejected_last = True
            ist[I_RHO_AGE] = RHO_EVERY  # refresh rho after a rejection
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
        ist[I_RHO_AGE] += 1
        steps += 1
        if stopped:
            break
        factor = 0.8 * max(err_norm, 1e-10) ** (-1.0 / 3.0)
        factor = min(10.0, max(0.1, factor))
        if rejected_last:
            factor = min(factor, 1.0)
        h *= factor
        fst[F_ERR_PREV] = max(err_norm, 1e-10)
        rejected_last = False
    fst[F_T] = t
    fst[F_H] = h
    if ist[I_STATUS] == S_RUNNING and t >= t_end:
        ist[I_STATUS] = S_DONE
