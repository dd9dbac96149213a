"""Escape times from small initialization ([ZZJLZX22], [CL24]; docs/theory.md §7-8).

Prediction: the escape time ``T_esc`` (first time the largest neuron's norm,
``|w_k|`` or for three layers the largest first-layer row ``|V_j|``, reaches a
fixed ``delta``, original units) of the full gradient flow from
``theta0 = eps * theta_hat`` tends to the leading-order time ``T_LO(delta)``
of :func:`flowsim.theory.blowup_time`, ``T_esc / T_LO -> 1`` as eps -> 0, and

* two layers, p >= 2 (xtanh, x2tanh): ``T_esc ~ eps^-(p-1)`` (finite-time blow-up);
* three layers, tanh, p = 1, no second-layer bias ([CL24]): ``T_esc ~ 1/eps``;
* two layers, p = 1 (tanh): no blow-up, ``T_esc = (1/lambda) log(1/eps) + O(1)``,
  ``lambda = |c_1| |v| / alpha``.

Protocol.  1-D input with bias, n = 16 points of ``sin(3x) + sin(6x)/2`` on
[-1, 1.5] (the [ZZJLZX22] set, sparser), a few neurons, one direction
``theta_hat`` (seeded N(0, 1)) scaled by every eps, so the leading-order flow
is exactly self-similar in eps and only the full flow's corrections vary.
``delta = 0.2``: there ``|z| = delta max|x~| = 0.36`` and the next term of
each activation is ``-z^2/3 = 4%`` of the leading monomial (tanh, xtanh and
x2tanh all continue with ``-z^(p+2)/3``), and the loss has dropped by at most
about 3% (tanh; under 1% for the others; reported per case): the escape happens
while the leading order still holds.  Full flow: ``fs.simulate`` (adaptive
dopri5) at ``rtol = 1e-12`` (``T_esc/T_LO - 1`` at the smallest eps changes by
less than 1e-3 of itself against rtol = 1e-10 and 1e-11); ``blowup_time`` at
``rtol = 1e-11``.
The three-layer net has no biases (``bias=False``): with a second-layer bias
and ``mean(y) != 0`` the ``O(eps^2)`` term ``(c_1/alpha) a . b`` leads and the
claim does not apply (docs/theory.md §8; ``blowup_time`` refuses it).

Records per case: ``T_esc/T_LO`` at the smallest eps within 1% of 1 *and*
``|T_esc/T_LO - 1|`` decreasing along the eps sequence; the fitted log-log
slope of ``T_esc`` against ``1/eps`` within 0.05 of ``p - 1`` (three layers: 1);
for p = 1 the fitted slope of ``T_esc`` against ``log(1/eps)`` within 3% of
``1/lambda``.  For p = 1, ``T_esc - T_LO`` tends to a constant (the O(1)), so
the ratio approaches 1 only like ``1/log(1/eps)``: its eps range goes down to
1e-14 (cheap: the plateau lasts ~ log(1/eps)).

Full size (``flowsim validate --full``): the runs are the sweep files
``validation/sweeps/escape_scaling.toml`` (xtanh, x2tanh, three-layer tanh),
``escape_log.toml`` (tanh) and ``escape_gd.toml`` (GD), run through a result
store and read back; ``init.scale = eps`` draws exactly ``eps * theta_hat``.
The flow runs end at the escape event (their ``t_end`` per case only has to lie
past it), so they are the protocol above; the GD runs cannot carry an event
(no dense output) and run to a fixed ``t_end`` 1.5 times the flow's escape
time, with save points dense enough that every iterate around the escape is
saved (checked: otherwise T_GD is nan).  The quick size (CI) runs in process.

Gradient descent (the seed papers trained with GD): forward Euler with step
``lr`` on the same flow, p = 2 at the largest eps.  The escape is located on
the iterates (log-linear interpolation of the largest norm between two
iterates); ``T_GD - T_flow = O(lr)`` is checked as a log-log slope of 1 within
0.05 over halving learning rates.  Modified-equation estimate for a balanced
neuron already on its extremum: ``T_GD - T_flow = (p lr/2) log(delta/r0)``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

import flowsim as fs
from flowsim.theory.blowup import blowup_time
from flowsim.theory.stages import fit_escape_exponent, fit_plateau_slope, plateau_slope
from flowsim.validation._cases import sin1d
from flowsim.validation._record import Record, relative_check
from flowsim.validation._runner import SWEEP_DIR
from flowsim.validation._style import figure, save

NAME = "escape_times"
CLAIM = "T_esc/T_LO(delta) -> 1; T_esc ~ eps^-(p-1) (p >= 2), ~1/eps (3 layers), ~log(1/eps)/lambda"
SOURCE = "[ZZJLZX22]; [CL24]; docs/theory.md §7-8"

# case -> (model, activation, width(s), eps grid)
QUICK = {
    "tanh": ("two_layer", "tanh", 4, [10.0**-k for k in range(2, 15, 2)]),
    "xtanh": ("two_layer", "xtanh", 4, [1e-2, 1e-3, 1e-4, 1e-5]),
    "x2tanh": ("two_layer", "x2tanh", 4, [1e-2, 1e-3, 1e-4, 1e-5]),
    "three_layer_tanh": ("three_layer", "tanh", (4, 4), [1e-2, 1e-3, 1e-4, 1e-5]),
}
_HALF_DECADES = [10.0 ** (-k / 2) for k in range(4, 13)]  # 1e-2 ... 1e-6
FULL = {
    "tanh": ("two_layer", "tanh", 8, [10.0**-k for k in range(2, 17)]),
    "xtanh": ("two_layer", "xtanh", 8, _HALF_DECADES),
    "x2tanh": ("two_layer", "x2tanh", 8, _HALF_DECADES),
    "three_layer_tanh": ("three_layer", "tanh", (8, 6), _HALF_DECADES),
}
SIZES = {
    "quick": {"cases": QUICK, "gd_lr": [0.2, 0.1, 0.05]},
    "full": {"cases": FULL, "gd_lr": [0.4, 0.2, 0.1, 0.05, 0.025]},
}
PROTOCOL = {
    "n": 16,
    "seed": 3,
    "delta": 0.2,
    "rtol": 1e-12,
    "theory_rtol": 1e-11,
    "gd_case": "xtanh",
}
SWEEPS = {"full": ("escape_scaling.toml", "escape_log.toml", "escape_gd.toml")}
"""The full size runs these sweep files (validation/sweeps/) through a result store."""
FULL_T_END = {"tanh": 1e4, "xtanh": 1e8, "x2tanh": 1e14, "three_layer_tanh": 1e8}
"""Full size: ``t_end`` of the flow runs per case, past the escape at the smallest eps
(the escape event ends the run; T_LO(delta) there: 290, 2.3e6, 4.7e11, 5.1e6)."""
FULL_GD = {"t_end": 330.0, "n_save": 150002}
"""Full size, GD: 1.5 times the flow's escape time (T_LO = 214 at eps = 1e-2), and save
points log-spaced over six decades so dense (ratio 1 + 9.2e-5) that at the escape every
iterate of the smallest learning rate is saved."""
RATIO_RTOL = 0.01
EXPONENT_ATOL = 0.05
LOG_SLOPE_RTOL = 0.03
GD_SLOPE_ATOL = 0.05


def _net(model, act, width):
    if model == "three_layer":
        return fs.ThreeLayer(act, width, 1, bias=False)
    return fs.TwoLayer(act, width, 1)


def _escape(net, theta0, X, y, t_cap):
    delta = PROTOCOL["delta"]
    traj = fs.simulate(
        net,
        theta0,
        X,
        y,
        t_end=t_cap,
        rtol=PROTOCOL["rtol"],
        events=[fs.escape(norm=delta)],
        save_state="final",
        progress=False,
    )
    event = traj.event("escape")
    return (event.t, event.loss) if event else (math.nan, math.nan), traj


def _gd_escape(net, theta0, X, y, lr, t_flow):
    """Escape time of gradient descent, located on the iterates (log-linear in the norm)."""
    delta = PROTOCOL["delta"]
    n_iter = int(math.ceil(1.5 * t_flow / lr))
    t_end = n_iter * lr
    save = np.minimum(lr * np.arange(n_iter + 1), t_end)
    traj = fs.simulate(
        net,
        theta0,
        X,
        y,
        t_end=t_end,
        method="gd",
        dt=lr,
        save=save,
        save_state="final",
        progress=False,
    )
    r = traj.max_neuron_norm
    above = np.flatnonzero(r >= delta)
    if above.size == 0 or above[0] == 0:
        return math.nan
    i = above[0]
    frac = (math.log(delta) - math.log(r[i - 1])) / (math.log(r[i]) - math.log(r[i - 1]))
    return float(traj.t[i - 1] + frac * (traj.t[i] - traj.t[i - 1]))


# -- full size: fixed run configs, run as sweeps ------------------------------------------


def _run_dict(model, act, width, eps, solver, events) -> dict:
    if model == "three_layer":
        net = {"kind": "three_layer", "activation": act, "widths": list(width), "bias": False}
    else:
        net = {"kind": "two_layer", "activation": act, "width": int(width)}
    return {"model": net,
            "data": {"kind": "sin1d", "params": {"n": PROTOCOL["n"], "low": -1.0, "high": 1.5,
                                                 "target": "sin(3*x) + sin(6*x)/2"}},
            "init": {"seed": PROTOCOL["seed"], "scale": float(eps)},
            "solver": dict(solver), "events": [dict(e) for e in events]}  # fmt: skip


def full_configs(size: str = "full") -> dict:
    """The runs of the sweep-backed size: ``{"flow": {(case, eps): RunConfig}, "gd": {lr:
    RunConfig}}`` (tests/test_validation_sweeps.py checks that they are the expansion of
    :data:`SWEEPS`).  ``init.scale = eps`` draws ``eps * theta_hat`` bitwise (one seed)."""
    from flowsim.config import RunConfig

    cfg = SIZES[size]
    event = {"kind": "escape_norm", "threshold": PROTOCOL["delta"], "units": "original",
             "terminal": True}  # fmt: skip
    flow = {}
    for key, (model, act, width, eps_list) in cfg["cases"].items():
        solver = {"method": "dopri5", "t_end": FULL_T_END[key], "rtol": PROTOCOL["rtol"],
                  "atol": 1e-12, "save_state": "final"}  # fmt: skip
        for eps in eps_list:
            flow[key, eps] = RunConfig.from_dict(_run_dict(model, act, width, eps, solver, [event]))
    model, act, width, eps_list = cfg["cases"][PROTOCOL["gd_case"]]
    gd = {}
    for lr in cfg["gd_lr"]:
        solver = {"method": "gd", "dt": float(lr), **FULL_GD, "save_state": "final"}
        gd[lr] = RunConfig.from_dict(_run_dict(model, act, width, eps_list[0], solver, []))
    return {"flow": flow, "gd": gd}


def _gd_escape_on(traj) -> float:
    """Escape time of a GD trajectory, log-linear between the saved iterates around it
    (nan unless they are consecutive iterates)."""
    r, t = traj.max_neuron_norm, traj.t
    above = np.flatnonzero(r >= PROTOCOL["delta"])
    if above.size == 0 or above[0] == 0:
        return math.nan
    i = above[0]
    lr = float(traj.config["run_config"]["solver"]["dt"])
    if t[i] - t[i - 1] > lr * (1 + 1e-9):
        return math.nan
    lo, hi = math.log(r[i - 1]), math.log(r[i])
    frac = (math.log(PROTOCOL["delta"]) - lo) / (hi - lo)
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def _simulate_full(size, *, store=None, scheduler="local", workers=None, progress=True):
    from flowsim.config import build
    from flowsim.store import store_key
    from flowsim.validation._runner import sweep_records

    files = [SWEEP_DIR / name for name in SWEEPS[size]]
    store, records = sweep_records(files, store=store, scheduler=scheduler, workers=workers,
                                   progress=progress)  # fmt: skip
    configs = full_configs(size)
    delta = PROTOCOL["delta"]
    out = {"cases": {}, "failures": []}
    for key, (model, _, _, eps_list) in SIZES[size]["cases"].items():
        rows = []
        for eps in eps_list:
            cfg = configs["flow"][key, eps]
            record = records[store_key(cfg)]
            net, theta0, X, y, _ = build(cfg)
            pred = blowup_time(net, theta0, X, y, delta=delta, rtol=PROTOCOL["theory_rtol"])
            event = record.get("summary", {}).get("events", {}).get("escape")
            if record["status"] != "ok" or event is None:
                out["failures"].append((key, eps, record["reason"], record["message"]))
                t_esc, loss_esc = math.nan, math.nan
            else:
                t_esc, loss_esc = event["t"], event["loss"]
            rows.append((eps, t_esc, pred.network_to_delta, pred.network,
                         1 - loss_esc / net.loss(theta0, X, y),
                         record.get("summary", {}).get("nfev", 0)))  # fmt: skip
        eps, t_esc, t_lo, t_star, drop, nfev = (np.array(col) for col in zip(*rows, strict=True))
        case = {"eps": eps, "t_esc": t_esc, "t_lo": t_lo, "t_star": t_star, "loss_drop": drop,
                "nfev": nfev, "p": int(net.activation.multiplicity), "model": model}  # fmt: skip
        if model == "two_layer" and case["p"] == 1:
            case["lambda"] = pred.growth_rate
            case["slope_theory"] = plateau_slope(net, X, y)
        out["cases"][key] = case

    eps_list = SIZES[size]["cases"][PROTOCOL["gd_case"]][3]
    lrs = np.array(SIZES[size]["gd_lr"], dtype=float)
    t_gd = []
    for lr in SIZES[size]["gd_lr"]:
        cfg = configs["gd"][lr]
        record = records[store_key(cfg)]
        if record["status"] != "ok":
            out["failures"].append(("gd", lr, record["reason"], record["message"]))
            t_gd.append(math.nan)
            continue
        t_gd.append(_gd_escape_on(store.load(store_key(cfg))))
    net, theta0, X, y, _ = build(configs["gd"][lrs[0]])
    pred = blowup_time(net, theta0, X, y, delta=delta)
    out["gd"] = {
        "lr": lrs,
        "t_gd": np.array(t_gd),
        "t_flow": out["cases"][PROTOCOL["gd_case"]]["t_esc"][0],
        "eps": eps_list[0],
        "p": int(net.activation.multiplicity),
        "r0_fastest": float(np.linalg.norm(net.unpack(theta0)["W"][pred.fastest])),
    }
    return out


def simulate(size: str, **sweep) -> dict:
    """The runs of ``size``: quick in this process, full from the sweep files
    :data:`SWEEPS` through a result store (``sweep``: ``store``, ``scheduler``,
    ``workers``, ``progress`` of :func:`flowsim.validation._runner.sweep_records`)."""
    if size in SWEEPS:
        return _simulate_full(size, **sweep)
    cfg = SIZES[size]
    X, y = sin1d(PROTOCOL["n"])
    delta = PROTOCOL["delta"]
    out = {"cases": {}}
    for key, (model, act, width, eps_list) in cfg["cases"].items():
        net = _net(model, act, width)
        theta_hat = net.init(PROTOCOL["seed"], scale=1.0)
        rows = []
        for eps in eps_list:
            theta0 = eps * theta_hat
            pred = blowup_time(net, theta0, X, y, delta=delta, rtol=PROTOCOL["theory_rtol"])
            (t_esc, loss_esc), traj = _escape(net, theta0, X, y, 3 * pred.network_to_delta)
            rows.append(
                (
                    eps,
                    t_esc,
                    pred.network_to_delta,
                    pred.network,
                    1 - loss_esc / net.loss(theta0, X, y),
                    traj.nfev,
                )
            )
        eps, t_esc, t_lo, t_star, drop, nfev = (np.array(col) for col in zip(*rows, strict=True))
        case = {
            "eps": eps,
            "t_esc": t_esc,
            "t_lo": t_lo,
            "t_star": t_star,
            "loss_drop": drop,
            "nfev": nfev,
            "p": int(net.activation.multiplicity),
            "model": model,
        }
        if model == "two_layer" and case["p"] == 1:
            case["lambda"] = pred.growth_rate
            case["slope_theory"] = plateau_slope(net, X, y)
        out["cases"][key] = case

    # gradient descent at the largest eps of the p = 2 case
    model, act, width, eps_list = cfg["cases"][PROTOCOL["gd_case"]]
    net = _net(model, act, width)
    theta0 = eps_list[0] * net.init(PROTOCOL["seed"], scale=1.0)
    t_flow = out["cases"][PROTOCOL["gd_case"]]["t_esc"][0]
    lrs = np.array(cfg["gd_lr"], dtype=float)
    pred = blowup_time(net, theta0, X, y, delta=delta)
    r0 = float(np.linalg.norm(net.unpack(theta0)["W"][pred.fastest]))
    out["gd"] = {
        "lr": lrs,
        "t_gd": np.array([_gd_escape(net, theta0, X, y, lr, t_flow) for lr in lrs]),
        "t_flow": t_flow,
        "eps": eps_list[0],
        "p": int(net.activation.multiplicity),
        "r0_fastest": r0,
    }
    return out


def _absolute(name, claim, theory, measured, atol, config, figure_path, note):
    ok = math.isfinite(measured) and abs(measured - theory) <= atol
    return Record(
        name,
        claim,
        SOURCE,
        float(theory),
        float(measured),
        f"absolute {atol:g}",
        bool(ok),
        config,
        figure_path,
        note,
    )


def evaluate(data: dict, size: str, figure_path=None) -> list:
    records = []
    for key, case in data["cases"].items():
        model, act, width, _ = SIZES[size]["cases"][key]
        config = {
            **PROTOCOL,
            "case": key,
            "model": model,
            "activation": act,
            "width": list(width) if isinstance(width, tuple) else width,
            "eps": [float(e) for e in case["eps"]],
        }
        p = case["p"]
        ratio = case["t_esc"] / case["t_lo"]
        error = np.abs(ratio - 1)
        monotone = bool(np.all(np.diff(error) < 0))
        close = bool(np.isfinite(ratio[-1]) and error[-1] <= RATIO_RTOL)
        sequence = ", ".join(
            f"{e:.0e}: {r - 1:+.2e}" for e, r in zip(case["eps"], ratio, strict=True)
        )
        note = (
            f"T_esc/T_LO - 1 by eps: {sequence}; "
            f"{'decreasing' if monotone else 'NOT monotone'}; loss at escape at most "
            f"{100 * np.nanmax(case['loss_drop']):.2g}% below R(0); "
            f"T_esc - T_LO = {case['t_esc'][-1] - case['t_lo'][-1]:.4g} at the smallest eps"
        )
        if not (model == "two_layer" and p == 1):  # p = 1: no blow-up, T* undefined
            before = bool(np.all(case["t_esc"] < case["t_star"]))
            note += f"; T_esc {'<' if before else 'NOT <'} T* (LO blow-up) at every eps"
        label = "three-layer tanh" if model == "three_layer" else f"{act} (p = {p})"
        records.append(
            Record(
                f"{NAME}.{key}/ratio",
                f"{label}: T_esc/T_LO(delta) -> 1 as eps -> 0",
                SOURCE,
                1.0,
                float(ratio[-1]),
                f"relative {RATIO_RTOL:g}, |ratio - 1| decreasing in eps",
                close and monotone,
                config,
                figure_path,
                note,
            )
        )
        if model == "two_layer" and p == 1:
            slope = fit_plateau_slope(case["eps"], case["t_esc"])
            records.append(
                relative_check(
                    f"{NAME}.{key}/log_slope",
                    f"{label}: slope of T_esc against log(1/eps) = 1/lambda",
                    SOURCE,
                    case["slope_theory"],
                    slope,
                    LOG_SLOPE_RTOL,
                    config,
                    figure_path,
                    note=f"lambda = |c_1||v|/alpha = {case['lambda']:.6g}; "
                    f"relative error {slope * case['lambda'] - 1:+.2e}",
                )
            )
        else:
            exponent = 1.0 if model == "three_layer" else float(p - 1)
            fit = fit_escape_exponent(case["eps"], case["t_esc"])
            tail = fit_escape_exponent(case["eps"][-2:], case["t_esc"][-2:])
            law = "1/eps" if model == "three_layer" else f"eps^-{p - 1}"
            records.append(
                _absolute(
                    f"{NAME}.{key}/exponent",
                    f"{label}: T_esc ~ {law} (log-log slope)",
                    exponent,
                    fit,
                    EXPONENT_ATOL,
                    config,
                    figure_path,
                    f"fit over eps = {case['eps'][0]:.0e} ... {case['eps'][-1]:.0e}; slope between "
                    f"the two smallest eps {tail:.5f} (the largest eps carries the finite-delta "
                    "term (r0/delta)^(p-1) of T_LO)",
                )
            )

    gd = data["gd"]
    dT = gd["t_gd"] - gd["t_flow"]
    ok_points = np.isfinite(dT) & (dT > 0)
    slope = (
        float(np.polyfit(np.log(gd["lr"][ok_points]), np.log(dT[ok_points]), 1)[0])
        if ok_points.sum() >= 2
        else math.nan
    )
    estimate = gd["p"] / 2 * math.log(PROTOCOL["delta"] / gd["r0_fastest"])
    config = {
        **PROTOCOL,
        "case": PROTOCOL["gd_case"],
        "eps": gd["eps"],
        "lr": [float(v) for v in gd["lr"]],
    }
    note = (
        f"T_flow = {gd['t_flow']:.6g}; (T_GD - T_flow)/lr = "
        + ", ".join(f"{v:.4f}" for v in dT / gd["lr"])
        + f" for lr = {', '.join(f'{v:g}' for v in gd['lr'])}; relative gap "
        f"{dT[-1] / gd['t_flow']:.2e} at the smallest lr; modified-equation estimate "
        f"(p/2) log(delta/r0) = {estimate:.3f} for an aligned balanced neuron"
    )
    records.append(
        _absolute(
            f"{NAME}.{PROTOCOL['gd_case']}/gd_order",
            "GD (learning rate lr) "
            "escapes O(lr) after the flow: log-log slope of T_GD - T_flow "
            "against lr",
            1.0,
            slope,
            GD_SLOPE_ATOL,
            config,
            figure_path,
            note,
        )
    )
    return records


STYLE_BY_CASE = {
    "tanh": ("tab:blue", "o", "tanh, p = 1"),
    "xtanh": ("tab:orange", "s", "xtanh, p = 2"),
    "x2tanh": ("tab:green", "^", "x2tanh, p = 3"),
    "three_layer_tanh": ("tab:purple", "D", "3-layer tanh"),
}


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=2, nrows=2, width=3.5, height=2.8)
    cases = data["cases"]
    delta = PROTOCOL["delta"]

    ax = axes[0, 0]
    for key, case in cases.items():
        if key == "tanh":
            continue
        color, marker, label = STYLE_BY_CASE[key]
        ax.loglog(case["eps"], case["t_lo"], color=color, lw=1)
        ax.loglog(case["eps"], case["t_esc"], marker, color=color, ms=4, mfc="none", label=label)
    ax.plot([], [], color="k", lw=1, label=r"theory $T_{LO}(\delta)$")
    ax.set(
        xlabel=r"init scale $\varepsilon$",
        ylabel=r"escape time $T_{esc}$ (flow time)",
        title=r"power laws: $\varepsilon^{-(p-1)}$, 3-layer $\varepsilon^{-1}$",
    )
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * (high / low) ** 0.5)  # room for the legend above the data
    ax.legend(loc="upper right")

    ax = axes[0, 1]
    case = cases["tanh"]
    color, marker, label = STYLE_BY_CASE["tanh"]
    L = np.log(1 / case["eps"])
    ax.plot(L, case["t_lo"], color=color, lw=1, label=r"theory $T_{LO}(\delta)$")
    ax.plot(L, case["t_esc"], marker, color=color, ms=4, mfc="none", label="full flow")
    ref = case["t_esc"][-1] + case["slope_theory"] * (L - L[-1])
    ax.plot(L, ref, "k:", lw=1, label=rf"slope $1/\lambda = {case['slope_theory']:.3g}$")
    ax.set(
        xlabel=r"$\log(1/\varepsilon)$",
        ylabel=r"escape time $T_{esc}$ (flow time)",
        title="tanh (p = 1): log law",
    )
    ax.legend(loc="upper left")

    ax = axes[1, 0]
    for key, case in cases.items():
        color, marker, label = STYLE_BY_CASE[key]
        error = np.abs(case["t_esc"] / case["t_lo"] - 1)
        ax.loglog(
            case["eps"], error, marker + "-", color=color, ms=4, lw=1, mfc="none", label=label
        )
    ax.axhline(RATIO_RTOL, color="k", ls="--", lw=1, label=f"tolerance {RATIO_RTOL:g}")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(1.0,), numticks=30))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(
        xlabel=r"init scale $\varepsilon$",
        ylabel=r"$|T_{esc}/T_{LO}(\delta) - 1|$",
        title=rf"approach to the leading order ($\delta = {delta:g}$)",
    )
    ax.legend(loc="lower left")

    ax = axes[1, 1]
    gd = data["gd"]
    dT = gd["t_gd"] - gd["t_flow"]
    ax.loglog(gd["lr"], dT, "o", color="tab:red", ms=5, mfc="none", label="GD - flow")
    guide = dT[-1] * gd["lr"] / gd["lr"][-1]
    ax.loglog(gd["lr"], guide, "k:", lw=1, label=r"$\propto$ lr")
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(dT, [f"{v:.3g}" for v in dT])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(gd["lr"])
    ax.set(
        xlabel="learning rate lr",
        ylabel=r"delay $T_{GD} - T_{flow}$",
        title=rf"GD vs flow: xtanh, $\varepsilon = {gd['eps']:g}$",
    )
    ax.legend(loc="upper left")
    fig.suptitle(
        rf"Escape time $T_{{esc}}$: first time $\max_k |w_k|$ ($\max_j |V_j|$) "
        rf"reaches $\delta = {delta:g}$"
    )
    return save(fig, base)
