"""Data sets and small-initialization runs shared by the checks (the seed papers' set-ups)."""

from __future__ import annotations

import numpy as np

import flowsim as fs

ACTIVATIONS = ["tanh", "sigmoid", "softplus", "xtanh", "x2tanh", "relu"]


def sin1d(n: int = 40):
    """[ZZJLZX22] 1-D: n points of sin(3x) + sin(6x)/2 on [-1, 1.5]."""
    x = np.linspace(-1.0, 1.5, n)
    return x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2


def sum_sin5(n: int = 80, seed: int = 0):
    """[ZZJLZX22] 5-D: y = sum_k 3.5 sin(5 x_k + 1), x uniform in [-4, 2]^5."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-4.0, 2.0, size=(n, 5))
    return X, np.sum(3.5 * np.sin(5 * X + 1), axis=1)


DATASETS = {"1d": sin1d, "5d": sum_sin5}
WIDTHS = {"1d": 100, "5d": 50}


def run_to_escape(act, dataset, *, init_std=0.005, seed=0, delta=0.2, rtol=1e-8, t_max=1e9,
                  width=None):  # fmt: skip
    """Gradient flow from small init until the largest neuron's norm reaches ``delta``.

    The end of the initial (condensation) stage is taken as that escape time
    (the definition of T_esc in docs/theory.md §7).  Returns (net, X, y, theta0, traj).
    """
    X, y = DATASETS[dataset]()
    net = fs.TwoLayer(act, width or WIDTHS[dataset], X.shape[1])
    theta0 = net.init(seed, scale=init_std)
    traj = fs.simulate(net, theta0, X, y, t_end=t_max, rtol=rtol, events=[fs.escape(norm=delta)],
                       save_state="final")  # fmt: skip
    return net, X, y, theta0, traj
