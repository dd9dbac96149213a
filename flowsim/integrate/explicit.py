"""The generic explicit Runge-Kutta stepping loop (template; see :mod:`flowsim._codegen`).

One compiled loop serves every tableau of :mod:`flowsim.integrate.tableaus`:
stages, error control (:mod:`flowsim.integrate.control`), dense output for save
points, events located by root finding on the dense output
(:mod:`flowsim.integrate.events`), and non-finite detection.  It runs up to
``chunk`` steps and returns, so that the Python driver can show progress,
enforce wall-time limits and stay interruptible; all state lives in the arrays
passed in, so the next call continues exactly where this one stopped.

Integer state ``ist``: see the ``I_*`` constants; float state ``fst``: ``F_*``.
Status codes ``S_*`` are mirrored in :mod:`flowsim.integrate.simulate`.
"""

import math

import numpy as np
from numba import prange

from flowsim._dense import dense_eval
from flowsim._jit import jit, jit_inline, pjit
from flowsim.integrate._model import (
    flow,
    layer_norms,
    loss,
    max_neuron_norm,
    switch_cross,
    switch_init,
    switch_locate,
)
from flowsim.integrate.control import error_norm, step_factor
from flowsim.integrate.events import event_values, locate_event

# --- template body ---

I_ACCEPTED = 0
I_REJECTED = 1
I_NFEV = 2
I_SAVE = 3
I_STATUS = 4
I_STATE_ROW = 5
I_EVENT = 6
I_HAVE_K0 = 7
I_SWITCHES = 8

N_IST = 24
N_FST = 16
"""Lengths of a run's integer and float state arrays (``ist``, ``fst``), room to spare."""

F_T = 0
F_H = 1
F_ERR_PREV = 2
F_LOSS = 3
F_T_END = 4
F_RTOL = 5
F_ATOL = 6
F_H_MIN = 7

S_RUNNING = 0
S_DONE = 1
S_EVENT = 2
S_NONFINITE = 3
S_STEP_TOO_SMALL = 4

MAX_NONFINITE_SHRINKS = 60


@jit
def _copy(src, dst):
    """dst[:] = src, written as a loop: a slice assignment brings Numba's shape-error
    message formatting, which cost 2.2 s of a cold first ``simulate``."""
    for i in range(src.size):
        dst[i] = src[i]


@jit
def _all_finite(v):
    for i in range(v.size):
        if not math.isfinite(v[i]):
            return False
    return True


VECTOR_BLOCK = 1024
"""Entries per block of the passes over the state (the block stays in L1)."""

PARALLEL_MIN_STATE = 100_000
"""States at least this long combine stages in parallel (over fixed blocks:
elementwise, so the result does not depend on the threads)."""


