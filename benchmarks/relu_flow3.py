"""R2: the three-layer ReLU gradient flow through the condensed regime (issue 14).

4 points ``x = linspace(-1, 1, 4)``, ``y = relu(x - 0.2) + relu(-x - 0.3)``,
``net = fs.ThreeLayer("relu", (m, m), 1)``, every parameter N(0, :data:`SCALE`^2), to
``t =`` :data:`T_END` (the loss falls from R0 = 0.144 through a plateau at 0.057 to
1e-5 ... 1e-7).  Per width m in :data:`WIDTHS` (:data:`QUICK_WIDTHS` with ``--quick``):

* the flow with exact kinks (``auto``; it chatters on the pairs that slide on their kinks);
* the flow with the kinks smoothed, ``smoothing`` in :data:`SMOOTHINGS` (``auto``, which
  runs BDF with the ramps' approximate Jacobian factor; 1e-2 was too wide a ramp at
  m = 50, where it ended 0.11 from GD's limit, 1e-3 is not);
* the competitor: gradient descent at ``dt =`` :data:`GD_DT` (PyTorch SGD at lr 0.005 on
  ``nn.MSELoss`` takes the same steps; flowsim's GD is the faster of the two).

Accuracy is measured against GD's limit as its rate goes to 0: ``2 theta(dt/2) - theta(dt)``
at :data:`GD_DT` (the Richardson extrapolation of a first-order method), the relative
2-norm distance at ``T_END`` (a run stopped by its wall limit has none).
"""

from __future__ import annotations

import numpy as np

from benchmarks._common import ONE_RUN, Impl, Skip, Workload

WIDTHS = (50, 100, 300)
QUICK_WIDTHS = (50, 100)
SCALE = 1e-3
SEED = 0
T_END = 200.0
SMOOTHINGS = (1e-3, 1e-4)
GD_DT = 0.01
RTOL = 1e-6
"""Of the flows (``auto``: BDF at rtol / 100)."""
MAX_WALL = 120.0
QUICK_MAX_WALL = 20.0
"""Wall limit of each flow (the exact-kink flows reach it)."""

_LIMITS: dict = {}
"""GD's extrapolated rate-0 limit at ``T_END``, by width."""


def make_data(quick):
    X = np.linspace(-1.0, 1.0, 4)[:, None]
    x = X[:, 0]
    y = np.maximum(x - 0.2, 0.0) + np.maximum(-x - 0.3, 0.0)
    return {"X": X, "y": y, "R0": float(np.mean(y**2) / 2), "quick": bool(quick)}


def _reference(data):
    return None  # each row is compared with GD's limit at its own width


def _error(vector, reference):
    theta, limit = vector
    return float(np.linalg.norm(theta - limit) / np.linalg.norm(limit))


def _net(data, m, smoothing):
    import flowsim as fs

    if data["quick"] and m not in QUICK_WIDTHS:
        raise Skip(f"m = {m}: full mode only")
    net = fs.ThreeLayer("relu", (m, m), 1, smoothing=smoothing)
    return fs, net, net.init(SEED, scale=SCALE)


def _limit(data, m):
    """GD's extrapolation to rate 0 at T_END (computed once per width, untimed)."""
    if m not in _LIMITS:
        fs, net, theta0 = _net(data, m, 0.0)
        runs = [
            fs.simulate(net, theta0, data["X"], data["y"], t_end=T_END, method="gd", dt=dt,
                        save_state="final", progress=False).theta_final
            for dt in (GD_DT, GD_DT / 2)
        ]  # fmt: skip
        _LIMITS[m] = 2 * runs[1] - runs[0]
    return _LIMITS[m]


def _build(m, smoothing, method):
    def build(data):
        fs, net, theta0 = _net(data, m, smoothing)
        X, y = data["X"], data["y"]
        options = dict(save_state="final", progress=False)
        if method == "gd":
            options.update(method="gd", dt=GD_DT)
        else:
            options.update(rtol=RTOL, max_wall=QUICK_MAX_WALL if data["quick"] else MAX_WALL)
        fs.simulate(net, theta0, X, y, t_end=GD_DT, **options)  # compile or load the kernels
        limit = _limit(data, m)

        def call():
            traj = fs.simulate(net, theta0, X, y, t_end=T_END, **options)
            return net, traj, limit, data

        return call

    return build


