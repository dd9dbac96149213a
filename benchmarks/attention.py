"""A1: one gradient of the one-layer, one-head attention model (``fs.Attention``).

``f(X) = tanh(softmax(X_s WQ WK^T X^T / sqrt(d)) X WV W1) W2`` read at the last
token, exponential loss ``R = (1/n) sum_i exp(-y_i f(X_i))``, ``theta = [WQ, WK,
WV, W1, W2]`` row-major (flowsim's layout); Gaussian token sequences labeled by a
planted direction (:func:`flowsim.data.gaussian_sequences`).

Rows: flowsim's compiled kernel called directly (the cost inside an integrator
step), a vectorized NumPy gradient through the last query row, PyTorch CPU
autograd in float64 as a transformer computes it (every position: the s x s
attention matrix, the feed-forward layer on all s tokens, the loss read at the
last one) and PyTorch restricted to the last query row (the same arithmetic as
flowsim and NumPy).

A2: a whole run from small initialization (every layer N(0, eps^2), eps = 1e-4)
through stage 1 (the outer weights escape and condense) and stage 2 (the
key-query product collapses to rank one) on a small problem, until
``sigma_2/sigma_1`` of ``WQ WK^T`` falls below :data:`RANK_RATIO`: flowsim's flow
(``method="auto"``) against PyTorch gradient descent at its largest stable
learning rate.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._common import Impl, Skip, Workload, max_abs_relative

SEED = 0


def _matrices(theta, d, h):
    sizes = np.cumsum([d * d, d * d, d * d, d * h])
    WQ, WK, WV, W1, W2 = np.split(theta, sizes)
    return (WQ.reshape(d, d), WK.reshape(d, d), WV.reshape(d, d), W1.reshape(d, h),
            W2.reshape(h, 1))  # fmt: skip


def numpy_gradient(theta, X, y, h):
    """Gradient of ``R`` with dense NumPy operations, through the last query row.

    Parameters
    ----------
    theta : ndarray, shape (4 d^2 ... ,)
        ``[WQ (d, d), WK (d, d), WV (d, d), W1 (d, h), W2 (h, 1)]``.
    X : ndarray, shape (n, s, d)
    y : ndarray, shape (n,)
        Labels +-1.
    h : int

    Returns
    -------
    ndarray, same shape as theta
    """
    n, s, d = X.shape
    WQ, WK, WV, W1, W2 = _matrices(theta, d, h)
    xs = X[:, -1]
    q = xs @ WQ
    r = q @ WK.T
    z = np.einsum("nsd,nd->ns", X, r) / np.sqrt(d)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    xbar = np.einsum("ns,nsd->nd", p, X)
    a = xbar @ WV
    g = np.tanh(a @ W1)
    f = g @ W2[:, 0]
    df = -y * np.exp(-y * f) / n
    gW2 = g.T @ df
    du = np.outer(df, W2[:, 0]) * (1.0 - g * g)
    gW1 = a.T @ du
    da = du @ W1.T
    gWV = xbar.T @ da
    dp = np.einsum("nsd,nd->ns", X, da @ WV.T)
    dz = p * (dp - np.sum(p * dp, axis=1, keepdims=True))
    dr = np.einsum("ns,nsd->nd", dz, X) / np.sqrt(d)
    gWK = dr.T @ q
    gWQ = xs.T @ (dr @ WK)
    return np.concatenate([gWQ.ravel(), gWK.ravel(), gWV.ravel(), gW1.ravel(), gW2])


def make_data(n, s, d):
    """Tokens N(0, I_d), labels from a planted direction; WQ, WK, WV, W1 ~ N(0, 1/d),
    W2 ~ N(0, 1/h) (logits and pre-activations O(1))."""

    def build(quick):
        from flowsim.data import gaussian_sequences

        X, y = gaussian_sequences(n, s, d, seed=SEED)
        rng = np.random.default_rng(SEED + 1)
        theta = rng.standard_normal(4 * d * d + d) / np.sqrt(d)
        return {"X": X, "y": y, "theta": theta, "n": n, "s": s, "d": d}

    return build


def _reference(data):
    return numpy_gradient(data["theta"], data["X"], data["y"], data["d"])


def _build_flowsim_kernel(data):
    import flowsim as fs
    from flowsim.models._base import no_switching

    net = fs.Attention(data["d"])
    Xk, y = net.prepare_data(data["X"], data["y"])
    c, _ = net.flow_constants(net.unit_scales())
    theta = np.ascontiguousarray(data["theta"])
    kernels, dims = net.kernels_for(Xk.shape[0]), net.dims()
    mode, aux = no_switching()
    out = np.empty_like(theta)

    def call():
        kernels.flow(theta, Xk, y, c, dims, mode, aux, out)
        return out

    call()  # compile or load from the on-disk cache
    return call


def _build_numpy(data):
    theta, X, y, h = data["theta"], data["X"], data["y"], data["d"]
    numpy_gradient(theta, X, y, h)
    return lambda: numpy_gradient(theta, X, y, h)


def _build_torch(last_row_only):
    def build(data):
        import torch

        d = data["d"]
        X = torch.from_numpy(np.ascontiguousarray(data["X"]))
        y = torch.from_numpy(np.ascontiguousarray(data["y"]))
        theta = torch.tensor(data["theta"], dtype=torch.float64, requires_grad=True)
        cuts = [d * d, d * d, d * d, d * d, d]

        def call():
            WQ, WK, WV, W1, W2 = torch.split(theta, cuts)
            WQ, WK, WV, W1 = (M.view(d, d) for M in (WQ, WK, WV, W1))
            if last_row_only:
                r = (X[:, -1] @ WQ) @ WK.T
                p = torch.softmax(torch.einsum("nsd,nd->ns", X, r) / d**0.5, dim=-1)
                f = torch.tanh(torch.einsum("ns,nsd->nd", p, X) @ WV @ W1) @ W2
            else:
                scores = (X @ WQ) @ (X @ WK).transpose(1, 2) / d**0.5
                F = torch.tanh(torch.softmax(scores, dim=-1) @ X @ WV @ W1) @ W2
                f = F[:, -1]
            loss = torch.exp(-y * f).mean()
            (grad,) = torch.autograd.grad(loss, theta)
            return grad

        call()
        return call

    return build


def _impls():
    kernel = "flowsim kernel"

    def torch_row(name, last_row_only):
        return Impl(
            name,
            _build_torch(last_row_only),
            collect=lambda grad: {"vector": grad.detach().numpy(), "nfev": None},
            compare_to=kernel,
            requires=("torch",),
        )

    return (
        Impl(
            kernel,
            _build_flowsim_kernel,
            kind="flowsim",
            collect=lambda out: {"vector": -out, "nfev": None},
            compare_to=kernel,
            requires=("numba",),
        ),
        Impl("numpy (last query row)", _build_numpy, compare_to=kernel),
        torch_row("torch autograd f64 (every position)", False),
        torch_row("torch autograd f64 (last query row)", True),
    )


A1 = Workload(
    id="A1",
    title="gradient, attention (1 layer, 1 head, tanh, exponential loss), "
    "n = 1000 sequences, s = 10, d = h = 64",
    make_data=make_data(1000, 10, 64),
    reference=_reference,
    error=max_abs_relative,
    impls=_impls(),
    reference_impl="numpy (last query row)",
    repeat=7,
    quick_repeat=3,
    min_time=0.2,
    quick_min_time=0.05,
    notes=(
        "error: max |g - g_numpy| / max |g_numpy|",
        "flowsim: one pass per sequence through the last query row, chunks of sequences "
        "in parallel; torch 'every position' is the model as a transformer computes it",
    ),
)
# --- A2: stage 1 and stage 2, to rank collapse -----------------------------------------------

A2_SIZE = (16, 5, 6)
"""n sequences, s tokens, d = h (small: the whole GD run takes seconds)."""

EPS = 1e-4
"""Initial scale: every entry of every layer N(0, EPS^2)."""

RANK_RATIO = 0.05
"""Rank collapse: ``sigma_2/sigma_1`` of ``WQ WK^T`` below this (at t = 9.17e3 here)."""

T_END = 1.2e4
"""flowsim's run: from 0 to this time, the state saved every :data:`SAVE_EVERY`."""

