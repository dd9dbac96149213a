"""The NumPy problem the benchmark competitors and references use (benchmarks/_problem.py).

The competitors of W1-W3 integrate a NumPy right-hand side and the reference
solver uses an analytic Hessian as its Jacobian; if either were wrong the
benchmark would compare flowsim with a different ODE.
"""

from __future__ import annotations

import numpy as np
import pytest

import flowsim as fs
from benchmarks import _problem as problem
from benchmarks.kernels import numpy_gradient
from benchmarks.workflows import stable_learning_rate

M = 6


@pytest.fixture
def data():
    X, Xa, y = problem.sin_data(12)
    return X, Xa, y


@pytest.mark.parametrize("activation", ["tanh", "x2tanh", "relu"])
def test_gradient_and_loss_match_flowsim(data, activation):
    X, Xa, y = data
    net = fs.TwoLayer(activation, M, 1, bias=True)
    theta = net.init(3, scale=0.8)
    expected = net.gradient(theta, X, y)
    got = problem.gradient(theta, Xa, y, M, activation)
    assert np.max(np.abs(got - expected)) <= 1e-13 * np.max(np.abs(expected))
    assert problem.loss(theta, Xa, y, M, activation) == pytest.approx(net.loss(theta, X, y),
                                                                      rel=1e-13)  # fmt: skip


def test_tanh_fast_path_matches_general_gradient(data, rng):
    _, Xa, y = data
    theta = rng.standard_normal(M + 2 * M)
    np.testing.assert_allclose(numpy_gradient(theta, Xa, y, M), problem.gradient(theta, Xa, y, M),
                               rtol=0, atol=1e-14)  # fmt: skip


@pytest.mark.parametrize("activation", ["tanh", "x2tanh"])
def test_hessian_matches_finite_differences(data, rng, activation):
    _, Xa, y = data
    theta = 0.7 * rng.standard_normal(M + 2 * M)
    H = problem.hessian(theta, Xa, y, M, activation)
    np.testing.assert_array_equal(H, H.T)
    h = 1e-6
    columns = []
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = h
        plus = problem.gradient(theta + step, Xa, y, M, activation)
        minus = problem.gradient(theta - step, Xa, y, M, activation)
        columns.append((plus - minus) / (2 * h))
    H_fd = np.array(columns).T
    assert np.max(np.abs(H - H_fd)) <= 1e-8 * np.max(np.abs(H))


def test_max_neuron_norm_includes_the_bias(rng):
    theta = rng.standard_normal(M + 2 * M)
    W = theta[M:].reshape(M, 2)
    assert problem.max_neuron_norm(theta, M, 2) == pytest.approx(np.max(np.hypot(W[:, 0], W[:, 1])))


@pytest.mark.parametrize(("lambda_max", "unit", "expected"),
                         [(10.0, 1.0, 1 / 6), (9.5, 1.0, 0.2), (0.0168, 100.0, 100.0)])  # fmt: skip
def test_stable_learning_rate_is_below_two_over_lambda(lambda_max, unit, expected):
    lr = stable_learning_rate(lambda_max, unit)
    assert lr == pytest.approx(expected)
    assert lr < 2 / lambda_max
    assert unit / lr == pytest.approx(round(unit / lr))
