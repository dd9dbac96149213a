"""Dropout ([ZX24]): dropout GD follows the flow of R + R1, and condenses from a normal init.

The setting of [ZX24] (docs/theory.md §18): tanh two-layer nets with bias, target
``tanh(x - 6) + tanh(x + 6)`` on n points evenly spaced in [-10, 10], a linear-regime
initialization (``gamma = 0.5, gamma' = 0``: both layers N(0, m^-1/2)), keep
probability p = 0.9 (``p = 1``: no dropout).  Condensation is measured as in
``feature_evolution``: ``N_eff``, the exponential of the entropy of the amplitude mass
``|a_k| |(w_k, b_k)|`` over the orientation clusters of ``(w_k, b_k)`` (10 degrees).

(a) **Small learning rate.** Width ``olr.width``, from one initialization: dropout GD
    (p = 0.8) at three rates, ``olr.seeds`` seeds each, against the flow of R + R1
    (dopri5, rtol 1e-11) at ``t = olr.t``.  Records: the log-log slope, against the
    rate, of the relative distance between the seed-mean state and the flow's state,
    and of ``|mean R - R_flow|`` (each 1 +- 0.15); ``mean R1`` against the flow's R1 in
    standard errors of the mean (<= 3 at every rate: R1's O(lr) part is below the
    seeds' noise here, whose size for a mean over S seeds is O(sqrt(lr/S)) against
    the bias's O(lr)).  Over the seeds: the RMS distance of means of g seeds from the
    mean of all (corrected for its own noise, ``sqrt(msd / (1 - g/S))``) against g,
    slope -1/2 +- 0.15.
(b) **Condensation.** Width ``width``: GD (rate ``lr``) with p = 1 and with p = 0.9, and
    the flow of R + R1, to ``t_c``; predicted: the dropout runs condense,
    ``N_eff <= N_eff(p = 1) / 2`` (records for GD and the flow), and the dropout GD
    run is the flow's (relative difference of R at ``t_c`` <= 0.05).  The flow
    continued to ``t_late`` against the flow of R alone there: the same ratio.
(c) **Leaving a non-condensed minimum.** The flow of R to ``t_late`` (small loss,
    spread features), then R1 switched on (flow of R + R1) for ``t_c``: ``N_eff``
    after over before, predicted <= 1/2; the relative distance moved (RD) against
    that of continuing with R alone for the same time, in the note.
(d) **Small initialization against dropout.** The flow of R from ``gamma = 4``
    (the condensed regime) and the flow of R + R1 from the normal init, to ``t_late``:
    both condensed at ``t_c``, ``max(N_eff) <= N_eff(p = 1 at t_c) / 2``; the times to
    the loss ``level`` and the losses at ``t_late`` are in the note (the small
    initialization stays on the plateau of the best linear fit, R = 0.0995, up to
    t_late; measured once: still there at t = 2e6).

References
----------
.. [ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024.
   arXiv:2207.05952.
"""

from __future__ import annotations

import numpy as np

import flowsim as fs
import flowsim.measure as fm
from flowsim.validation._record import Finding, Record, attach_findings, relative_check
from flowsim.validation._style import figure, save
from flowsim.validation.feature_evolution import effective_orientations

NAME = "dropout"
CLAIM = "dropout GD follows the flow of R + R1 and condenses a normal initialization"
SOURCE = "[ZX24]; docs/theory.md §18"