@pjit
def _combine(y0, h, coef, K, rows, out):
    """out = y0 + sum_{j < rows} (h coef[j]) K[j] (zero coefficients skipped), in
    blocks: each K row is read once per block, out stays in cache."""
    n = y0.size
    for b in prange((n + VECTOR_BLOCK - 1) // VECTOR_BLOCK):
        lo = b * VECTOR_BLOCK
        hi = min(n, lo + VECTOR_BLOCK)
        for p in range(lo, hi):
            out[p] = y0[p]
        for j in range(rows):
            a = coef[j]
            if a != 0.0:
                ha = h * a
                for p in range(lo, hi):
                    out[p] += ha * K[j, p]


@jit_inline
def _lincomb(y0, h, coef, K, rows, out):
    """:func:`_combine`, in parallel for long states."""
    if y0.size >= PARALLEL_MIN_STATE:
        _combine(y0, h, coef, K, rows, out)
    else:
        _combine_serial(y0, h, coef, K, rows, out)  # noqa: F821 - generated twin


@jit_inline
def _stage_input(y0, h, A, K, i, out):
    _lincomb(y0, h, A[i], K, i, out)


@jit
def _stages(y0, h, A, K, first, last, ys, X, Y, c, dims, mode, aux, stage_loss, ist):
    for i in range(first, last):
        _stage_input(y0, h, A, K, i, ys)
        stage_loss[i] = flow(ys, X, Y, c, dims, mode, aux, K[i])
        ist[I_NFEV] += 1


@jit
def _record(
    y,
    t,
    loss_value,
    dims,
    save_row,
    out_t,
    out_loss,
    out_norms,
    out_maxnorm,
    out_states,
    save_state_row,
    ist,
):
    i = ist[I_SAVE]
    out_t[i] = t
    out_loss[i] = loss_value
    layer_norms(y, dims, out_norms[i])
    out_maxnorm[i] = max_neuron_norm(y, dims)
    row = save_state_row[i]
    if row >= 0:
        _copy(y, out_states[row])
    ist[I_SAVE] = i + 1


@jit
def _needs_dense(ev_kind, ev_thr, ev_g, ev_t, y1, loss1, dims, g_new, save_t, ist, t_new):
    """Evaluate the events at y1 (into ``g_new``); True when the step's dense output
    is needed: an event crossed, or a save time falls inside the step."""
    event_values(ev_kind, ev_thr, t_new, y1, loss1, dims, g_new)
    for q in range(ev_kind.size):
        if ev_t[q] != ev_t[q] and ev_g[q] < 0.0 and g_new[q] >= 0.0:
            return True
    i = ist[I_SAVE]
    return i < save_t.size and save_t[i] < t_new


@jit
def step_outputs(
    y, y1, K, P, h, t, t_new, loss1, X, Y, c, dims,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, ist, yd,
):  # fmt: skip
    """After an accepted step from (t, y) to (t_new, y1): locate the events that
    crossed (``g_new`` holds their values at y1), then record the save points up
    to the stop.  Returns the index of the terminal event that ends the run, or -1.
    The dense output (``K``, ``P``) must be complete when :func:`_needs_dense` says so.
    """
    n_ev = ev_kind.size
    stop_theta = 2.0
    stop_event = -1
    for q in range(n_ev):
        if ev_t[q] == ev_t[q] or not (ev_g[q] < 0.0 and g_new[q] >= 0.0):
            continue  # already fired (not NaN) or no upward crossing
        theta_q = locate_event(ev_kind, ev_thr, q, t, y, K, P, h, dims, X, Y, c, ev_g[q],
                               g_new[q], yd)  # fmt: skip
        ev_t[q] = t + theta_q * h
        dense_eval(y, K, P, h, theta_q, yd)
        _copy(yd, ev_states[q])
        ev_loss[q] = loss(yd, X, Y, c, dims)
        if ev_terminal[q] != 0 and theta_q < stop_theta:
            stop_theta = theta_q
            stop_event = q
    for q in range(n_ev):
        ev_g[q] = g_new[q]
        if stop_event >= 0 and ev_t[q] > t + stop_theta * h:
            ev_t[q] = np.nan  # after the terminal stop: did not happen
    t_stop = t_new if stop_event < 0 else t + stop_theta * h
    n_save = save_t.size
    while ist[I_SAVE] < n_save and save_t[ist[I_SAVE]] <= t_stop:
        ts = save_t[ist[I_SAVE]]
        if ts >= t_new:
            _record(y1, t_new, loss(y1, X, Y, c, dims), dims, 0, out_t, out_loss, out_norms,
                    out_maxnorm, out_states, save_state_row, ist)  # fmt: skip
            continue
        dense_eval(y, K, P, h, (ts - t) / h, yd)
        _record(yd, ts, loss(yd, X, Y, c, dims), dims, 0, out_t, out_loss, out_norms,
                out_maxnorm, out_states, save_state_row, ist)  # fmt: skip
    return stop_event


@jit
def stop_at_event(q, y, ev_t, ev_states, ev_loss, fst, ist):
    """End the run at terminal event ``q``: the state becomes the event's; returns its time."""
    _copy(ev_states[q], y)
    fst[F_LOSS] = ev_loss[q]
    ist[I_EVENT] = q
    ist[I_STATUS] = S_EVENT
    ist[I_HAVE_K0] = 0
    return ev_t[q]


@jit
def start_run(
    y, t, X, Y, c, dims, mode, aux, f0, fst, ist,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_g,
):  # fmt: skip
    """First evaluation of a run (or after a method switch): f0 = f(y), the save
    points at t, the events' values.  Returns False (status nonfinite) when f(y)
    is not finite."""
    fst[F_LOSS] = flow(y, X, Y, c, dims, mode, aux, f0)
    ist[I_NFEV] += 1
    ist[I_HAVE_K0] = 1
    if not (_all_finite(f0) and math.isfinite(fst[F_LOSS])):
        ist[I_STATUS] = S_NONFINITE
        return False
    while ist[I_SAVE] < save_t.size and save_t[ist[I_SAVE]] <= t:
        _record(y, t, loss(y, X, Y, c, dims), dims, 0, out_t, out_loss, out_norms,
                out_maxnorm, out_states, save_state_row, ist)  # fmt: skip
    event_values(ev_kind, ev_thr, t, y, fst[F_LOSS], dims, ev_g)
    return True


@jit
def initial_step(y0, f0, order, rtol, atol, X, Y, c, dims, mode, aux, scratch, scratch_f):
    """Starting step size ([HNW93] II.4, algorithm of DOPRI5); costs one evaluation."""
    n = y0.size
    d0 = 0.0
    d1 = 0.0
    for p in range(n):
        scale = atol + rtol * abs(y0[p])
        if scale > 0.0:
            d0 += (y0[p] / scale) ** 2
            d1 += (f0[p] / scale) ** 2
    d0 = math.sqrt(d0 / n)
    d1 = math.sqrt(d1 / n)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    for p in range(n):
        scratch[p] = y0[p] + h0 * f0[p]
    flow(scratch, X, Y, c, dims, mode, aux, scratch_f)
    d2 = 0.0
    for p in range(n):
        scale = atol + rtol * abs(y0[p])
        if scale > 0.0:
            d2 += ((scratch_f[p] - f0[p]) / scale) ** 2
    d2 = math.sqrt(d2 / n) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1)


