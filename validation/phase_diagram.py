"""Phase diagram of two-layer ReLU nets: linear, critical and condensed regimes ([LXMZ21]).

Prediction (docs/theory.md §3; [LXMZ21] Theorems 6 and 8): with
``kappa = m^-gamma`` and ``kappa' = m^-gamma'``, the relative distance the input
weights travel, ``RD(theta_w*) = |theta_w* - theta_w(0)| / |theta_w(0)|`` at the
end of training, tends to 0 (linear regime), stays O(1) (critical) or grows
without bound (condensed) as ``m -> inf``.  Measured: ``S_w``, the slope of
``log RD`` against ``log m`` (:func:`flowsim.measure.slope_S_w`), at
``gamma' = 0`` for ``gamma`` in {0.5, 0.75, 1, 1.25, 1.5, 1.75}; theory:
:func:`flowsim.theory.regime`.  One record per gamma.

Rule (a limit, not a significance test).  ``S_w`` is fitted over the widths
``m >= 100`` (:data:`FIT_MIN_WIDTH`; m = 32 has 64 input weights for 4 points
and lies off the large-m trend) and the measured regime is "critical" when
``|S_w| <= tau``, otherwise "linear" (``S_w < 0``) or "condensed" (``S_w > 0``).
``tau`` is fixed a priori from the large-m slopes the scalings predict at
``gamma' = 0`` (:func:`limit_slope`, docs/theory.md §3): linear side, lazy
training, the kernel ``~ m^(1 - gamma)`` moves ``theta_w`` by ``~ m^((gamma -
1)/2)`` against ``|theta_w(0)| ~ m^((1 - gamma)/2)``, so ``RD ~ m^(gamma - 1)``;
condensed side, ``f = O(1)`` carried by O(m) balanced neurons
(``|a_k| = |w_k| ~ m^(-1/2)``, ``|theta_w*| = O(1)``), so ``RD ~ m^((gamma -
1)/2)``; critical, 0.  ``tau`` is half the smallest ``|limit_slope|`` over the
tested gammas off the boundary, ``0.125 / 2 = 0.0625`` (gamma = 1.25), so no
tested gamma's limit lies within ``tau`` of another regime's.  A finite-size
correction ``RD = RD_inf (1 + c m^(-1/2))`` adds at most ``|c|/20`` to the
slope at m >= 100, inside ``tau`` while ``|c| < 1.25``.  The earlier rule,
critical iff ``|S_w| < 2 stderr``, tightened as seeds were added: the full
size's 24 runs gave ``S_w = -0.009 +- 0.004`` at gamma = 1, "linear".

Set-up: ReLU, bias (``w_k = (w_k, b_k)``, both in ``theta_w`` as in [LXMZ21]),
``alpha = 1``, ``beta1 = beta2 = m^(-gamma/2)`` (``TwoLayer.init(gamma=...,
gamma_prime=0)``), fitting four 1-D points of the [ZZJLZX22] target
``sin(3x) + sin(6x)/2`` on [-1, 1.5] (:func:`validation._cases.sin1d` with
n = 4).  [LXMZ21] likewise fit a few 1-D points; their values are not in the
seeds, so these are ours.  Widths: quick 32 ... 3162 (half decades, one seed),
full 32 ... 10^4 for the flow and 32 ... 10^5 for GD (three seeds per width).
m = 10 is left out: at m = 10 the net has 20 input weights for 4 points and RD
there is off the large-m trend (gamma = 1: RD = 2.0 at m = 10 against 1.33 - 1.44
for m = 32 ... 10^4).

Quick size: the **gradient flow** itself (:data:`FLOW_SOLVER`: dopri5 at rtol 1e-8,
kinks located and decided jointly per neuron, docs/theory.md §11) until the loss is
``1e-6 R(0)`` (a located loss event); ``theta_w*`` is the state there. Full-batch
**gradient descent** (flowsim's ``method="gd"``, as in [LXMZ21]'s experiments) runs
beside it on the same runs: learning rate ``min(0.5 / lambda_max, 0.05)``
(``lambda_max``: a bound on the largest Hessian eigenvalue at the start, see
:func:`_curvature_bound`; the cap covers the growth of the Hessian in the condensed
runs, and ``lr`` times the bound at the end is reported), in segments of doubling length
until the loss is below ``1e-6 R(0)``. Each gamma's record gives GD's S_w and regime
beside the flow's, and ``gd_vs_flow`` bounds the relative difference of their RDs at
every width (2%). Measured (2 idle cores): the flow takes at most 7 s per run (m = 3162,
gamma = 1.75: 31,000 gradients, 4,300 kinks), the quick size 34 s; GD's RD is within
0.31% of the flow's at every width and gamma (the largest per gamma 0.16% - 0.31%), and
GD's S_w within 0.0005 of the flow's. The flow at m = 10^4 takes up to 90 s per run in
the condensed regime (docs/theory.md §11), which is why the quick size stops at 3162.
Until kinks were decided jointly per neuron the flow was not usable here (at m = 1000,
gamma = 1, it stopped with ``step_too_small`` at t = 1.555 after 40259 kink switches),
and until dead neurons were held it stalled at m = 3162 on a start perturbed by 1e-9
(docs/theory.md §11).

Full size (``flowsim validate --full``): the runs are the sweep files
``validation/sweeps/phase_diagram_flow.toml`` (6 gammas x 6 widths 32 ... 10^4 x 3
seeds, the gradient flow, :data:`FULL_FLOW_SOLVER`), ``phase_diagram.toml`` (the same
and two more widths, 3 x 10^4 and 10^5, GD) and ``phase_diagram_plane.toml``, run
through a result store (``--store``, ``--scheduler``, ``--workers``).  S_w comes from
the flow, as at the quick size; GD runs beside it run by run (``gd_vs_flow``), and
each record also gives GD's S_w over its wider range.  A sweep holds fixed configs,
so GD's per-run learning rate and segments are replaced by a learning rate and a
training time fixed per (gamma, m) (:func:`full_step`, :func:`full_t_end`).  This
measures the same quantity: the theory (docs/theory.md §3) is about
``RD(theta_w*)`` at the converged state, and RD stops changing once the loss has
converged (the remaining displacement is of the order of the remaining residual), so
training past the threshold instead of stopping at it changes RD by far less than its
seed scatter; GD is stable and close to the flow because ``dt`` times the curvature
bound stays below about 0.5 (reported per run, start and end: ``lr x Hessian
bound``).  The final loss of every run is reported (it must be below ``1e-6 R(0)``);
a run stored as a failure, or a flow that stopped short of its loss event, makes its
gamma's record fail.  Measured (2026-12-07, 2 idle cores, an empty store): the flow
sweep 8 min 56 s (the slowest run 110 s, gamma = 1.5 at m = 10^4: 87,740 gradients,
12,456 kinks), GD 6 min 53 s, the plane 3 min 13 s; S_w from the flow -0.493, -0.197,
+0.002, +0.143, +0.267, +0.389 and from GD over m = 100 ... 10^5 -0.497, -0.206,
+0.001, +0.140, +0.263, +0.385 at gamma = 0.5 ... 1.75; GD's RD within 0.8% of the
flow's at every run.  Until kinks crossed and crossed back inside one step were
located and a pair on its kink to rounding was followed, one flow run of the 108
(gamma = 1.5, m = 3162, seed 2) stood still at t = 1.84 (docs/theory.md §11).  The
small-gamma corner of the earlier fixed-step GD sweep (dt = 0.01 everywhere) diverged:
there ``lambda_max ~ 1.3 m^(1 - gamma)`` reaches 390 at gamma = 0.5, m = 10^5;
``full_step`` gives dt = 0.001 there.

Off the axis (full size): the eight points of :data:`PLANE` in the (gamma, gamma')
plane (``phase_diagram_plane.toml``), each trained by the gradient flow
(:data:`FULL_FLOW_SOLVER`) at m = 100 ... 10^4, seed 0, get one record each: the regime
of their S_w (the same fit and band ``tau`` as the axis) against
:func:`flowsim.theory.regime`.  The band comes from the axis' large-m slopes; off the
axis those slopes are not derived (docs/theory.md §3), so the records report the local
slopes per width step beside the fit.

Figure: RD against m per gamma with the flow's fitted slopes and GD's RD beside the
flow's; S_w against gamma; the
(gamma, gamma') plane with the theoretical regions, the critical boundary, the
named schemes of :data:`flowsim.theory.SCHEMES` (E et al.: the line
``gamma' = gamma``) and the measured regimes at ``(gamma, 0)`` (full size: and at the
points of :data:`PLANE`).

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural
   networks at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497.
.. [ZZJLZX22] Zhou et al. Towards understanding the condensation of neural
   networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

import math
import time

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import flowsim as fs
import flowsim.measure as fm
from flowsim.theory import SCHEMES, regime
from flowsim.validation._cases import sin1d
from flowsim.validation._record import Finding, Record, attach_findings, bound_check
from flowsim.validation._runner import SWEEP_DIR
from flowsim.validation._style import figure, save

NAME = "phase_diagram"
CLAIM = "sign of S_w = d log RD / d log m gives the regime of (gamma, gamma')"
SOURCE = "[LXMZ21]; docs/theory.md §3"

GAMMAS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
SIZES = {
    "quick": {"gammas": GAMMAS, "widths": [32, 100, 316, 1000, 3162], "seeds": [0]},
    "full": {"gammas": GAMMAS, "widths": [32, 100, 316, 1000, 3162, 10000],
             "gd_widths": [32, 100, 316, 1000, 3162, 10000, 31623, 100000], "seeds": [0, 1, 2]},
}  # fmt: skip
"""``widths``: the gradient flow (the fit), with GD beside it; full size, ``gd_widths``: GD
alone also beyond 10^4, where the flow in the condensed regime takes minutes per run."""
PROTOCOL = {"n_points": 4, "loss_rtol": 1e-6, "lr_factor": 0.5, "lr_cap": 0.05,
            "first_segment_steps": 1000, "t_max": 1e4}  # fmt: skip
SWEEPS = {"full": ("phase_diagram_flow.toml", "phase_diagram.toml", "phase_diagram_plane.toml")}
"""The full size runs these sweep files (validation/sweeps/) through a result store."""
FULL_STEP = {"cap": 0.05, "per_kernel": 1.0 / 3.0}
"""Full size, GD: ``dt = floor125(min(cap, per_kernel * m^(gamma - 1)))``, see :func:`full_step`."""
FULL_T_END = {"linear": 1000.0, "linear_cap": 200.0, "critical": 400.0, "condensed": 400.0,
              "gamma_1.75": 600.0}  # fmt: skip
"""Full size, GD: training time per (gamma, m), see :func:`full_t_end`."""
FLOW_SOLVER = {"method": "dopri5", "t_end": 1e4, "rtol": 1e-8, "save_state": "final",
               "max_wall": 60.0}  # fmt: skip
"""The gradient flow of the quick size (run in this process)."""
PLANE = {"points": [(0.5, 0.5), (0.5, -0.5), (1.0, 0.5), (1.0, -0.5), (1.5, 0.25), (1.5, 0.5),
                    (1.5, 0.75), (1.75, -0.5)],
         "widths": [100, 316, 1000, 3162, 10000], "seed": 0}  # fmt: skip
"""Full size: points off the ``gamma' = 0`` axis, each trained by the gradient flow
(:data:`FULL_FLOW_SOLVER`) at these widths, one seed; one record per point."""
FULL_FLOW_SOLVER = {**FLOW_SOLVER, "max_wall": 600.0}
"""The flow of the full size, on the axis and off it (a condensed run at m = 10^4 takes
up to 90 s)."""
FINDINGS = {
    f"{NAME}.plane_1_-0.5": Finding(
        "at (gamma, gamma') = (1, -0.5), on [LXMZ21]'s critical line gamma = 1, gamma' <= 0, RD "
        "keeps growing slowly over m = 100 ... 10^4 (4.74, 6.01, 6.71, 6.90, 7.44; S_w = "
        "+0.0905 +- 0.0195, outside the band 0.0625): the local slopes fall from +0.207 to "
        "+0.025 and rise again to +0.065 in the last half decade, so these widths do not "
        "separate a slow finite-size drift (or a logarithmic growth) from condensation; the "
        "flow reached 1e-6 R(0) at every width (measured 2026-12-07, seed 0)",
        "condensed",
    ),
}
"""Documented findings (:class:`Finding`) by record name."""
FLOW_BOUND = 0.02
EVENT_RTOL = 1e-9
"""The flow stops at its loss event, located to about 1e-12 relative: a final loss within
this of the threshold has reached it."""
FIT_MIN_WIDTH = 100
"""S_w is fitted over the widths >= this (the notes also give the fit over every width)."""
COLOURS = {"linear": "tab:blue", "critical": "tab:purple", "condensed": "tab:red"}
LABEL_OFFSETS = {(0.5, 0.0): ((0, -15), "center"), (1.0, 0.0): ((-8, 9), "right")}


def _data():
    return sin1d(PROTOCOL["n_points"])


def _initial_loss() -> float:
    """``R(0) = mean(y^2)/2`` (every net starts with f = O(small) against y)."""
    return 0.5 * float(np.mean(_data()[1] ** 2))


def _curvature_bound(net, theta, X, y) -> float:
    """Upper bound on the largest Hessian eigenvalue of a ReLU two-layer net (alpha = 1).

    ``H = (1/n) J^T J + (1/n) sum_i e_i d^2 f_i``.  Away from kinks ``d^2 f_i``
    only couples ``a_k`` with ``w_k`` (``d^2 f_i / da_k dw_k = sigma'_ik x_i``), a
    block-diagonal matrix whose eigenvalues are ``+-|c_k|``,
    ``c_k = (1/n) sum_i e_i sigma'_ik x_i``; the Gauss-Newton part has the
    eigenvalues of the n x n Gram matrix ``J J^T / n``.  By Weyl's inequality
    ``lambda_max(H) <= lambda_max(J J^T / n) + max_k |c_k|``.  Exact linear
    algebra, unlike finite differences of the gradient, which jump when a
    step crosses one of the m n kinks (at m = 10^5 that gave 91 instead of
    0.35 and a nine times smaller learning rate).
    """
    p = net.unpack(theta)
    a, W = p["a"], p["W"]
    Xa = net.augment(X)
    Z = W @ Xa.T  # (m, n) pre-activations
    S, Sp = np.maximum(Z, 0.0), (Z > 0).astype(float)
    n = Xa.shape[0]
    gram = S.T @ S + (Sp.T @ (a[:, None] ** 2 * Sp)) * (Xa @ Xa.T)
    e = net.output(theta, X) - y
    c = (Sp * e[None, :]) @ Xa / n
    return float(np.linalg.eigvalsh(gram / n)[-1] + np.linalg.norm(c, axis=1).max())


def _train(gamma, width, seed):
    """GD until loss <= loss_rtol * R(0); returns RD and the run's bookkeeping."""
    X, y = _data()
    R0 = _initial_loss()
    net = fs.TwoLayer("relu", width, 1)
    theta0 = net.init(seed, gamma=gamma, gamma_prime=0.0)
    lam0 = _curvature_bound(net, theta0, X, y)
    lr = min(PROTOCOL["lr_factor"] / lam0, PROTOCOL["lr_cap"])
    theta, t, segment = theta0, 0.0, PROTOCOL["first_segment_steps"] * lr
    tic = time.perf_counter()
    rising = 0.0
    while True:
        traj = fs.simulate(net, theta, X, y, t_end=segment, method="gd", dt=lr, n_save=50,
                           save_state="final", progress=False)  # fmt: skip
        theta, t = traj.theta_final, t + segment
        loss = traj.loss[traj.loss > PROTOCOL["loss_rtol"] * R0 * 1e-3]
        if loss.size > 1:
            rising = max(rising, float(np.max(loss[1:] / loss[:-1])) - 1.0)
        final = float(traj.loss[-1])
        if final <= PROTOCOL["loss_rtol"] * R0 or t >= PROTOCOL["t_max"] or not np.isfinite(final):
            break
        segment = t
    W0, W = net.unpack(theta0)["W"], net.unpack(theta)["W"]
    return {"RD": fm.relative_distance(W, W0), "t": t, "loss": final / R0, "lr": lr,
            "lambda0": lam0, "lambda_end": _curvature_bound(net, theta, X, y), "rising": rising,
            "wall": time.perf_counter() - tic}  # fmt: skip


def _flow(gamma, width, seed):
    """The gradient flow (:data:`FLOW_SOLVER`: dopri5 with the kinks located and decided,
    docs/theory.md §11) until loss <= loss_rtol * R(0); returns RD and the run's
    bookkeeping."""
    X, y = _data()
    R0 = _initial_loss()
    net = fs.TwoLayer("relu", width, 1)
    theta0 = net.init(seed, gamma=gamma, gamma_prime=0.0)
    tic = time.perf_counter()
    traj = fs.simulate(net, theta0, X, y, events=[fs.loss_below(PROTOCOL["loss_rtol"] * R0)],
                       progress=False, **FLOW_SOLVER)  # fmt: skip
    W0, W = net.unpack(theta0)["W"], net.unpack(traj.theta_final)["W"]
    return {"RD": fm.relative_distance(W, W0), "t": float(traj.t_final),
            "loss": net.loss(traj.theta_final, X, y) / R0, "nfev": int(traj.nfev),
            "switches": int(traj.n_switches), "status": traj.status,
            "wall": time.perf_counter() - tic}  # fmt: skip


# -- full size: fixed run configs, run as sweeps ------------------------------------------


def _floor125(x: float) -> float:
    """The largest 1, 2 or 5 times a power of ten that is <= ``x``."""
    k = math.floor(math.log10(x))
    for mantissa in (5, 2, 1):
        if mantissa * 10.0**k <= x * (1 + 1e-12):
            return float(f"{mantissa}e{k}")
    return float(f"1e{k - 1}")


def _ceil2(x: float) -> float:
    """``x`` rounded up to two significant digits."""
    k = math.floor(math.log10(x)) - 1
    return float(f"{math.ceil(x / 10.0**k - 1e-9)}e{k}")


def full_step(gamma: float, m: int) -> float:
    """GD learning rate of the full size at (gamma, m): a fixed config value.

    The curvature bound :func:`_curvature_bound` grows like ``m^(1 - gamma)``
    for gamma < 1 (measured at the start and end of the earlier per-run
    protocol: about ``1.3 m^(1 - gamma)`` at m >= 10^3) and stays below 6 for
    gamma >= 1, so ``dt = min(0.05, m^(gamma - 1) / 3)`` rounded down to 1, 2
    or 5 times a power of ten keeps ``dt * lambda_max`` below about 0.5; the
    check reports ``dt`` times the bound at the start and the end of every run.
    """
    raw = min(FULL_STEP["cap"], FULL_STEP["per_kernel"] * float(m) ** (gamma - 1.0))
    return _floor125(raw)


def full_t_end(gamma: float, m: int) -> float:
    """GD training time of the full size at (gamma, m), past convergence to 1e-6 R(0).

    Linear side (gamma < 1): the loss decays at the rate of the kernel's
    smallest eigenvalue, ``~ m^(1 - gamma)``, so ``t_end = min(200,
    1000 m^(gamma - 1))`` (2 - 3 times the time the earlier per-run protocol
    needed at every width); gamma >= 1: 400 (600 at gamma = 1.75, whose
    plateau at m >= 3 * 10^4 lasted past t = 200).  The check records the final
    loss of every run.
    """
    if gamma < 1.0:
        raw = min(FULL_T_END["linear_cap"], FULL_T_END["linear"] * float(m) ** (gamma - 1.0))
        return _ceil2(raw)
    if gamma >= 1.75:
        return FULL_T_END["gamma_1.75"]
    return FULL_T_END["critical"] if gamma == 1.0 else FULL_T_END["condensed"]


def loss_threshold() -> float:
    """``loss_rtol * R(0)`` with ``R(0) = mean(y^2)/2``, to six digits (a config value)."""
    return float(f"{PROTOCOL['loss_rtol'] * _initial_loss():.6g}")


def _run_dict(gamma, width, seed, solver, events=(), gamma_prime=0.0) -> dict:
    return {
        "model": {"kind": "two_layer", "activation": "relu", "width": int(width), "bias": True,
                  "alpha": 1.0},
        "data": {"kind": "sin1d", "params": {"n": PROTOCOL["n_points"], "low": -1.0,
                                             "high": 1.5, "target": "sin(3*x) + sin(6*x)/2"}},
        "init": {"seed": int(seed), "gamma": float(gamma), "gamma_prime": float(gamma_prime)},
        "solver": dict(solver),
        "events": [dict(e) for e in events],
    }  # fmt: skip


def full_configs(size: str = "full") -> dict:
    """The runs of the sweep-backed size: ``{"flow": {(gamma, m, seed): RunConfig}, "gd":
    {(gamma, m, seed): RunConfig}, "plane": {(gamma, gamma', m): RunConfig}}``
    (tests/test_validation_sweeps.py checks that they are the expansion of :data:`SWEEPS`)."""
    from flowsim.config import RunConfig

    cfg = SIZES[size]
    event = {"kind": "loss_below", "threshold": loss_threshold()}
    gd, flow = {}, {}
    for gamma in cfg["gammas"]:
        for m in cfg["gd_widths"]:
            solver = {"method": "gd", "dt": full_step(gamma, m), "t_end": full_t_end(gamma, m),
                      "n_save": 100, "save_state": "final"}  # fmt: skip
            for seed in cfg["seeds"]:
                gd[gamma, m, seed] = RunConfig.from_dict(_run_dict(gamma, m, seed, solver))
        for m in cfg["widths"]:
            for seed in cfg["seeds"]:
                run = _run_dict(gamma, m, seed, FULL_FLOW_SOLVER, [event])
                flow[gamma, m, seed] = RunConfig.from_dict(run)
    plane = {(g, gp, m): RunConfig.from_dict(_run_dict(g, m, PLANE["seed"], FULL_FLOW_SOLVER,
                                                       [event], gamma_prime=gp))
             for g, gp in PLANE["points"] for m in PLANE["widths"]}  # fmt: skip
    return {"gd": gd, "flow": flow, "plane": plane}


def _stored_run(store, records, cfg):
    """``(net, theta0, X, y, traj, record)`` of a stored run (``traj`` None when it failed
    without a trajectory)."""
    from flowsim.config import build
    from flowsim.store import StoreError, store_key

    key = store_key(cfg)
    record = records.get(key) or store.record(key)
    net, theta0, X, y, _ = build(cfg)
    try:
        traj = store.load(key)
    except StoreError:
        traj = None
    return net, theta0, X, y, traj, record


def _rising(loss, floor) -> float:
    loss = loss[loss > floor]
    return float(np.max(loss[1:] / loss[:-1])) - 1.0 if loss.size > 1 else 0.0


def _simulate_full(size, *, store=None, scheduler="local", workers=None, progress=True):
    from flowsim.validation._runner import sweep_records

    files = [SWEEP_DIR / name for name in SWEEPS[size]]
    store, records = sweep_records(files, store=store, scheduler=scheduler, workers=workers,
                                   progress=progress)  # fmt: skip
    configs = full_configs(size)
    R0 = _initial_loss()
    floor = 1e-3 * PROTOCOL["loss_rtol"] * R0  # losses below it are rounding, not rising
    gd = {key: {"width": key[1], **_stored_gd(store, records, cfg, R0, floor)}
          for key, cfg in configs["gd"].items()}  # fmt: skip
    runs = {}
    for gamma in SIZES[size]["gammas"]:
        flow = {(m, seed): {"width": m, "seed": seed, **_stored_flow(store, records, cfg, R0)}
                for (g, m, seed), cfg in configs["flow"].items() if g == gamma}  # fmt: skip
        runs[gamma] = {
            **_columns(flow.values()),
            "gd": _columns(gd[gamma, m, seed] for m, seed in flow),  # beside it, run by run
            "gd_wide": _columns(row for (g, _, _), row in gd.items() if g == gamma),
        }  # fmt: skip
    plane = {}
    for (g, gp, m), cfg in configs["plane"].items():
        plane.setdefault((g, gp), []).append({"width": m, **_stored_flow(store, records, cfg, R0)})
    plane = {point: _columns(rows) for point, rows in plane.items()}
    return {"runs": runs, "protocol": "sweep", "plane": plane}


def _columns(rows) -> dict:
    """``{key: array}`` of rows (dicts with the same keys)."""
    rows = list(rows)
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _stored_flow(store, records, cfg, R0) -> dict:
    """A stored gradient-flow run: RD (nan unless it reached its loss event), the loss
    / R(0) at the state it stopped at, its gradients, kinks, status and wall time."""
    net, theta0, X, y, traj, record = _stored_run(store, records, cfg)
    converged = traj is not None and record["reason"] == "event"
    row = {"RD": np.nan, "t": np.nan, "loss": np.nan, "nfev": 0, "switches": 0,
           "status": str(record["reason"]), "wall": float(record["wall_time"])}  # fmt: skip
    if converged:
        W0, W = net.unpack(theta0)["W"], net.unpack(traj.theta_final)["W"]
        row.update(RD=fm.relative_distance(W, W0), t=float(traj.t_final),
                   loss=net.loss(traj.theta_final, X, y) / R0, nfev=int(traj.nfev),
                   switches=int(traj.n_switches))  # fmt: skip
    return row


def _stored_gd(store, records, cfg, R0, floor) -> dict:
    """A stored GD run: RD at ``t_end`` (nan when it failed), its learning rate, the
    curvature bound at the start and the end, and how much the loss rose between saves."""
    net, theta0, X, y, traj, record = _stored_run(store, records, cfg)
    row = {"RD": np.nan, "t": np.nan, "loss": np.nan, "lr": cfg.solver.dt,
           "lambda0": _curvature_bound(net, theta0, X, y), "lambda_end": np.nan,
           "rising": np.nan, "status": str(record["reason"]),
           "wall": float(record["wall_time"])}  # fmt: skip
    if record["status"] == "ok" and traj is not None:
        W0, W = net.unpack(theta0)["W"], net.unpack(traj.theta_final)["W"]
        row.update(RD=fm.relative_distance(W, W0), t=float(traj.t_final),
                   loss=float(traj.loss[-1]) / R0,
                   lambda_end=_curvature_bound(net, traj.theta_final, X, y),
                   rising=_rising(traj.loss, floor))  # fmt: skip
    return row


def simulate(size: str, **sweep) -> dict:
    """The runs of ``size``: quick in this process (the gradient flow at every width, GD
    beside it with a per-run learning rate and segments), full from the sweep files
    :data:`SWEEPS` through a result store (``sweep``: ``store``, ``scheduler``,
    ``workers``, ``progress`` of :func:`_runner.sweep_records`)."""
    if size in SWEEPS:
        return _simulate_full(size, **sweep)
    cfg = SIZES[size]
    runs = {}
    flow_keys = ("RD", "t", "loss", "nfev", "switches", "status", "wall")
    gd_keys = ("RD", "t", "loss", "lr", "lambda0", "lambda_end", "rising", "wall")
    for gamma in cfg["gammas"]:
        rows = [{"width": m, "seed": s, "flow": _flow(gamma, m, s), "gd": _train(gamma, m, s)}
                for m in cfg["widths"] for s in cfg["seeds"]]  # fmt: skip
        runs[gamma] = {
            "width": np.array([r["width"] for r in rows]),
            "seed": np.array([r["seed"] for r in rows]),
            **{key: np.array([r["flow"][key] for r in rows]) for key in flow_keys},
            "gd": {key: np.array([r["gd"][key] for r in rows]) for key in gd_keys},
        }  # fmt: skip
    return {"runs": runs}


def limit_slope(gamma: float) -> float:
    """Large-m slope of ``log RD`` against ``log m`` at ``gamma' = 0`` (alpha = 1):
    ``gamma - 1`` (linear, lazy training), 0 (critical, gamma = 1), ``(gamma - 1)/2``
    (condensed, O(m) balanced neurons carrying f = O(1)); see the module docstring."""
    return gamma - 1.0 if gamma <= 1.0 else (gamma - 1.0) / 2.0


def critical_band(gammas=GAMMAS) -> float:
    """``tau``: half the smallest ``|limit_slope|`` over the gammas off the boundary."""
    return min(abs(limit_slope(g)) for g in gammas if g != 1.0) / 2.0


def measured_regime(slope: float, tau: float) -> str:
    """The regime of a slope: ``"critical"`` when ``|slope| <= tau``, else ``"linear"``
    (negative) or ``"condensed"``."""
    if abs(slope) <= tau:
        return "critical"
    return "linear" if slope < 0 else "condensed"


def _fits(data, min_width=FIT_MIN_WIDTH):
    """S_w per gamma over the widths >= ``min_width`` of the runs that finished (a failed
    full-size run has RD = nan)."""
    fits = {}
    for g, run in data["runs"].items():
        ok = np.isfinite(run["RD"]) & (run["width"] >= min_width)
        fits[g] = fm.slope_S_w(run["width"][ok], run["RD"][ok])
    return fits


def _training_note(run) -> str:
    """How the runs of one gamma were trained, and what they cost."""
    gd = run["gd"]
    slowest = int(np.argmax(run["wall"]))
    # the sweeps' event threshold is loss_threshold(), 1e-6 R(0) to six digits
    R0 = _initial_loss()
    target = max(PROTOCOL["loss_rtol"], loss_threshold() / R0)
    reached = run["loss"] <= target * (1.0 + EVENT_RTOL)
    note = (f"every run reached loss <= {PROTOCOL['loss_rtol']:g} R(0): "
            f"{bool(np.all(reached))} (largest "
            f"{run['loss'].max():.2g} R(0)); ")  # fmt: skip
    note += (f"gradient flow ({FLOW_SOLVER['method']}, rtol {FLOW_SOLVER['rtol']:g}, kinks "
             f"located and decided): up to {int(run['nfev'].max())} gradients and "
             f"{int(run['switches'].max())} kinks; GD beside it: ")  # fmt: skip
    note += (f"GD learning rates {gd['lr'].min():.3g} - {gd['lr'].max():.3g}, largest loss "
             f"increase between saves {gd['rising'].max():.1e}, lr x Hessian bound at the end "
             f"<= {np.max(gd['lr'] * gd['lambda_end']):.2f}; slowest run "
             f"{run['wall'][slowest]:.1f} s (m = {int(run['width'][slowest])})")  # fmt: skip
    return note


def _failed(run) -> np.ndarray:
    """Runs without a converged RD: a failed sweep run (RD nan), a flow that stopped short."""
    return ~np.isfinite(run["RD"]) | (run["status"] != "event")


def evaluate(data: dict, size: str, figure_path=None) -> list:
    records = []
    fits, every = _fits(data), _fits(data, min_width=0)
    tau = critical_band(list(data["runs"]))
    for gamma, run in data["runs"].items():
        fit = fits[gamma]
        theory, measured = regime(gamma, 0.0), measured_regime(fit.slope, tau)
        note = (f"S_w = {fit.slope:+.4f} +- {fit.stderr:.4f} (gradient flow; r = {fit.rvalue:.3f}, "
                f"{fit.n} runs, m >= {FIT_MIN_WIDTH}; large-m limit {limit_slope(gamma):+.3f}; "
                f"every width: {every[gamma].slope:+.4f} +- {every[gamma].stderr:.4f}); "
                "RD = " + ", ".join(f"{rd:.4g}" for rd in run["RD"]) + " at m = "
                + ", ".join(str(int(m)) for m in run["width"]))  # fmt: skip
        ok = (run["width"] >= FIT_MIN_WIDTH) & np.isfinite(run["gd"]["RD"])
        gd_fit = fm.slope_S_w(run["width"][ok], run["gd"]["RD"][ok])
        gap = np.nanmax(np.abs(run["gd"]["RD"] / run["RD"] - 1.0))
        note += (f"; GD beside it: S_w = {gd_fit.slope:+.4f} "
                 f"({measured_regime(gd_fit.slope, tau)}), RD within {gap:.1e} of the "
                 "flow's")  # fmt: skip
        if "gd_wide" in run:  # full size: GD alone at the widths beyond the flow's too
            wide = run["gd_wide"]
            ok = (wide["width"] >= FIT_MIN_WIDTH) & np.isfinite(wide["RD"])
            wide_fit = fm.slope_S_w(wide["width"][ok], wide["RD"][ok])
            note += (f"; GD over m = {FIT_MIN_WIDTH} ... {int(wide['width'].max())}: S_w = "
                     f"{wide_fit.slope:+.4f} +- {wide_fit.stderr:.4f} "
                     f"({measured_regime(wide_fit.slope, tau)})")  # fmt: skip
        note += "; " + _training_note(run)
        failed = _failed(run)
        if failed.any():
            reasons = sorted({str(r) for r in run.get("status", np.array([]))[failed]})
            note += (f"; {int(failed.sum())} runs failed ({', '.join(reasons)}) at m = "
                     + ", ".join(str(int(m)) for m in run["width"][failed]))  # fmt: skip
        claim = f"regime at (gamma, gamma') = ({gamma:g}, 0)"
        rule = f"S_w over m >= {FIT_MIN_WIDTH}: critical iff |S_w| <= {tau:.4g}, else sign"
        solver = FLOW_SOLVER if size == "quick" else FULL_FLOW_SOLVER
        config = {**SIZES[size], **PROTOCOL, "gamma": gamma, "flow": solver}
        records.append(Record(f"{NAME}.gamma_{gamma:g}", claim, SOURCE, theory, measured, rule,
                              theory == measured and not failed.any(), config, figure_path,
                              note))  # fmt: skip
    records.append(_gd_vs_flow(data, size, figure_path))
    records += _plane_records(data, size, tau, figure_path)
    return attach_findings(records, FINDINGS)


def _plane_fits(data, min_width=FIT_MIN_WIDTH) -> dict:
    """S_w per point off the axis, over the widths >= ``min_width`` whose flow converged."""
    fits = {}
    for point, run in data.get("plane", {}).items():
        ok = np.isfinite(run["RD"]) & (run["width"] >= min_width)
        fits[point] = fm.slope_S_w(run["width"][ok], run["RD"][ok])
    return fits


def _plane_records(data, size, tau, figure_path) -> list:
    """One record per point of :data:`PLANE` (full size): the regime of S_w against
    [LXMZ21]'s, with the band ``tau`` of the axis."""
    records = []
    for (g, gp), fit in _plane_fits(data).items():
        run = data["plane"][g, gp]
        local = np.diff(np.log(run["RD"])) / np.diff(np.log(run["width"]))
        note = (f"S_w = {fit.slope:+.4f} +- {fit.stderr:.4f} (gradient flow, seed "
                f"{PLANE['seed']}; {fit.n} widths, m >= {FIT_MIN_WIDTH}); local slopes per "
                "width step " + ", ".join(f"{s:+.3f}" for s in local) + "; RD = "
                + ", ".join(f"{rd:.4g}" for rd in run["RD"]) + " at m = "
                + ", ".join(str(int(m)) for m in run["width"])
                + f"; final loss <= {np.nanmax(run['loss']):.2g} R(0); slowest run "
                f"{run['wall'].max():.0f} s")  # fmt: skip
        failed = run["status"] != "event"
        if failed.any():
            note += (f"; {int(failed.sum())} runs stopped short ("
                     + ", ".join(sorted(set(run["status"][failed].tolist()))) + ")")  # fmt: skip
        theory, measured = regime(g, gp), measured_regime(fit.slope, tau)
        config = {"points": PLANE["points"], "widths": PLANE["widths"], "seed": PLANE["seed"],
                  **PROTOCOL, "gamma": g, "gamma_prime": gp, "flow": FULL_FLOW_SOLVER}  # fmt: skip
        records.append(Record(
            f"{NAME}.plane_{g:g}_{gp:g}", f"regime at (gamma, gamma') = ({g:g}, {gp:g})", SOURCE,
            theory, measured,
            f"S_w over m >= {FIT_MIN_WIDTH}: critical iff |S_w| <= {tau:.4g} (the axis' band), "
            "else sign", theory == measured and not failed.any(), config, figure_path, note,
        ))  # fmt: skip
    return records


def _gd_vs_flow(data, size, figure_path):
    """GD's converged RD against the flow's, run by run (the same width and seed)."""
    diffs, statuses = {}, {}
    for g, run in data["runs"].items():
        rel = np.abs(run["gd"]["RD"] / run["RD"] - 1.0)
        rel[~np.isfinite(rel)] = np.inf  # a failed GD or flow run
        j = int(np.argmax(rel))
        diffs[g], statuses[g] = (rel[j], int(run["width"][j])), set(run["status"].tolist())
    note = "largest relative RD difference GD vs gradient flow (every run): " + ", ".join(
        f"gamma {g:g}: {d:.1e} at m = {m}" for g, (d, m) in diffs.items()
    )
    ok_status = all(s == {"event"} for s in statuses.values())
    worst = max(d for d, _ in diffs.values())
    return bound_check(f"{NAME}.gd_vs_flow", "GD's converged RD = the gradient flow's", SOURCE,
                       FLOW_BOUND, worst if ok_status else np.inf, {**SIZES[size], **PROTOCOL},
                       figure_path, note + ("" if ok_status else "; simulation: a flow run did "
                                            "not reach the loss threshold"))  # fmt: skip


def _regions(ax, gmax=2.5, gpmin=-1.0, gpmax=2.0):
    """Linear and condensed regions, the critical boundary, the named schemes."""
    g = np.linspace(0.0, gmax, 200)
    ax.fill_between([1.0, gmax], [gpmin, gpmin], [0.0, gmax - 1.0], color=COLOURS["condensed"],
                    alpha=0.12, lw=0)  # fmt: skip
    ax.fill_between(g, np.where(g < 1.0, gpmin, np.maximum(g - 1.0, gpmin)), gpmax,
                    color=COLOURS["linear"], alpha=0.12, lw=0)  # fmt: skip
    ax.plot([1.0, 1.0], [gpmin, 0.0], color=COLOURS["critical"], lw=2.2)
    ax.plot([1.0, gmax], [0.0, gmax - 1.0], color=COLOURS["critical"], lw=2.2)
    ax.plot(g, g, color="0.35", lw=1.0, ls="--")
    ax.text(1.55, 1.58, "E et al.", color="0.35", fontsize=7, ha="center", va="bottom",
            rotation=45, transform_rotates_text=True, rotation_mode="anchor")  # fmt: skip
    points = {}
    for name, point in SCHEMES.items():
        points.setdefault(point, []).append(name)
    for (gs, gps), names in points.items():
        ax.plot(gs, gps, marker="*", ms=8, color="black", ls="none", zorder=7)
        offset, align = LABEL_OFFSETS.get((gs, gps), ((-6, 6), "right"))
        ax.annotate(", ".join(names), (gs, gps), xytext=offset, textcoords="offset points",
                    fontsize=7, ha=align)  # fmt: skip
    ax.text(0.12, 0.85, "linear", color=COLOURS["linear"], fontsize=9)
    ax.text(2.15, -0.85, "condensed", color=COLOURS["condensed"], fontsize=9, ha="center")
    ax.text(1.04, -0.9, "critical", color=COLOURS["critical"], fontsize=8, rotation=90)
    ax.set_xlim(0.0, gmax)
    ax.set_ylim(gpmin, gpmax)
    ax.set_xlabel(r"$\gamma$")
    ax.set_ylabel(r"$\gamma'$")


def fit_end(fit, m):
    return float(np.exp(fit.intercept) * m**fit.slope)


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=3, width=3.5, height=3.1)
    fits = _fits(data)
    tau = critical_band(list(data["runs"]))
    cmap = __import__("matplotlib").colormaps["viridis"]
    gammas = list(data["runs"])

    ax = axes[0, 0]
    for j, gamma in enumerate(gammas):
        run, fit = data["runs"][gamma], fits[gamma]
        colour = cmap(j / max(len(gammas) - 1, 1))
        ax.loglog(run["width"], run["RD"], "o", ms=3.5, color=colour)
        gd = run.get("gd_wide", {"width": run["width"], **run["gd"]})
        ax.loglog(gd["width"], gd["RD"], "o", ms=6, mfc="none", mew=0.7, color=colour)
        m = np.geomspace(run["width"].min(), run["width"].max(), 20)
        ax.loglog(m, np.exp(fit.intercept) * m**fit.slope, color=colour, lw=1.0)
        right = max(m[-1], gd["width"].max())  # the label right of GD's widest runs too
        ax.annotate(rf"$\gamma = {gamma:g}$: ${fit.slope:+.2f}$", (right, fit_end(fit, right)),
                    xytext=(8, 0), textcoords="offset points", fontsize=7, va="center",
                    color=colour)  # fmt: skip
    ax.set_xlabel("width m")
    ax.set_ylabel(r"RD$(\theta_w^*)$")
    ax.set_title(r"(a) RD at convergence; label: $\gamma$: $S_w$")
    ax.set_xlim(right=ax.get_xlim()[1] * 12)

    ax = axes[0, 1]
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.axhspan(-tau, tau, color=COLOURS["critical"], alpha=0.15, lw=0)
    for gamma in gammas:
        fit = fits[gamma]
        measured = measured_regime(fit.slope, tau)
        ax.errorbar(gamma, fit.slope, yerr=2 * fit.stderr, fmt="o",
                    ms=5, capsize=3, color=COLOURS[measured])  # fmt: skip
    ax.axvspan(0.4, 1.0, color=COLOURS["linear"], alpha=0.12, lw=0)
    ax.axvspan(1.0, 1.85, color=COLOURS["condensed"], alpha=0.12, lw=0)
    ax.axvline(1.0, color=COLOURS["critical"], lw=2.0)
    ax.set_xlim(0.4, 1.85)
    ax.set_xlabel(r"$\gamma$  ($\gamma' = 0$)")
    ax.set_ylabel(r"$S_w$, $m \geq 100$ (bar: 2 stderr; band: $\pm\tau$)")
    ax.set_title(r"(b) $S_w$; shading: theory regime")
    handles = [Line2D([], [], marker="o", ls="none", color=c, label=f"measured {k}")
               for k, c in COLOURS.items()]  # fmt: skip
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")

    ax = axes[0, 2]
    _regions(ax)
    for gamma in gammas:
        measured = measured_regime(fits[gamma].slope, tau)
        ok = measured == regime(gamma, 0.0)
        ax.plot(gamma, 0.0, marker="o" if ok else "X", ms=9, color=COLOURS[measured],
                mec="black", mew=0.7, ls="none", zorder=6)  # fmt: skip
    plane_fits = _plane_fits(data)
    for (g, gp), fit in plane_fits.items():
        measured = measured_regime(fit.slope, tau)
        ax.plot(g, gp, marker="o" if measured == regime(g, gp) else "X", ms=9,
                color=COLOURS[measured], mec="black", mew=0.7, ls="none", zorder=6)  # fmt: skip
    handles = [Patch(color=COLOURS["linear"], alpha=0.3, label="linear (theory)"),
               Patch(color=COLOURS["condensed"], alpha=0.3, label="condensed (theory)"),
               Line2D([], [], color=COLOURS["critical"], lw=2.2, label="critical (theory)"),
               Line2D([], [], marker="o", ls="none", color="0.6", mec="black",
                      label="measured (colour = regime)")]  # fmt: skip
    ax.legend(handles=handles, fontsize=6.5, frameon=False, loc="upper left")
    where = "measured (X: not the theory's)" if plane_fits else r"measured at $\gamma' = 0$"
    ax.set_title(f"(c) phase diagram, {where}")
    fig.suptitle("two-layer ReLU, 4 one-dimensional points, gradient flow (open circles in "
                 r"(a): GD) to loss $\leq 10^{-6} R(0)$")  # fmt: skip
    return save(fig, base)
