"""Tests of flowsim.conventions: a PyTorch-style script's (loss, lr, steps) as flowsim time,
checked against plain-NumPy gradient descent and Adam on PyTorch's losses."""

import numpy as np
import pytest

import flowsim as fs

LOSSES = {  # PyTorch's losses, written out: (loss of the errors e, its derivative)
    "mse": (lambda e: np.mean(e**2), lambda e: 2.0 * e / e.size),
    "sum": (lambda e: np.sum(e**2), lambda e: 2.0 * e),
    "half_mse": (lambda e: 0.5 * np.mean(e**2), lambda e: e / e.size),
}


@pytest.fixture
def case(rng):
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 5, 2, bias=True, alpha=2.0)
    return net, 0.5 * rng.standard_normal(net.n_params), X, y


def _torch_like_gradient(loss, a, W, X, y, alpha):
    """Gradient of loss(f - y) for f(x) = (1/alpha) sum_k a_k tanh(w_k . [x, 1])."""
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    H = np.tanh(Xa @ W.T)  # (n, m)
    g = LOSSES[loss][1](H @ a / alpha - y)  # dL/df, (n,)
    return H.T @ g / alpha, ((g[:, None] * (1.0 - H**2)) * a).T @ Xa / alpha


def _numpy_sgd(loss, theta0, X, y, alpha, lr, steps, m):
    a, W = theta0[:m].copy(), theta0[m:].reshape(m, -1).copy()
    states = [theta0.copy()]
    for _ in range(steps):
        ga, gW = _torch_like_gradient(loss, a, W, X, y, alpha)
        a, W = a - lr * ga, W - lr * gW
        states.append(np.concatenate([a, W.ravel()]))
    return np.array(states)


