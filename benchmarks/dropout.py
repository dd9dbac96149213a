"""D1: gradient-descent steps with dropout on a two-layer tanh network ([ZX24], issue 17).

``f(x) = sum_k a_k tanh(w_k . x~)``, ``x~ = (x, 1)``, loss ``R = 1/(2n) sum_i (f(x_i) -
y_i)^2``, ``theta = [a (m), W (m, 2) row-major]`` (flowsim's layout); n = 1000 points
evenly spaced on [-10, 10], ``y = tanh(x - 6) + tanh(x + 6)``, m = 1000 neurons,
``theta0 = net.init(1, gamma=0.5, gamma_prime=0)`` (linear regime).

Every timed call runs :data:`STEPS` GD steps at learning rate :data:`LR` from
``theta0`` (fewer with ``--quick``), so times are per call and the ratios are
ratios of per-step costs, each call's fixed overhead included.  Rows: flowsim
``method="gd"`` plain, with dropout (keep probability :data:`P_KEEP`; masks drawn
inside the compiled loop) and with ``penalty=fs.penalty.dropout(P_KEEP)`` (GD on
``R + R1``); the same plain and dropout calls with one step each (the per-call
overhead); PyTorch CPU float64, autograd and a manual update, without and with
``torch.nn.functional.dropout(h, p=1 - P_KEEP, training=True)`` (PyTorch's p is
the drop probability; kept units are scaled by ``1/P_KEEP``: flowsim's
convention).

Accuracy: theta after the steps against GD with a dense NumPy gradient of ``R``
(plain rows) or of ``R + R1`` (the penalty row).  Dropout rows draw different
masks, so only their final full-data, unmasked R is given (a sanity number).
"""

from __future__ import annotations

import numpy as np

from benchmarks import _problem
from benchmarks._common import Impl, Workload

N = 1000
WIDTH = 1000
P_KEEP = 0.9
"""Keep probability of the dropout rows (10% of the hidden units dropped)."""

LR = 1e-3
"""Learning rate: stable here, the largest eigenvalue of the Gauss-Newton matrix
``J J^T / n`` at ``theta0`` is 708 (GD is stable below 2/708 = 2.8e-3)."""

STEPS = 200
"""GD steps per timed call (:data:`QUICK_STEPS` with ``--quick``)."""

QUICK_STEPS = 50
SEED = 1
"""Seed of ``theta0`` (``net.init``), of flowsim's masks and of ``torch.manual_seed``."""


def make_data(quick):
    """The grid on [-10, 10], the two-kink target and ``theta0`` of the linear regime."""
    import flowsim as fs

    X = np.linspace(-10.0, 10.0, N)[:, None]
    y = np.tanh(X[:, 0] - 6.0) + np.tanh(X[:, 0] + 6.0)
    theta0 = fs.TwoLayer("tanh", width=WIDTH, input_dim=1).init(SEED, gamma=0.5, gamma_prime=0)
    steps = QUICK_STEPS if quick else STEPS
    return {"X": X, "y": y, "theta0": theta0, "m": WIDTH, "lr": LR, "steps": steps,
            "p": P_KEEP}  # fmt: skip


def numpy_descent(theta, Xa, y, m, lr, steps, weight=0.0):
    """``steps`` GD steps on ``R + weight/(2n) sum_i sum_k (a_k tanh(w_k . x~_i))^2``.

    ``weight = (1 - p)/p`` gives ``R + R1``, the dropout penalty of keep probability p.

    Parameters
    ----------
    theta : ndarray, shape (m + m * D,)
    Xa : ndarray, shape (n, D)
        Inputs with the bias column.
    y : ndarray, shape (n,)
    m, steps : int
    lr, weight : float

    Returns
    -------
    ndarray, shape (m + m * D,)
    """
    n, D = Xa.shape
    theta = np.array(theta, dtype=np.float64)
    for _ in range(steps):
        grad = _problem.gradient(theta, Xa, y, m)  # R's term
        if weight:
            a = theta[:m]
            S = np.tanh(Xa @ theta[m:].reshape(m, D).T)  # (n, m)
            grad[:m] += weight * a * np.sum(S * S, axis=0) / n
            grad[m:] += (weight * (S * (1.0 - S * S)).T @ Xa * (a * a)[:, None]).ravel() / n
        theta -= lr * grad
    return theta


def _reference(data):
    args = (data["theta0"], np.hstack([data["X"], np.ones((N, 1))]), data["y"], data["m"],
            data["lr"], data["steps"])  # fmt: skip
    return {
        "plain": numpy_descent(*args),
        "penalty": numpy_descent(*args, weight=(1.0 - data["p"]) / data["p"]),
    }


def _error(result, reference):
    """Relative max difference in theta (plain and penalty rows); the final R (dropout)."""
    if result["kind"] == "dropout":
        return {"error": None, "text": f"R = {result['loss']:.5g} (masks differ: no reference)"}
    theta, ref = result["theta"], reference[result["kind"]]
    return float(np.max(np.abs(theta - ref)) / np.max(np.abs(ref)))


