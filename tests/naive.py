"""Slow, obviously-correct references in plain NumPy (the stumpy ``tests/naive.py`` pattern).

Everything here is written from docs/theory.md §1, in ORIGINAL variables, and
shares no code with flowsim: the activations are plain NumPy/SciPy functions
(registered names) or SymPy expressions lambdified here (expression
activations); the gradients are hand-written backpropagation.

Layout of flat parameter vectors (the documented one, re-implemented here):
two-layer ``theta = [a (m), W (m, D) row-major]``; three-layer
``theta = [a (m2), W (m2, m1[+1]) row-major, V (m1, D) row-major]``.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from scipy import special

SQRT2 = np.sqrt(2.0)
SQRT2PI = np.sqrt(2.0 * np.pi)


def _sech2(z):
    return 1.0 / np.cosh(z) ** 2


def _expit_d1(z):
    s = special.expit(z)
    return s * (1.0 - s)


def _expit_d2(z):
    s = special.expit(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _phi(z):
    return np.exp(-0.5 * z * z) / SQRT2PI


# name -> (sigma, sigma', sigma''), written independently of flowsim's REGISTRY.
REFERENCE: dict[str, tuple] = {
    "linear": (lambda z: z * 1.0, lambda z: np.ones_like(z), lambda z: np.zeros_like(z)),
    "relu": (
        lambda z: np.maximum(z, 0.0),
        lambda z: (z > 0).astype(float),
        lambda z: np.zeros_like(z),
    ),
    "leaky_relu": (
        lambda z: np.where(z > 0, z, 0.01 * z),
        lambda z: np.where(z > 0, 1.0, 0.01),
        lambda z: np.zeros_like(z),
    ),
    "tanh": (np.tanh, _sech2, lambda z: -2.0 * np.tanh(z) * _sech2(z)),
    "sigmoid": (special.expit, _expit_d1, _expit_d2),
    "softplus": (lambda z: np.logaddexp(0.0, z), special.expit, _expit_d1),
    "sin": (np.sin, np.cos, lambda z: -np.sin(z)),
    "xtanh": (
        lambda z: z * np.tanh(z),
        lambda z: np.tanh(z) + z * _sech2(z),
        lambda z: 2.0 * _sech2(z) * (1.0 - z * np.tanh(z)),
    ),
    "x2tanh": (
        lambda z: z * z * np.tanh(z),
        lambda z: 2.0 * z * np.tanh(z) + z * z * _sech2(z),
        lambda z: 2.0 * np.tanh(z) + 4.0 * z * _sech2(z) - 2.0 * z * z * np.tanh(z) * _sech2(z),
    ),
    "gelu": (
        lambda z: 0.5 * z * (1.0 + special.erf(z / SQRT2)),
        lambda z: 0.5 * (1.0 + special.erf(z / SQRT2)) + z * _phi(z),
        lambda z: _phi(z) * (2.0 - z * z),
    ),
    "silu": (
        lambda z: z * special.expit(z),
        lambda z: special.expit(z) + z * _expit_d1(z),
        lambda z: _expit_d1(z) * (2.0 + z * (1.0 - 2.0 * special.expit(z))),
    ),
}


@functools.cache
def _lambdified(text: str) -> tuple:
    """sigma, sigma', sigma'' of a SymPy expression in x, lambdified to NumPy/SciPy."""
    x = sp.Symbol("x", real=True)
    expr = sp.sympify(text, locals={"x": x})
    d1 = sp.diff(expr, x)
    d2 = sp.diff(d1, x)
    modules = ["numpy", "scipy"]

    def vectorized(e):
        f = sp.lambdify(x, e, modules)
        return lambda z: np.broadcast_to(f(z), np.shape(z)).astype(float)

    return vectorized(expr), vectorized(d1), vectorized(d2)


def sigma_functions(spec: str) -> tuple:
    """``(sigma, sigma', sigma'')`` as NumPy callables for a name or an expression."""
    if spec in REFERENCE:
        return REFERENCE[spec]
    return _lambdified(spec)


def augment(X, bias: bool) -> np.ndarray:
    """Append a column of ones when ``bias``."""
    X = np.asarray(X, dtype=float)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X


# --------------------------------------------------------------------------- two layers


def two_layer_split(theta, m: int, D: int):
    theta = np.asarray(theta, dtype=float)
    return theta[:m].copy(), theta[m:].reshape(m, D).copy()


def two_layer_join(a, W) -> np.ndarray:
    return np.concatenate([np.ravel(a), np.ravel(W)])


