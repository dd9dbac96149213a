"""Loss stages from small initialization: initial plateau, descent, secondary plateau ([CLW24]).

Set-up: tanh two-layer net with bias, width 100, on the [ZZJLZX22] 1-D data
(:func:`validation._cases.sin1d`), every parameter N(0, eps^2).  Three
predictions of docs/theory.md §9:

(a) **Initial plateau exit** (p = 1).  The exit time grows linearly in
    ``log(1/eps)`` with slope ``1/lambda`` (:func:`flowsim.theory.plateau_slope`).
    The same init direction is scaled to several eps and each run stopped at
    two exits: the largest ``|w_k|`` reaching ``delta`` (what
    :func:`flowsim.theory.plateau_exit_time` predicts) and the loss falling 1%
    below ``R(0)``.  Records: the fitted slope of each against ``1/lambda``.
    The leading-order exit time itself is reported and drawn; the full flow
    leaves ``O(1)`` later (a constant offset, which the slope does not see).
(b) **Later plateaus sit at a critical value of a narrower net** (embedding
    principle).  One long run (eps = 1e-4) is split by
    :func:`flowsim.measure.loss_stages`.  At each plateau after the first, the
    state closest to a critical point (smallest ``|grad R|`` among the saved
    states of the plateau) is condensed into a narrow net: orientations by
    :func:`flowsim.measure.clusters` (10 degrees, neurons weighted by
    ``|a||w|``); tanh is odd, so a neuron on ``-u`` with output ``a`` is the
    neuron ``(-a, -w)`` on ``+u`` and antipodal orientations merge (one narrow
    neuron per line).  A line's narrow neuron has ``a_K = sum_k a_k`` and
    ``w_K = sum_k a_k w_k / a_K`` (after the flips): the same output to first
    order in the weights, exact when the line's neurons coincide.  The narrow
    net's critical point is then found by Levenberg-Marquardt on its gradient
    (Jacobian: the Hessian by central differences of the analytic gradient).
    When the iterates run off to the *linear limit* (``a_K -> inf``,
    ``w_K -> 0`` with ``a_K w_K`` fixed, where ``tanh`` acts as the identity)
    the critical point sits at infinity and its value is the least-squares
    loss of the best linear function of ``x~ = (x, 1)``, computed in closed
    form.  Tolerance: the plateau's own flatness, ``(max - min) / level`` of
    the loss over the detected plateau, the accuracy to which a plateau has a
    level at all.  Here the one later plateau found is the secondary plateau
    (all neurons on the line of ``+-v``, weights ~0.1: the best linear fit).
    The stages after the big descent (loss 0.02 -> 0.005 for t = 3e2 .. 1e4,
    and the tail after t = 5e4) fall at log-log slopes 0.15 - 0.35, so they
    are descents for the detector; their neurons also differ in norm within
    an orientation (eps = 1e-6, t = 3e3: |w_k| from 0.3 to 3.8 within 15
    degrees of one direction), so no coincident-neuron narrow net describes
    them (line-merged nets lose the fit: loss 0.16 - 1.1 against 0.005 -
    0.012 at t = 5e2 .. 5e3).
(c) The Wasserstein-1 distance between the distributions of ``|a_k|`` and
    ``|w_k|`` (:func:`flowsim.measure.amplitude_wasserstein`) is drawn across
    the stages.  docs/theory.md §9 states no prediction for it, so there is no record.

Stage detection: ``loss_stages(slope_tol=0.1, smooth=0.05, min_plateau=0.2,
min_drop=0.02)``.  The library defaults merge the initial descent into the
initial plateau: for this data the linear part of the target carries only 8%
of the loss, a drop of 0.034 decades, below the default ``min_drop = 0.05``;
and the secondary plateau lasts 0.5 decades of time, so the smoothing is
halved.

Integration: the long run uses ``method="auto"`` (dopri5, RKC once the late
flow is stiff) with unit normalization scales (``scales={"a": 1, "W": 1}``,
``atol = 1e-15``): with the default scales (``t = eps^2 t_bar``) the hand-back
from RKC to dopri5 stopped with ``step_too_small`` at t = 974.7 (eps = 1e-6;
see the report); with unit scales the loss agreed with plain dopri5 to 2e-6
(relative, to t = 3e4) at a sixth of the cost.  The exit runs use plain
dopri5 with the default scales, rtol = 1e-10.

References
----------
.. [CLW24] Chen, Luo, Wang. On multi-stage loss dynamics in neural networks:
   mechanisms of plateau and descent stages. 2024. arXiv:2410.20119.
.. [ZZJLZX22] Zhou et al. Towards understanding the condensation of neural
   networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

import numpy as np

import flowsim as fs
import flowsim.measure as fm
from flowsim.validation._cases import sin1d
from flowsim.validation._record import Record, relative_check
from flowsim.validation._style import figure, save

NAME = "plateau_stages"
CLAIM = "small-init loss stages: exit ~ log(1/eps)/lambda; plateaus at narrow-net critical values"
SOURCE = "[CLW24]; docs/theory.md §9"

SIZES = {
    "quick": {"exit_eps": [1e-4, 1e-6, 1e-8, 1e-10, 1e-12], "run_eps": 1e-4, "t_end": 3e4,
              "n_save": 600},
    "full": {"exit_eps": [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10, 1e-12, 1e-14], "run_eps": 1e-4,
             "t_end": 1e6, "n_save": 1200},
}  # fmt: skip
PROTOCOL = {"activation": "tanh", "width": 100, "seed": 0, "delta": 0.05, "loss_drop": 0.01,
            "exit_rtol": 1e-10, "run_rtol": 1e-8, "run_atol": 1e-15, "angle_tol_deg": 10.0,
            "min_mass": 0.01}  # fmt: skip
STAGES = {"slope_tol": 0.1, "smooth": 0.05, "min_plateau": 0.2, "min_drop": 0.02}
SLOPE_RTOL = 1e-3
"""Slope tolerance: T - T_LO is constant in eps to ~1e-5 over eps <= 1e-4 (measured), so
the fitted slope is exact far below this; 1e-3 leaves room for the fit over a wider range."""
GRAD_TOL = 1e-10
"""|grad R_K| below which the narrow net's iterate is a (finite) critical point."""
LM_EVALUATIONS = 300


