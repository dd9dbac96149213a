"""Three-layer ReLU nets through the condensed regime: kinks smoothed relative to each
pair's scale (#9).

The case: 4 points on [-1, 1], target ``relu(x - 0.2) + relu(-x - 0.3)``, every
parameter N(0, 1e-6).  With exact kinks the flow chatters: at (m1, m2) = (50, 50) it
reached t = 137 of 200 in 60 s at rtol 1e-6 (427,000 steps, 135,000 rejected), where GD
at rate 0.02 needs 0.3 s.  Smoothed (eps = 1e-3) it reaches t = 200 in 6-10 s.
"""

import naive
import numpy as np
import pytest

import flowsim as fs
from flowsim.config import ConfigError, ModelConfig


def _data():
    X = np.linspace(-1.0, 1.0, 4)[:, None]
    return X, np.maximum(X[:, 0] - 0.2, 0.0) + np.maximum(-X[:, 0] - 0.3, 0.0)


def _pairs_in_band(net, theta, X, eps):
    """Pairs within eps of their kinks, relative to the smoothing's scales: (layer 1,
    layer 2; for leaky ReLU layer 2's count takes h as the ReLU's, a rough count)."""
    p = net.unpack(theta)
    Xt = net.augment(X)
    V, W = p["V"], p["W"]
    Z = Xt @ V.T
    H = np.hstack([np.maximum(Z, 0.0), np.ones((X.shape[0], 1))])
    U = H @ W.T
    in1 = np.abs(Z) < eps * np.sqrt(Xt**2 @ (V**2).T)
    in2 = np.abs(U) < eps * np.sqrt(H**2 @ (W**2).T)
    return int(in1.sum()), int(in2.sum())


def _balances(net, theta):
    """``|v_j|^2 - |W_:j|^2`` (layer-1 neurons) and ``|W_k|^2 - a_k^2`` (layer 2)."""
    p = net.unpack(theta)
    a, W, V = p["a"], p["W"], p["V"]
    m1 = net.widths[0]
    return np.concatenate([np.sum(V**2, 1) - np.sum(W[:, :m1] ** 2, 0), np.sum(W**2, 1) - a**2])


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_smoothed_net_is_its_formula_and_its_gradient_the_formulas_derivative(act):
    rng = np.random.default_rng(4)
    eps = 0.3
    net = fs.ThreeLayer(act, (6, 5), 2, smoothing=eps, alpha=1.3)
    X = rng.normal(size=(10, 2))
    y = rng.normal(size=10)
    theta = net.init(3, scale=1.0)
    assert min(_pairs_in_band(net, theta, X, eps)) >= 4  # both layers' ramps are exercised
    reference = naive.three_layer_smoothed_loss(theta, net, X, y)
    assert net.loss(theta, X, y) == pytest.approx(reference, rel=1e-13)
    fd = naive.central_differences(lambda th: naive.three_layer_smoothed_loss(th, net, X, y), theta)
    assert np.max(np.abs(net.gradient(theta, X, y) - fd)) < 1e-8 * np.max(np.abs(fd))


def test_away_from_the_ramps_the_smoothed_net_is_the_relu_net():
    rng = np.random.default_rng(5)
    exact = fs.ThreeLayer("relu", (6, 5), 2)
    X = rng.normal(size=(7, 2))
    y = rng.normal(size=7)
    theta = exact.init(2, scale=1.0)
    eps = 1e-4
    assert _pairs_in_band(exact, theta, X, eps) == (0, 0)
    smooth = fs.ThreeLayer("relu", (6, 5), 2, smoothing=eps)
    assert smooth.loss(theta, X, y) == pytest.approx(exact.loss(theta, X, y), rel=1e-14)
    np.testing.assert_allclose(smooth.gradient(theta, X, y), exact.gradient(theta, X, y),
                               rtol=1e-12, atol=1e-14)  # fmt: skip