SAVE_EVERY = 10.0

CHECK_EVERY = 10
"""GD checks the criterion (and its loss) every this many steps."""

LR_START = 1.0
"""Learning-rate search: doubled from here while GD stays stable (halved if it is not)."""


def rank_ratios(WQ, WK):
    """``sigma_2/sigma_1`` of ``WQ WK^T``, for one pair or stacks (..., d, d): the square
    root of the two largest eigenvalues' ratio of its Gram matrix (``eigvalsh``: 2.7x
    faster than ``svd`` on the saved states, and accurate to ~1e-13 at the threshold)."""
    A = WQ @ np.swapaxes(WK, -1, -2)
    lam = np.linalg.eigvalsh(A @ np.swapaxes(A, -1, -2))
    return np.sqrt(np.maximum(lam[..., -2], 0.0) / lam[..., -1])


def crossing_time(t, ratios):
    """First time the ratio falls below :data:`RANK_RATIO`, interpolated linearly in
    ``log ratio`` between the two saved states around it; None if it never does."""
    below = np.flatnonzero(np.asarray(ratios) < RANK_RATIO)
    if below.size == 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(t[0])
    a, b = math.log(ratios[k - 1]), math.log(ratios[k])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (a - math.log(RANK_RATIO)) / (a - b))


def _trajectory_crossing(net, traj):
    d = net.d
    states = traj.theta
    WQ = states[:, : d * d].reshape(-1, d, d)
    WK = states[:, d * d : 2 * d * d].reshape(-1, d, d)
    return crossing_time(traj.t, rank_ratios(WQ, WK))


