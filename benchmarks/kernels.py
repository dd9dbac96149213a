"""K1, K2: one gradient of a two-layer tanh network.

``f(x) = sum_k a_k tanh(w_k . x~)``, loss ``R = 1/(2n) sum_i (f(x_i) - y_i)^2``,
``theta = [a (m), W (m, D) row-major]`` (flowsim's layout), ``x~ = (x, 1)``.

Rows: flowsim's compiled kernel called directly (the cost inside an
integrator step), flowsim's public ``net.gradient`` (input checks, bias
column, allocation), a vectorized NumPy gradient, PyTorch CPU autograd in
float64, and one ``np.exp`` over ``n * m`` elements: the throughput floor of
any method that evaluates a transcendental function per (sample, neuron) pair.
"""

from __future__ import annotations

import inspect

import numpy as np

from benchmarks._common import Impl, Workload, max_abs_relative

SEED = 0


def numpy_gradient(theta, Xa, y, m):
    """Gradient of ``R`` with dense NumPy operations (one ``tanh`` per sample and neuron).

    Parameters
    ----------
    theta : ndarray, shape (m + m * D,)
    Xa : ndarray, shape (n, D)
        Inputs with the bias column.
    y : ndarray, shape (n,)
    m : int

    Returns
    -------
    ndarray, shape (m + m * D,)
    """
    n, D = Xa.shape
    a = theta[:m]
    W = theta[m:].reshape(m, D)
    S = np.tanh(Xa @ W.T)  # (n, m)
    e = S @ a - y
    grad = np.empty_like(theta)
    grad[:m] = (e @ S) / n
    np.multiply(S, S, out=S)
    np.subtract(1.0, S, out=S)  # tanh' = 1 - tanh^2
    S *= e[:, None]
    grad[m:] = ((S.T @ Xa) * a[:, None]).ravel() / n
    return grad


def make_data(n, m, d):
    """Inputs uniform on [-1, 1]^d, ``y = sin(3 x_1) + sin(6 x_1)/2``, ``a ~ N(0, 1/m)``,
    ``w ~ N(0, I/D)`` (pre-activations O(1): tanh's general path, not its small-argument one).
    """

    def build(quick):
        rng = np.random.default_rng(SEED)
        D = d + 1
        X = rng.uniform(-1.0, 1.0, size=(n, d))
        y = np.sin(3 * X[:, 0]) + np.sin(6 * X[:, 0]) / 2
        a = rng.standard_normal(m) / np.sqrt(m)
        W = rng.standard_normal((m, D)) / np.sqrt(D)
        theta = np.concatenate([a, W.ravel()])
        Xa = np.hstack([X, np.ones((n, 1))])
        return {"X": X, "Xa": Xa, "y": y, "theta": theta, "n": n, "m": m, "d": d}

    return build


def _reference(data):
    return numpy_gradient(data["theta"], data["Xa"], data["y"], data["m"])


# -- implementations ----------------------------------------------------------------------------


def _flowsim_net(data):
    import flowsim as fs

    return fs.TwoLayer("tanh", data["m"], data["d"], bias=True)


def _raw_flow_call(kernels, theta, Xa, y, c, dims, out):
    """``kernels.flow`` bound to its arguments, on the plain-activation path.

    The kernel is ``flow(theta, X, y, c, dims, mode, aux, out)``, where empty
    ``mode``/``aux`` arrays (``no_switching()``) mean "evaluate the activation
    itself"; the older ``flow(theta, X, y, c, dims, out)`` is accepted too.
    """
    names = list(inspect.signature(kernels.flow.py_func).parameters)
    if len(names) == 6:
        return lambda: kernels.flow(theta, Xa, y, c, dims, out)
    if names[5:7] == ["mode", "aux"]:
        from flowsim.models._base import no_switching

        mode, aux = no_switching()
        return lambda: kernels.flow(theta, Xa, y, c, dims, mode, aux, out)
    raise RuntimeError(f"unknown signature of flowsim's flow kernel: {names}")


def _build_flowsim_kernel(data):
    net = _flowsim_net(data)
    kernels = net.kernels
    c, _ = net.flow_constants(net.unit_scales())
    theta = np.ascontiguousarray(data["theta"])
    Xa = np.ascontiguousarray(net.augment(data["X"]))
    y = np.ascontiguousarray(data["y"])
    out = np.empty_like(theta)
    call_kernel = _raw_flow_call(kernels, theta, Xa, y, c, net.dims(), out)
    call_kernel()  # compile or load from the on-disk cache

    def call():
        call_kernel()
        return out

    return call


def _build_flowsim_public(data):
    net = _flowsim_net(data)
    theta, X, y = data["theta"], data["X"], data["y"]
    net.gradient(theta, X, y)
    return lambda: net.gradient(theta, X, y)


def _build_numpy(data):
    theta, Xa, y, m = data["theta"], data["Xa"], data["y"], data["m"]
    numpy_gradient(theta, Xa, y, m)
    return lambda: numpy_gradient(theta, Xa, y, m)


def _build_torch(data):
    import torch

    m, n = data["m"], data["n"]
    Xa = torch.from_numpy(np.ascontiguousarray(data["Xa"]))
    y = torch.from_numpy(np.ascontiguousarray(data["y"]))
    theta = torch.tensor(data["theta"], dtype=torch.float64, requires_grad=True)
    D = Xa.shape[1]

    def call():
        a = theta[:m]
        W = theta[m:].view(m, D)
        e = torch.tanh(Xa @ W.T) @ a - y
        loss = 0.5 * (e @ e) / n
        (grad,) = torch.autograd.grad(loss, theta)
        return grad

    call()
    return call


def _build_exp(data):
    size = data["n"] * data["m"]
    z = np.linspace(-3.0, 3.0, size)
    buffer = np.empty(size)
    np.exp(z, out=buffer)
    return lambda: np.exp(z, out=buffer)


def _impls():
    kernel = "flowsim kernel"
    return (
        Impl(
            kernel,
            _build_flowsim_kernel,
            kind="flowsim",
            collect=lambda out: {"vector": -out, "nfev": None},
            compare_to=kernel,
            requires=("numba",),
        ),
        Impl(
            "flowsim net.gradient",
            _build_flowsim_public,
            kind="flowsim",
            compare_to=kernel,
            requires=("numba",),
        ),
        Impl("numpy", _build_numpy, compare_to=kernel),
        Impl(
            "torch autograd f64",
            _build_torch,
            collect=lambda grad: {"vector": grad.detach().numpy(), "nfev": None},
            compare_to=kernel,
            requires=("torch",),
        ),
        Impl(
            "np.exp over n*m (floor)",
            _build_exp,
            kind="floor",
            collect=lambda _: {"vector": None, "nfev": None},
            compare_to=kernel,
        ),
    )


def _workload(id, n, m, d):
    return Workload(
        id=id,
        title=f"gradient, two-layer tanh, n = {n} samples, m = {m} neurons, d = {d} (D = {d + 1})",
        make_data=make_data(n, m, d),
        reference=_reference,
        error=max_abs_relative,
        impls=_impls(),
        reference_impl="numpy",
        repeat=7,
        quick_repeat=3,
        min_time=0.2,
        quick_min_time=0.05,
        notes=(
            "error: max |g - g_numpy| / max |g_numpy|",
            "all evaluate tanh n m times; flowsim keeps O(m) per chunk of samples (one pass), "
            "NumPy and PyTorch keep the (n, m) matrix",
        ),
    )


K1 = _workload("K1", n=100, m=10_000, d=1)
K2 = _workload("K2", n=1000, m=1000, d=10)
WORKLOADS = (K1, K2)
