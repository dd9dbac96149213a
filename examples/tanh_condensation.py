"""Initial condensation of a tanh network on 5-D data: the authors' notebook with flowsim.

Source: github.com/dlphenomena/condensation, ``initial_condense.ipynb`` (read for its
settings; no code copied), after [ZZJLZX22].  Its settings, all kept here:

- data: 80 points uniform in ``[-4, 2]^5`` (``torch.rand * 6 - 4``), ``y = 3.5 sum_j
  sin(5 x_j + 1)``;
- model: ``nn.Linear(5, 50) -> Tanh -> nn.Linear(50, 1, bias=False)``: flowsim's
  ``TwoLayer("tanh", 50, 5, alpha=1)``;
- init: every weight and bias ``N(0, (m^-g)^2)`` with the notebook's final ``gamma`` ``g = 4``:
  ``net.init(seed, scale=m**-4)`` ([LXMZ21]'s ``(gamma, gamma') = (8, 0)``);
- training: ``torch.optim.Adam(lr=1e-3)`` (betas 0.9, 0.999, eps 1e-8) on ``nn.MSELoss()``
  for ``epochs + 1 = 101`` full-batch steps: flowsim ``adam`` with ``dt = 1e-3`` and
  ``eps = 1e-8 / 2`` (the loss is ``2R``; Adam's time is ``lr x steps = 0.101``).

The notebook draws the neurons' cosine-similarity heatmap ordered by the leading
eigenvector; this script prints, for Adam and for the exact gradient flow, the number of
orientations (:func:`flowsim.measure.clusters`, weights ``|a_k| |w_k|``) and the share of
neuron pairs with ``|cos| > 0.9`` in that matrix.  Adam and the flow do not share a clock
(Adam moves every weight by about ``lr`` a step whatever the gradient's size), so the flow
runs until its largest neuron norm reaches Adam's final one (an escape event).

What differs: the random numbers (NumPy's, not torch's) and float64 (not float32).

Run: ``python examples/tanh_condensation.py`` (a few seconds on 2 cores once compiled).

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


def _summary(net, theta, min_mass):
    layers = net.unpack(theta)
    a, W = layers["a"], layers["W"]
    found = fs.measure.clusters(W, weights=np.abs(a) * np.linalg.norm(W, axis=1),
                                min_mass=min_mass)  # fmt: skip
    C = fs.measure.cosine_similarity(W)
    order = fs.measure.block_order(W, method="eigenvector")
    C = C[order][:, order]
    off = ~np.eye(len(C), dtype=bool)
    return {
        "orientations": found.count,
        "lines": found.lines,
        "aligned_pairs": float(np.mean(np.abs(C[off]) > 0.9)),
        "max_norm": float(np.max(np.linalg.norm(W, axis=1))),
    }


def main(argv=None) -> dict:
    """Run the experiment; print and return ``{"adam": ..., "flow": ...}`` summaries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--input-dim", type=int, default=5)
    parser.add_argument("--n", type=int, default=80, help="training points")
    parser.add_argument("--gamma", type=float, default=4.0, help="the notebook's gamma g")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-mass", type=float, default=0.05, help="clusters(min_mass=...)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    X = rng.uniform(-4.0, 2.0, (args.n, args.input_dim))
    y = 3.5 * np.sum(np.sin(5 * X + 1), axis=1)
    net = fs.TwoLayer("tanh", args.width, args.input_dim, alpha=1.0)
    theta0 = net.init(args.seed, scale=args.width**-args.gamma)
    steps = args.epochs + 1
    adam = fs.simulate(net, theta0, X, y, t_end=args.lr * steps, method="adam", dt=args.lr,
                       adam=(0.9, 0.999, 1e-8 / fs.conventions.loss_factor("mse")),
                       n_save=2, save_state="final", progress=False)  # fmt: skip
    results = {"adam": _summary(net, adam.theta_final, args.min_mass)}
    results["adam"]["loss"] = float(adam.loss[-1])
    target = results["adam"]["max_norm"]
    flow = fs.simulate(net, theta0, X, y, t_end=1e6, events=fs.escape(target), n_save=2,
                       save_state="final", progress=False)  # fmt: skip
    escaped = flow.event("escape")
    if escaped is None:
        raise RuntimeError(f"the flow did not reach |w| = {target:.3g} (status {flow.status})")
    results["flow"] = _summary(net, escaped.theta, args.min_mass)
    results["flow"].update(loss=escaped.loss, t=escaped.t, status=flow.status)

    print(f"tanh, m = {args.width}, d = {args.input_dim}, n = {args.n}, init scale "
          f"m^-{args.gamma:g}; Adam lr = {args.lr} x {steps} steps on nn.MSELoss")  # fmt: skip
    print(f"  initial max |w_k| = {np.max(np.linalg.norm(net.unpack(theta0)['W'], axis=1)):.3g}")
    for name, r in results.items():
        when = f"t = {r['t']:.4g} [{r['status']}]" if name == "flow" else f"t = {adam.t[-1]:.4g}"
        print(f"  {name:4s} {when}: max |w_k| {r['max_norm']:.3g}, loss {r['loss']:.4g}, "
              f"orientations {r['orientations']} (lines {r['lines']}), pairs with |cos| > 0.9: "
              f"{100 * r['aligned_pairs']:.0f} %")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