SIZES = {
    "quick": {"width": 500, "n": 50, "lr": 1e-3, "t_c": 100.0, "t_late": 1000.0,
              "olr": {"width": 20, "t": 5.0, "lrs": [0.01, 0.005, 0.0025], "seeds": 400,
                      "groups": [5, 20, 80]}},
    # full: 4x the seeds of the small-rate part (the noise-limited one); the condensation
    # parts at the quick size (width 1000 on 100 points took over 40 min on 2 loaded cores)
    "full": {"width": 500, "n": 50, "lr": 1e-3, "t_c": 100.0, "t_late": 1000.0,
             "olr": {"width": 20, "t": 5.0, "lrs": [0.01, 0.005, 0.0025], "seeds": 1600,
                     "groups": [5, 20, 80, 320]}},
}  # fmt: skip
PROTOCOL = {
    "keep": 0.9,
    "gamma": 0.5,
    "gamma_small": 4.0,
    "seed": 0,
    "olr_keep": 0.8,
    "level": 0.2,
    "rtol": 1e-9,
    "atol": 1e-12,
    "rtol_small": 1e-7,
    "atol_small": 1e-10,
}
# rtol_small: the small-initialization flow sits on the linear-fit plateau (R = 0.0995) from
# t ~ 10 on, where auto's BDF at rtol 1e-9 (it runs at rtol / 100) takes 227 s to t = 1e3
# and 1e-7 5 s, with the same loss to 1e-10 and the same N_eff (measured)
SLOPE_TOL = 0.15
CONDENSED = 0.5
AGREE = 0.05
FINDINGS = {
    f"{NAME}.small_lr_loss": Finding(
        "at 400 seeds (quick) the seed-mean R is noise-limited at the smallest rate: "
        "|mean R - R_flow| = 7.39e-4, 2.73e-4, 9.61e-5 at lr 0.01, 0.005, 0.0025, the last "
        "2.3 standard errors (4.2e-5), since the noise of a mean over S seeds is "
        "O(sqrt(lr/S)) against the bias's O(lr); the slope is 1.47.  With 1600 seeds "
        "(the full size; measured once) the differences are 6.74e-4, 2.60e-4, 1.44e-4: "
        "slope 1.11",
        1.4707,
        0.005,
    ),
    f"{NAME}.condensation_late": Finding(
        "the condensation of the flow of R + R1 is transient at this size: N_eff falls from "
        "16.6 (init) to 6.8 at t = 100 (two orientation groups near +-1.5 rad, the "
        "features of tanh(x +- 6)) but is back at 15.2 at t = 1000 against 16.6 for the flow "
        "of R (quick).  R1 = (q/2n) sum_k |u_k|^2 is least, at a fixed output, when the "
        "units' outputs are EQUAL (derivations/dropout.py): once the two features are "
        "fitted, it spreads the output over all units, whose amplitudes shrink onto smooth "
        "arcs over every orientation (figure), so the amplitude-weighted count rises again",
        0.92,
        0.05,
    ),
}


def data(n: int):
    x = np.linspace(-10.0, 10.0, n)
    return x[:, None], np.tanh(x - 6.0) + np.tanh(x + 6.0)


def _flow(net, theta0, X, y, t_end, save, **options):
    return fs.simulate(net, theta0, X, y, t_end=t_end, save=save, rtol=PROTOCOL["rtol"],
                       atol=PROTOCOL["atol"], progress=False, **options)  # fmt: skip


def _small_lr(cfg, X, y) -> dict:
    net = fs.TwoLayer("tanh", cfg["width"], 1)
    theta0 = net.init(PROTOCOL["seed"], gamma=PROTOCOL["gamma"], gamma_prime=0.0)
    p, t = PROTOCOL["olr_keep"], cfg["t"]
    flow = fs.simulate(net, theta0, X, y, t_end=t, method="dopri5", rtol=1e-11, atol=1e-13,
                       penalty=fs.penalty.dropout(p), save=[0.0, t], progress=False)  # fmt: skip
    out = {"flow_theta": flow.theta_final, "flow_R": float(flow.loss[-1]), "rates": [],
           "flow_R1": fs.theory.dropout_penalty(net, flow.theta_final, X, y, p)}  # fmt: skip
    for lr in cfg["lrs"]:
        thetas = np.array([
            fs.simulate(net, theta0, X, y, t_end=t, method="gd", dt=lr, dropout=p, seed=s,
                        save=[0.0, t], save_state="final", progress=False).theta_final
            for s in range(cfg["seeds"])
        ])  # fmt: skip
        R = np.array([net.loss(th, X, y) for th in thetas])
        R1 = np.array([fs.theory.dropout_penalty(net, th, X, y, p) for th in thetas])
        mean = thetas.mean(axis=0)
        out["rates"].append({
            "lr": lr, "mean_theta": mean, "R_mean": R.mean(), "R_se": R.std() / np.sqrt(R.size),
            "R1_mean": R1.mean(), "R1_se": R1.std() / np.sqrt(R1.size),
            "R_at_mean": net.loss(mean, X, y),
            "R1_at_mean": fs.theory.dropout_penalty(net, mean, X, y, p),
        })  # fmt: skip
    out["last_thetas"] = thetas  # the smallest rate's runs, for the seed average
    return out


def _feature(net, theta):
    f = fm.feature_map(net, theta)
    return {"angles": f.angles, "amplitudes": f.amplitudes, "W": net.unpack(theta)["W"]}


