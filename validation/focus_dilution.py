"""Focus and dilution: a one-layer transformer on Markov data, its attention stages measured.

The stages that the abstract of [CLXL26] claims (docs/theory.md §19; only the abstract is
public, so they are claims to measure) against exact flows of :class:`flowsim.TokenAttention`.

Protocol (:data:`PROTOCOL`).  Markov chain ``P = lam I + (1 - lam) 1 pi^T``
(:func:`flowsim.data.markov_chain`: V = 5, lam = 0.3, pi_0 = 0.8, the four low-frequency
tokens ``0.05 (1 + delta a_k)``, a_k from +1 to -1), sequences of s = 4 tokens, the
population loss (all 625 sequences weighted by their probability, soft targets the row
of P of the last token: :func:`flowsim.data.markov_population`), m = 8, 1/sqrt(m) in the
attention logits, every weight N(0, eps^2) with eps = 1e-3 from one seed, gradient flow by
``fs.simulate`` (adaptive, rtol 1e-8) to t = 20000, 600 saves spaced logarithmically.
The run with delta = 0.05 is the main one; the sweep over delta (quick: 0.05 and 0;
full: 0, 0.02, 0.05, 0.1, 0.2) measures stage IV.

Stage times, from the saved states:

* ``t_I``: the first time ``|W0| >= 100 |W0(0)|`` (the linear stage is over).
* ``t_QK``: the first time ``max(|WQ|, |WK|) >= 10`` times its start (attention grows).
* ``t_open``: the first time after ``t_I`` that ``sigma_2/sigma_1(W0) >= 0.1`` (a second
  embedding direction has opened).

Records.  Stage I: at ``t_I``, the top left singular vector of W0 against pi (cosine
``>= 0.99``, the issue's bound) and against the linearized prediction (uniform attention,
zero logits: ``dW0/dt = C W1^T``, ``dW1/dt = W0^T C`` with
``C = sum_i c_i (Y_i - |Y_i| 1/V)^T``, ``c_i`` the token counts of sequence i over s, so
W0 grows along the top left singular vector of C at the rate ``sigma_1(C)``: cosine
``>= 0.99``, the fitted rate of ``log sigma_1(W0)`` while it grows from 5 to 50 times its
start within 10 % of ``sigma_1(C)``); ``sigma_2/sigma_1(W0) <= 0.05``; ``|WQ|``, ``|WK|``
within 5 % of their start.  Stage II: ``t_QK > t_I``; ``log max(|WQ|, |WK|)`` linear in t
while it grows from 2 to 100 times its start (R^2 >= 0.99; the rate is reported, no
linearized prediction is derived); at ``t_QK``, the cosine of ``Phi`` with ``pi pi^T``
``>= 0.99``; the attention mass on the high-frequency token after ``t_I`` rises above its
value at ``t_I`` by at least 0.01; the attention entropy falls by at least 0.05 below
``log s``; and the order ``t_QK < t_open`` (focus before a new direction).  Stage III:
an entropy rise of at least 0.01 over an interval on which the loss falls.  Stage IV:
with delta = 0.05 a second direction opens (``t_open`` finite); the stall
``t_open - t_I`` at delta = 0.05 at most half that of the exactly symmetric chain.

The figure shows the four stages on one (logarithmic) time axis: loss, attention entropy
and attention on the high-frequency token, norms, effective ranks of W0, W1 and WQ WK^T.

References
----------
.. [CLXL26] Chen, Lin, Xu et al. Focus and dilution: the multi-stage learning process of
   attention. 2026 (abstract: ``shared/seeds/related-abstracts.txt``).
"""

from __future__ import annotations

import math

import numpy as np

import flowsim as fs
import flowsim.measure as fm
from flowsim.data import markov_chain, markov_population
from flowsim.validation._record import Finding, Record, attach_findings
from flowsim.validation._style import figure, save

NAME = "focus_dilution"
CLAIM = "one-layer transformer on Markov data: rank one, focus, dilution, a new direction"
SOURCE = "[CLXL26] (abstract); docs/theory.md §19"

SIZES = {
    "quick": {"deltas": [0.05, 0.0]},
    "full": {"deltas": [0.05, 0.0, 0.02, 0.1, 0.2]},
}
PROTOCOL = {
    "V": 5,
    "m": 8,
    "s": 4,
    "lam": 0.3,
    "high": 0.8,
    "delta": 0.05,
    "eps": 1e-3,
    "init_seed": 0,
    "t_end": 20000.0,
    "rtol": 1e-8,
    "n_save": 600,
    "t_first": 1e-2,
}

