"""Embedding principle ([ZZLX21]): narrow critical points inside wide nets, shared plateaus.

Five parts (docs/theory.md §16):

(a) **Exactness.** A critical point of a narrow net (:func:`flowsim.theory.critical_point`)
    is split by :func:`flowsim.theory.embed` with lam in {0.3, 0.5, 2, -1}: tanh and
    softplus, two-layer (width 2) and three-layer (widths (2, 2), either hidden layer).
    Records: the largest relative output change (<= 1e-14) and the largest relative
    gradient of the embedded points (<= 1e-12, :func:`flowsim.theory.embedding.gradient_scale`).
    Data: the bump ``exp(-4 x^2)`` on 40 points of [-1.5, 1.5], whose width-2 tanh net has
    a finite strict minimum; the other cases start Levenberg-Marquardt from a random
    point (seed 1) and take the critical point it finds (degenerate ones included).
(b) **Hessian counts.** The width-2 tanh minimum split to widths 3 and 4 (lam = 1/2):
    one more zero eigenvalue per split, negative and positive counts never decrease;
    the negative counts are recorded against the [ZZLX21] example 0, 1, 2.  Along the
    split perturbation ``d`` (copies' input weights by ``(1 - lam) z`` and ``-lam z``),
    ``d^T H d`` against ``lam (1 - lam) z^T S_k z`` (``S_k`` in plain NumPy), relative 1e-9,
    and its sign flips for lam outside [0, 1].
(c) **Plateaus shared across widths.** Small-initialization tanh nets on the [ZZJLZX22] 1-D
    data (:func:`validation._cases.sin1d`), widths 1, 2, 4, ... from one initialization
    (width m takes the first m neurons of the widest net's draw).  The catalogue of narrow
    critical levels: the linear-limit value (least-squares loss of the best linear function
    of (x, 1), the secondary plateau of ``plateau_stages``) and, for each narrow width
    m = 1, 2, 3 from the same draw, the level its flow reaches by ``t_long`` = 1e7
    (:func:`_narrow_levels`): Levenberg-Marquardt from the final state converged, a finite
    critical point (its loss); not converged, a limit at infinite weights (the flow's loss;
    width 2: two opposite tanh units become a difference quotient; width 3: a finite
    minimum from the full draw, 0.0046506, but from the quick draw a limit, 0.0043708, with
    |theta| still growing); a width whose loss still drifts by more than 1% over the
    last decade has no level and stays out (width 4 is not in the catalogue: from the quick
    draw it still falls by half per decade at 1e7, its level 3e-4 is below every wide
    plateau, and from the full draw its flow to 1e7 takes minutes).  Every later plateau
    of every net of width m > 2 must sit at the level of a narrower net (an entry of
    width < m, or the linear limit) within its own flatness ((max - min) / level over the
    plateau).
(d) **Reduction.** The widest run's state of smallest |grad R| on its first later
    plateau is reduced by :func:`flowsim.measure.reduce` (threshold 0.9): same loss
    (relative 1e-3).  The flow continued from the reduced net reaches its next plateau,
    at level L_r.  The principle carries narrow *critical points* into the wide net, so the
    prediction is that the wide net lingers at L_r: the record is the kind of the wide
    net's :func:`flowsim.measure.loss_stages` stage where it first falls below L_r
    ("plateau" predicted), with its slope d log L / d log t there (over +-0.1 decade)
    against its median slope after the first plateau, and Levenberg-Marquardt
    (:func:`flowsim.theory.critical_point`) from the reduced net's final state: is L_r a
    critical value?  A documented finding (:data:`FINDINGS`): it is not, and the wide net
    passes L_r in a descent, at both sizes.
(e) **Loss spectrum.** Seeds 0 .. S-1 per width, :func:`flowsim.measure.loss_spectrum`:
    the runs are one sweep into the suite's result store
    (:func:`flowsim.validation._runner.default_store_dir`; resumable), the plateau levels
    read from the stored loss curves (drawn as the spectrum).  Compared: per width, the
    lowest later plateau level over all seeds (the lowest level of each seed is in the
    note); wider nets reach lower plateaus, so it must fall strictly with width.  A
    documented finding (:data:`FINDINGS`): width 8's lies above width 4's at both sizes.

References
----------
.. [ZZLX21] Zhang, Zhang, Luo, Xu. Embedding principle of loss landscape of deep neural
   networks. NeurIPS 2021. arXiv:2105.14573.
.. [ZZJLZX22] Zhou et al. Towards understanding the condensation of neural networks at
   initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

import numpy as np

import flowsim as fs
import flowsim.measure as fm
from flowsim.theory.embedding import gradient_scale
from flowsim.validation._cases import sin1d
from flowsim.validation._record import Finding, Record, attach_findings, bound_check, relative_check
from flowsim.validation._style import figure, save

NAME = "embedding"
CLAIM = "embedding keeps outputs and critical points; plateaus are narrow-net critical values"
SOURCE = "[ZZLX21]; docs/theory.md §16"

SIZES = {
    "quick": {"widths": [1, 2, 4, 8, 16, 32], "seeds": 5, "spectrum_widths": [2, 4, 8],
              "t_end": 3e4, "n_save": 400},
    "full": {"widths": [1, 2, 4, 8, 16, 32, 64, 128, 256], "seeds": 50,
             "spectrum_widths": [2, 4, 8, 16, 32], "t_end": 1e5, "n_save": 800},
}  # fmt: skip
PROTOCOL = {"lams": [0.3, 0.5, 2.0, -1.0], "init_eps": 1e-4, "seed": 0, "rtol": 1e-8,
            "atol": 1e-15, "threshold": 0.9, "narrow_widths": [1, 2, 3],
            "t_long": 1e7, "max_drift": 1e-2}  # fmt: skip
STAGES = {"slope_tol": 0.1, "smooth": 0.05, "min_plateau": 0.2, "min_drop": 0.02}
OUTPUT_BOUND = 1e-14
GRAD_BOUND = 1e-12
QUAD_RTOL = 1e-9
REDUCE_RTOL = 1e-3
FINDINGS = {
    f"{NAME}.reduce_next": Finding(
        "the wide net passes the reduced net's next level in a descent, at both sizes.  The "
        "width-2 net reduced from the wide one (one neuron per orientation +-u) and continued "
        "stalls at 0.00549 (quick; full 0.00533), but that plateau is not a critical point: "
        "Levenberg-Marquardt from its final state does not converge (|grad|/scale 1.5e-5 "
        "quick, 9.8e-6 full) and the width-2 flow continued to t = 6e7 (measured once) keeps "
        "growing two opposite neurons, |a| = 16.4, 16.9 (5.3, 5.8 at t = 3e4), loss -> "
        "0.0051410, |grad| 3.9e-8: an infimum at infinity (a difference quotient of tanh), "
        "which the embedding principle does not carry into the wide net.  The wide net crosses "
        "the level inside a descent stage at slope -0.135 (quick, width 32, t = 2.4e3; its "
        "median slope after its first plateau -0.27) and -0.172 (full, width 256, t = 3.5e3; "
        "median -0.078: it then stalls lower, at 0.00462, from t = 5.7e3 to t_end)",
        "descent",
    ),
    f"{NAME}.loss_spectrum": Finding(
        "the lowest plateau level over seeds is not monotone in width: width 8's lies above "
        "width 4's at both sizes (quick, 5 seeds: 0.0052502 against 0.0052242; full, 50 seeds: "
        "0.0052324 against 0.0051746), while width 2 is highest (0.0053884; 0.0052992) and "
        "widths 16, 32 lowest (full: 0.0050317, 0.0048942).  Up to width 8 every later "
        "plateau of every seed is the width-2 level (the difference quotient of two tanh "
        "units, whose infimum at infinite weights is 0.0051416): its measured level is where "
        "the slow descent towards that infimum is caught (flatness 0.05 - 0.18), so the "
        "lowest one over seeds is a draw from one level, not a lower critical level.  "
        "Levels below the width-2 infimum, which no width-2 net can reach, appear only from "
        "width 16 (full: 24 of 50 seeds at width 16, 15 at width 32; quick: none up to width "
        "8); at width 32 the median seed's lowest later plateau is the linear-limit one "
        "(0.248): it passes the narrow levels in a descent",
        "8 above 4",
    ),
}


def bump():
    x = np.linspace(-1.5, 1.5, 40)
    return x[:, None], np.exp(-4 * x**2)


def _width2_minimum(X, y):
    net = fs.TwoLayer("tanh", 2, 1)
    traj = fs.simulate(net, net.init(0, scale=1.0), X, y, t_end=1e4, rtol=1e-10,
                       save_state="final", progress=False)  # fmt: skip
    return net, fs.theory.critical_point(net, traj.theta[-1], X, y)


def _exactness(X, y, minimum):
    cases = [("two-layer tanh", minimum[0], minimum[1], [None])]
    for label, net, layers in (("two-layer softplus", fs.TwoLayer("softplus", 2, 1), [None]),
                               ("three-layer tanh", fs.ThreeLayer("tanh", (2, 2), 1), [1, 2]),
                               ("three-layer softplus", fs.ThreeLayer("softplus", (2, 2), 1),
                                [1, 2])):  # fmt: skip
        cases.append((label, net, fs.theory.critical_point(net, net.init(1, scale=1.0), X, y),
                      layers))  # fmt: skip
    rows = []
    for label, net, cp, layers in cases:
        f = net.output(cp.theta, X)
        for layer in layers:
            for lam in PROTOCOL["lams"]:
                wide, theta = fs.theory.embed(net, cp.theta, neuron=0, lam=lam, layer=layer)
                change = np.abs(wide.output(theta, X) - f).max() / np.abs(f).max()
                grad = np.linalg.norm(wide.gradient(theta, X, y))
                scale = gradient_scale(wide.loss(theta, X, y), wide.hessian(theta, X, y))
                rows.append({"case": label, "layer": layer or 1, "lam": lam,
                             "output_change": float(change), "grad_relative": grad / scale,
                             "narrow_grad_relative": cp.grad_relative, "loss": cp.loss,
                             "narrow_counts": list(cp.spectrum.counts)})  # fmt: skip
    return rows


def _counts(X, y, minimum):
    net, cp = minimum
    spectra = [cp.spectrum]
    wide, theta = net, cp.theta
    for k in (0, 1):
        wide, theta = fs.theory.embed(wide, theta, neuron=k, lam=0.5)
        spectra.append(fs.theory.hessian_spectrum(wide, theta, X, y))
    p = net.unpack(cp.theta)
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    e = net.output(cp.theta, X) - y
    z_pre = Xa @ p["W"][0]
    d2 = -2.0 * np.tanh(z_pre) / np.cosh(z_pre) ** 2  # tanh''
    S = p["a"][0] / (net.alpha * X.shape[0]) * (Xa.T * (e * d2)) @ Xa
    z = np.random.default_rng(PROTOCOL["seed"]).standard_normal(2)
    quad = []
    for lam in PROTOCOL["lams"]:
        wide, theta = fs.theory.embed(net, cp.theta, neuron=0, lam=lam)
        d = np.zeros(wide.n_params)
        d[wide.layer_slices()["W"]] = np.concatenate([(1 - lam) * z, np.zeros(2), -lam * z])
        quad.append([lam, float(d @ wide.hessian(theta, X, y) @ d),
                     float(lam * (1 - lam) * z @ S @ z)])  # fmt: skip
    return {"counts": [list(s.counts) for s in spectra], "gaps": [s.gap for s in spectra],
            "eigenvalues": [s.eigenvalues for s in spectra], "quad": np.array(quad),
            "S_eigenvalues": np.linalg.eigvalsh(S), "grad_relative": cp.grad_relative,
            "loss": cp.loss}  # fmt: skip


def _run(net, theta0, X, y, t_end, n_save):
    save_t = np.concatenate([[0.0], np.geomspace(1e-2, t_end, n_save - 1)])
    return fs.simulate(net, theta0, X, y, t_end=t_end, method="auto", rtol=PROTOCOL["rtol"],
                       atol=PROTOCOL["atol"], save=save_t, scales={"a": 1.0, "W": 1.0},
                       progress=False)  # fmt: skip


def _plateaus(traj):
    """Later plateaus (after the initial one): (start, end, level, flatness, index)."""
    out = []
    for index, s in enumerate(fm.loss_stages(traj.t, traj.loss, **STAGES)):
        if s.kind != "plateau" or index == 0:
            continue
        inside = (traj.t >= s.start) & (traj.t <= s.end)
        flat = (traj.loss[inside].max() - traj.loss[inside].min()) / s.loss
        out.append([s.start, s.end, s.loss, float(flat), index])
    return out


def _linear_fit_loss(X, y):
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    return 0.5 * float(np.mean((A @ coef - y) ** 2))


def _draw(M):
    net = fs.TwoLayer("tanh", M, 1)
    return net.unpack(net.init(PROTOCOL["seed"], scale=PROTOCOL["init_eps"]))


def _narrow_levels(cfg, X, y):
    """The critical level of each narrow width m of ``PROTOCOL["narrow_widths"]``, reached
    from the first m neurons of the check's draw: the flow to ``t_long``, then
    Levenberg-Marquardt (:func:`flowsim.theory.critical_point`) from its final state.
    Converged: a finite critical point, level = its loss.  Not converged: the flow's
    level is a limit at infinite weights (|theta| still grows, |grad| -> 0), level = the
    flow's loss at ``t_long``, with the drift over its last decade (a width whose loss still
    drifts by more than ``max_drift`` has no level yet and stays out of the catalogue)."""
    draw = _draw(max(cfg["widths"]))
    out = {}
    for m in PROTOCOL["narrow_widths"]:
        net = fs.TwoLayer("tanh", m, 1)
        traj = _run(net, net.pack(a=draw["a"][:m], W=draw["W"][:m]), X, y, PROTOCOL["t_long"],
                    200)  # fmt: skip
        found = fs.theory.critical_point(net, traj.theta[-1], X, y)
        decade = int(np.searchsorted(traj.t, PROTOCOL["t_long"] / 10))
        out[m] = {"kind": "critical point" if found.converged else "limit at infinite weights",
                  "level": found.loss if found.converged else float(traj.loss[-1]),
                  "flow_loss": float(traj.loss[-1]), "critical_loss": found.loss,
                  "grad_relative": found.grad_relative, "counts": list(found.spectrum.counts),
                  "drift": float(traj.loss[decade] / traj.loss[-1] - 1.0),
                  "norm": [float(np.linalg.norm(traj.theta[decade])),
                           float(np.linalg.norm(traj.theta[-1]))],
                  "grad": float(np.linalg.norm(net.gradient(traj.theta[-1], X, y)))}  # fmt: skip
    return out


def _widths(cfg, X, y):
    draw = _draw(max(cfg["widths"]))
    runs = {}
    for m in cfg["widths"]:
        net = fs.TwoLayer("tanh", m, 1)
        traj = _run(net, net.pack(a=draw["a"][:m], W=draw["W"][:m]), X, y, cfg["t_end"],
                    cfg["n_save"])  # fmt: skip
        runs[m] = {"t": traj.t, "loss": traj.loss, "theta": traj.theta, "status": traj.status,
                   "plateaus": _plateaus(traj)}  # fmt: skip
    return runs


def _slope_at(t, loss, level, span=0.1):
    """``d log10 loss / d log10 t`` where the curve first falls below ``level``, over
    +-``span`` decades of t (nan if it never does)."""
    keep = t > 0
    x, z = np.log10(t[keep]), np.log10(loss[keep])
    below = np.flatnonzero(z < np.log10(level))
    if below.size == 0:
        return np.nan, np.nan
    xc = x[below[0]]
    lo, hi = max(xc - span, x[0]), min(xc + span, x[-1])
    return float(10**xc), float((np.interp(hi, x, z) - np.interp(lo, x, z)) / (hi - lo))


def _reduction(cfg, runs, X, y):
    """Reduce the widest run at its first later plateau; continue the flow; find where the
    wide net crosses the reduced net's next plateau level."""
    M = max(cfg["widths"])
    run = runs[M]
    net = fs.TwoLayer("tanh", M, 1)
    plateaus = run["plateaus"]
    if not plateaus:
        return None
    target = plateaus[0]
    inside = np.flatnonzero((run["t"] >= target[0]) & (run["t"] <= target[1]))
    grads = [np.linalg.norm(net.gradient(run["theta"][i], X, y)) for i in inside]
    i = int(inside[int(np.argmin(grads))])
    narrow, theta = fm.reduce(net, run["theta"][i], threshold=PROTOCOL["threshold"])
    rest = cfg["t_end"] - run["t"][i]
    traj = _run(narrow, theta, X, y, rest, cfg["n_save"] // 2)
    t_reduced = traj.t + run["t"][i]
    stages = fm.loss_stages(t_reduced, traj.loss, **STAGES)
    out = {"t": float(run["t"][i]), "width": narrow.width, "loss_wide": float(run["loss"][i]),
           "loss_reduced": narrow.loss(theta, X, y),
           "output_change": float(np.abs(narrow.output(theta, X) - net.output(run["theta"][i], X))
                                  .max()),
           "plateau": target, "reduced_t": t_reduced, "reduced_loss": traj.loss,
           "reduced_final": float(traj.loss[-1]), "wide_final": float(run["loss"][-1]),
           "reduced_level": None}  # fmt: skip
    if len(stages) < 2 or stages[-1].kind != "plateau":
        return out
    last = stages[-1]
    on = (t_reduced >= last.start) & (t_reduced <= last.end)
    level = last.loss
    # the narrow net at its plateau: a critical point nearby?  (Levenberg-Marquardt)
    found = fs.theory.critical_point(narrow, traj.theta[-1], X, y)
    t_cross, slope = _slope_at(run["t"], run["loss"], level)
    wide = fm.loss_stages(run["t"], run["loss"], **STAGES)
    kind = next((s.kind for s in wide if s.start <= t_cross <= s.end), "never")
    after = run["t"] > target[1]
    pointwise = np.diff(np.log10(run["loss"][after])) / np.diff(np.log10(run["t"][after]))
    out.update(
        reduced_level=float(level), reduced_start=float(last.start),
        reduced_flatness=float((traj.loss[on].max() - traj.loss[on].min()) / level),
        critical_grad_relative=found.grad_relative, critical_converged=found.converged,
        critical_loss=found.loss,
        critical_moved=float(np.linalg.norm(found.theta - traj.theta[-1])),
        reduced_a=np.abs(narrow.unpack(traj.theta[-1])["a"]),
        wide_cross_t=t_cross, wide_cross_slope=slope, wide_cross_kind=kind,
        wide_median_slope=float(np.median(pointwise)),
        wide_stages=[[s.kind, s.start, s.end, s.loss] for s in wide],
    )  # fmt: skip
    return out


def spectrum_base(size: str) -> dict:
    """The run config of the loss spectrum's sweep (widths and seeds are put in by
    :func:`flowsim.measure.loss_spectrum`): the data of :func:`validation._cases.sin1d`."""
    cfg = SIZES[size]
    return {"model": {"kind": "two_layer", "activation": "tanh"},
            "data": {"kind": "sin1d", "params": {"n": 40, "low": -1.0, "high": 1.5,
                                                 "target": "sin(3*x) + sin(6*x)/2"}},
            "init": {"seed": 0, "scale": PROTOCOL["init_eps"]},
            "solver": {"method": "auto", "t_end": cfg["t_end"], "rtol": PROTOCOL["rtol"],
                       "atol": PROTOCOL["atol"], "n_save": cfg["n_save"] // 2,
                       "save_state": "final"}}  # fmt: skip


def _spectrum(size, store, scheduler, workers):
    """Seeds x widths as a sweep into the result store (resumable), plateau levels read
    from the stored loss curves: pooled per width, and the lowest one of each seed."""
    from flowsim.store import Store
    from flowsim.validation._runner import default_store_dir

    cfg = SIZES[size]
    store = Store(store or default_store_dir())
    spectrum = fm.loss_spectrum(spectrum_base(size), store, widths=cfg["spectrum_widths"],
                                seeds=cfg["seeds"], scheduler=scheduler, workers=workers,
                                progress=False, **STAGES)  # fmt: skip
    lowest = {}
    for m, keys in spectrum.keys.items():
        per_seed = []
        for key, final in zip(keys, spectrum.final[m], strict=True):
            levels = np.array([])
            if np.isfinite(final):
                traj = store.load(key)
                levels = fm.plateau_levels([(traj.t, traj.loss)], **STAGES)
            per_seed.append(levels.min() if levels.size else np.nan)
        lowest[str(m)] = np.array(per_seed)
    return {"levels": {str(m): v for m, v in spectrum.levels.items()}, "lowest": lowest,
            "last": {str(m): v for m, v in spectrum.final.items()},
            "failures": [list(map(str, f)) for f in spectrum.failures]}  # fmt: skip


def simulate(size: str, store=None, scheduler="local", workers=None) -> dict:
    """The check's data; the loss spectrum's runs go to ``store`` (default: the suite's
    result store, :func:`flowsim.validation._runner.default_store_dir`), run by
    ``scheduler`` and ``workers`` (:func:`flowsim.sweep.run_sweep`)."""
    cfg = SIZES[size]
    Xb, yb = bump()
    minimum = _width2_minimum(Xb, yb)
    X, y = sin1d()
    runs = _widths(cfg, X, y)
    narrow = _narrow_levels(cfg, X, y)
    catalogue = {"linear limit": _linear_fit_loss(X, y)}
    catalogue.update({f"width {m}": v["level"] for m, v in narrow.items()
                      if abs(v["drift"]) <= PROTOCOL["max_drift"]})  # fmt: skip
    return {
        "exactness": _exactness(Xb, yb, minimum),
        "counts": _counts(Xb, yb, minimum),
        "runs": {str(m): r for m, r in runs.items()},
        "catalogue": catalogue,
        "narrow": {str(m): v for m, v in narrow.items()},
        "reduction": _reduction(cfg, runs, X, y),
        "spectrum": _spectrum(size, store, scheduler, workers),
    }


def evaluate(data: dict, size: str, figure_path=None) -> list:
    cfg = {**SIZES[size], **PROTOCOL}
    records = []
    rows = data["exactness"]
    cases = ", ".join(sorted({f"{r['case']} (narrow |grad|/scale {r['narrow_grad_relative']:.1e},"
                              f" counts {tuple(r['narrow_counts'])}, loss {r['loss']:.5g})"
                              for r in rows}))  # fmt: skip
    worst = max(rows, key=lambda r: r["output_change"])
    records.append(bound_check(
        f"{NAME}.output", "embedding keeps the output (max relative change over cases and lam)",
        SOURCE, OUTPUT_BOUND, max(r["output_change"] for r in rows), cfg, figure_path,
        f"lam {PROTOCOL['lams']}; worst: {worst['case']}, layer {worst['layer']}, lam "
        f"{worst['lam']}; critical points: {cases}"))  # fmt: skip
    worst = max(rows, key=lambda r: r["grad_relative"])
    records.append(bound_check(
        f"{NAME}.criticality", "embedding keeps critical points (max |grad R| / gradient scale)",
        SOURCE, GRAD_BOUND, max(r["grad_relative"] for r in rows), cfg, figure_path,
        f"worst: {worst['case']}, layer {worst['layer']}, lam {worst['lam']}"))  # fmt: skip

    c = data["counts"]
    counts = [tuple(x) for x in c["counts"]]
    ok = all(b[1] == a[1] + 1 and b[0] >= a[0] and b[2] >= a[2]
             for a, b in zip(counts, counts[1:], strict=False))  # fmt: skip
    note = (f"width-2 tanh minimum of the bump (|grad|/scale {c['grad_relative']:.1e}, loss "
            f"{c['loss']:.6g}) split to widths 3, 4: (negative, zero, positive) = "
            f"{counts}; gap between the zero and non-zero eigenvalues "
            f"{', '.join(f'{g:.2g}' for g in c['gaps'])}; eigenvalues of S_1: "
            f"{np.array2string(c['S_eigenvalues'], precision=3)}")  # fmt: skip
    records.append(Record(f"{NAME}.counts", "each split adds one zero eigenvalue; negative and "
                          "positive counts never decrease", SOURCE, "zero +1, others >=",
                          " > ".join(str(x) for x in counts), "exact counts", bool(ok), cfg,
                          figure_path, note))  # fmt: skip
    negatives = " > ".join(str(x[0]) for x in counts)
    records.append(Record(f"{NAME}.negative_counts", "negative count of the width-2 minimum "
                          "split to widths 3, 4 ([ZZLX21] example)", SOURCE, "0 > 1 > 2",
                          negatives, "equal", negatives == "0 > 1 > 2", cfg, figure_path,
                          note))  # fmt: skip
    lam, quad, theory = c["quad"].T
    err = float(np.max(np.abs(quad - theory) / np.abs(theory)))
    inside = (lam > 0) & (lam < 1)
    sign = np.sign(quad[inside][0])
    flips = bool(sign != 0 and np.all(np.sign(quad) == np.where(inside, sign, -sign)))
    records.append(Record(
        f"{NAME}.second_order", "d^T H d = lam (1 - lam) z^T S_k z, sign flip outside [0, 1]",
        SOURCE, 0.0, err, f"relative {QUAD_RTOL:g} and sign flip", bool(err <= QUAD_RTOL and flips),
        cfg, figure_path, "lam, d^T H d, theory: " + "; ".join(
            f"{a:g}: {b:.6g}, {t:.6g}" for a, b, t in c["quad"])))  # fmt: skip

    catalogue = data["catalogue"]
    ratios, lines = [], []
    for key, run in data["runs"].items():
        if int(key) <= 2:
            continue
        narrower = {k: v for k, v in catalogue.items()
                    if k == "linear limit" or int(k.split()[1]) < int(key)}  # fmt: skip
        for start, end, level, flat, _ in run["plateaus"]:
            name, value = min(narrower.items(), key=lambda kv: abs(kv[1] - level))
            ratios.append(abs(level - value) / value / flat if flat > 0 else np.inf)
            lines.append(f"width {key} [{start:.3g}, {end:.3g}] at {level:.5g} (flatness "
                         f"{flat:.2g}) ~ {name} {value:.5g}")  # fmt: skip
    worst = max(ratios) if ratios else np.nan
    records.append(bound_check(
        f"{NAME}.shared_plateaus", "every later plateau of a net of width m > 2 sits at the "
        "critical level of a narrower net (max |level - value| / value / flatness)", SOURCE, 1.0,
        worst, cfg, figure_path,
        "catalogue: linear limit " f"{catalogue['linear limit']:.5g}; " + "; ".join(
            f"width {m} {v['level']:.7g} ("
            + ("" if f"width {m}" in catalogue else "no level yet, left out: ")
            + f"{v['kind']}: flow to t = {PROTOCOL['t_long']:.0e} "
            f"then Levenberg-Marquardt, |grad|/scale {v['grad_relative']:.1e}, counts "
            f"{tuple(v['counts'])}; flow: |grad| {v['grad']:.1e}, |theta| {v['norm'][0]:.4g} -> "
            f"{v['norm'][1]:.4g} and loss drift {v['drift']:.1e} over the last decade)"
            for m, v in data["narrow"].items()) + "; plateaus: " + "; ".join(lines)))  # fmt: skip

    red = data["reduction"]
    if red is not None:
        records.append(relative_check(
            f"{NAME}.reduce_loss", f"reduced net (width {red['width']}) has the wide net's loss",
            SOURCE, red["loss_wide"], red["loss_reduced"], REDUCE_RTOL, cfg, figure_path,
            f"wide width {max(SIZES[size]['widths'])} at t = {red['t']:.4g} on its plateau at "
            f"{red['plateau'][2]:.5g}; max output change {red['output_change']:.2e}"))  # fmt: skip
        if red["reduced_level"] is not None:
            kind = red["wide_cross_kind"]
            records.append(Record(
                f"{NAME}.reduce_next", "the wide net lingers (a plateau of loss_stages) where it "
                "crosses the next plateau level of the flow continued from its reduced net",
                SOURCE, "plateau", kind, "stage kind at the crossing", kind == "plateau", cfg,
                figure_path,
                f"reduced net (width {red['width']}) plateau from t = {red['reduced_start']:.3g} "
                f"at {red['reduced_level']:.5g} (flatness {red['reduced_flatness']:.2g}), final "
                f"{red['reduced_final']:.5g}; Levenberg-Marquardt from its final state: "
                f"|grad|/scale {red['critical_grad_relative']:.2g} (converged "
                f"{red['critical_converged']}), loss {red['critical_loss']:.5g}, moved "
                f"{red['critical_moved']:.2g}, |a_k| "
                f"{np.array2string(red['reduced_a'], precision=3)}"
                f"; width {max(SIZES[size]['widths'])} crosses that level at t = "
                f"{red['wide_cross_t']:.3g} with d log L / d log t = {red['wide_cross_slope']:.3f} "
                f"(+-0.1 decade; its median slope after the first plateau "
                f"{red['wide_median_slope']:.3f}; plateau threshold {STAGES['slope_tol']}); its "
                "stages: " + "; ".join(
                    f"{k} [{a:.3g}, {b:.3g}] at {v:.5g}" for k, a, b, v in red["wide_stages"])
                + f"; final {red['wide_final']:.5g}"))  # fmt: skip

    spectrum = data["spectrum"]
    limit2 = catalogue["width 2"]
    lowest = [(int(m), float(np.nanmin(v)) if np.isfinite(v).any() else np.nan)
              for m, v in spectrum["lowest"].items()]  # fmt: skip
    rises = [f"{b[0]} above {a[0]}" for a, b in zip(lowest, lowest[1:], strict=False)
             if not b[1] < a[1]]  # fmt: skip
    per_seed = "; ".join(
        f"{m}: median {np.nanmedian(v):.5g}, {int(np.sum(v < limit2))} below the width-2 "
        f"level, {int(np.sum(np.isnan(v)))} without a later plateau"
        for m, v in spectrum["lowest"].items())  # fmt: skip
    records.append(Record(
        f"{NAME}.loss_spectrum", "wider nets reach lower plateaus: the lowest later plateau "
        "level over all seeds decreases strictly with width", SOURCE, "decreasing",
        "; ".join(rises) or "decreasing", "no width whose lowest level is not below the "
        "next narrower one's", not rises, cfg, figure_path,
        "lowest plateau level over seeds: " + ", ".join(f"{m}: {v:.5g}" for m, v in lowest)
        + f"; the lowest level of each seed ({SIZES[size]['seeds']} seeds per width, a sweep in "
        f"the result store; failed runs: {len(spectrum['failures'])}): {per_seed} (width-2 "
        f"level {limit2:.7g}); plateau levels per width: "
        + "; ".join(f"{m}: {np.array2string(np.sort(v), precision=4)}"
                    for m, v in spectrum["levels"].items())))  # fmt: skip
    return attach_findings(records, FINDINGS)


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=3, width=3.4, height=2.7)
    ax = axes[0, 0]
    colours = {}
    for key, run in data["runs"].items():
        keep = run["t"] > 0
        (line,) = ax.loglog(run["t"][keep], run["loss"][keep], lw=1.1, label=f"m = {key}")
        colours[key] = line.get_color()
    for k, (name, value) in enumerate(data["catalogue"].items()):
        ax.axhline(value, color="0.3", lw=0.8, ls=("--", ":", "-.")[k % 3], label=name)
    red = data["reduction"]
    if red is not None:
        ax.loglog(red["reduced_t"][1:], red["reduced_loss"][1:], color="black", lw=1.6, ls="--",
                  label=f"reduced to m = {red['width']}")  # fmt: skip
    ax.set(xlabel="time t", ylabel="loss", title="(a) widths share plateau levels")
    ax.legend(loc="lower left", fontsize=6, ncol=2)

    ax = axes[0, 1]
    levels = data["spectrum"]["levels"]
    values = np.concatenate([v for v in levels.values() if v.size]) if levels else np.array([])
    if values.size:
        bins = np.geomspace(values.min() / 1.5, values.max() * 1.5, 30)
        for m, v in levels.items():
            ax.hist(v, bins=bins, histtype="step", lw=1.3, label=f"m = {m}")
        ax.set_xscale("log")
    ax.set(xlabel="plateau level", ylabel="count", title="(b) loss spectrum over seeds")
    ax.legend(loc="upper left", fontsize=7)

    ax = axes[0, 2]
    for k, ev in enumerate(data["counts"]["eigenvalues"]):
        ax.plot(np.full(ev.size, 2 + k), ev, "_", ms=14, mew=1.5, color="tab:blue")
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks([2, 3, 4])
    ax.set(xlabel="width after splits", ylabel="Hessian eigenvalue",
           title="(c) split width-2 minimum")  # fmt: skip
    return save(fig, base)