def simulate(size: str) -> dict:
    cfg = SIZES[size]
    X, y = data(cfg["n"])
    out = {"olr": _small_lr(cfg["olr"], X, y), "t_c": cfg["t_c"]}
    net = fs.TwoLayer("tanh", cfg["width"], 1)
    theta0 = net.init(PROTOCOL["seed"], gamma=PROTOCOL["gamma"], gamma_prime=0.0)
    keep, t_c, t_late, lr = PROTOCOL["keep"], cfg["t_c"], cfg["t_late"], cfg["lr"]
    penalty = fs.penalty.dropout(keep)
    runs = {
        "gd p=1": fs.simulate(net, theta0, X, y, t_end=t_c, method="gd", dt=lr,
                              save_state="final", progress=False),
        f"gd p={keep:g}": fs.simulate(net, theta0, X, y, t_end=t_c, method="gd", dt=lr,
                                      dropout=keep, save_state="final", progress=False),
        "flow R+R1": _flow(net, theta0, X, y, t_late, np.geomspace(1e-2, t_late, 120),
                           penalty=penalty),
        "flow R": _flow(net, theta0, X, y, t_late, np.geomspace(1e-2, t_late, 120)),
    }  # fmt: skip
    at = {name: run.theta[np.argmin(np.abs(run.state_t - t_c))] for name, run in runs.items()}
    out["curves"] = {name: (run.t, run.loss) for name, run in runs.items()}
    out["features_c"] = {name: _feature(net, theta) for name, theta in at.items()}
    out["loss_c"] = {name: float(net.loss(theta, X, y)) for name, theta in at.items()}
    out["rd_c"] = {name: float(np.linalg.norm(theta - theta0) / np.linalg.norm(theta0))
                   for name, theta in at.items()}  # fmt: skip
    out["features_late"] = {name: _feature(net, runs[name].theta_final)
                            for name in ("flow R+R1", "flow R")}  # fmt: skip
    out["features_init"] = _feature(net, theta0)
    # (c) leave the flow of R's end state with R1 switched on, or with R alone
    start = runs["flow R"].theta_final
    leave = {name: _flow(net, start, X, y, t_c, [0.0, t_c], **options).theta_final
             for name, options in (("R+R1", {"penalty": penalty}), ("R", {}))}  # fmt: skip
    out["leave"] = {
        "before": _feature(net, start),
        "after": {name: _feature(net, theta) for name, theta in leave.items()},
        "rd": {name: float(np.linalg.norm(theta - start) / np.linalg.norm(start))
               for name, theta in leave.items()},
        "loss_before": float(net.loss(start, X, y)),
    }  # fmt: skip
    # (d) to the loss level: small initialization (R), normal initialization (R + R1)
    small = net.init(PROTOCOL["seed"], gamma=PROTOCOL["gamma_small"], gamma_prime=0.0)
    out["level"] = {}
    for name, theta, options in (("small init", small, {}),
                                 ("normal init, R+R1", theta0, {"penalty": penalty})):  # fmt: skip
        run = fs.simulate(net, theta, X, y, t_end=t_late, rtol=PROTOCOL["rtol_small"],
                          atol=PROTOCOL["atol_small"], progress=False,
                          save=np.union1d([0.0, t_c], np.geomspace(1e-2, t_late, 120)),
                          events=[fs.loss_below(PROTOCOL["level"], terminal=False)],
                          **options)  # fmt: skip
        event = run.event("loss_below")
        out["level"][name] = {"t": event.t if event else float("nan"),
                              "feature": _feature(net, run.theta[run.state_t == t_c][0]),
                              "curve": (run.t, run.loss),
                              "final_loss": float(run.loss[-1])}  # fmt: skip
    return out


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _neff(feature) -> float:
    return effective_orientations(feature["W"], feature["amplitudes"])


def _slope_record(name, claim, x, y, target, config, figure_path, note):
    slope = _slope(x, y)
    return Record(name, claim, SOURCE, target, slope, f"+- {SLOPE_TOL:g}",
                  bool(np.isfinite(slope) and abs(slope - target) <= SLOPE_TOL), config,
                  figure_path, note)  # fmt: skip


def _ratio_record(name, claim, value, base, config, figure_path, note):
    ratio = value / base
    return Record(name, claim, SOURCE, CONDENSED, ratio, f"<= {CONDENSED:g}",
                  bool(ratio <= CONDENSED), config, figure_path, note)  # fmt: skip


