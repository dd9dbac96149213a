"""The seed slides' 1-D feature maps over training: condensation visibly increasing.

``f(x) = sum_j a_j relu(w_j x + b_j)`` from small initialization (a, w, b all
N(0, sigma^2)); each neuron is drawn as its orientation ``theta_j =
atan2(b_j, w_j)`` and amplitude ``A_j = |a_j| sqrt(w_j^2 + b_j^2)``, at several
times along the gradient flow (the slides show GD epochs 100 ... 100000).
Condensation is quantified by the effective number of orientations,
``N_eff = exp(entropy of the amplitude mass over the orientation clusters)``
(clusters of :func:`flowsim.measure.clusters`, 10 degrees): the check passes
when ``N_eff`` has fallen at least five-fold by the end of the initial
plateau, taken as the time the loss first falls 5% below its initial value
([CLW24]: the plateau is where the loss stays at R(0)).  Early snapshots may
fluctuate (random directions drift before they grow), so the whole sequence
is reported, not required to be monotone.
"""

from __future__ import annotations

import numpy as np

import flowsim as fs
import flowsim.measure as fm
from flowsim.validation._cases import sin1d
from flowsim.validation._record import Record
from flowsim.validation._style import figure, save

NAME = "feature_evolution"
CLAIM = "1-D ReLU features condense during training from small initialization"
SOURCE = "seed slides (condensation, 1d example); [ZZJLZX22]"

SIZES = {
    "quick": {"width": 100, "init_std": 1e-3, "t_end": 400.0, "seed": 0},
    "full": {"width": 400, "init_std": 1e-4, "t_end": 600.0, "seed": 0},
}
SNAPSHOTS = 6
ANGLE_TOL = 10.0
PLATEAU_DROP = 0.95


def simulate(size: str) -> dict:
    cfg = SIZES[size]
    X, y = sin1d()
    net = fs.TwoLayer("relu", cfg["width"], 1)
    theta0 = net.init(cfg["seed"], scale=cfg["init_std"])
    plateau_end = fs.escape(loss=PLATEAU_DROP * net.loss(theta0, X, y), terminal=False)
    traj = fs.simulate(net, theta0, X, y, t_end=cfg["t_end"], rtol=1e-9, events=[plateau_end])
    escape = traj.event("escape")
    t_escape = escape.t if escape else traj.t[-1]
    # snapshots: log-spaced through the initial stage up to its end, then the final state
    wanted = np.concatenate([[0.0], np.geomspace(t_escape / 300, t_escape, SNAPSHOTS - 2),
                             [traj.t[-1]]])  # fmt: skip
    idx = np.unique([int(np.argmin(np.abs(traj.state_t - t))) for t in wanted])
    features = [fm.feature_map(net, traj.theta[i]) for i in idx]
    return {
        "t": traj.state_t[idx],
        "angles": np.array([f.angles for f in features]),
        "amplitudes": np.array([f.amplitudes for f in features]),
        "W": np.array([net.unpack(traj.theta[i])["W"] for i in idx]),
        "t_escape": t_escape,
        "loss_t": traj.t,
        "loss": traj.loss,
    }


def effective_orientations(W, amplitudes) -> float:
    found = fm.clusters(W, weights=amplitudes, angle_tol_deg=ANGLE_TOL, min_mass=0.0)
    mass = found.mass / found.mass.sum()
    return float(np.exp(-np.sum(mass * np.log(mass))))


def evaluate(data: dict, size: str, figure_path=None) -> list:
    pairs = zip(data["W"], data["amplitudes"], strict=True)
    n_eff = np.array([effective_orientations(W, A) for W, A in pairs])
    end = int(np.argmin(np.abs(data["t"] - data["t_escape"])))
    ratio = float(n_eff[0] / n_eff[end])
    note = (
        "N_eff at the snapshots: "
        + ", ".join(f"t = {t:.3g}: {v:.2f}" for t, v in zip(data["t"], n_eff, strict=True))
        + f"; the initial plateau ends at t = {data['t_escape']:.4g} (loss 5% below R(0))"
    )
    record = Record(
        f"{NAME}.condensation",
        "N_eff(0) / N_eff(end of initial plateau) >= 5",
        SOURCE,
        5.0,
        ratio,
        ">= 5",
        bool(ratio >= 5.0),
        {**SIZES[size], "angle_tol_deg": ANGLE_TOL, "plateau_drop": PLATEAU_DROP},
        figure_path,
        note,
    )
    return [record]


def draw(data: dict, base) -> str:
    k = len(data["t"])
    fig, axes = figure(ncols=k, width=2.2, height=2.1)
    ymax = 1.05 * np.max(data["amplitudes"][-1])
    for j, ax in enumerate(axes[0]):
        A = data["amplitudes"][j]
        fm.plot_feature_map(data["angles"][j], A, ax=ax, s=8, color="tab:blue")
        ax.set_title(f"t = {data['t'][j]:.3g}")
        if j < k - 1:
            ax.set_ylim(0, 1.05 * A.max() if A.max() > 0 else 1)
        else:
            ax.set_ylim(0, ymax)
        ax.set_xlabel(r"$\theta$ (rad)")
        if j:
            ax.set_ylabel("")
        else:
            ax.set_ylabel(r"amplitude $A$")
    fig.suptitle("ReLU features (orientation, amplitude) along the flow; last panel: end of run")
    return save(fig, base)