def test_smoothed_flow_conserves_the_layer_balances_through_the_ramps():
    """Each neuron's activation stays positively homogeneous in its input weights, and
    layer 2's scale ``s_ik`` depends on ``W_kj`` and ``h_ij`` only through their product:
    both balances are invariants of the smoothed flow."""
    X, y = _data()
    eps = 1e-2
    net = fs.ThreeLayer("relu", (10, 10), 1, smoothing=eps)
    theta0 = net.init(0, scale=1e-3)
    times = [25.0, 50.0, 75.0, 150.0, 300.0]
    traj = fs.simulate(net, theta0, X, y, t_end=300.0, save=times, rtol=1e-10, atol=1e-14,
                       progress=False)  # fmt: skip
    assert traj.status == "done"
    assert traj.loss[-1] < 1e-8 * traj.loss[0]
    assert sum(sum(_pairs_in_band(net, th, X, eps)) for th in traj.theta) >= 8
    start = _balances(net, theta0)
    for theta in traj.theta:
        p = net.unpack(theta)
        size = max(np.max(p["V"] ** 2), np.max(p["W"] ** 2), np.max(p["a"] ** 2))
        assert np.max(np.abs(_balances(net, theta) - start)) < 1e-10 * size


@pytest.fixture(scope="module")
def gradient_descent_limit():
    """GD at rates 0.01 and 0.005 and their extrapolation to rate 0, at t = 50, 100, 150."""
    X, y = _data()
    net = fs.ThreeLayer("relu", (10, 10), 1)
    theta0 = net.init(0, scale=1e-3)
    times = [50.0, 100.0, 150.0]
    runs = [fs.simulate(net, theta0, X, y, t_end=150.0, save=times, method="gd", dt=dt,
                        progress=False).theta for dt in (0.01, 0.005)]  # fmt: skip
    return times, runs[1], 2 * runs[1] - runs[0]


def test_smoothed_flow_tends_to_the_limit_of_gradient_descent(gradient_descent_limit):
    """Measured: relative distances to the extrapolation at t = 50 / 100 / 150: 9.0e-5 /
    1.1e-3 / 8.0e-3 (eps = 1e-2), 2.6e-6 / 4.3e-5 / 1.8e-4 (1e-3); GD at rate 0.005 7.7e-6 /
    9.1e-5 / 6.2e-4."""
    times, gd, limit = gradient_descent_limit
    X, y = _data()

    def distance(thetas):
        return np.linalg.norm(thetas - limit, axis=1) / np.linalg.norm(limit, axis=1)

    flows = {}
    for eps in (1e-2, 1e-3):
        net = fs.ThreeLayer("relu", (10, 10), 1, smoothing=eps)
        traj = fs.simulate(net, net.init(0, scale=1e-3), X, y, t_end=150.0, save=times,
                           rtol=1e-10, atol=1e-14, progress=False)  # fmt: skip
        assert traj.status == "done"
        flows[eps] = distance(traj.theta)
    assert np.all(flows[1e-3] < flows[1e-2] / 3)  # at least half an order in eps
    assert np.all(flows[1e-3] < distance(gd))  # nearer the limit than GD at rate 0.005


def test_smoothing_is_checked_where_it_is_given():
    with pytest.raises(ValueError, match="has none"):
        fs.ThreeLayer("tanh", (3, 3), 1, smoothing=1e-3)
    for bad in (-1e-3, 1.0, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="smoothing"):
            fs.ThreeLayer("relu", (3, 3), 1, smoothing=bad)
    net = fs.ThreeLayer("leaky_relu", (3, 3), 1, smoothing=1e-3)
    assert "smoothing=0.001" in repr(net)
    assert "smoothing" not in repr(fs.ThreeLayer("relu", (3, 3), 1))
    with pytest.raises(NotImplementedError, match="smoothed"):
        net.hessian(net.init(0, scale=1.0), np.zeros((2, 1)), np.zeros(2))
    assert ModelConfig(kind="three_layer", activation="relu", widths=[3, 3],
                       smoothing=1e-3).build(1).smoothing == 1e-3  # fmt: skip
    for kind, act, value, match in [
        ("two_layer", "relu", 1e-3, "only for kind 'three_layer'"),
        ("three_layer", "tanh", 1e-3, "has none"),
        ("three_layer", "relu", 2.0, r"\[0, 1\)"),
        ("three_layer", "relu", -1.0, r"\[0, 1\)"),
    ]:
        size = {"width": 3} if kind == "two_layer" else {"widths": [3, 3]}
        with pytest.raises(ConfigError, match="model.smoothing") as info:
            ModelConfig(kind=kind, activation=act, smoothing=value, **size)
        assert info.match(match)