def evaluate(data: dict, size: str, figure_path=None) -> list:
    cfg = SIZES[size]
    config = {**cfg, **PROTOCOL}
    olr = data["olr"]
    rates = olr["rates"]
    lrs = np.array([r["lr"] for r in rates])
    scale = np.linalg.norm(olr["flow_theta"])
    d_theta = np.array([np.linalg.norm(r["mean_theta"] - olr["flow_theta"]) / scale
                        for r in rates])  # fmt: skip
    d_R = np.array([abs(r["R_mean"] - olr["flow_R"]) for r in rates])
    z_all = np.array([abs(r["R1_mean"] - olr["flow_R1"]) / r["R1_se"] for r in rates])
    z_R1 = float(z_all.max())
    table = "; ".join(
        f"lr {r['lr']:g}: |dtheta| {d:.3g}, R at mean {r['R_at_mean']:.6g}, mean R "
        f"{r['R_mean']:.6g} +- {r['R_se']:.1g}, mean R1 {r['R1_mean']:.6g} +- {r['R1_se']:.1g}"
        for r, d in zip(rates, d_theta, strict=True)
    )
    flow_note = (f"flow of R + R1 at t = {cfg['olr']['t']:g}: R {olr['flow_R']:.6g}, "
                 f"R1 {olr['flow_R1']:.6g}; ")  # fmt: skip
    records = [
        _slope_record(
            f"{NAME}.small_lr_theta",
            "seed-mean dropout GD -> flow of R + R1, distance O(lr)",
            lrs,
            d_theta,
            1.0,
            config,
            figure_path,
            flow_note + table,
        ),  # fmt: skip
        _slope_record(
            f"{NAME}.small_lr_loss",
            "seed-mean R of dropout GD -> the flow's R, O(lr)",
            lrs,
            d_R,
            1.0,
            config,
            figure_path,
            "|mean R - R_flow| "
            + ", ".join(f"{v:.3g}" for v in d_R)
            + "; standard errors "
            + ", ".join(f"{r['R_se']:.2g}" for r in rates),
        ),  # fmt: skip
        Record(
            f"{NAME}.small_lr_penalty",
            "seed-mean R1 of dropout GD = the flow's R1 within the seeds' noise",
            SOURCE,
            0.0,
            z_R1,
            "<= 3 standard errors",
            bool(z_R1 <= 3.0),
            config,
            figure_path,
            "|mean R1 - R1_flow| / SE "
            + ", ".join(f"{v:.2f}" for v in z_all)
            + ": R1's O(lr) part is below the noise of these seeds",
        ),
    ]
    thetas = olr["last_thetas"]
    S = thetas.shape[0]
    groups = np.array(cfg["olr"]["groups"])
    spread = []
    for g in groups:
        means = thetas[: S - S % g].reshape(-1, g, thetas.shape[1]).mean(axis=1)
        msd = np.mean(np.sum((means - thetas.mean(axis=0)) ** 2, axis=1))
        spread.append(np.sqrt(msd / (1.0 - g / S)) / scale)
    records.append(_slope_record(
        f"{NAME}.seed_average", "mean of g seeds: distance from the mean of all ~ g^-1/2",
        groups, np.array(spread), -0.5, config, figure_path,
        f"lr {lrs[-1]:g}, {S} seeds; RMS relative distance " + ", ".join(
            f"g = {g}: {s:.3g}" for g, s in zip(groups, spread, strict=True))))  # fmt: skip

    keep = PROTOCOL["keep"]
    neff = {name: _neff(f) for name, f in data["features_c"].items()}
    base = neff["gd p=1"]
    n_init = _neff(data["features_init"])
    note = (f"N_eff at t = {cfg['t_c']:g}: " + ", ".join(f"{k} {v:.3g}" for k, v in neff.items())
            + f" (init {n_init:.3g}); RD " + ", ".join(
                f"{k} {v:.3g}" for k, v in data["rd_c"].items()))  # fmt: skip
    records += [
        _ratio_record(
            f"{NAME}.condensation_gd",
            f"dropout GD (p = {keep:g}) condenses a normal init: N_eff / N_eff(p = 1)",
            neff[f"gd p={keep:g}"],
            base,
            config,
            figure_path,
            note,
        ),  # fmt: skip
        _ratio_record(
            f"{NAME}.condensation_flow",
            "the flow of R + R1 condenses it too",
            neff["flow R+R1"],
            base,
            config,
            figure_path,
            note,
        ),  # fmt: skip
        relative_check(
            f"{NAME}.gd_is_the_flow",
            f"R of dropout GD at t = {cfg['t_c']:g} is the flow of R + R1's",
            SOURCE,
            data["loss_c"]["flow R+R1"],
            data["loss_c"][f"gd p={keep:g}"],
            AGREE,
            config,
            figure_path,
            ", ".join(f"{k} {v:.5g}" for k, v in data["loss_c"].items()),
        ),  # fmt: skip
    ]
    late = {name: _neff(f) for name, f in data["features_late"].items()}
    records.append(_ratio_record(
        f"{NAME}.condensation_late", f"still condensed at t = {cfg['t_late']:g}: N_eff(R + R1) "
        "/ N_eff(R)", late["flow R+R1"], late["flow R"], config, figure_path,
        f"N_eff at t = {cfg['t_late']:g}: R + R1 {late['flow R+R1']:.3g}, R "
        f"{late['flow R']:.3g}"))  # fmt: skip

    leave = data["leave"]
    before = _neff(leave["before"])
    after = {name: _neff(f) for name, f in leave["after"].items()}
    records.append(_ratio_record(
        f"{NAME}.leave_minimum", "R1 switched on at a non-condensed low-loss state condenses "
        "it: N_eff after / before", after["R+R1"], before, config, figure_path,
        f"from the flow of R at t = {cfg['t_late']:g} (loss {leave['loss_before']:.3g}, "
        f"N_eff {before:.3g}), {cfg['t_c']:g} more: N_eff with R1 {after['R+R1']:.3g}, "
        f"without {after['R']:.3g}; RD with R1 {leave['rd']['R+R1']:.3g}, without "
        f"{leave['rd']['R']:.3g}"))  # fmt: skip

    level = data["level"]
    n_level = {name: _neff(v["feature"]) for name, v in level.items()}
    times = "; ".join(
        f"{k}: N_eff at t = {cfg['t_c']:g} {n_level[k]:.3g}, loss {PROTOCOL['level']:g} "
        f"reached at t = {v['t']:.4g}, loss at t = {cfg['t_late']:g} {v['final_loss']:.4g}"
        for k, v in level.items()
    )
    records.append(_ratio_record(
        f"{NAME}.small_init_equivalence", "small init and normal init + R1 both condensed at "
        f"t = {cfg['t_c']:g}: max N_eff / N_eff(p = 1)", max(n_level.values()), base,
        config, figure_path, times))  # fmt: skip
    return attach_findings(records, FINDINGS)


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=4, nrows=2, width=2.8, height=2.3)
    keep = PROTOCOL["keep"]
    panels = [("gd p=1", "GD"), (f"gd p={keep:g}", f"GD, dropout {keep:g}"),
              ("flow R+R1", "flow of R + R1")]  # fmt: skip
    for ax, (name, title) in zip(axes[0, :3], panels, strict=True):
        f = data["features_c"][name]
        fm.plot_feature_map(f["angles"], f["amplitudes"], ax=ax, s=5, color="tab:blue")
        ax.set_title(f"{title}, t = {data['t_c']:g}")
        ax.set_xlabel(r"orientation of $(w_k, b_k)$ (rad)")
    axes[0, 0].set_ylabel(r"amplitude $|a_k||(w_k, b_k)|$")
    f = data["features_late"]["flow R+R1"]
    fm.plot_feature_map(f["angles"], f["amplitudes"], ax=axes[0, 3], s=5, color="tab:red")
    axes[0, 3].set_title("flow of R + R1, late")
    axes[0, 3].set_xlabel(r"orientation (rad)")
    ax = axes[1, 0]
    for name, (t, loss) in data["curves"].items():
        keep_t = t > 0
        ax.loglog(t[keep_t], loss[keep_t], label=name)
    for name, v in data["level"].items():
        t, loss = v["curve"]
        ax.loglog(t[t > 0], loss[t > 0], ls="--", label=name)
    ax.set_xlabel("t")
    ax.set_ylabel("R")
    ax.legend(fontsize=6, loc="lower left")
    ax = axes[1, 1]
    rates = data["olr"]["rates"]
    lrs = np.array([r["lr"] for r in rates])
    scale = np.linalg.norm(data["olr"]["flow_theta"])
    d = [np.linalg.norm(r["mean_theta"] - data["olr"]["flow_theta"]) / scale for r in rates]
    ax.loglog(lrs, d, "o-", label="seed-mean state")
    ax.loglog(lrs, d[0] * lrs / lrs[0], "k:", label="slope 1")
    ax.set_xticks(lrs, [f"{v:g}" for v in lrs], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("learning rate")
    ax.set_ylabel("distance to the R + R1 flow")
    ax.legend()
    leave = data["leave"]
    for ax, (f, title) in zip(axes[1, 2:], ((leave["before"], "R's flow, late"),
                                            (leave["after"]["R+R1"], "then R1 switched on")),
                              strict=True):  # fmt: skip
        fm.plot_feature_map(f["angles"], f["amplitudes"], ax=ax, s=5, color="tab:green")
        ax.set_title(title)
        ax.set_xlabel("orientation (rad)")
    fig.suptitle("Dropout [ZX24]: tanh(x - 6) + tanh(x + 6), normal initialization")
    return save(fig, base)