def make_run_data(n, s, d):
    """Gaussian token sequences (:func:`flowsim.data.gaussian_sequences`, seed 0) and
    ``theta0 = fs.Attention(d).init(0, scale=EPS)``."""

    def build(quick):
        import flowsim as fs
        from flowsim.data import gaussian_sequences

        X, y = gaussian_sequences(n, s, d, seed=SEED)
        theta0 = fs.Attention(d).init(SEED, scale=EPS)
        return {"X": X, "y": y, "theta0": theta0, "n": n, "s": s, "d": d}

    return build


def _run_reference(data):
    """The collapse time of flowsim dop853 at rtol 1e-11: located on states every
    ``SAVE_EVERY``, then on states every ``SAVE_EVERY / 1000`` around it."""
    import flowsim as fs

    net = fs.Attention(int(data["d"]))
    args = (net, data["theta0"], data["X"], data["y"])
    options = {"method": "dop853", "rtol": 1e-11, "progress": False}
    save = np.arange(0.0, T_END + SAVE_EVERY / 2, SAVE_EVERY)
    t_cross = _trajectory_crossing(net, fs.simulate(*args, t_end=T_END, save=save, **options))
    if t_cross is None:
        raise RuntimeError(f"A2: no rank collapse before t = {T_END:g}")
    fine = np.linspace(t_cross - SAVE_EVERY, t_cross + SAVE_EVERY, 2001)
    fine = np.concatenate([[0.0], fine])
    traj = fs.simulate(*args, t_end=float(fine[-1]), save=fine, **options)
    return np.array([_trajectory_crossing(net, traj)])


def _build_flowsim_run(data):
    import flowsim as fs

    net = fs.Attention(int(data["d"]))
    args = (net, data["theta0"], data["X"], data["y"])
    save = np.arange(0.0, T_END + SAVE_EVERY / 2, SAVE_EVERY)

    def call():
        traj = fs.simulate(*args, t_end=T_END, method="auto", save=save, progress=False)
        return traj, _trajectory_crossing(net, traj)

    call()  # compile or load from the on-disk cache
    return call


def _collect_flowsim_run(value):
    traj, t_cross = value
    methods = ", ".join(f"{m} from t = {t:.3g}" for t, m in traj.method_log)
    note = (f"collapse at t = {t_cross:.6g} (states every {SAVE_EVERY:g} to t = {T_END:g}); "
            f"{methods}; {traj.n_accepted} steps")  # fmt: skip
    return {"vector": np.array([np.nan if t_cross is None else t_cross]), "nfev": traj.nfev,
            "note": note}  # fmt: skip