@jit
def rk_solve(
    y, X, Y, c, dims,
    A, b, e, P, n_stages, end_row, error_order, adaptive,
    fst, ist, K, stage_loss,
    save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states,
    ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss,
    mode, aux, chunk,
):  # fmt: skip
    """Advance ``y`` (in place) by up to ``chunk`` steps; see the module docstring.

    A non-empty ``mode`` switches on the treatment of kinks (the model's
    ``switch_*`` kernels): steps end exactly at the first kink reached, where
    the pattern is updated (crossing or sliding) before integrating on.
    """
    n = y.size
    R = A.shape[0]
    n_ev = ev_kind.size
    switching = mode.shape[0] > 0
    t = fst[F_T]
    h = fst[F_H]
    t_end = fst[F_T_END]
    rtol = fst[F_RTOL]
    atol = fst[F_ATOL]
    ys = np.empty(n)
    y1 = np.empty(n)
    err = np.empty(n)
    zero = np.zeros(n)
    yd = np.empty(n)
    scratch_f = np.empty(n)
    P_cut = np.empty_like(P)
    h_fixed = h  # fixed-step rules: the step to return to after a kink
    k = error_order + 1.0

    if ist[I_HAVE_K0] == 0:
        if switching and ist[I_ACCEPTED] == 0:
            switch_init(y, X, Y, c, dims, mode, aux)
        if not start_run(y, t, X, Y, c, dims, mode, aux, K[0], fst, ist, save_t, save_state_row,
                         out_t, out_loss, out_norms, out_maxnorm, out_states, ev_kind, ev_thr,
                         ev_g):  # fmt: skip
            return
        if h <= 0.0:
            h = initial_step(y, K[0], error_order + 1, rtol, atol, X, Y, c, dims, mode, aux,
                             ys, K[1])  # fmt: skip
            ist[I_NFEV] += 1

    rejected_last = False
    shrinks = 0
    steps = 0
    g_new = np.empty(n_ev)
    pending_k = -1
    pending_i = -1
    pending_h = 0.0
    stalls = 0
    switched = False
    loss_switched = 0.0
    while steps < chunk:
        if t >= t_end:
            ist[I_STATUS] = S_DONE
            break
        last = False
        if t + h >= t_end or t + 1.01 * h >= t_end:
            h = t_end - t
            last = True
        if h < fst[F_H_MIN] * max(1.0, abs(t)):
            ist[I_STATUS] = S_STEP_TOO_SMALL
            break
        # np.int64: Numba compiles a function once more for each literal argument
        _stages(y, h, A, K, np.int64(1), n_stages, ys, X, Y, c, dims, mode, aux, stage_loss, ist)
        # y1 = y + h sum b_j K_j: row end_row of A is b (for FSAL tableaus this is
        # bit for bit the input of the last stage, so K[end_row] = f(y1))
        _stage_input(y, h, A, K, end_row, y1)
        if adaptive:
            _lincomb(zero, h, e, K, n_stages, err)  # err = h sum_j e_j K_j
            err_norm = error_norm(err, y, y1, rtol, atol)
        else:
            err_norm = 0.0
        finite = math.isfinite(err_norm) and _all_finite(y1)
        if finite and end_row < n_stages:
            finite = _all_finite(K[end_row]) and math.isfinite(stage_loss[end_row])
        if not finite:
            shrinks += 1
            ist[I_REJECTED] += 1
            if shrinks > MAX_NONFINITE_SHRINKS or not adaptive:
                ist[I_STATUS] = S_NONFINITE
                break
            h *= 0.25
            rejected_last = True
            pending_k = -1
            continue
        if err_norm > 1.0:
            ist[I_REJECTED] += 1
            h *= step_factor(err_norm, fst[F_ERR_PREV], k, True)
            rejected_last = True
            pending_k = -1
            continue
        # accepted
        if end_row >= n_stages:
            stage_loss[end_row] = flow(y1, X, Y, c, dims, mode, aux, K[end_row])
            ist[I_NFEV] += 1
            if not (_all_finite(K[end_row]) and math.isfinite(stage_loss[end_row])):
                ist[I_STATUS] = S_NONFINITE
                break
        have_dense = False
        if switching and R > end_row + 1:
            # dense-output-only stages (dop853) under the pattern this step used:
            # locating kinks needs them, and the pattern may change below
            _stages(y, h, A, K, end_row + 1, R, ys, X, Y, c, dims, mode, aux, stage_loss, ist)
            have_dense = True
        h_full = h  # the step size the error estimate belongs to
        step_P = P
        if switching:
            if pending_k >= 0 and h == pending_h:
                # (fixed step) this step was re-taken to end on the kink located last
                # time: update the pattern there (K[end_row] stays: the step's dense
                # output needs it; the next step starts from scratch_f)
                loss_switched = switch_cross(y1, X, Y, c, dims, mode, aux, pending_k, pending_i,
                                             scratch_f)  # fmt: skip
                switched = True
                ist[I_NFEV] += 1
                ist[I_SWITCHES] += 1
                pending_k = -1
            else:
                pending_k = -1
                th, ksw, isw = switch_locate(y, y1, K, P, h, X, Y, c, dims, mode, aux, yd,
                                             scratch_f)  # fmt: skip
                if th <= 1.0 and th * h <= 1e-13 * max(1.0, abs(t)):
                    # already at the kink at the start of the step
                    fst[F_LOSS] = switch_cross(y, X, Y, c, dims, mode, aux, ksw, isw, K[0])
                    ist[I_NFEV] += 1
                    ist[I_SWITCHES] += 1
                    stalls += 1
                    if stalls > 10 * mode.size + 100:
                        ist[I_STATUS] = S_STEP_TOO_SMALL
                        break
                    # counts toward the chunk: through a long run of kinks at one time
                    # the driver still gets control back (wall limit, progress, Ctrl-C)
                    steps += 1
                    continue
                if th <= 1.0 and adaptive:
                    # end the step at the kink, on its dense output: the stages
                    # integrated the frozen pattern's smooth field, which is the flow up
                    # to the kink; the dense output of the part is P rescaled
                    dense_eval(y, K, P, h, th, y1)
                    power = 1.0
                    for col in range(P.shape[1]):
                        for row in range(P.shape[0]):
                            P_cut[row, col] = P[row, col] * power
                        power *= th
                    step_P = P_cut
                    h = th * h
                    last = False
                    loss_switched = switch_cross(y1, X, Y, c, dims, mode, aux, ksw, isw,
                                                 scratch_f)  # fmt: skip
                    switched = True
                    ist[I_NFEV] += 1
                    ist[I_SWITCHES] += 1
                elif th <= 1.0:
                    # fixed step: re-take the step up to the kink (the dense output is
                    # of lower order than the rule)
                    pending_k = ksw
                    pending_i = isw
                    h = th * h
                    pending_h = h
                    continue
        stalls = 0
        loss1 = loss_switched if switched else stage_loss[end_row]
        t_new = t_end if last else t + h
        if _needs_dense(ev_kind, ev_thr, ev_g, ev_t, y1, loss1, dims, g_new, save_t, ist,
                        t_new) and not have_dense:  # fmt: skip
            _stages(y, h, A, K, end_row + 1, R, ys, X, Y, c, dims, mode, aux, stage_loss, ist)
        stop_event = step_outputs(
            y, y1, K, step_P, h, t, t_new, loss1, X, Y, c, dims,
            ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss, g_new,
            save_t, save_state_row, out_t, out_loss, out_norms, out_maxnorm, out_states, ist, yd,
        )  # fmt: skip
        ist[I_ACCEPTED] += 1
        steps += 1
        if stop_event >= 0:
            t = stop_at_event(stop_event, y, ev_t, ev_states, ev_loss, fst, ist)
            break
        for p in range(n):
            y[p] = y1[p]
            K[0, p] = scratch_f[p] if switched else K[end_row, p]
        switched = False
        fst[F_LOSS] = loss1
        t = t_new
        if adaptive:
            h = h_full * step_factor(err_norm, fst[F_ERR_PREV], k, rejected_last)
            fst[F_ERR_PREV] = max(err_norm, 1e-4)
        else:
            h = h_fixed
        rejected_last = False
        shrinks = 0
    fst[F_T] = t
    fst[F_H] = h
    if ist[I_STATUS] == S_RUNNING and t >= t_end:
        ist[I_STATUS] = S_DONE