def test_a_chattering_exact_kink_run_points_to_the_smoothing():
    """Exact kinks: 3000 steps, mostly rejected, do not reach t = 100; smoothed, the run
    ends with few steps rejected (BDF, ``auto``'s choice for smoothed kinks)."""
    X, y = _data()
    net = fs.ThreeLayer("relu", (10, 10), 1)
    traj = fs.simulate(net, net.init(0, scale=1e-3), X, y, t_end=100.0, max_steps=3000,
                       progress=False)  # fmt: skip
    assert traj.status == "max_steps"
    assert 4 * traj.n_rejected >= traj.n_accepted
    assert "smoothing=eps" in traj.message
    smooth = fs.ThreeLayer("relu", (10, 10), 1, smoothing=1e-2)
    traj = fs.simulate(smooth, smooth.init(0, scale=1e-3), X, y, t_end=100.0, max_steps=10_000,
                       progress=False)  # fmt: skip
    assert traj.status == "done"
    assert 8 * traj.n_rejected < traj.n_accepted


def test_regrouping_neurons_keeps_the_smoothing_where_it_is_exact():
    """Second-layer neurons split or merge exactly (each ramp is homogeneous in W_k);
    first-layer ones would change s_ik, so that is refused."""
    rng = np.random.default_rng(6)
    net = fs.ThreeLayer("relu", (4, 3), 2, smoothing=0.3)
    X = rng.normal(size=(10, 2))
    theta = net.init(1, scale=1.0)
    assert sum(_pairs_in_band(net, theta, X, 0.3)) >= 4
    wider, theta_w = fs.theory.embed(net, theta, neuron=1, layer=2, lam=0.3)
    assert wider.smoothing == 0.3
    np.testing.assert_allclose(wider.output(theta_w, X), net.output(theta, X), rtol=1e-13)
    narrow, theta_n = fs.measure.reduce(wider, theta_w, 0.999999, layer=2)
    assert narrow.widths == net.widths and narrow.smoothing == 0.3
    np.testing.assert_allclose(narrow.output(theta_n, X), net.output(theta, X), rtol=1e-13)
    with pytest.raises(ValueError, match="smoothing = 0"):
        fs.theory.embed(net, theta, neuron=1, layer=1)
    with pytest.raises(ValueError, match="smoothing = 0"):
        fs.measure.reduce(net, theta, layer=1)


@pytest.mark.slow
def test_a_condensed_50_by_50_net_runs_through_and_lands_on_gradient_descents_limit():
    """Benchmark R2's m = 50 case (exact kinks: t = 6.1 of 200 in 120 s): smoothed at
    1e-3 the flow ends 1.5e-4 from GD's extrapolated rate-0 limit, GD at rate 0.01
    1.0e-4 from it (measured)."""
    X, y = _data()
    exact = fs.ThreeLayer("relu", (50, 50), 1)
    theta0 = exact.init(0, scale=1e-3)
    gd = [fs.simulate(exact, theta0, X, y, t_end=200.0, method="gd", dt=dt, save_state="final",
                      progress=False).theta_final for dt in (0.01, 0.005)]  # fmt: skip
    limit = 2 * gd[1] - gd[0]
    net = fs.ThreeLayer("relu", (50, 50), 1, smoothing=1e-3)
    traj = fs.simulate(net, theta0, X, y, t_end=200.0, save_state="final", progress=False)
    assert traj.status == "done"
    distance = np.linalg.norm(traj.theta_final - limit) / np.linalg.norm(limit)
    gd_distance = np.linalg.norm(gd[0] - limit) / np.linalg.norm(limit)
    assert distance < 2 * gd_distance  # as near the limit as GD at rate 0.01, within 2x
    assert traj.loss[-1] == pytest.approx(exact.loss(limit, X, y), rel=0.02)