def two_layer_output(spec, a, W, X, *, alpha, bias):
    """f(x_i) = (1/alpha) sum_k a_k sigma(w_k . x~_i)."""
    s, _, _ = sigma_functions(spec)
    Xa = augment(X, bias)
    f = np.zeros(Xa.shape[0])
    for k in range(len(a)):
        f += a[k] * s(Xa @ W[k])
    return f / alpha


def two_layer_loss(spec, a, W, X, y, *, alpha, bias) -> float:
    e = two_layer_output(spec, a, W, X, alpha=alpha, bias=bias) - np.asarray(y)
    return 0.5 * float(np.mean(e * e))


def two_layer_gradient(spec, a, W, X, y, *, alpha, bias):
    """(dR/da, dR/dW) by the chain rule, neuron by neuron."""
    s, ds, _ = sigma_functions(spec)
    Xa = augment(X, bias)
    n = Xa.shape[0]
    e = two_layer_output(spec, a, W, X, alpha=alpha, bias=bias) - np.asarray(y)
    ga = np.zeros_like(a, dtype=float)
    gW = np.zeros_like(W, dtype=float)
    for k in range(len(a)):
        z = Xa @ W[k]
        ga[k] = np.sum(e * s(z)) / (n * alpha)
        gW[k] = (e * a[k] * ds(z)) @ Xa / (n * alpha)
    return ga, gW


# --------------------------------------------------------------------------- three layers


def three_layer_split(theta, widths, D: int, bias: bool):
    m1, m2 = widths
    m1b = m1 + (1 if bias else 0)
    theta = np.asarray(theta, dtype=float)
    a = theta[:m2].copy()
    W = theta[m2 : m2 + m2 * m1b].reshape(m2, m1b).copy()
    V = theta[m2 + m2 * m1b :].reshape(m1, D).copy()
    assert V.size == m1 * D
    return a, W, V


def three_layer_join(a, W, V) -> np.ndarray:
    return np.concatenate([np.ravel(a), np.ravel(W), np.ravel(V)])


def _three_layer_forward(spec, a, W, V, X, *, alpha, bias):
    s, _, _ = sigma_functions(spec)
    Xa = augment(X, bias)
    Z = Xa @ V.T  # (n, m1): first-layer pre-activations
    H = augment(s(Z), bias)  # (n, m1[+1]): constant 1 appended for the second-layer bias
    U = H @ W.T  # (n, m2)
    G = s(U)
    f = G @ a / alpha
    return Xa, Z, H, U, G, f


def three_layer_output(spec, a, W, V, X, *, alpha, bias):
    return _three_layer_forward(spec, a, W, V, X, alpha=alpha, bias=bias)[-1]


def three_layer_loss(spec, a, W, V, X, y, *, alpha, bias) -> float:
    e = three_layer_output(spec, a, W, V, X, alpha=alpha, bias=bias) - np.asarray(y)
    return 0.5 * float(np.mean(e * e))


def three_layer_gradient(spec, a, W, V, X, y, *, alpha, bias):
    """(dR/da, dR/dW, dR/dV) by manual backpropagation."""
    _, ds, _ = sigma_functions(spec)
    Xa, Z, H, U, G, f = _three_layer_forward(spec, a, W, V, X, alpha=alpha, bias=bias)
    n = Xa.shape[0]
    m1 = V.shape[0]
    df = (f - np.asarray(y)) / n  # dR/df_i
    ga = G.T @ df / alpha
    dU = (df[:, None] * a[None, :] / alpha) * ds(U)  # dR/du_ik
    gW = dU.T @ H
    dZ = (dU @ W[:, :m1]) * ds(Z)  # the bias column does not depend on V
    gV = dZ.T @ Xa
    return ga, gW, gV


def smoothed_kink(z, s, eps, lo, hi):
    """``lo z + (hi - lo) s rho(z / s)``: the kink at 0 smoothed over ``|z| < eps s`` by
    the C^2 ramp ``rho = 2 eps t^3 (1 - t/2)``, ``t = (r + eps) / (2 eps)`` (ReLU outside)."""
    r = z / s
    t = np.clip((r + eps) / (2 * eps), 0.0, 1.0)
    rho = np.where(r >= eps, r, 2 * eps * t**3 * (1 - t / 2))
    return lo * z + (hi - lo) * s * rho