def _net(width=None):
    return fs.TwoLayer(PROTOCOL["activation"], width or PROTOCOL["width"], 1)


def _exit_times(eps_list):
    """Full-flow exits (norm and loss) and the leading-order prediction, per eps."""
    X, y = sin1d()
    net = _net()
    R0 = 0.5 * np.mean(y**2)
    delta = PROTOCOL["delta"]
    rows = []
    for eps in eps_list:
        theta0 = net.init(PROTOCOL["seed"], scale=eps)
        events = [fs.escape(norm=delta), fs.loss_below((1 - PROTOCOL["loss_drop"]) * R0,
                                                       terminal=False)]  # fmt: skip
        traj = fs.simulate(net, theta0, X, y, t_end=1e4, rtol=PROTOCOL["exit_rtol"],
                           events=events, save_state="final", n_save=2, progress=False)  # fmt: skip
        hit = {e.name: e.t for e in traj.events}
        rows.append([eps, hit.get("escape", np.nan), hit.get("loss_below", np.nan),
                     fs.theory.plateau_exit_time(net, theta0, X, y, delta=delta)])  # fmt: skip
    return np.array(rows)


def _merge(net, theta):
    """Narrow net from the lines of condensed orientations (odd sigma: u and -u merge)."""
    p = net.unpack(theta)
    a, W = p["a"], p["W"]
    weights = np.abs(a) * np.linalg.norm(W, axis=1)
    found = fm.clusters(W, weights=weights, angle_tol_deg=PROTOCOL["angle_tol_deg"],
                        min_mass=PROTOCOL["min_mass"])  # fmt: skip
    a_K, W_K = [], []
    for line in range(found.lines):
        orientations = np.flatnonzero(found.line_labels == line)
        reference = found.centers[orientations[0]]  # the heaviest orientation of the line
        members = np.isin(found.labels, orientations)
        flip = np.sign(W[members] @ reference)
        a_line, W_line = flip * a[members], flip[:, None] * W[members]
        a_K.append(a_line.sum())
        W_K.append((a_line[:, None] * W_line).sum(axis=0) / a_line.sum())
    narrow = _net(len(a_K))
    return narrow, narrow.pack(a=np.array(a_K), W=np.array(W_K)), found


def _linear_fit_loss(X, y):
    """Least-squares loss of the best linear function of x~ = (x, 1)."""
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return 0.5 * float(np.mean((A @ coef - y) ** 2))