GROWTH_I = 100.0
GROWTH_QK = 10.0
OPEN_RATIO = 0.1
COS_BOUND = 0.99
RANK_ONE_BOUND = 0.05
FROZEN_BOUND = 0.05
RATE_RTOL = 0.10
RATE_WINDOW = (5.0, 50.0)
QK_WINDOW = (2.0, 100.0)
R2_BOUND = 0.99
FOCUS_RISE = 0.01
ENTROPY_FALL = 0.05
DILUTION_RISE = 0.01
STALL_RATIO = 0.5

_ORDER = (
    "in this reconstruction the low-frequency directions of the embedding are not "
    "degenerate: with lam > 0 the next token depends on the current one, and the linearized "
    "flow's C has sigma_2 = lam (sum_(k<s) lam^k) pi_low / s = 5.31e-3 (threefold at delta "
    "= 0; record stage4/symmetric_rate), so a second direction opens at t_open = 854 "
    "whatever delta is, before WQ, WK grow (t_QK = 1767)"
)
FINDINGS = {
    f"{NAME}.stage2/exponential": Finding(
        "WQ, WK do not grow along one exponential: they stay frozen until the second embedding "
        "direction has opened, then grow in steps with it (R^2 0.870 of the log-linear fit "
        "from 2- to 100-fold, mean rate 4.2e-3); " + _ORDER,
        0.8698,
        0.01,
    ),
    f"{NAME}.stage2/phi_pi": Finding(
        "Phi = W0 M W0^T is proportional to pi pi^T while W0 is rank one with rows along pi "
        "(cosine -0.999 at t_I: Phi = (a M a^T) u u^T for W0 = u a^T, the sign that of the "
        "random init), but by t_QK the embedding has opened a second direction and the "
        "cosine is 0.046; " + _ORDER,
        0.0458,
        0.01,
    ),
    f"{NAME}.stage2/focus": Finding(
        "no frequency-driven focus: the attention on the high-frequency token (0.800 = pi_0 at "
        "t_I) never rises (max rise 7e-6), dips to 0.698 at t ~ 3000 and returns to 0.799; "
        "the attention focuses instead on the positions holding the query's own token "
        "(0.774 -> 0.9985), what the Markov target (a function of the last token) needs, "
        "and the entropy falls with it (stage2/entropy_falls)",
        6.9e-6,
        1e-4,
    ),
    f"{NAME}.stage2/before_new_direction": Finding(
        "the order of stages II and IV is reversed: t_open/t_QK = 0.483; " + _ORDER,
        0.4829,
        0.01,
    ),
    f"{NAME}.stage3/dilution": Finding(
        "no dilution: after t_I the attention entropy never rises while the loss falls "
        "(largest such rise 5e-11); it falls in steps from log 4 = 1.386 to 1.044",
        0.0,
        1e-6,
    ),
    f"{NAME}.stage4/stall_ratio": Finding(
        "no stall at exact symmetry: the stall t_open - t_I is 843 at delta = 0 and 822 to "
        "864 for delta = 0.02 .. 0.2 (ratio 1.00 at delta = 0.05): the new direction is "
        "driven by the self-transitions (lam), not by the asymmetry; " + _ORDER,
        1.0,
        0.02,
    ),
}


# -- simulation ---------------------------------------------------------------------------------


def problem(delta: float):
    """Net, population data ``(ids, Y)``, chain ``(P, pi)`` and initial parameters."""
    P, pi = markov_chain(PROTOCOL["V"], lam=PROTOCOL["lam"], high=PROTOCOL["high"], delta=delta)
    ids, Y = markov_population(P, PROTOCOL["s"])
    net = fs.TokenAttention(PROTOCOL["V"], PROTOCOL["m"])
    theta0 = net.init(PROTOCOL["init_seed"], scale=PROTOCOL["eps"])
    return net, ids, Y, P, pi, theta0


def save_times() -> np.ndarray:
    t = np.geomspace(PROTOCOL["t_first"], PROTOCOL["t_end"], PROTOCOL["n_save"] - 1)
    return np.concatenate([[0.0], t])


