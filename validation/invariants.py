"""Exact checks of the integrator: the ReLU conservation law and the Saxe solution.

1. ReLU two-layer net ([DHL18]; docs/theory.md §10): each neuron's
   ``a_k^2 - |w_k|^2`` is constant along the exact flow, bias included.  Run
   from small initialization through the initial plateau and the first
   descent (kinks crossed and slid on), the drift is measured relative to the
   size of the terms, ``max_t (a_k^2 + |w_k|^2)``.
2. Two-layer linear net, whitened input, balanced rank-one start ([SMG14];
   docs/theory.md §10): the mode strength ``u(t)`` against
   ``u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0)``, ``tau = alpha``.
"""

from __future__ import annotations

import numpy as np

import flowsim as fs
from flowsim.validation._record import bound_check
from flowsim.validation._style import figure, save

NAME = "invariants"
CLAIM = "the integrator conserves the ReLU invariant and reproduces the Saxe closed form"
SOURCE = "[DHL18]; [SMG14]; docs/theory.md §10"

SIZES = {
    "quick": {"relu_width": 60, "relu_t_end": 400.0, "saxe_t_end": 30.0},
    "full": {"relu_width": 200, "relu_t_end": 600.0, "saxe_t_end": 40.0},
}
RELU = {"n": 40, "init_std": 1e-3, "rtol": 1e-10, "seed": 0}
SAXE = {"n": 50, "d": 3, "width": 4, "alpha": 1.0, "u0": 1e-3, "rtol": 1e-10, "seed": 1}
RELU_BOUND = 1e-8
SAXE_BOUND = 1e-7


def _relu_data():
    x = np.linspace(-1.0, 1.5, RELU["n"])
    return x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2


def _saxe_problem():
    rng = np.random.default_rng(SAXE["seed"])
    n, d = SAXE["n"], SAXE["d"]
    X = rng.standard_normal((n, d))
    X -= X.mean(axis=0)
    # whiten: (1/n) X^T X = I
    evals, evecs = np.linalg.eigh(X.T @ X / n)
    X = X @ evecs @ np.diag(evals**-0.5) @ evecs.T
    y = X @ np.array([1.5, -0.5, 0.25]) + 0.1 * rng.standard_normal(n)
    v = X.T @ y / n
    s = float(np.linalg.norm(v))
    e = rng.standard_normal(SAXE["width"])
    e /= np.linalg.norm(e)
    q = np.sqrt(SAXE["u0"] * SAXE["alpha"])
    net = fs.TwoLayer("linear", SAXE["width"], d, bias=False, alpha=SAXE["alpha"])
    theta0 = net.pack(a=q * e, W=q * np.outer(e, v / s))
    return net, theta0, X, y, v, s


def simulate(size: str) -> dict:
    """Run both simulations; returns arrays for :func:`evaluate` and :func:`draw`."""
    cfg = SIZES[size]
    X, y = _relu_data()
    net = fs.TwoLayer("relu", cfg["relu_width"], 1)
    theta0 = net.init(RELU["seed"], scale=RELU["init_std"])
    traj = fs.simulate(net, theta0, X, y, t_end=cfg["relu_t_end"], rtol=RELU["rtol"])
    p = net.unpack(traj.theta)
    invariant = p["a"] ** 2 - np.sum(p["W"] ** 2, axis=-1)
    terms = p["a"] ** 2 + np.sum(p["W"] ** 2, axis=-1)

    snet, stheta0, SX, Sy, v, s = _saxe_problem()
    t_end = cfg["saxe_t_end"]
    save_t = np.linspace(0.0, t_end, 301)
    straj = fs.simulate(snet, stheta0, SX, Sy, t_end=t_end, save=save_t, rtol=SAXE["rtol"])
    sp = snet.unpack(straj.theta)
    beta = np.einsum("tk,tkd->td", sp["a"], sp["W"]) / SAXE["alpha"]
    u_sim = beta @ (v / s)
    tau, u0 = SAXE["alpha"], SAXE["u0"]
    growth = np.exp(2 * s * straj.t / tau)
    u_exact = s * growth / (growth - 1 + s / u0)
    return {
        "relu_t": traj.t,
        "relu_loss": traj.loss,
        "relu_drift": np.abs(invariant - invariant[0]) / terms.max(axis=0),
        "relu_nfev": traj.nfev,
        "relu_switches": traj.n_switches,
        "relu_status": traj.status,
        "saxe_t": straj.t,
        "saxe_u": u_sim,
        "saxe_exact": u_exact,
        "saxe_s": s,
    }


def evaluate(data: dict, size: str, figure_path: str | None = None) -> list:
    cfg = {**SIZES[size], **RELU}
    relu_drift = float(np.max(data["relu_drift"]))
    saxe_err = float(np.max(np.abs(data["saxe_u"] - data["saxe_exact"]) / data["saxe_s"]))
    return [
        bound_check(
            "invariants.relu",
            "ReLU: a_k^2 - |w_k|^2 conserved (drift / max(a_k^2 + |w_k|^2))",
            "[DHL18]; docs/theory.md §10",
            RELU_BOUND,
            relu_drift,
            cfg,
            figure_path,
            note=f"status {data['relu_status']}, nfev {int(data['relu_nfev'])}, "
            f"{int(data['relu_switches'])} kink switches",
        ),
        bound_check(
            "invariants.saxe",
            "linear net: u(t) equals the Saxe closed form (max error / s)",
            "[SMG14]; docs/theory.md §10",
            SAXE_BOUND,
            saxe_err,
            {**SIZES[size], **SAXE},
            figure_path,
        ),
    ]


def draw(data: dict, base) -> str:
    fig, axes = figure(ncols=3, width=3.0)
    ax = axes[0, 0]
    t = data["relu_t"]
    keep = t > 0
    drift = np.maximum(data["relu_drift"][keep], 1e-18)
    ax.loglog(t[keep], drift, color="tab:blue", alpha=0.25, lw=0.8)
    ax.axhline(RELU_BOUND, color="k", ls="--", lw=1, label=f"bound {RELU_BOUND:g}")
    ax.set(xlabel="time t", ylabel=r"$|\Delta(a_k^2-|w_k|^2)|\,/\,\max(a_k^2+|w_k|^2)$",
           title="ReLU invariant, every neuron")  # fmt: skip
    ax.legend(loc="lower right")
    ax = axes[0, 1]
    ax.loglog(t[keep], data["relu_loss"][keep], color="tab:red")
    ax.set(xlabel="time t", ylabel="loss R", title="ReLU run: plateau and descent")
    ax = axes[0, 2]
    ts = data["saxe_t"]
    ax.plot(ts, data["saxe_exact"], color="k", lw=1, label="closed form [SMG14]")
    ax.plot(ts[::15], data["saxe_u"][::15], "o", ms=3, color="tab:green", label="flowsim")
    ax.set(xlabel="time t", ylabel="mode strength u(t)", title="linear net (Saxe)")
    ax.legend(loc="lower right")
    return save(fig, base)