def three_layer_smoothed_loss(theta, net, X, y) -> float:
    """R of a ``ThreeLayer(..., smoothing=eps)`` from its documented formula (NumPy)."""
    lo, hi = (float(net.activation.derivative(v)) for v in (-1.0, 1.0))
    eps = net.smoothing
    a, W, V = three_layer_split(theta, net.widths, net.D, net.bias)
    Xa = augment(X, net.bias)
    Z = Xa @ V.T
    H = augment(smoothed_kink(Z, np.sqrt(Xa**2 @ (V**2).T), eps, lo, hi), net.bias)
    G = smoothed_kink(H @ W.T, np.sqrt(H**2 @ (W**2).T), eps, lo, hi)
    e = G @ a / net.alpha - np.asarray(y)
    return 0.5 * float(np.mean(e * e))


# --------------------------------------------------------------------------- flat helpers


def central_differences(fun, theta, h=1e-6) -> np.ndarray:
    """``d fun / d theta`` by central differences of step ``h``: shape (P,) for a scalar
    ``fun``, the Jacobian (size of fun, P) for a vector-valued one."""
    columns = []
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        columns.append((fun(theta + step) - fun(theta - step)) / (2 * h))
    return np.array(columns).T


def flat_gradient(net, theta, X, y) -> np.ndarray:
    """Naive gradient of a flowsim net's loss at flat ``theta`` (documented layout)."""
    spec = net.activation.name
    if type(net).__name__ == "TwoLayer":
        a, W = two_layer_split(theta, net.width, net.D)
        return two_layer_join(*two_layer_gradient(spec, a, W, X, y, alpha=net.alpha, bias=net.bias))
    a, W, V = three_layer_split(theta, net.widths, net.D, net.bias)
    return three_layer_join(
        *three_layer_gradient(spec, a, W, V, X, y, alpha=net.alpha, bias=net.bias)
    )


def flat_output(net, theta, X) -> np.ndarray:
    spec = net.activation.name
    if type(net).__name__ == "TwoLayer":
        a, W = two_layer_split(theta, net.width, net.D)
        return two_layer_output(spec, a, W, X, alpha=net.alpha, bias=net.bias)
    a, W, V = three_layer_split(theta, net.widths, net.D, net.bias)
    return three_layer_output(spec, a, W, V, X, alpha=net.alpha, bias=net.bias)


def flat_loss(net, theta, X, y) -> float:
    e = flat_output(net, theta, X) - np.asarray(y)
    return 0.5 * float(np.mean(e * e))


def gradient_descent(net, theta0, X, y, lr: float, n_iter: int) -> np.ndarray:
    """Iterates ``theta_{k+1} = theta_k - lr grad R(theta_k)``, shape (n_iter + 1, P)."""
    out = np.empty((n_iter + 1, np.size(theta0)))
    theta = np.array(theta0, dtype=float)
    out[0] = theta
    for k in range(n_iter):
        theta = theta - lr * flat_gradient(net, theta, X, y)
        out[k + 1] = theta
    return out


# --------------------------------------------------------------------------- attention


def attention_split(theta, d: int, h: int, o: int) -> dict:
    """``theta = [WQ (d, d), WK (d, d), WV (d, d), W1 (d, h), W2 (h, o)]``, row-major."""
    shapes = {"WQ": (d, d), "WK": (d, d), "WV": (d, d), "W1": (d, h), "W2": (h, o)}
    out, start = {}, 0
    for name, shape in shapes.items():
        size = shape[0] * shape[1]
        out[name] = np.asarray(theta[start : start + size], dtype=float).reshape(shape)
        start += size
    return out


def attention_join(params: dict) -> np.ndarray:
    return np.concatenate([params[k].ravel() for k in ("WQ", "WK", "WV", "W1", "W2")])


def _attention_forward(spec, p, X):
    """Every position (the full s x s attention matrix), as a transformer computes it."""
    sigma = sigma_functions(spec)[0]
    d = X.shape[2]
    Qm = X @ p["WQ"]
    Km = X @ p["WK"]
    A = special.softmax(Qm @ Km.transpose(0, 2, 1) / np.sqrt(d), axis=-1)  # (n, s, s)
    AX = A @ X
    Z = AX @ p["WV"] @ p["W1"]
    F = sigma(Z) @ p["W2"]  # (n, s, o)
    return Qm, Km, A, AX, Z, F


def attention_output(spec, p, X, U=None) -> np.ndarray:
    """Last token's output (n,), or its logits ``f U^T`` (n, V) when ``U`` is given."""
    f = _attention_forward(spec, p, np.asarray(X, dtype=float))[-1][:, -1, :]
    return f @ U.T if U is not None else f[:, 0]


def _attention_sample_losses(loss, out, y):
    """Per-sample losses and their derivatives in ``out`` ((n,) or logits (n, V))."""
    if loss == "exponential":
        value = np.exp(-y * out)
        return value, -y * value
    if loss == "squared":
        return 0.5 * (out - y) ** 2, out - y
    labels = y.astype(int)
    lse = special.logsumexp(out, axis=1)
    onehot = np.eye(out.shape[1])[labels]
    return lse - out[np.arange(out.shape[0]), labels], special.softmax(out, axis=1) - onehot