def _in_band(net, theta, X, eps):
    """Pairs within ``eps`` of their kinks in the smoothing's relative measure (both
    layers)."""
    p = net.unpack(theta)
    Xt = net.augment(X)
    Z = Xt @ p["V"].T
    H = np.hstack([np.maximum(Z, 0.0), np.ones((len(X), 1))])
    U = H @ p["W"].T
    inside = np.sum(np.abs(Z) < eps * np.sqrt(Xt**2 @ (p["V"] ** 2).T))
    return int(inside + np.sum(np.abs(U) < eps * np.sqrt(H**2 @ (p["W"] ** 2).T)))


def _collect(m, smoothing):
    def collect(value):
        net, traj, limit, data = value
        done = traj.status == "done"
        R = net.loss(traj.theta_final, data["X"], data["y"])
        band = _in_band(net, traj.theta_final, data["X"], max(smoothing, 1e-3))
        note = (
            f"{traj.status}, t {traj.t_final:.4g}, R/R0 {R / data['R0']:.3g}, steps "
            f"{traj.n_accepted}, rejected {traj.n_rejected}, pairs within "
            f"{max(smoothing, 1e-3):g} of a kink at the end {band}"
        )
        row = {"m": m, "smoothing": smoothing, "run_status": traj.status,
               "t_final": float(traj.t_final), "wall": float(traj.wall_time),
               "n_accepted": int(traj.n_accepted), "n_rejected": int(traj.n_rejected),
               "loss_over_R0": float(R / data["R0"]), "pairs_in_band": band}  # fmt: skip
        return {"vector": (traj.theta_final, limit) if done else None, "nfev": traj.nfev,
                "note": note, "status": "done" if done else "timeout", "row": row}  # fmt: skip

    return collect


def _impls():
    rows = []
    for m in WIDTHS:
        base = f"flowsim flow, smoothing {SMOOTHINGS[0]:g}, m = {m}"
        for eps in (0.0, *SMOOTHINGS):
            label = "exact kinks" if eps == 0.0 else f"smoothing {eps:g}"
            rows.append(Impl(f"flowsim flow, {label}, m = {m}", _build(m, eps, "auto"),
                             kind="flowsim", collect=_collect(m, eps), compare_to=base,
                             requires=("numba",), probe=False))  # fmt: skip
        rows.append(Impl(f"flowsim gd dt = {GD_DT:g}, m = {m}", _build(m, 0.0, "gd"),
                         collect=_collect(m, 0.0), compare_to=base, requires=("numba",),
                         probe=False))  # fmt: skip
    return tuple(rows)


R2 = Workload(
    id="R2",
    title=f"three-layer ReLU flow, condensed regime: 4 points, ThreeLayer('relu', (m, m), 1), "
    f"init std {SCALE:g}, m in {WIDTHS} ({QUICK_WIDTHS} with --quick), to t = {T_END:g}: "
    f"exact kinks, smoothing {SMOOTHINGS}, GD dt = {GD_DT:g}",
    make_data=make_data,
    reference=_reference,
    error=_error,
    impls=_impls(),
    **ONE_RUN,
    notes=(
        f"time: one run of each row after a compiling warm-up; flows: 'auto', rtol {RTOL:g}, "
        f"wall limit {MAX_WALL:g} s ({QUICK_MAX_WALL:g} s with --quick)",
        f"error: relative 2-norm distance at t = {T_END:g} from GD's rate-0 limit, "
        f"2 theta(dt = {GD_DT / 2:g}) - theta(dt = {GD_DT:g}) (none for a run stopped early)",
        "time / flowsim: the row's wall over the smoothing "
        f"{SMOOTHINGS[0]:g} flow's at the same width",
    ),
)
WORKLOADS = (R2,)
