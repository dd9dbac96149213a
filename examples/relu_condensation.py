"""ReLU condensation on 1-D data: the authors' notebook with flowsim, GD beside the exact flow.

Source: github.com/dlphenomena/condensation, ``condense.ipynb`` (read for its settings; no
code copied), after [LXMZ21] and [ZZJLZX22].  Its settings, all kept here:

- data: 4 points ``x = linspace(-1, 1, 4)``, ``y = 0.2 relu(x - 1/3) + 0.2 relu(-x - 1/3)``;
- model: ``nn.Linear(1, m) -> ReLU -> nn.Linear(m, 1, bias=False)``, ``m = 1000``: flowsim's
  ``TwoLayer("relu", m, 1, alpha=1)`` (the bias is the last column of W);
- init: every weight and bias ``N(0, (m^-g)^2)`` with the notebook's ``gamma`` ``g = 1``:
  ``net.init(seed, scale=m**-g)``, which is [LXMZ21]'s ``(gamma, gamma') = (2g, 0)``;
- training: ``torch.optim.SGD(lr=0.05)`` on ``nn.MSELoss()`` for ``epochs + 1 = 10001``
  full-batch steps (the notebook's loop is ``range(epochs + 1)``): flowsim ``gd`` with
  ``dt = fs.torch_time(0.05) = 0.1``, to ``t = fs.torch_time(0.05, 10001) = 1000.1``.

What differs: the flow is given ``--max-wall`` seconds and its status is printed (at the
notebook's ``m = 1000`` it reaches t = 1000.1 in about 1.5 s, 1352 kinks, since kinks are
decided jointly per neuron; before, it stalled near ``t = 10``).
The random numbers are NumPy's, not torch's, and the arithmetic float64 (the notebook
trains in float32).  The notebook plots the orientation ``sign(b) arccos(w /
|(w, b)|)`` and amplitude ``a |(w, b)|`` of each neuron; this script prints the
orientations found by :func:`flowsim.measure.clusters` (weighted by amplitude) and ``RD`` of
the input weights, for GD and for the exact gradient flow to the same time.

Run: ``python examples/relu_condensation.py`` (about 6 s on 2 cores once compiled); it prints
the two orientations of the target's kinks, ``arctan(-1/3)`` = -18.4 deg and -161.6 deg, for
both.

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks at
   infinite-width limit. JMLR 22(71), 2021. arXiv:2007.07497.
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the condensation of
   neural networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

import argparse

import numpy as np

import flowsim as fs


def _summary(net, theta0, theta, min_mass):
    W0, W = net.unpack(theta0)["W"], net.unpack(theta)["W"]
    angles, amplitudes = fs.measure.feature_map(net, theta)
    found = fs.measure.clusters(W, weights=np.abs(amplitudes), min_mass=min_mass)
    centers = np.degrees(np.arctan2(found.centers[:, 1], found.centers[:, 0]))
    return {
        "RD": fs.measure.relative_distance(W, W0),
        "orientations": found.count,
        "lines": found.lines,
        "centers_deg": np.round(centers, 1).tolist(),
    }


def main(argv=None) -> dict:
    """Run the experiment; print and return ``{"gd": ..., "flow": ...}`` summaries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000, help="the notebook's width")
    parser.add_argument("--gamma", type=float, default=1.0, help="the notebook's gamma g")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-wall", type=float, default=60.0, help="seconds for the flow")
    parser.add_argument("--min-mass", type=float, default=0.05, help="clusters(min_mass=...)")
    args = parser.parse_args(argv)

    X = np.linspace(-1.0, 1.0, 4)[:, None]
    y = 0.2 * np.maximum(X[:, 0] - 1 / 3, 0) + 0.2 * np.maximum(-X[:, 0] - 1 / 3, 0)
    net = fs.TwoLayer("relu", args.width, 1, alpha=1.0)
    theta0 = net.init(args.seed, scale=args.width**-args.gamma)
    dt, t_end = fs.torch_time(args.lr), fs.torch_time(args.lr, args.epochs + 1)

    common = dict(t_end=t_end, n_save=2, save_state="final", progress=False)
    runs = {
        "gd": fs.simulate(net, theta0, X, y, method="gd", dt=dt, **common),
        "flow": fs.simulate(net, theta0, X, y, max_wall=args.max_wall, **common),
    }
    print(f"ReLU, m = {args.width}, init scale m^-{args.gamma:g}, SGD lr = {args.lr} x "
          f"{args.epochs + 1} steps on nn.MSELoss = flowsim t = {t_end:g}")  # fmt: skip
    results = {}
    for name, traj in runs.items():
        results[name] = {"loss": float(traj.loss[-1]), "status": traj.status}
        results[name].update(_summary(net, theta0, traj.theta_final, args.min_mass))
        r = results[name]
        print(f"  {name:5s} [{r['status']}] loss {r['loss']:.3e}  RD {r['RD']:.3g}  orientations "
              f"{r['orientations']} (lines {r['lines']}) at {r['centers_deg']} deg")  # fmt: skip
    gap = np.max(np.abs(runs["gd"].theta_final - runs["flow"].theta_final))
    print(f"  max |theta_gd - theta_flow| = {gap:.3g}")
    results["gap"] = float(gap)
    return results


if __name__ == "__main__":
    main()
