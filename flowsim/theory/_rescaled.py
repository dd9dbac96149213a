"""The rescaled blow-up flows, integrated by the integrator core.

:mod:`flowsim.theory._rescaled_kernels` is the model (the field, the run's resolution and
the ``delta`` event); the stepping is the core's DOP853 (:func:`rk_solve_batch`: a batch
of independent systems, parallel over them), so a fix or a speed-up of the core reaches
these flows too.  :mod:`flowsim.theory.blowup` turns the results into blow-up times.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from flowsim import _abi, _codegen
from flowsim.models import _no_factor, _smooth_switching
from flowsim.theory import _rescaled_kernels as kernels

NEURON = kernels.NEURON
THREE_LAYER = kernels.THREE_LAYER
L_VANISHED = kernels.L_VANISHED

BLEW_UP, DECAYS, UNRESOLVED = 0, 1, 2
"""How a rescaled run ended: on a blowing-up ray, decaying (a dying neuron), or neither
within the rescaled time or step budget."""


@functools.cache
def _compiled() -> tuple[object, np.ndarray, int]:
    """The kernel module, its callback table and the ``delta`` event's address."""
    parts = [_codegen.template_body(t) for t in (kernels, _smooth_switching, _no_factor)]
    parts.append(_abi.table_source())
    module = _codegen.build_module("rescaled", parts, parallel=False)
    with _codegen.compile_lock(module, "the rescaled blow-up flows (once per machine)"):
        table = _abi.compile_table(module, switching=False, newton=False)
        event = numba.cfunc(_abi.EVENT_SIGNATURE, **_abi.CFUNC_OPTIONS)(module._c_reached_delta)
    return module, np.array(table, dtype=np.int64), event.address


@dataclass(frozen=True)
class RescaledRuns:
    """The end of each run of a batch.

    Attributes
    ----------
    state : ndarray, shape (B, k + 2)
        Final ``(x, l, t)``.
    outcome : ndarray of int, shape (B,)
        :data:`BLEW_UP`, :data:`DECAYS` or :data:`UNRESOLVED`.
    t_star : ndarray, shape (B,)
        Blow-up time (``t + tail`` where the run settled; ``inf`` otherwise).
    t_delta : ndarray, shape (B,)
        Time at which the watched norm reached ``delta`` (``inf`` if it did not, NaN
        when not watched).
    steps : ndarray of int, shape (B,)
        Accepted steps.
    """

    state: np.ndarray
    outcome: np.ndarray
    t_star: np.ndarray
    t_delta: np.ndarray
    steps: np.ndarray


def solve(dims, Y0, X, w, C, *, rtol, atol, s_max, max_steps,
          delta_params=None) -> RescaledRuns:  # fmt: skip
    """Integrate each row of ``Y0`` (constants ``C[j]``) to its resolution.

    ``dims``, ``X``, ``w``, ``C``: as :mod:`flowsim.theory._rescaled_kernels` describes.
    ``delta_params`` (B, q): the ``delta`` event's parameters of each row (after the
    events' thresholds), or None not to watch it.  Runs in parallel over the rows,
    on :func:`numba.get_num_threads` threads.
    """
    from flowsim.integrate import events
    from flowsim.integrate.core import core
    from flowsim.integrate.explicit import (
        F_LOSS,
        I_ACCEPTED,
        I_EVENT,
        I_STATUS,
        N_FST,
        N_IST,
        S_EVENT,
    )
    from flowsim.integrate.tableaus import TABLEAUS

    _, table, reached = _compiled()
    Y0 = np.ascontiguousarray(Y0, dtype=float)
    B, n = Y0.shape
    C = np.column_stack([C, np.tile(_abi.run_block(), (B, 1))])  # no penalty, no dropout
    kinds = [events.EV_LOSS_BELOW]
    thr = np.zeros((B, 1))
    if delta_params is not None:
        kinds.append(reached)
        thr = np.column_stack([np.zeros((B, 2)), np.asarray(delta_params, dtype=float)])
    kinds = np.array(kinds, dtype=np.int64)
    tab = TABLEAUS["dop853"]
    out_y = np.empty_like(Y0)
    fst = np.zeros((B, N_FST))
    ist = np.zeros((B, N_IST), dtype=np.int64)
    ev_t = np.empty((B, kinds.size))
    ev_states = np.zeros((B, kinds.size, n))
    args = (
        Y0, np.ascontiguousarray(X, dtype=float), np.ascontiguousarray(w, dtype=float),
        np.ascontiguousarray(C, dtype=float), np.concatenate([np.asarray(dims), table]),
        tab.A, tab.b, tab.e, tab.P, tab.stages, tab.end_row, tab.error_order,
        float(s_max), float(rtol), float(atol), kinds, np.ascontiguousarray(thr),
        (np.arange(kinds.size) == 0).astype(np.int64),  # the resolution ends a run
        int(max_steps),
    )  # fmt: skip
    outputs = (out_y, fst, ist, ev_t, ev_states)
    batch = core().rk_solve_batch
    threads = min(numba.get_num_threads(), B)
    if threads <= 1:
        batch(*args, np.arange(B), *outputs)
    else:  # the loop releases the GIL; rows are independent, so the split changes nothing
        with ThreadPoolExecutor(threads) as pool:
            done = [pool.submit(batch, *args, np.arange(k, B, threads), *outputs)
                    for k in range(threads)]  # fmt: skip
            for future in done:
                future.result()
    resolved = (ist[:, I_STATUS] == S_EVENT) & (ist[:, I_EVENT] == 0)
    value = fst[:, F_LOSS]  # the resolution where the run stopped (<= 0 if resolved)
    t = out_y[:, n - 1]
    ended = resolved & (value == -1.0)  # decaying, or vanished (log N < L_VANISHED)
    decays = ended & (out_y[:, n - 2] >= L_VANISHED)
    blew_up = resolved & ~ended
    outcome = np.full(B, UNRESOLVED)
    outcome[blew_up] = BLEW_UP
    outcome[decays] = DECAYS
    t_star = np.where(blew_up, t + (value + rtol * t), np.inf)
    if delta_params is None:
        t_delta = np.full(B, np.nan)
    else:
        t_delta = np.where(np.isnan(ev_t[:, 1]), np.inf, ev_states[:, 1, n - 1])
    return RescaledRuns(out_y, outcome, t_star, t_delta, ist[:, I_ACCEPTED].copy())