def _narrow_critical(narrow, z0, X, y):
    """Critical point of the narrow net near z0 (:func:`flowsim.theory.critical_point`)."""
    found = fs.theory.critical_point(narrow, z0, X, y, max_evaluations=LM_EVALUATIONS)
    z, grad = found.theta, found.grad_norm
    p0, p1 = narrow.unpack(z0), narrow.unpack(z)
    out = {"z": z, "grad": grad, "loss_iterate": found.loss,
           "eigenvalues": found.spectrum.eigenvalues,
           "w_norm": (np.linalg.norm(p0["W"], axis=1), np.linalg.norm(p1["W"], axis=1)),
           "a_abs": (np.abs(p0["a"]), np.abs(p1["a"]))}  # fmt: skip
    if grad <= GRAD_TOL:
        out.update(kind="finite", value=out["loss_iterate"])
        return out
    lin = _linear_fit_loss(X, y)
    to_linear = (np.all(out["w_norm"][1] < out["w_norm"][0])
                 and np.all(out["a_abs"][1] > out["a_abs"][0])
                 and abs(out["loss_iterate"] - lin) < abs(narrow.loss(z0, X, y) - lin))  # fmt: skip
    if to_linear:
        out.update(kind="linear limit", value=lin)
    else:
        out.update(kind="unresolved", value=np.nan)
    return out


def simulate(size: str) -> dict:
    cfg = SIZES[size]
    X, y = sin1d()
    net = _net()
    exits = _exit_times(cfg["exit_eps"])

    theta0 = net.init(PROTOCOL["seed"], scale=cfg["run_eps"])
    save_t = np.concatenate([[0.0], np.geomspace(1e-2, cfg["t_end"], cfg["n_save"] - 1)])
    traj = fs.simulate(net, theta0, X, y, t_end=cfg["t_end"], method="auto",
                       rtol=PROTOCOL["run_rtol"], atol=PROTOCOL["run_atol"], save=save_t,
                       scales={"a": 1.0, "W": 1.0}, progress=False)  # fmt: skip
    stages = fm.loss_stages(traj.t, traj.loss, **STAGES)
    params = net.unpack(traj.theta)
    w1 = np.array([fm.amplitude_wasserstein(a, W) for a, W in zip(params["a"], params["W"],
                                                                    strict=True)])  # fmt: skip
    scale = 0.5 * (np.abs(params["a"]).mean(axis=1) + np.linalg.norm(params["W"], axis=2).mean(1))

    plateaus = []
    for index, stage in enumerate(stages):
        if stage.kind != "plateau" or index == 0:
            continue
        inside = np.flatnonzero((traj.t >= stage.start) & (traj.t <= stage.end))
        grads = [np.linalg.norm(net.gradient(traj.theta[i], X, y)) for i in inside]
        i = int(inside[int(np.argmin(grads))])
        narrow, z0, found = _merge(net, traj.theta[i])
        critical = _narrow_critical(narrow, z0, X, y)
        plateaus.append({
            "stage": index, "start": stage.start, "end": stage.end, "level": stage.loss,
            "loss_min": float(traj.loss[inside].min()), "loss_max": float(traj.loss[inside].max()),
            "t_merge": float(traj.t[i]), "loss_merge_wide": float(traj.loss[i]),
            "grad_wide": float(min(grads)), "orientations": found.count, "lines": found.lines,
            "width": narrow.width, "loss_merged": narrow.loss(z0, X, y), "critical": critical,
        })  # fmt: skip
    return {
        "exits": exits,
        "inv_lambda": fs.theory.plateau_slope(net, X, y),
        "R0": 0.5 * float(np.mean(y**2)),
        "t": traj.t,
        "loss": traj.loss,
        "w1": w1,
        "w1_relative": w1 / scale,
        "stages": [(s.kind, s.start, s.end, s.loss) for s in stages],
        "plateaus": plateaus,
        "run_eps": cfg["run_eps"],
        "status": traj.status,
        "method_log": traj.method_log,
        "wall_time": traj.wall_time,
    }


def _stage_list(data):
    return [fm.Stage(*s) for s in data["stages"]]


