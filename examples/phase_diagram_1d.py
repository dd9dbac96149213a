"""[LXMZ21]'s 1-D phase-diagram experiment with flowsim: RD and S_w for Adam and the exact flow.

Source: github.com/xuzhiqin1990/phasediagram_twolayerNN, ``scalestudy1d_191224.py``
(read for its settings; no code copied).  Its settings:

- data: 3 points ``x = (-0.5, 0, 0.5)``, ``y = (-0.5, 0, 1)``;
- model: tanh, ``f = alpha_A sum_k a_k tanh(w_k x + b_k)`` with an antisymmetric copy
  (``ASI = 1``: a second width-``m`` net with the same ``(w, b)`` and ``-a``), so width ``2m``;
  in flowsim ``TwoLayer("tanh", 2 * m, 1, alpha=1 / alpha_A)`` and
  ``init(seed, beta1=..., beta2=..., antisymmetric=True)`` (docs/conventions.md);
- init: ``gamma' = -1.5``, ``beta1 = m^1.5`` (output weights), ``beta2 = 1`` (w and b),
  ``alpha_A = m^-(gamma + 1.5)``, so ``kappa = m^-gamma``; ``gamma`` over
  ``linspace(0.85, 1.15, 7)``;
- training: TensorFlow 1 ``AdamOptimizer`` (eps-hat form, eps 1e-8) on
  ``reduce_mean(square)`` (= ``2R``) at ``lr = 0.5e-5 / alpha_A * sqrt(beta1 beta2)``, until
  that loss is below 1e-6 (``R < 5e-7``), at most 800000 steps: flowsim ``adam`` with
  ``dt = lr``, ``adam=(0.9, 0.999, 1e-8 / 2, "tf1")`` and a ``loss_below(5e-7)`` event;
- measured: ``RD = |W(t*) - W(0)| / |W(0)|`` of the first copy's ``(w, b)`` at the end, and
  ``S_w``, the slope of ``log RD`` against ``log m``.

What differs (for a run of about 30 s on 2 cores): half widths ``m`` in (50, 100, 200,
400) instead of (1000, 10^4, 10^5, 4 x 10^5); ``gamma`` in (0.85, 1.0, 1.15), the ends and
middle of the authors' range; at most ``--max-steps`` Adam steps (default 20000; an Adam run
that stops short prints its status ``done``); as in the script, a rise of the loss at any
step restarts Adam at ``lr / 2`` (at most 12 times); NumPy's random numbers; float64.
The exact flow runs from the same initial weights to the same loss (status ``done``: it
reached ``t = 1e14`` first).  Small widths make ``S_w`` a rough estimate.

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks at
   infinite-width limit. JMLR 22(71), 2021. arXiv:2007.07497.
"""

from __future__ import annotations

import argparse

import numpy as np

import flowsim as fs

GAMMA_PRIME = -1.5
BETA1_EXP = -1.5  # beta1 = m^-BETA1_EXP; beta2 = m^-(BETA1_EXP - GAMMA_PRIME) = 1
TOL = 1e-6  # the script's stopping loss, reduce_mean(square) = 2R
MAX_HALVINGS = 12
FLOW_T_END = 1e14  # the flow stops at the loss; this only bounds it


def _run(m, gamma, *, seed, max_steps):
    """Adam as the script trains, and the exact flow, on the doubled net of half width m."""
    X = np.array([[-0.5], [0.0], [0.5]])
    y = np.array([-0.5, 0.0, 1.0])
    beta1, beta2 = m**-BETA1_EXP, m ** -(BETA1_EXP - GAMMA_PRIME)
    alpha_script = m ** -(gamma - BETA1_EXP - (BETA1_EXP - GAMMA_PRIME))
    net = fs.TwoLayer("tanh", 2 * m, 1, alpha=1.0 / alpha_script)
    theta0 = net.init(seed, beta1=beta1, beta2=beta2, antisymmetric=True)
    lr = 0.5e-5 / alpha_script * np.sqrt(beta1 * beta2)
    factor = fs.conventions.loss_factor("mse")
    common = dict(events=fs.loss_below(TOL / factor), save_state="final", progress=False)
    for _ in range(MAX_HALVINGS + 1):  # the script restarts at lr / 2 when the loss rises
        adam = fs.simulate(net, theta0, X, y, t_end=lr * max_steps, method="adam", dt=lr,
                           adam=(0.9, 0.999, 1e-8 / factor, "tf1"),
                           save=lr * np.arange(max_steps + 1), **common)  # fmt: skip
        loss = adam.loss[np.isfinite(adam.loss)]
        if not np.any(np.diff(loss) > 0):
            break
        lr /= 2
    flow = fs.simulate(net, theta0, X, y, t_end=FLOW_T_END, n_save=2, max_wall=60, **common)
    runs = {"adam": adam, "flow": flow}
    W0 = net.unpack(theta0)["W"][:m]
    out = {}
    for name, traj in runs.items():
        reached = traj.event("loss_below")
        theta = reached.theta if reached is not None else traj.theta_final
        out[name] = {
            "RD": fs.measure.relative_distance(net.unpack(theta)["W"][:m], W0),
            "status": traj.status,
            "t": reached.t if reached is not None else float(traj.t[-1]),
        }
    out["adam"]["lr"] = lr
    return out


def main(argv=None) -> dict:
    """Run the sweep; print RD per width and S_w per gamma, return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[50, 100, 200, 400],
                        help="half widths m (the script's: 1000 10000 100000 400000)")  # fmt: skip
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.85, 1.0, 1.15])
    parser.add_argument("--max-steps", type=int, default=20000, help="the script's: 800000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(set(args.widths)) < 3:
        parser.error("--widths: S_w needs at least 3 distinct widths")

    print(f"tanh, antisymmetric copy, gamma' = {GAMMA_PRIME}, 3 points; Adam (TF1 eps) to "
          f"loss {TOL:g} or {args.max_steps} steps; the exact flow to the same loss")  # fmt: skip
    results = {}
    for gamma in args.gammas:
        rows = {m: _run(m, gamma, seed=args.seed, max_steps=args.max_steps) for m in args.widths}
        entry = {"RD": {}, "S_w": {}}
        for name in ("adam", "flow"):
            rd = [rows[m][name]["RD"] for m in args.widths]
            entry["RD"][name] = rd
            entry["S_w"][name] = fs.measure.slope_S_w(args.widths, rd).slope
        results[gamma] = entry
        print(f"gamma = {gamma:g}:  S_w adam {entry['S_w']['adam']:+.3f}   "
              f"flow {entry['S_w']['flow']:+.3f}")  # fmt: skip
        for m in args.widths:
            a, f = rows[m]["adam"], rows[m]["flow"]
            print(f"  m = {m:5d}  RD adam {a['RD']:.4g} (lr {a['lr']:.3g}, t {a['t']:.3g}, "
                  f"{a['status']})   "
                  f"flow {f['RD']:.4g} (t {f['t']:.3g}, {f['status']})")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