@jit
def rk_solve_batch(
    Y0, X, Y, C, dims, A, b, e, P, n_stages, end_row, error_order,
    t_end, rtol, atol, ev_kind, ev_thr, ev_terminal, max_steps, rows,
    out_y, out_fst, out_ist, out_ev_t, out_ev_states,
):  # fmt: skip
    """:func:`rk_solve`, adaptive and without save points, from each row ``j`` of ``Y0``
    in ``rows`` with its own constants ``C[j]`` and event thresholds ``ev_thr[j]``: a
    batch of independent systems of one model.  Row j's final state, float and integer
    state (``F_*``, ``I_*``) and its events' times and states go to ``out_*[j]``; a row
    stops at ``t_end``, a terminal event or ``max_steps`` steps.  Releases the GIL:
    threads that take disjoint ``rows`` run in parallel, and a row's result does not
    depend on which thread ran it."""
    n = Y0.shape[1]
    R = A.shape[0]
    n_ev = ev_kind.size
    K = np.zeros((R, n))
    stage_loss = np.zeros(R)
    mode = np.zeros((0, 0), dtype=np.int8)
    aux = np.zeros((0, 0))
    empty_f = np.empty(0)
    empty_i = np.empty(0, dtype=np.int64)
    ev_g = np.zeros(n_ev)
    ev_loss = np.empty(n_ev)
    norms = np.empty((0, 1))
    states = np.empty((0, n))
    for j in rows:
        y = Y0[j].copy()
        fst = out_fst[j]
        ist = out_ist[j]
        fst[:] = 0.0
        ist[:] = 0
        fst[F_ERR_PREV] = 1.0
        fst[F_LOSS] = np.nan
        fst[F_T_END] = t_end
        fst[F_RTOL] = rtol
        fst[F_ATOL] = atol
        fst[F_H_MIN] = 1e-14
        ev_t = out_ev_t[j]
        ev_t[:] = np.nan
        ev_loss[:] = np.nan
        rk_solve(
            y, X, Y, C[j], dims, A, b, e, P, n_stages, end_row, error_order, True,
            fst, ist, K, stage_loss, empty_f, empty_i, empty_f, empty_f, norms, empty_f, states,
            ev_kind, ev_thr[j], ev_terminal, ev_g, ev_t, out_ev_states[j], ev_loss,
            mode, aux, max_steps,
        )  # fmt: skip
        out_y[j] = y