def evaluate(data: dict, size: str, figure_path=None) -> list:
    cfg = {**SIZES[size], **PROTOCOL}
    records = []
    eps, t_norm, t_loss, t_lo = data["exits"].T
    slope_lo = fs.theory.fit_plateau_slope(eps, t_lo)
    offsets = ", ".join(f"{e:g}: {d:.5f}" for e, d in zip(eps, t_norm - t_lo, strict=True))
    for label, times in (("norm", t_norm), ("loss", t_loss)):
        what = (f"largest |w_k| reaches delta = {PROTOCOL['delta']:g}" if label == "norm"
                else f"loss {100 * PROTOCOL['loss_drop']:g}% below R(0)")  # fmt: skip
        note = (f"exit = {what}; eps = {', '.join(f'{e:g}' for e in eps)}; exit times "
                f"{', '.join(f'{t:.4f}' for t in times)}; leading-order slope "
                f"{slope_lo:.7f}; T_full - T_LO (delta exit) per eps: {offsets}")  # fmt: skip
        records.append(relative_check(
            f"{NAME}.exit_slope_{label}", f"initial plateau exit ({label}) ~ (1/lambda) log(1/eps)",
            SOURCE, data["inv_lambda"], fs.theory.fit_plateau_slope(eps, times), SLOPE_RTOL, cfg,
            figure_path, note))  # fmt: skip

    stages = _stage_list(data)
    kinds = [s.kind for s in stages]
    expected = ["plateau", "descent", "plateau", "descent"]
    first_ok = bool(stages) and abs(stages[0].loss - data["R0"]) <= 1e-3 * data["R0"]
    ok = kinds[:4] == expected and first_ok
    note = "; ".join(f"{s.kind} [{s.start:.3g}, {s.end:.3g}] at {s.loss:.5g}" for s in stages)
    records.append(Record(f"{NAME}.stages", "stage sequence from small init (loss_stages)",
                          SOURCE, " > ".join(expected) + " ...", " > ".join(kinds), "first four "
                          "equal; first plateau at R(0) within 1e-3", bool(ok), cfg, figure_path,
                          f"R(0) = {data['R0']:.6g}; {note}"))  # fmt: skip

    for plateau in data["plateaus"]:
        crit = plateau["critical"]
        tol = (plateau["loss_max"] - plateau["loss_min"]) / plateau["level"]
        index = int(np.sum(crit["eigenvalues"] < 0))
        note = (f"plateau {plateau['stage']} [{plateau['start']:.4g}, {plateau['end']:.4g}], loss "
                f"{plateau['loss_min']:.6g} .. {plateau['loss_max']:.6g}; merged at t = "
                f"{plateau['t_merge']:.4g} (|grad R| = {plateau['grad_wide']:.2e}, loss "
                f"{plateau['loss_merge_wide']:.6g}): {plateau['orientations']} orientations on "
                f"{plateau['lines']} line(s) -> width-{plateau['width']} net, loss "
                f"{plateau['loss_merged']:.6g}; narrow critical point: {crit['kind']} "
                f"(LM iterate: loss {crit['loss_iterate']:.6g}, |grad| {crit['grad']:.1e}, "
                f"|w_K| {np.array2string(crit['w_norm'][0], precision=3)} -> "
                f"{np.array2string(crit['w_norm'][1], precision=3)}, |a_K| "
                f"{np.array2string(crit['a_abs'][0], precision=3)} -> "
                f"{np.array2string(crit['a_abs'][1], precision=3)}, Hessian index {index}, "
                f"smallest |eigenvalue| {np.abs(crit['eigenvalues']).min():.1e}); tolerance = the "
                "plateau's flatness (max - min)/level")  # fmt: skip
        if crit["kind"] == "unresolved":
            note += "; protocol: no critical point of the narrow net found near the merged state"
        records.append(relative_check(
            f"{NAME}.plateau{plateau['stage']}_critical_loss",
            f"plateau {plateau['stage']} loss = critical loss of the width-{plateau['width']} net",
            SOURCE, crit["value"], plateau["level"], tol, cfg, figure_path, note))  # fmt: skip
    return records


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=2, nrows=2, width=3.6, height=2.7)
    stages = _stage_list(data)
    t, loss = data["t"], data["loss"]

    ax = axes[0, 0]
    fm.plot_stages(t, loss, stages, ax=ax)
    for k, plateau in enumerate(data["plateaus"]):
        value = plateau["critical"]["value"]
        if np.isfinite(value):
            ax.axhline(value, color="tab:green", lw=0.9, ls="--",
                       label=f"narrow-net critical loss (width {plateau['width']})" if k == 0
                       else None)  # fmt: skip
    ax.axhline(data["R0"], color="0.4", lw=0.8, ls=":", label=r"$R(0)$")
    ax.set_xlim(1e-2, t[-1])
    ax.set_title("(a) loss stages")
    ax.legend(loc="lower left", fontsize=7, frameon=False)

    ax = axes[0, 1]
    window = (t >= 3.0) & (t <= 1e3)
    ax.semilogx(t[window], loss[window], color="black", lw=1.2)
    for stage in stages:
        colour = "0.85" if stage.kind == "plateau" else "tab:blue"
        ax.axvspan(max(stage.start, 3.0), min(stage.end, 1e3), color=colour, alpha=0.35, lw=0)
    for stage in stages:
        if stage.kind == "plateau" and stage.start < 1e3:
            label = "plateau level (median)" if stage.start > 3.0 else None
            ax.hlines(stage.loss, max(stage.start, 3.0), min(stage.end, 1e3), colors="tab:red",
                      lw=1.0, label=label)  # fmt: skip
    for plateau in data["plateaus"]:
        value = plateau["critical"]["value"]
        if np.isfinite(value) and 0.2 < value < 0.3:
            ax.axhline(value, color="tab:green", lw=0.9, ls="--",
                       label=f"critical loss, width {plateau['width']} "
                       f"({plateau['critical']['kind']})")  # fmt: skip
            ax.plot(plateau["t_merge"], plateau["loss_merge_wide"], "o", ms=4, color="tab:red",
                    label="state merged into the narrow net")  # fmt: skip
    ax.axhline(data["R0"], color="0.4", lw=0.8, ls=":", label=r"$R(0)$")
    ax.set_ylim(0.228, 0.273)
    ax.set_xlabel("time t")
    ax.set_ylabel("loss")
    ax.set_title("(b) initial and secondary plateau")
    ax.legend(loc="lower left", fontsize=7, frameon=False)

    ax = axes[1, 0]
    eps, t_norm, t_loss, t_lo = data["exits"].T
    u = np.log(1 / eps)
    label = rf"full flow: $\max|w_k| = {PROTOCOL['delta']:g}$"
    ax.plot(u, t_norm, "o", color="tab:blue", label=label)
    ax.plot(u, t_loss, "s", mfc="none", color="tab:orange", label="full flow: loss 1% below R(0)")
    ax.plot(u, t_lo, "x", color="black", label="leading order (plateau_exit_time)")
    grid = np.linspace(u.min(), u.max(), 50)
    anchor = t_norm[0] - data["inv_lambda"] * u[0]
    ax.plot(grid, anchor + data["inv_lambda"] * grid, color="tab:blue", lw=0.8,
            label=rf"slope $1/\lambda = {data['inv_lambda']:.4f}$")  # fmt: skip
    ax.set_xlabel(r"$\log(1/\varepsilon)$")
    ax.set_ylabel("exit time")
    ax.set_title("(c) initial plateau exit")
    ax.legend(loc="upper left", fontsize=7, frameon=False)

    ax = axes[1, 1]
    keep = t > 0
    for stage in stages:
        colour = "0.85" if stage.kind == "plateau" else "tab:blue"
        ax.axvspan(stage.start, stage.end, color=colour, alpha=0.35, lw=0)
    ax.loglog(t[keep], data["w1"][keep], color="tab:purple", label=r"$W_1(|a|, |w|)$")
    ax.loglog(t[keep], data["w1_relative"][keep], color="tab:purple", ls="--",
              label=r"$W_1 \,/\, \frac{1}{2}(\overline{|a|} + \overline{|w|})$")  # fmt: skip
    ax.set_xlim(1e-2, t[-1])
    ax.set_xlabel("time t")
    ax.set_ylabel(r"$W_1$")
    ax.set_title(r"(d) amplitude distributions $|a_k|$ vs $|w_k|$")
    ax.legend(loc="center left", fontsize=7, frameon=False)
    fig.suptitle(f"tanh, m = {PROTOCOL['width']}, 1-D data, small init; (a, b, d): eps = "
                 f"{data['run_eps']:g}, shading grey = plateau, blue = descent")  # fmt: skip
    return save(fig, base)
