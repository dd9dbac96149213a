"""Resuming a run from its Trajectory (``fs.simulate(net, traj, ...)``) and ``t0``:
against the uninterrupted run of the same method, bit for bit where the method
allows it, and against its tolerance where the step-size control restarts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flowsim as fs


@pytest.fixture
def case():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 5, 2, bias=True, alpha=1.0)
    theta0 = 0.5 * rng.standard_normal(net.n_params)
    return net, theta0, X, y


def _pieces(net, theta0, X, y, method, t_mid, t_end, save, tmp_path=None, **options):
    """The uninterrupted run and the run stopped at t_mid and resumed (through a
    file when tmp_path is given)."""
    whole = fs.simulate(net, theta0, X, y, t_end=t_end, method=method, save=save,
                        progress=False, **options)  # fmt: skip
    first = fs.simulate(net, theta0, X, y, t_end=t_mid, method=method,
                        save=save[save <= t_mid], progress=False, **options)  # fmt: skip
    if tmp_path is not None:
        first.save(tmp_path / "first")
        first = fs.Trajectory.load(tmp_path / "first")
    resumed = fs.simulate(net, first, X, y, t_end=t_end, method=method,
                          save=save[save >= t_mid], progress=False, **options)  # fmt: skip
    return whole, first, resumed


def _assert_concatenation(whole, first, resumed):
    assert resumed.t_final == whole.t_final
    np.testing.assert_array_equal(resumed.t, whole.t)  # one save point at t_mid, not two
    assert resumed.n_accepted == whole.n_accepted
    assert resumed.status == "done"


@pytest.mark.parametrize("method", ["gd", "adam"])
def test_discrete_resume_is_bitwise_the_uninterrupted_run(method, case, tmp_path):
    net, theta0, X, y = case
    dt = 0.01
    save = np.linspace(0.0, 10.0, 11)
    options = dict(dt=dt)
    if method == "adam":
        options["adam"] = dict(beta1=0.9, beta2=0.99, eps=1e-3, eps_form="tf1")
    whole, first, resumed = _pieces(net, theta0, X, y, method, 5.0, 10.0, save, tmp_path,
                                    **options)  # fmt: skip
    assert first.n_accepted == 500 and whole.n_accepted == 1000
    np.testing.assert_array_equal(resumed.theta_final, whole.theta_final)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    np.testing.assert_array_equal(resumed.loss, whole.loss)
    np.testing.assert_array_equal(resumed.norms, whole.norms)
    _assert_concatenation(whole, first, resumed)
    assert resumed.nfev == whole.nfev + 1  # the gradient at t_mid, once in each piece
    if method == "adam":
        np.testing.assert_array_equal(resumed.optimizer_state, whole.optimizer_state)


def test_adam_without_its_moments_is_not_resumed(case):
    """A restart with zero moments would differ from the run it continues."""
    net, theta0, X, y = case
    gd = fs.simulate(net, theta0, X, y, t_end=1.0, method="gd", dt=0.1, progress=False)
    with pytest.raises(ValueError, match="adam starts at t0 > 0 only when it continues"):
        fs.simulate(net, gd, X, y, t_end=2.0, method="adam", dt=0.1)
    with pytest.raises(ValueError, match="adam starts at t0 > 0"):
        fs.simulate(net, theta0, X, y, t_end=2.0, method="adam", dt=0.1, t0=1.0)
    adam = fs.simulate(net, theta0, X, y, t_end=1.0, method="adam", dt=0.1, progress=False)
    with pytest.raises(ValueError, match="adam continues with the step"):
        fs.simulate(net, adam, X, y, t_end=2.0, method="adam", dt=0.05)


def test_rk4_resume(case):
    net, theta0, X, y = case
    save = np.linspace(0.0, 10.0, 11)
    whole, first, resumed = _pieces(net, theta0, X, y, "rk4", 5.0, 10.0, save, dt=0.01)
    _assert_concatenation(whole, first, resumed)
    scale = np.abs(whole.theta_final).max()
    np.testing.assert_allclose(resumed.theta_final, whole.theta_final, rtol=0,
                               atol=1e-14 * scale)  # fmt: skip


@pytest.mark.parametrize("method", ["dopri5", "auto"])
def test_adaptive_resume_agrees_to_the_tolerance(method, case):
    """The step-size control restarts at t_mid: the two runs take different steps,
    so they agree to the global error of rtol = 1e-10, not bit for bit."""
    net, theta0, X, y = case
    save = np.array([0.0, 1.0, 5.0, 20.0, 50.0])
    whole, first, resumed = _pieces(net, theta0, X, y, method, 5.0, 50.0, save,
                                    rtol=1e-10, atol=1e-14)  # fmt: skip
    np.testing.assert_array_equal(resumed.t, whole.t)
    # the first piece takes the same steps, but its last one lands on t_mid
    np.testing.assert_array_equal(resumed.theta[:2], whole.theta[:2])
    np.testing.assert_allclose(resumed.theta, whole.theta, rtol=1e-8, atol=1e-10)
    assert not np.array_equal(resumed.theta_final, whole.theta_final)  # a real restart
    assert resumed.method_log[-1][0] == pytest.approx(5.0) or method == "auto"


def test_t0_shifts_the_time_of_an_autonomous_flow(case):
    net, theta0, X, y = case
    plain = fs.simulate(net, theta0, X, y, t_end=2.0, method="rk4", dt=0.01,
                        save=[0.0, 1.0, 2.0], progress=False)  # fmt: skip
    late = fs.simulate(net, theta0, X, y, t_end=5.0, method="rk4", dt=0.01, t0=3.0,
                       save=[3.0, 4.0, 5.0], progress=False)  # fmt: skip
    np.testing.assert_array_equal(late.t, [3.0, 4.0, 5.0])
    np.testing.assert_allclose(late.theta, plain.theta, rtol=1e-12, atol=1e-14)
    gd = fs.simulate(net, theta0, X, y, t_end=0.5, method="gd", dt=0.1, t0=0.2,
                     progress=False)  # fmt: skip
    assert gd.n_accepted == 3 and gd.t[0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(t0=-1.0), r"t0 must be in \[0, t_end\)"),
        (dict(t0=2.0), r"t0 must be in \[0, t_end\)"),
        (dict(t0="1"), "t0 must be a number"),
        (dict(t0=0.5, method="gd", dt=0.3), "not a whole number of steps"),
        (dict(t0=0.5, save=[0.0, 1.0]), r"within \[t0, t_end\]"),
    ],
)
def test_bad_t0_rejected(options, message, case):
    net, theta0, X, y = case
    options = {"method": "rk4", "dt": 0.1, **options}
    with pytest.raises(ValueError, match=message):
        fs.simulate(net, theta0, X, y, t_end=1.0, **options)


def test_t0_and_a_trajectory_are_not_both_given(case):
    net, theta0, X, y = case
    first = fs.simulate(net, theta0, X, y, t_end=1.0, method="gd", dt=0.1, progress=False)
    with pytest.raises(ValueError, match="continues from its own t_final"):
        fs.simulate(net, first, X, y, t_end=2.0, method="gd", dt=0.1, t0=1.0)


def test_older_files_without_optimizer_state_load(case, tmp_path):
    """A format-1 pair (no optimizer_state array, no checksum) loads with an empty one;
    an optimizer_state of the wrong shape is refused, naming the array."""
    net, theta0, X, y = case
    traj = fs.simulate(net, theta0, X, y, t_end=1.0, method="adam", dt=0.1, progress=False)
    assert traj.optimizer_state.shape == (2, net.n_params)
    npz, meta = traj.save(tmp_path / "old")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files if k not in ("optimizer_state", "theta_bar_final")}
    np.savez(npz, **arrays)
    info = json.loads(meta.read_text())
    info["format"] = "flowsim-trajectory/1"
    del info["npz_sha256"], info["npz_size"]
    meta.write_text(json.dumps(info))
    old = fs.Trajectory.load(tmp_path / "old")
    assert old.optimizer_state.shape == (0, net.n_params)
    assert old.theta_bar_final is None
    np.testing.assert_array_equal(old.theta_final, traj.theta_final)

    np.savez(npz, **arrays, optimizer_state=np.zeros((3, net.n_params)))
    with pytest.raises(ValueError, match="array 'optimizer_state' has shape"):
        fs.Trajectory.load(tmp_path / "old")