def _torch_descend(data, lr, max_steps):
    """GD on the last-query-row loss until the collapse (checked every CHECK_EVERY steps).

    Returns
    -------
    status : "done", "unstable" (the loss rose between two checks or is not finite)
        or "max_steps"
    steps : int
    """
    import torch

    d = int(data["d"])
    X = torch.from_numpy(np.ascontiguousarray(data["X"]))
    y = torch.from_numpy(np.ascontiguousarray(data["y"]))
    theta = torch.tensor(data["theta0"], dtype=torch.float64, requires_grad=True)
    cuts = [d * d, d * d, d * d, d * d, d]
    last = math.inf
    for k in range(max_steps + 1):
        WQ, WK, WV, W1, W2 = torch.split(theta, cuts)
        WQ, WK, WV, W1 = (M.view(d, d) for M in (WQ, WK, WV, W1))
        r = (X[:, -1] @ WQ) @ WK.T
        p = torch.softmax(torch.einsum("nsd,nd->ns", X, r) / d**0.5, dim=-1)
        f = torch.tanh(torch.einsum("ns,nsd->nd", p, X) @ WV @ W1) @ W2
        loss = torch.exp(-y * f).mean()
        if k % CHECK_EVERY == 0:
            value = loss.item()
            if not value <= last:  # rose, or not finite
                return "unstable", k
            last = value
            with torch.no_grad():
                sv = torch.linalg.svdvals(WQ @ WK.T)
            if sv[1].item() < RANK_RATIO * sv[0].item():
                return "done", k
        if k == max_steps:
            break
        (grad,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr * grad
    return "max_steps", max_steps


def stable_rate(data, t_collapse):
    """Largest ``LR_START * 2^k`` at which GD reaches the collapse with its loss never
    rising (checked every CHECK_EVERY steps), within 3 x ``t_collapse`` / lr steps.

    Returns
    -------
    lr : float
    tried : list of (lr, status, steps)
    """
    tried = []

    def attempt(lr):
        status, steps = _torch_descend(data, lr, int(math.ceil(3 * t_collapse / lr)))
        tried.append((lr, status, steps))
        return status == "done"

    lr = LR_START
    if attempt(lr):
        while attempt(2 * lr):
            lr *= 2
        return lr, tried
    for _ in range(30):
        lr /= 2
        if attempt(lr):
            return lr, tried
    raise Skip("GD did not reach the collapse at any rate tried")


GD_THREADS = 1
"""PyTorch threads of the GD row: at this size a second thread only adds synchronization
(measured: 0.55 ms per step on one thread, 3.3 ms on two, on the loaded machine); flowsim
runs its serial kernels here too (n P below ``PARALLEL_MIN_WORK``)."""


def _build_torch_gd(data):
    import torch

    def single_threaded(run, *args):
        previous = torch.get_num_threads()
        torch.set_num_threads(GD_THREADS)
        try:
            return run(*args)
        finally:
            torch.set_num_threads(previous)

    t_collapse = float(_run_reference(data)[0])
    lr, tried = single_threaded(stable_rate, data, t_collapse)
    max_steps = int(math.ceil(3 * t_collapse / lr))
    search = ", ".join(f"{rate:g}: {status} at step {steps}" for rate, status, steps in tried)
    note = (f"lr = {lr:g}, the largest stable of the doubling search ({search}); "
            f"{GD_THREADS} torch thread")  # fmt: skip

    def call():
        status, steps = single_threaded(_torch_descend, data, lr, max_steps)
        return {"status": status, "steps": steps, "lr": lr, "note": note}

    single_threaded(_torch_descend, data, lr, 2 * CHECK_EVERY)  # warm-up
    return call


def _collect_torch_gd(value):
    steps, lr = value["steps"], value["lr"]
    done = value["status"] == "done"
    note = f"{steps} steps, collapse at t = {steps * lr:.6g}; " + value["note"]
    return {"vector": np.array([steps * lr]) if done else None, "nfev": steps,
            "status": "done" if done else "failed", "note": note}  # fmt: skip


A2 = Workload(
    id="A2",
    title=f"attention (tanh, exponential loss), n = {A2_SIZE[0]}, s = {A2_SIZE[1]}, "
    f"d = h = {A2_SIZE[2]}, init std {EPS:g}: stage 1 + stage 2 until sigma_2/sigma_1 of "
    f"WQ WK^T < {RANK_RATIO:g}",
    make_data=make_run_data(*A2_SIZE),
    reference=_run_reference,
    error=max_abs_relative,
    impls=(
        Impl(
            "flowsim auto",
            _build_flowsim_run,
            kind="flowsim",
            collect=_collect_flowsim_run,
            compare_to="flowsim auto",
            requires=("numba",),
            probe=False,
        ),
        Impl(
            "torch GD f64 (last query row)",
            _build_torch_gd,
            collect=_collect_torch_gd,
            compare_to="flowsim auto",
            requires=("torch",),
            probe=False,
        ),
    ),  # fmt: skip
    repeat=3,
    quick_repeat=1,
    min_time=0.0,
    quick_min_time=0.0,
    notes=(
        "error: |t_collapse - t_ref| / t_ref, t_ref from flowsim dop853 at rtol 1e-11 "
        f"(states every {SAVE_EVERY / 1000:g} around the collapse)",
        f"flowsim: simulate to t = {T_END:g}, states every {SAVE_EVERY:g}, the collapse "
        "located on them (interpolated in log ratio); GD: checks every "
        f"{CHECK_EVERY} steps, t = steps * lr",
    ),
)
WORKLOADS = (A1, A2)