@pytest.mark.parametrize("loss", ["mse", "sum", "half_mse"])
def test_gd_with_converted_time_repeats_the_script(case, loss):
    net, theta0, X, y = case
    lr, steps = 0.02, 300
    reference = _numpy_sgd(loss, theta0, X, y, net.alpha, lr, steps, net.width)
    n = X.shape[0] if loss == "sum" else None
    dt, t_end = fs.torch_time(lr, loss=loss, n_samples=n), fs.torch_time(lr, steps, loss=loss,
                                                                        n_samples=n)  # fmt: skip
    save = np.arange(0, steps + 1, 30) * dt
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, method="gd", dt=dt, save=save,
                       progress=False)  # fmt: skip
    assert traj.status == "done" and traj.n_accepted == steps
    expected = reference[::30]
    np.testing.assert_allclose(traj.theta, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(traj.theta_final, reference[-1], rtol=1e-12, atol=1e-13)
    assert fs.torch_steps(t_end, lr, loss=loss, n_samples=n) == pytest.approx(steps, rel=1e-15)


def test_lr_times_steps_is_not_the_time_of_an_mse_script(case):
    """The naive reading t = lr x steps is off by the factor 2 (the test above can fail)."""
    net, theta0, X, y = case
    lr, steps = 0.02, 300
    reference = _numpy_sgd("mse", theta0, X, y, net.alpha, lr, steps, net.width)
    traj = fs.simulate(net, theta0, X, y, t_end=lr * steps, method="gd", dt=lr, progress=False)
    assert np.max(np.abs(traj.theta_final - reference[-1])) > 1e-3


def test_adam_on_mse_is_flowsim_adam_with_half_eps(case):
    net, theta0, X, y = case
    lr, steps, b1, b2, eps = 0.01, 200, 0.9, 0.99, 1e-3  # eps large enough to matter
    m = net.width
    a, W = theta0[:m].copy(), theta0[m:].reshape(m, -1).copy()
    mom = [np.zeros_like(a), np.zeros_like(W)]
    var = [np.zeros_like(a), np.zeros_like(W)]
    for k in range(1, steps + 1):  # torch.optim.Adam's update, written out
        grads = _torch_like_gradient("mse", a, W, X, y, net.alpha)
        params = [a, W]
        for j, g in enumerate(grads):
            mom[j] = b1 * mom[j] + (1 - b1) * g
            var[j] = b2 * var[j] + (1 - b2) * g * g
            step = lr * (mom[j] / (1 - b1**k)) / (np.sqrt(var[j] / (1 - b2**k)) + eps)
            params[j] = params[j] - step
        a, W = params
    expected = np.concatenate([a, W.ravel()])
    factor = fs.conventions.loss_factor("mse")
    traj = fs.simulate(net, theta0, X, y, t_end=lr * steps, method="adam", dt=lr,
                       adam=(b1, b2, eps / factor), progress=False)  # fmt: skip
    np.testing.assert_allclose(traj.theta_final, expected, rtol=1e-10, atol=1e-12)
    unscaled = fs.simulate(net, theta0, X, y, t_end=lr * steps, method="adam", dt=lr,
                           adam=(b1, b2, eps), progress=False)  # fmt: skip
    assert np.max(np.abs(unscaled.theta_final - expected)) > 1e-6


def test_conversion_values_and_errors():
    assert fs.torch_time(0.1, 50) == pytest.approx(10.0, rel=1e-15)
    assert fs.torch_time(0.1, 50, loss="half_mse") == pytest.approx(5.0, rel=1e-15)
    assert fs.torch_time(0.1, 50, loss="sum", n_samples=8) == pytest.approx(80.0, rel=1e-15)
    assert fs.torch_steps(10.0, 0.1) == pytest.approx(50.0, rel=1e-15)
    with pytest.raises(ValueError, match=r"loss: must be one of \['mse', 'sum', 'half_mse'\]"):
        fs.torch_time(0.1, 5, loss="MSELoss")
    with pytest.raises(ValueError, match="n_samples: loss='sum' needs"):
        fs.torch_time(0.1, 5, loss="sum")
    for bad in (0.0, -1.0, float("nan"), "0.1", None):
        with pytest.raises(ValueError, match="lr: must be a positive"):
            fs.torch_time(bad, 5)
    with pytest.raises(ValueError, match="t: must be a positive"):
        fs.torch_steps(-1.0, 0.1)


# --- Trajectory: short repr, plot, DataFrame ---------------------------------------------


@pytest.fixture
def traj(case):
    net, theta0, X, y = case
    return fs.simulate(net, theta0, X, y, t_end=50.0, n_save=200, method="dopri5",
                       events=[fs.loss_below(0.02)], progress=False)  # fmt: skip


def test_trajectory_repr_is_short(traj):
    assert traj.status == "event" and traj.t.size > 100
    text = repr(traj)
    assert len(text) < 250 and "\n" not in text and "array" not in text
    stop = traj.event("loss_below").t
    assert f"status='event', t=0..{stop:.4g}, n_saves={traj.t.size}, method='dopri5'" in text
    assert f"nfev={traj.nfev}" in text and "events=['loss_below']" in text
    assert f"-> {traj.loss[-1]:.4g}" in text


def test_trajectory_plot(traj):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = traj.plot()
    try:
        ax_loss, ax_norm = fig.axes
        assert ax_loss.get_xscale() == "log" and ax_loss.get_yscale() == "log"
        t, loss = ax_loss.lines[0].get_data()
        np.testing.assert_array_equal(t, traj.t[1:])  # t = 0 has no place on a log axis
        np.testing.assert_array_equal(loss, traj.loss[1:])
        norm_lines = [line for line in ax_norm.lines if line.get_label().startswith("|")]
        assert [line.get_label() for line in norm_lines] == ["|a|", "|W|"]
        np.testing.assert_array_equal(norm_lines[1].get_data()[1], traj.layer_norm("W")[1:])
        event_x = [line.get_xdata()[0] for line in ax_loss.lines[1:]]
        assert event_x == [traj.event("loss_below").t]
    finally:
        plt.close(fig)


def test_trajectory_to_dataframe(traj, case, monkeypatch):
    pytest.importorskip("pandas")
    net, _, X, y = case
    df = traj.to_dataframe()
    assert list(df.columns) == ["t", "t_bar", "loss", "norm_a", "norm_W", "max_neuron_norm"]
    assert len(df) == traj.t.size
    row = df.iloc[-1]
    theta = traj.theta[-1]
    a, W = theta[: net.width], theta[net.width :].reshape(net.width, -1)
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    f = np.tanh(Xa @ W.T) @ a / net.alpha
    assert row["loss"] == pytest.approx(LOSSES["half_mse"][0](f - y), rel=1e-12)
    assert row["norm_W"] == pytest.approx(np.linalg.norm(W), rel=1e-12)
    assert row["max_neuron_norm"] == pytest.approx(np.linalg.norm(W, axis=1).max(), rel=1e-12)
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    with pytest.raises(ImportError, match="to_dataframe needs pandas: pip install pandas"):
        traj.to_dataframe()