# -- implementations ----------------------------------------------------------------------------


def _build_flowsim(kind, one_step=False):
    def build(data):
        import flowsim as fs

        net = fs.TwoLayer("tanh", width=int(data["m"]), input_dim=1)
        lr, p = data["lr"], data["p"]
        options = {"dropout": p} if kind == "dropout" else {}
        if kind == "penalty":
            options = {"penalty": fs.penalty.dropout(p)}
        steps = 1 if one_step else int(data["steps"])
        args = (net, data["theta0"], data["X"], data["y"])

        def call():
            return fs.simulate(*args, t_end=steps * lr, method="gd", dt=lr, n_save=2, seed=SEED,
                               progress=False, **options)  # fmt: skip

        call()  # compile or load from the on-disk cache
        return call

    return build


def _collect_flowsim(kind, one_step=False):
    def collect(traj):
        loss = float(traj.loss[-1])
        note = f"{traj.n_accepted} steps, R = {loss:.5g}"
        result = None if one_step else {"kind": kind, "theta": traj.theta_final, "loss": loss}
        return {"vector": result, "nfev": traj.nfev, "note": note}

    return collect


def _build_torch(dropout):
    def build(data):
        import torch
        import torch.nn.functional as F

        m, lr, steps, drop = int(data["m"]), data["lr"], int(data["steps"]), 1.0 - data["p"]
        X = torch.from_numpy(np.ascontiguousarray(data["X"]))
        Xa = torch.cat([X, torch.ones_like(X)], dim=1)
        y = torch.from_numpy(np.ascontiguousarray(data["y"]))
        theta0 = torch.from_numpy(np.ascontiguousarray(data["theta0"]))

        def call():
            a = theta0[:m].clone().requires_grad_(True)
            W = theta0[m:].view(m, 2).clone().requires_grad_(True)
            for _ in range(steps):
                h = torch.tanh(Xa @ W.T)
                if dropout:
                    h = F.dropout(h, p=drop, training=True)
                loss = 0.5 * torch.mean((h @ a - y) ** 2)
                grad_a, grad_W = torch.autograd.grad(loss, (a, W))
                with torch.no_grad():
                    a -= lr * grad_a
                    W -= lr * grad_W
            with torch.no_grad():
                e = torch.tanh(Xa @ W.T) @ a - y
                loss = 0.5 * float(e @ e) / len(y)
            return torch.cat([a.detach(), W.detach().ravel()]).numpy(), loss

        torch.manual_seed(SEED)
        call()
        return call

    return build


def _collect_torch(kind):
    def collect(value):
        theta, loss = value
        return {"vector": {"kind": kind, "theta": theta, "loss": loss}, "nfev": None,
                "note": f"R = {loss:.5g}"}  # fmt: skip

    return collect


def _impls():
    plain, dropout = "flowsim gd", f"flowsim gd, dropout p = {P_KEEP:g}"

    def flowsim_row(name, kind, compare_to, one_step=False):
        return Impl(
            name,
            _build_flowsim(kind, one_step),
            kind="flowsim",
            collect=_collect_flowsim(kind, one_step),
            compare_to=compare_to,
            requires=("numba",),
            probe=not one_step,
        )

    def torch_row(name, kind, compare_to):
        return Impl(
            name,
            _build_torch(kind == "dropout"),
            collect=_collect_torch(kind),
            compare_to=compare_to,
            requires=("torch",),
        )

    return (
        flowsim_row(plain, "plain", plain),
        flowsim_row(dropout, "dropout", plain),
        flowsim_row(f"flowsim gd, penalty=dropout({P_KEEP:g})", "penalty", plain),
        flowsim_row("flowsim gd, 1 step per call", "plain", None, one_step=True),
        flowsim_row(
            f"flowsim gd, dropout p = {P_KEEP:g}, 1 step per call", "dropout", None, one_step=True
        ),  # fmt: skip
        torch_row("torch gd f64", "plain", plain),
        torch_row(f"torch gd f64, dropout p = {P_KEEP:g}", "dropout", dropout),
    )


D1 = Workload(
    id="D1",
    title=f"GD steps with dropout, two-layer tanh, n = {N}, m = {WIDTH}, d = 1 (with bias), "
    f"lr = {LR:g}, keep probability {P_KEEP:g}; {STEPS} steps per call ({QUICK_STEPS} with "
    "--quick)",
    make_data=make_data,
    reference=_reference,
    error=_error,
    impls=_impls(),
    repeat=7,
    quick_repeat=3,
    min_time=0.2,
    quick_min_time=0.05,
    notes=(
        "time: one call = all the steps (from theta0); per step = time / steps; the "
        "'1 step per call' rows give flowsim's per-call overhead (checks, data, allocation)",
        "error: max |theta - theta_numpy| / max |theta_numpy| after the steps, NumPy GD on R "
        "(plain rows) or R + R1 (penalty row); dropout rows: the final full-data R",
        "ratios: the dropout and penalty rows against flowsim gd, torch dropout against "
        "flowsim dropout",
    ),
)
WORKLOADS = (D1,)