def simulate(size: str) -> dict:
    runs = {}
    for delta in SIZES[size]["deltas"]:
        net, ids, Y, _, _, theta0 = problem(delta)
        run = fs.simulate(net, theta0, ids, Y, t_end=PROTOCOL["t_end"], save=save_times(),
                          rtol=PROTOCOL["rtol"], progress=False)  # fmt: skip
        runs[f"{delta:g}"] = {
            "t": run.t,
            "loss": run.loss,
            "theta": run.theta_bar * run.scale_vector,
            "status": run.status,
        }
    return {"deltas": [float(d) for d in SIZES[size]["deltas"]], "runs": runs}


# -- analysis -----------------------------------------------------------------------------------


def linearized(ids, Y, V: int) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors (columns) and singular values of
    ``C = sum_i c_i (Y_i - |Y_i|/V)^T``, the flow at zero logits and uniform attention."""
    counts = np.eye(V)[ids].mean(axis=1)  # (n, V): c_i
    weights = Y / Y.sum()
    C = counts.T @ (weights - weights.sum(axis=1, keepdims=True) / V)
    U, S, _ = np.linalg.svd(C)
    return U, S


def _first(mask) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else -1


def _log_fit(t, values, window, start) -> tuple[float, float]:
    """Slope of ``log values`` against t where ``values/start`` lies in ``window``, and R^2."""
    ratio = values / start
    keep = (ratio >= window[0]) & (ratio <= window[1])
    if keep.sum() < 3:
        return math.nan, math.nan
    x, y = t[keep], np.log(values[keep])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    return float(slope), float(1.0 - residual.var() / y.var())


def analyze(run: dict, delta: float) -> dict:
    """Series and stage times of one run (see the module)."""
    net, ids, Y, _, pi, _ = problem(delta)
    t, theta = np.asarray(run["t"]), np.asarray(run["theta"])
    p = net.unpack(theta)
    w = Y.sum(axis=1)
    a = fm.last_query_attention(net, theta, ids)
    out = {"t": t, "loss": np.asarray(run["loss"])}
    out["entropy"] = fm.attention_entropy(a, w)
    out["focus"] = fm.attention_on_tokens(a, ids, net.vocabulary)[..., 0] @ (w / w.sum())
    out["self_focus"] = np.sum(a * (ids == ids[:, -1:]), axis=-1) @ (w / w.sum())
    out["phi_cos"] = fm.phi_alignment(p["W0"], p["WQ"], p["WK"], np.outer(pi, pi))
    sv = np.linalg.svd(p["W0"], compute_uv=False)
    out["sv_W0"] = sv
    out["ratio_W0"] = sv[:, 1] / sv[:, 0]
    M = p["WQ"] @ np.swapaxes(p["WK"], 1, 2)
    out["erank"] = {name: fm.effective_rank(X) for name, X in
                    (("W0", p["W0"]), ("W1", p["W1"]), ("WQ WK^T", M))}  # fmt: skip
    out["norms"] = {name: np.linalg.norm(p[name], axis=(1, 2)) for name in net.layer_names}
    u1 = np.linalg.svd(p["W0"])[0][:, :, 0]
    out["cos_pi"] = np.abs(u1 @ pi) / np.linalg.norm(pi)
    U_C, S_C = linearized(ids, Y, net.vocabulary)
    out["cos_C"] = np.abs(u1 @ U_C[:, 0])
    out["sigma_C"] = S_C
    n = out["norms"]
    qk = np.maximum(n["WQ"] / n["WQ"][0], n["WK"] / n["WK"][0])
    out["qk_growth"] = qk
    kI = _first(n["W0"] >= GROWTH_I * n["W0"][0])
    kQK = _first(qk >= GROWTH_QK)
    kopen = -1 if kI < 0 else _first((out["ratio_W0"] >= OPEN_RATIO) & (np.arange(t.size) > kI))
    out["k"] = {"I": kI, "QK": kQK, "open": kopen}
    out["rate_W0"] = _log_fit(t, sv[:, 0], RATE_WINDOW, sv[0, 0])[0]
    out["rate_open"] = math.nan
    if kI >= 0:
        out["rate_open"] = _log_fit(t[kI:], sv[kI:, 1], RATE_WINDOW, sv[kI, 1])[0]
    out["rate_QK"], out["r2_QK"] = _log_fit(t, np.maximum(n["WQ"], n["WK"]), QK_WINDOW,
                                            max(n["WQ"][0], n["WK"][0]))  # fmt: skip
    out["dilution"] = dilution(out["entropy"], out["loss"], kI)
    return out


def dilution(H, L, k0) -> tuple[float, int, int]:
    """Largest entropy rise ``H[b] - H[a]``, ``k0 <= a < b``, with the loss falling from a
    to b (``L[b] < L[a]``), and its ``(a, b)``."""
    best, where = 0.0, (-1, -1)
    if k0 < 0:
        return math.nan, -1, -1
    for a in range(k0, H.size - 1):
        rises = H[a + 1 :] - H[a]
        falls = L[a + 1 :] < L[a]
        if np.any(falls):
            b = int(np.argmax(np.where(falls, rises, -np.inf)))
            if rises[b] > best:
                best, where = float(rises[b]), (a, a + 1 + b)
    return best, where[0], where[1]


# -- records ------------------------------------------------------------------------------------


def _record(name, claim, theory, measured, tolerance, passed, config, figure_path, note=""):
    return Record(f"{NAME}.{name}", claim, SOURCE, theory, measured, tolerance, bool(passed),
                  config, figure_path, note)  # fmt: skip


def _at(series, k):
    return float(series[k]) if k >= 0 else math.nan


def evaluate(data: dict, size: str, figure_path=None) -> list:
    config = {**PROTOCOL, "deltas": data["deltas"]}
    main = analyze(data["runs"][f"{PROTOCOL['delta']:g}"], PROTOCOL["delta"])
    t, k, n = main["t"], main["k"], main["norms"]
    kI, kQK, kopen = k["I"], k["QK"], k["open"]
    times = (f"t_I = {_at(t, kI):.4g}, t_QK = {_at(t, kQK):.4g}, t_open = {_at(t, kopen):.4g}; "
             f"loss {main['loss'][0]:.6f} -> {_at(main['loss'], kI):.6f} at t_I -> "
             f"{main['loss'][-1]:.6f} at the end")  # fmt: skip
    records = []

    # stage I
    records.append(_record(
        "stage1/rows_pi", "at t_I, W0 is rank one with token rows proportional to pi "
        "(|cos| of its top left singular vector with pi)", 1.0, _at(main["cos_pi"], kI),
        f">= {COS_BOUND:g}", _at(main["cos_pi"], kI) >= COS_BOUND, config, figure_path, times,
    ))  # fmt: skip
    records.append(_record(
        "stage1/linearized_direction", "at t_I, W0's top left singular vector is that of the "
        "linearized flow's C", 1.0, _at(main["cos_C"], kI), f">= {COS_BOUND:g}",
        _at(main["cos_C"], kI) >= COS_BOUND, config, figure_path,
    ))  # fmt: skip
    rate = main["rate_W0"]
    records.append(_record(
        "stage1/rate", "sigma_1(W0) grows at the rate sigma_1(C) of the linearized flow",
        main["sigma_C"][0], rate, f"relative {RATE_RTOL:g}",
        abs(rate - main["sigma_C"][0]) <= RATE_RTOL * main["sigma_C"][0], config, figure_path,
        f"fitted while sigma_1(W0) grows from {RATE_WINDOW[0]:g} to {RATE_WINDOW[1]:g} times "
        "its start",
    ))  # fmt: skip
    ratio = _at(main["ratio_W0"], kI)
    records.append(_record(
        "stage1/rank_one", "at t_I, sigma_2/sigma_1(W0) is small (rank one)", 0.0, ratio,
        f"<= {RANK_ONE_BOUND:g}", ratio <= RANK_ONE_BOUND, config, figure_path,
    ))  # fmt: skip
    change = float(max(abs(_at(n[b], kI) / n[b][0] - 1.0) for b in ("WQ", "WK")))
    records.append(_record(
        "stage1/attention_frozen", "up to t_I, |WQ| and |WK| stay at their init size "
        "(largest relative change)", 0.0, change, f"<= {FROZEN_BOUND:g}",
        change <= FROZEN_BOUND, config, figure_path,
    ))  # fmt: skip

    # stage II
    order = _at(t, kQK) / _at(t, kI) if kI >= 0 and kQK >= 0 else math.nan
    records.append(_record(
        "stage2/after_stage1", "WQ, WK grow (t_QK) after the rank-one stage (t_QK/t_I > 1)",
        1.0, order, "> 1", order > 1.0, config, figure_path, times,
    ))  # fmt: skip
    records.append(_record(
        "stage2/exponential", "max(|WQ|, |WK|) grows exponentially (R^2 of the fit of its log "
        "against t)", 1.0, main["r2_QK"], f">= {R2_BOUND:g}", main["r2_QK"] >= R2_BOUND,
        config, figure_path, f"fitted rate {main['rate_QK']:.4g} while it grows "
        f"{QK_WINDOW[0]:g} to {QK_WINDOW[1]:g}-fold (no linearized prediction derived)",
    ))  # fmt: skip
    phi = _at(main["phi_cos"], kQK)
    records.append(_record(
        "stage2/phi_pi", "at t_QK, Phi/|Phi| is pi pi^T (signed cosine)", 1.0, phi,
        f">= {COS_BOUND:g}", phi >= COS_BOUND, config, figure_path,
        f"cos(Phi, pi pi^T) at t_I: {_at(main['phi_cos'], kI):+.4f}",
    ))  # fmt: skip
    focus = main["focus"]
    rise = float(np.max(focus[kI:]) - focus[kI]) if kI >= 0 else math.nan
    records.append(_record(
        "stage2/focus", "after t_I the attention on the high-frequency token rises (largest "
        "rise above its value at t_I)", FOCUS_RISE, rise, f">= {FOCUS_RISE:g}",
        rise >= FOCUS_RISE, config, figure_path,
        f"attention on token 0: {focus[kI]:.4f} at t_I, min {np.min(focus[kI:]):.4f}, "
        f"max {np.max(focus[kI:]):.4f}, {focus[-1]:.4f} at the end; on the positions that "
        f"hold the query's own token: {main['self_focus'][kI]:.4f} at t_I, "
        f"{main['self_focus'][-1]:.4f} at the end",
    ))  # fmt: skip
    H = main["entropy"]
    fall = float(math.log(PROTOCOL["s"]) - np.min(H))
    records.append(_record(
        "stage2/entropy_falls", "the attention entropy falls below log s", ENTROPY_FALL, fall,
        f">= {ENTROPY_FALL:g}", fall >= ENTROPY_FALL, config, figure_path,
        f"minimum {np.min(H):.4f} at t = {t[np.argmin(H)]:.4g} (log s = "
        f"{math.log(PROTOCOL['s']):.4f})",
    ))  # fmt: skip
    before = _at(t, kopen) / _at(t, kQK) if kQK >= 0 and kopen >= 0 else math.nan
    records.append(_record(
        "stage2/before_new_direction", "the focus (t_QK) comes before a second embedding "
        "direction opens (t_open/t_QK > 1)", 1.0, before, "> 1", before > 1.0, config,
        figure_path, times,
    ))  # fmt: skip

    # stage III
    best, a, b = main["dilution"]
    records.append(_record(
        "stage3/dilution", "the attention entropy rises while the loss falls (largest such "
        "rise after t_I)", DILUTION_RISE, best, f">= {DILUTION_RISE:g}", best >= DILUTION_RISE,
        config, figure_path,
        "" if a < 0 else f"from t = {t[a]:.4g} (H {H[a]:.4f}, loss {main['loss'][a]:.6f}) to "
        f"t = {t[b]:.4g} (H {H[b]:.4f}, loss {main['loss'][b]:.6f})",
    ))  # fmt: skip

    # stage IV
    stalls, results = {}, {}
    for delta in data["deltas"]:
        res = main if delta == PROTOCOL["delta"] else analyze(data["runs"][f"{delta:g}"], delta)
        kI_d, kopen_d = res["k"]["I"], res["k"]["open"]
        stalls[delta], results[delta] = _at(res["t"], kopen_d) - _at(res["t"], kI_d), res
    sym = results[0.0]
    s2 = float(sym["sigma_C"][1])
    lam, s, low = PROTOCOL["lam"], PROTOCOL["s"], (1.0 - PROTOCOL["high"]) / (PROTOCOL["V"] - 1)
    formula = lam * sum(lam**k for k in range(s)) * low / s
    records.append(_record(
        "stage4/symmetric_rate", "with exact symmetry (delta = 0) sigma_2(W0) grows after t_I "
        "at the linearized rate sigma_2(C) = lam (sum_(k<s) lam^k) pi_low / s, not 0",
        s2, sym["rate_open"], f"relative {RATE_RTOL:g}",
        abs(sym["rate_open"] - s2) <= RATE_RTOL * s2, config, figure_path,
        f"sigma_2(C) = {s2:.6g} (formula {formula:.6g}, threefold at delta = 0); fitted while "
        f"sigma_2(W0) grows from {RATE_WINDOW[0]:g} to {RATE_WINDOW[1]:g} times its value at "
        "t_I",
    ))  # fmt: skip
    opened = stalls[PROTOCOL["delta"]]
    records.append(_record(
        "stage4/opens", f"with delta = {PROTOCOL['delta']:g} a second embedding direction "
        f"opens (sigma_2/sigma_1(W0) >= {OPEN_RATIO:g}; stall t_open - t_I)", "finite", opened,
        "finite", math.isfinite(opened), config, figure_path,
    ))  # fmt: skip
    stall_ratio = opened / stalls[0.0]
    records.append(_record(
        "stage4/stall_ratio", "the exactly symmetric chain stalls longer: stall(delta = "
        f"{PROTOCOL['delta']:g}) / stall(delta = 0)", STALL_RATIO, stall_ratio,
        f"<= {STALL_RATIO:g}", stall_ratio <= STALL_RATIO, config, figure_path,
        "stalls t_open - t_I by delta: "
        + ", ".join(f"{d:g}: {s:.5g}" for d, s in sorted(stalls.items())),
    ))  # fmt: skip
    return attach_findings(records, FINDINGS)


# -- figure -------------------------------------------------------------------------------------


def draw(data: dict, base) -> str:
    main = analyze(data["runs"][f"{PROTOCOL['delta']:g}"], PROTOCOL["delta"])
    fig, axes = figure(ncols=4, nrows=1, width=3.4, height=2.8)
    t = main["t"]
    keep = t > 0
    tt = t[keep]
    marks = [(main["k"][key], style) for key, style in (("I", "--"), ("QK", ":"), ("open", "-."))]
    ax = axes[0, 0]
    ax.semilogx(tt, main["loss"][keep], color="k", label=r"loss ($\delta$ = "
                f"{PROTOCOL['delta']:g})")  # fmt: skip
    for delta, run in data["runs"].items():
        if float(delta) != PROTOCOL["delta"]:
            ax.semilogx(np.asarray(run["t"])[keep], np.asarray(run["loss"])[keep], lw=0.8,
                        label=rf"$\delta$ = {delta}")  # fmt: skip
    ax.set(xlabel="time", ylabel="population loss", title="loss")
    ax = axes[0, 1]
    ax.semilogx(tt, main["entropy"][keep], color="tab:blue", label="attention entropy")
    ax.semilogx(tt, main["focus"][keep], color="tab:red", label="attention on token 0")
    ax.semilogx(tt, main["self_focus"][keep], color="tab:purple",
                label="attention on the query's token")  # fmt: skip
    ax.semilogx(tt, main["phi_cos"][keep], color="0.5", lw=0.8,
                label=r"$\cos(\Phi, \pi\pi^T)$")  # fmt: skip
    ax.set(xlabel="time", title="focus and dilution")
    ax = axes[0, 2]
    for name, series in main["norms"].items():
        ax.loglog(tt, series[keep], label=f"|{name}|")
    ax.loglog(tt, main["sv_W0"][keep, 1], color="k", lw=0.8, ls="--",
              label=r"$\sigma_2(W_0)$")  # fmt: skip
    ax.set(xlabel="time", title="norms")
    ax = axes[0, 3]
    for name, series in main["erank"].items():
        ax.semilogx(tt, series[keep], label=f"erank {name}")
    ax.set(xlabel="time", title="effective ranks")
    for ax in axes[0]:
        for k, style in marks:
            if k >= 0:
                ax.axvline(t[k], color="k", ls=style, lw=0.7)
        ax.legend(loc="best")
    axes[0, 0].text(0.02, 0.02, "dashed $t_I$, dotted $t_{QK}$, dash-dot $t_{open}$",
                    transform=axes[0, 0].transAxes, fontsize=7)  # fmt: skip
    fig.suptitle("One-layer transformer on Markov data ([CLXL26] stages, exact population flow)")
    return save(fig, base)
