"""BDF (method="bdf", and auto on two-layer nets): difference algebra, dense output,
trajectories against independent references, continuation across chunks (events:
tests/test_rosenbrock.py)."""

import naive
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs


@pytest.fixture(scope="module")
def kernels():
    from flowsim.integrate.core import core

    return core()


def _differences(values):
    """Backward differences [y_n, nabla y_n, nabla^2 y_n, ...] of values y_n, y_{n-1}, ..."""
    rows = [np.asarray(values, dtype=float)]
    out = [rows[0][0]]
    for _ in range(len(values) - 1):
        rows.append(rows[-1][:-1] - rows[-1][1:])
        out.append(rows[-1][0])
    return np.array(out)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_dense_output_is_the_interpolating_polynomial(kernels, order):
    """From the differences of a polynomial of degree ``order`` sampled at t_n - i h,
    the dense output reproduces it anywhere in the last step (t = t_n - h + theta h)."""
    rng = np.random.default_rng(order)
    coef = rng.normal(size=order + 1)
    h, t_n = 0.3, 2.0
    poly = np.polynomial.Polynomial(coef)
    D = _differences([poly(t_n - i * h) for i in range(order + 1)])[:, None]
    P = kernels.bdf_dense_p(order)
    K = np.ascontiguousarray(D[1:] / h)
    y0 = np.array([poly(t_n - h)])
    out = np.empty(1)
    for theta in (0.0, 0.25, 0.6, 1.0):
        kernels.dense_eval(y0, K, P, h, theta, out)
        assert out[0] == pytest.approx(poly(t_n - h + theta * h), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_changing_the_step_rescales_the_differences(kernels, order):
    """For a polynomial of degree ``order`` the rescaled differences equal the differences
    of its samples at the new spacing (the rescaling is exact for such polynomials)."""
    rng = np.random.default_rng(10 + order)
    poly = np.polynomial.Polynomial(rng.normal(size=order + 1))
    h, t_n = 0.2, 1.0
    D = np.zeros((kernels.BDF_ROWS, 1))
    D[: order + 1, 0] = _differences([poly(t_n - i * h) for i in range(order + 1)])
    for factor in (0.5, 2.7):
        E = D.copy()
        kernels.change_differences(E, order, factor, np.empty_like(E))
        want = _differences([poly(t_n - i * factor * h) for i in range(order + 1)])
        np.testing.assert_allclose(E[: order + 1, 0], want, rtol=1e-11, atol=1e-11)


def _small_problem():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 4, 2)
    return net, 0.5 * rng.standard_normal(net.n_params), X, y


def test_bdf_trajectory_vs_scipy_converges_with_rtol():
    """Against SciPy's DOP853 at rtol 1e-13 with the naive gradient; the error falls
    with rtol, and the work grows slowly (orders up to 5)."""
    net, theta0, X, y = _small_problem()
    t = np.linspace(0.0, 5.0, 11)
    sol = solve_ivp(lambda _t, th: -naive.flat_gradient(net, th, X, y), (0, 5.0), theta0,
                    method="DOP853", rtol=1e-13, atol=1e-15, t_eval=t)  # fmt: skip
    errors, nfev = [], []
    for rtol in (1e-6, 1e-8, 1e-10):
        traj = fs.simulate(net, theta0, X, y, t_end=5.0, save=t, method="bdf", rtol=rtol,
                           atol=rtol * 1e-3, progress=False)  # fmt: skip
        assert traj.status == "done"
        assert traj.method_log == ((0.0, "bdf"),)
        errors.append(np.max(np.abs(traj.theta - sol.y.T)) / np.max(np.abs(sol.y)))
        nfev.append(traj.nfev)
    assert errors[2] < 1e-7
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 10
    assert nfev[2] / nfev[0] < 10


def test_bdf_continues_across_chunks_bit_for_bit(monkeypatch):
    """Differences, order, step counters and the kept factor live in arrays passed in:
    16-step chunks give the same run as the default ones."""
    from flowsim.integrate import simulate as sim

    net, theta0, X, y = _small_problem()
    kw = dict(t_end=50.0, method="bdf", rtol=1e-9, n_save=30, progress=False)
    whole = fs.simulate(net, theta0, X, y, **kw)
    monkeypatch.setattr(sim, "_CHUNK_SECONDS", 1e-9)
    pieces = fs.simulate(net, theta0, X, y, **kw)
    assert whole.n_accepted > 64
    assert (pieces.nfev, pieces.n_accepted, pieces.n_rejected) == (
        whole.nfev,
        whole.n_accepted,
        whole.n_rejected,
    )
    np.testing.assert_array_equal(pieces.theta, whole.theta)


def test_bdf_refuses_three_layer_nets_with_the_reason():
    net = fs.ThreeLayer("tanh", (3, 3), 1)
    X = np.linspace(-1, 1, 5)[:, None]
    with pytest.raises(ValueError, match="smoothed kinks only"):
        fs.simulate(net, net.init(0, scale=0.1), X, X[:, 0], t_end=1.0, method="bdf")


def test_auto_hands_over_from_dopri5_to_bdf(monkeypatch):
    """auto starts with dopri5 and hands over to BDF (at rtol / 100) at the
    stiffness test; the same run with 16-step chunks, bit for bit; the result
    agrees with dop853 at tight tolerance."""
    from flowsim.integrate import simulate as sim

    x = np.linspace(-1, 1.5, 16)
    X, y = x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2
    net = fs.TwoLayer("tanh", 400, 1)
    theta0 = net.init(3, scale=1e-2)
    kw = dict(t_end=4e3, save_state="final", progress=False)
    ref = fs.simulate(net, theta0, X, y, method="dop853", rtol=1e-12, **kw)
    auto = fs.simulate(net, theta0, X, y, method="auto", rtol=1e-9, **kw)
    assert [name for _, name in auto.method_log] == ["dopri5", "bdf"]
    assert auto.loss[-1] > 1e-3  # still moving: the comparison is not of two minima
    rel = np.max(np.abs(auto.theta_final - ref.theta_final)) / np.max(np.abs(ref.theta_final))
    assert rel < 1e-8
    monkeypatch.setattr(sim, "_CHUNK_SECONDS", 1e-9)
    slow = fs.simulate(net, theta0, X, y, method="auto", rtol=1e-9, **kw)
    assert slow.method_log == auto.method_log
    np.testing.assert_array_equal(slow.theta_final, auto.theta_final)
