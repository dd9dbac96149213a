"""Dropout's explicit regularizer ([ZX24], docs/theory.md §18).

References, all written here: the masked loss in plain NumPy, averaged over every one
of the 2^(n m) dropout masks with its probability (exact expectation); its gradient by
complex-step differentiation (exact to rounding); central differences of
``dropout_penalty`` for its gradient.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import flowsim as fs
from flowsim.theory import dropout_penalty, dropout_penalty_gradient

ACTIVATIONS = {"tanh": np.tanh, "softplus": lambda z: np.log1p(np.exp(z))}


def _masks(n, m, p):
    """Every mask (1 + eta) of shape (n, m) with its probability: (2^(nm), n, m), (2^(nm),)."""
    bits = np.array(list(itertools.product([0, 1], repeat=n * m)), dtype=float)
    kept = bits.sum(axis=1)
    prob = p**kept * (1 - p) ** (n * m - kept)
    return (bits / p).reshape(-1, n, m), prob


def _two_layer_hidden(theta, X, m, sigma, bias):
    Xa = np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X
    a, W = theta[:m], theta[m:].reshape(m, Xa.shape[1])
    return a, sigma(Xa @ W.T)  # (n, m)


def _three_layer_hidden(theta, X, widths, sigma, bias):
    m1, m2 = widths
    Xa = np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X
    m1b = m1 + int(bias)
    a, W = theta[:m2], theta[m2 : m2 + m2 * m1b].reshape(m2, m1b)
    V = theta[m2 + m2 * m1b :].reshape(m1, Xa.shape[1])
    H = sigma(Xa @ V.T)
    if bias:
        H = np.hstack([H, np.ones((H.shape[0], 1))])
    return a, sigma(H @ W.T)  # (n, m2)


def _expected_masked_loss(hidden, theta, X, y, alpha, masks, prob):
    """sum over masks of prob * 1/(2n) sum_i ((1/alpha) sum_k a_k h_ik mask_ik - y_i)^2."""
    a, h = hidden(theta, X)
    f = np.einsum("k,ik,sik->si", a, h, masks) / alpha
    return prob @ (np.mean((f - y) ** 2, axis=1) / 2)


def _complex_step_gradient(fun, theta, step=1e-30):
    out = np.empty(theta.size)
    for j in range(theta.size):
        shifted = theta.astype(complex)
        shifted[j] += 1j * step
        out[j] = fun(shifted).imag / step
    return out


CASES = [
    pytest.param("two", "tanh", True, 3, 3, id="two-tanh-bias-n3-m3"),
    pytest.param("two", "softplus", False, 2, 3, id="two-softplus-nobias-n2-m3"),
    pytest.param("two", "softplus", True, 3, 2, id="two-softplus-bias-n3-m2"),
    pytest.param("three", "tanh", True, 3, (2, 3), id="three-tanh-bias-n3-m2x3"),
    pytest.param("three", "softplus", False, 2, (3, 2), id="three-softplus-nobias-n2-m3x2"),
]


def _setup(kind, act, bias, n, width, rng, alpha=1.3, d=2):
    sigma = ACTIVATIONS[act]
    if kind == "two":
        net = fs.TwoLayer(act, width, d, bias=bias, alpha=alpha)
        m = width
        hidden = lambda theta, X: _two_layer_hidden(theta, X, width, sigma, bias)  # noqa: E731
    else:
        net = fs.ThreeLayer(act, width, d, bias=bias, alpha=alpha)
        m = width[1]
        hidden = lambda theta, X: _three_layer_hidden(theta, X, width, sigma, bias)  # noqa: E731
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    return net, theta, X, y, m, hidden


@pytest.mark.parametrize("kind, act, bias, n, width", CASES)
@pytest.mark.parametrize("p", [0.9, 0.35])
def test_expectation_over_all_masks(kind, act, bias, n, width, p, rng):
    """E_eta R_drop = R + R1 and E_eta grad R_drop = grad R + grad R1, exactly."""
    net, theta, X, y, m, hidden = _setup(kind, act, bias, n, width, rng)
    masks, prob = _masks(n, m, p)
    assert prob.sum() == pytest.approx(1.0, rel=1e-15)
    no_drop = np.ones((1, n, m)), np.ones(1)
    expected = _expected_masked_loss(hidden, theta, X, y, net.alpha, masks, prob)
    R = _expected_masked_loss(hidden, theta, X, y, net.alpha, *no_drop)
    R1 = dropout_penalty(net, theta, X, y, p)
    assert R1 > 0
    assert R + R1 == pytest.approx(expected, rel=1e-13)

    grad_expected = _complex_step_gradient(
        lambda t: _expected_masked_loss(hidden, t, X, y, net.alpha, masks, prob), theta
    )
    grad_R = _complex_step_gradient(
        lambda t: _expected_masked_loss(hidden, t, X, y, net.alpha, *no_drop), theta
    )
    got = grad_R + dropout_penalty_gradient(net, theta, X, y, p)
    np.testing.assert_allclose(got, grad_expected, rtol=0, atol=1e-13 * np.abs(grad_expected).max())


NETS = [
    pytest.param(lambda: fs.TwoLayer("tanh", 4, 2, alpha=0.7), id="two-tanh"),
    pytest.param(lambda: fs.TwoLayer("relu", 4, 2, bias=False), id="two-relu-nobias"),
    pytest.param(lambda: fs.TwoLayer("softplus", 3, 1, alpha=2.0), id="two-softplus-1d"),
    pytest.param(lambda: fs.ThreeLayer("tanh", (3, 2), 2, alpha=1.7), id="three-tanh"),
    pytest.param(lambda: fs.ThreeLayer("x**2*sin(x)", (2, 3), 2, bias=False), id="three-x2sin"),
]


@pytest.mark.parametrize("make", NETS)
def test_gradient_against_central_differences(make, rng):
    net = make()
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((6, net.input_dim)), rng.standard_normal(6)
    p = 0.8
    got = dropout_penalty_gradient(net, theta, X, y, p)
    assert got.shape == theta.shape
    h = 1e-6
    want = np.empty(theta.size)
    for j in range(theta.size):
        step = np.zeros(theta.size)
        step[j] = h
        upper = dropout_penalty(net, theta + step, X, y, p)
        lower = dropout_penalty(net, theta - step, X, y, p)
        want[j] = (upper - lower) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())


def test_scaling_in_p_and_alpha(rng):
    """R1 is (1-p)/p times a p-free sum and scales as 1/alpha^2 (closed form by hand)."""
    X, y = rng.standard_normal((5, 1)), rng.standard_normal(5)
    a, w, b = 0.6, -1.1, 0.4
    net = fs.TwoLayer("tanh", 1, 1, alpha=2.0)
    theta = np.array([a, w, b])
    want = (1 - 0.75) / (2 * 5 * 0.75) * np.sum((a * np.tanh(w * X[:, 0] + b) / 2.0) ** 2)
    assert dropout_penalty(net, theta, X, y, 0.75) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("make", NETS)
def test_keep_everything_gives_zero(make, rng):
    net = make()
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((4, net.input_dim)), rng.standard_normal(4)
    assert dropout_penalty(net, theta, X, y, 1.0) == 0.0
    assert not np.any(dropout_penalty_gradient(net, theta, X, y, 1))


def test_three_layer_pair_and_first_layer(rng):
    net = fs.ThreeLayer("tanh", (3, 2), 2)
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((4, 2)), rng.standard_normal(4)
    assert dropout_penalty(net, theta, X, y, (1, 0.6)) == dropout_penalty(net, theta, X, y, 0.6)
    np.testing.assert_array_equal(
        dropout_penalty_gradient(net, theta, X, y, [1.0, 0.6]),
        dropout_penalty_gradient(net, theta, X, y, 0.6),
    )
    for p in [(0.9, 1.0), (0.9, 0.9)]:
        with pytest.raises(ValueError, match="first hidden layer.*no closed-form"):
            dropout_penalty(net, theta, X, y, p)
        with pytest.raises(ValueError, match="first hidden layer"):
            dropout_penalty_gradient(net, theta, X, y, p)
    with pytest.raises(ValueError, match="pair"):
        dropout_penalty(net, theta, X, y, (1, 0.9, 0.9))


@pytest.mark.parametrize(
    "p", [0, 0.0, -0.1, 1.0000001, 2, float("nan"), float("inf"), "0.9", None, True, 0.5j]
)
def test_bad_keep_probability(p, rng):
    net = fs.TwoLayer("tanh", 2, 1)
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((3, 1)), rng.standard_normal(3)
    with pytest.raises(ValueError, match=r"keep probability.*\(0, 1\]"):
        dropout_penalty(net, theta, X, y, p)
    with pytest.raises(ValueError, match=r"keep probability.*\(0, 1\]"):
        dropout_penalty_gradient(net, theta, X, y, p)


def test_bad_inputs(rng):
    net = fs.TwoLayer("tanh", 2, 1)
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((3, 1)), rng.standard_normal(3)
    with pytest.raises(ValueError, match="keep probability"):
        dropout_penalty(net, theta, X, y, (1.0, 0.9))  # a pair is for three layers
    with pytest.raises(ValueError, match="theta must have shape"):
        dropout_penalty(net, theta[:-1], X, y, 0.9)
    with pytest.raises(ValueError, match="y must have shape"):
        dropout_penalty(net, theta, X, y[:2], 0.9)
    with pytest.raises(TypeError, match="TwoLayer or ThreeLayer"):
        dropout_penalty(object(), theta, X, y, 0.9)