def attention_loss(spec, p, X, y, loss, U=None) -> float:
    out = attention_output(spec, p, X, U)
    return float(np.mean(_attention_sample_losses(loss, out, np.asarray(y, dtype=float))[0]))


def attention_gradient(spec, p, X, y, loss, U=None) -> dict:
    """Hand-written backpropagation through every position of the full attention."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n, s, d = X.shape
    dsigma = sigma_functions(spec)[1]
    Qm, Km, A, AX, Z, F = _attention_forward(spec, p, X)
    f = F[:, -1, :]
    out = f @ U.T if U is not None else f[:, 0]
    dout = _attention_sample_losses(loss, out, y)[1] / n
    dF = np.zeros_like(F)
    dF[:, -1, :] = dout @ U if U is not None else dout[:, None]
    grads = {"W2": np.einsum("nsh,nso->ho", sigma_functions(spec)[0](Z), dF)}
    dZ = (dF @ p["W2"].T) * dsigma(Z)
    AXV = AX @ p["WV"]
    grads["W1"] = np.einsum("nsd,nsh->dh", AXV, dZ)
    dAXV = dZ @ p["W1"].T
    grads["WV"] = np.einsum("nsd,nse->de", AX, dAXV)
    dA = (dAXV @ p["WV"].T) @ X.transpose(0, 2, 1)  # (n, s, s)
    dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True)) / np.sqrt(d)
    grads["WQ"] = np.einsum("nsd,nse->de", X, dS @ Km)
    grads["WK"] = np.einsum("nsd,nse->de", X, dS.transpose(0, 2, 1) @ Qm)
    return grads


def _token_attention_forward(p, ids, scaled):
    """Full causal attention over every position (not only the last query row)."""
    E = p["W0"][np.asarray(ids, dtype=int)]  # (n, s, m)
    Q = E @ p["WQ"]
    K = E @ p["WK"]
    S = Q @ K.transpose(0, 2, 1) / (np.sqrt(E.shape[2]) if scaled else 1.0)
    s = E.shape[1]
    S = np.where(np.tril(np.ones((s, s), dtype=bool)), S, -np.inf)  # causal mask
    A = special.softmax(S, axis=-1)
    H = A @ E  # value = identity
    return E, Q, K, A, H, H @ p["W1"]  # logits at every position


def _target_weights(Y, V):
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = np.eye(V)[Y.astype(int)]
    return Y / Y.sum()


def token_attention_loss(p, ids, Y, *, scaled=True) -> float:
    """``sum_iv Y_iv (logsumexp(l_i) - l_iv) / sum Y`` on the last position's logits;
    ``Y`` next-token ids (n,) or weights (n, V)."""
    logits = _token_attention_forward(p, ids, scaled)[-1][:, -1, :]
    Y = _target_weights(Y, logits.shape[1])
    lse = special.logsumexp(logits, axis=1)
    return float(np.sum(Y * (lse[:, None] - logits)))


def token_attention_gradient(p, ids, Y, *, scaled=True) -> dict:
    """Hand-written backpropagation through the full causal attention, token vectors
    gathered from W0 and their gradients added back into its rows (``np.add.at``)."""
    ids = np.asarray(ids, dtype=int)
    E, Q, K, A, H, L = _token_attention_forward(p, ids, scaled)
    n, s, m = E.shape
    Y = _target_weights(Y, L.shape[2])
    dL = np.zeros_like(L)
    dL[:, -1, :] = Y.sum(axis=1)[:, None] * special.softmax(L[:, -1, :], axis=1) - Y
    grads = {"W1": np.einsum("nsm,nsv->mv", H, dL)}
    dH = dL @ p["W1"].T
    dE = A.transpose(0, 2, 1) @ dH  # value path
    dA = dH @ E.transpose(0, 2, 1)
    dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True)) / (np.sqrt(m) if scaled else 1.0)
    dQ = dS @ K
    dK = dS.transpose(0, 2, 1) @ Q
    grads["WQ"] = np.einsum("nsm,nsk->mk", E, dQ)
    grads["WK"] = np.einsum("nsm,nsk->mk", E, dK)
    dE += dQ @ p["WQ"].T + dK @ p["WK"].T
    dW0 = np.zeros_like(p["W0"])
    np.add.at(dW0, ids.ravel(), dE.reshape(-1, m))
    grads["W0"] = dW0
    return grads
