"""RODAS4 (method="rodas"): coefficients, the analytic Jacobian solve, and trajectories
(the Jacobian solve and event location are BDF's too)."""

import naive
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs
from flowsim.integrate.core import core
from flowsim.models._base import no_switching


def _flow_pieces(net, theta, X, y):
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(net.default_scales(theta))
    return net.kernels_for(Xa.shape[0]), Xa, c, net.dims()


def _fd_jacobian(net, theta, X, y):
    """Jacobian of the compiled flow by central differences."""
    kernels, Xa, c, dims = _flow_pieces(net, theta, X, y)
    mode, aux = no_switching()
    P = theta.size

    def F(t):
        out = np.empty(P)
        kernels.flow(t, Xa, y, c, dims, mode, aux, out)
        return out

    return naive.central_differences(F, theta, h=1e-6)


@pytest.mark.parametrize(
    "act, width, n, d, bias",
    [
        ("tanh", 5, 7, 2, True),  # n < P: Woodbury
        ("xtanh", 6, 30, 1, True),  # n >= P: dense
        ("sigmoid", 4, 9, 3, False),
        ("x2tanh", 8, 5, 1, True),
    ],
)
def test_newton_solve_inverts_shift_minus_jacobian(act, width, n, d, bias):
    net = fs.TwoLayer(act, width, d, bias=bias)
    theta = net.init(1, scale=0.7)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0])
    J = _fd_jacobian(net, theta, X, y)
    kernels, Xa, c, dims = _flow_pieces(net, theta, X, y)
    for shift in (0.37, 3.7, 370.0):
        work = np.empty(kernels.newton_work_size(dims, n))
        assert kernels.newton_factor(theta, Xa, y, c, dims, shift, work)
        r = rng.normal(size=theta.size)
        out = np.empty(theta.size)
        kernels.newton_solve(work, dims, n, r, out)
        M = shift * np.eye(theta.size) - J
        # central differences are good to ~1e-9 relative
        assert np.max(np.abs(M @ out - r)) <= 1e-8 * np.max(np.abs(r)) * max(1.0, np.abs(M).max())


def _rodas_step(f, jac, y0, h, A, C, gamma=0.25):
    """One RODAS4 step in plain NumPy: (y1, error estimate)."""
    M = np.eye(y0.size) / (h * gamma) - jac(y0)
    U = []
    for i in range(6):
        Y = y0 + sum(A[i, j] * U[j] for j in range(i))
        rhs = f(Y) + sum(C[i, j] * U[j] for j in range(i)) / h
        U.append(np.linalg.solve(M, rhs))
    return Y + U[5], U[5]


def test_rodas4_coefficients_have_order_four():
    """Local error of one step falls like h^5, the embedded estimate like h^4, on a
    nonlinear system with an exact Jacobian (reference: DOP853 at rtol 1e-13)."""
    # (measured local-error ratios per halving: 23.2, 27.7, 29.9, 30.6 -> 32)
    A, C = core().rodas4_coefficients()

    def f(u):
        return np.array([-u[0] + u[1] ** 2, -2.0 * u[1] + np.sin(u[0]), u[0] * u[1] - u[2]])

    def jac(u):
        return np.array([[-1.0, 2 * u[1], 0.0], [np.cos(u[0]), -2.0, 0.0], [u[1], u[0], -1.0]])

    y0 = np.array([0.8, -0.5, 0.3])
    hs = np.array([0.025, 0.0125, 0.00625, 0.003125])  # asymptotic range
    local, estimate = [], []
    for h in hs:
        exact = solve_ivp(lambda t, u: f(u), (0, h), y0, method="DOP853", rtol=1e-13,
                          atol=1e-17, first_step=h / 50).y[:, -1]  # fmt: skip
        y1, err = _rodas_step(f, jac, y0, h, A, C)
        local.append(np.max(np.abs(y1 - exact)))
        estimate.append(np.max(np.abs(err)))
    slope_local = np.polyfit(np.log(hs), np.log(local), 1)[0]
    slope_est = np.polyfit(np.log(hs), np.log(estimate), 1)[0]
    assert slope_local == pytest.approx(5.0, abs=0.35)
    assert slope_est == pytest.approx(4.0, abs=0.35)


def test_rodas4_is_l_stable_on_a_stiff_linear_problem():
    """y' = lambda y with h lambda = -1e6: one step damps to ~0 (stiffly accurate)."""
    A, C = core().rodas4_coefficients()
    lam = -1e6
    y1, _ = _rodas_step(lambda u: lam * u, lambda u: np.array([[lam]]), np.array([1.0]), 1.0, A, C)
    assert abs(y1[0]) < 1e-5


def test_rodas_trajectory_vs_scipy_and_tolerance_proportional():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 4, 2)
    theta0 = 0.5 * rng.standard_normal(net.n_params)
    t = np.linspace(0.0, 5.0, 11)
    sol = solve_ivp(lambda _t, th: -naive.flat_gradient(net, th, X, y), (0, 5.0), theta0,
                    method="DOP853", rtol=1e-13, atol=1e-15, t_eval=t)  # fmt: skip
    errors = []
    steps = []
    for rtol in (1e-6, 1e-8, 1e-10):
        traj = fs.simulate(net, theta0, X, y, t_end=5.0, save=t, method="rodas", rtol=rtol,
                           atol=rtol * 1e-3, progress=False)  # fmt: skip
        assert traj.status == "done"
        errors.append(np.max(np.abs(traj.theta - sol.y.T)) / np.max(np.abs(sol.y)))
        steps.append(traj.n_accepted)
    assert errors[2] < 1e-8
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 10
    # order 4: 10^4 tighter tolerance costs ~10^(4/4) = 10x the steps (second order: ~100x)
    assert steps[2] / steps[0] < 25


def test_rodas_in_the_stiff_tail_beats_dopri5_and_agrees_with_dop853():
    x = np.linspace(-1, 1.5, 16)
    X, y = x[:, None], np.sin(3 * x) + np.sin(6 * x) / 2
    net = fs.TwoLayer("tanh", 8, 1)
    theta0 = net.init(3, scale=1e-3)
    kw = dict(t_end=2e4, save_state="final", progress=False)
    ref = fs.simulate(net, theta0, X, y, method="dop853", rtol=1e-11, **kw)
    rodas = fs.simulate(net, theta0, X, y, method="rodas", rtol=1e-9, **kw)
    dopri = fs.simulate(net, theta0, X, y, method="dopri5", rtol=1e-9, **kw)
    rel = np.max(np.abs(rodas.theta_final - ref.theta_final)) / np.max(np.abs(ref.theta_final))
    assert rel < 1e-5
    assert rodas.n_accepted < dopri.n_accepted / 5


def test_rodas_refuses_three_layer_nets_with_the_reason():
    net = fs.ThreeLayer("tanh", (3, 3), 1)
    X = np.linspace(-1, 1, 5)[:, None]
    with pytest.raises(ValueError, match="smoothed kinks only"):
        fs.simulate(net, net.init(0, scale=0.1), X, X[:, 0], t_end=1.0, method="rodas")


def test_auto_on_three_layer_nets_uses_rkc():
    net = fs.ThreeLayer("tanh", (3, 3), 1)
    x = np.linspace(-1, 1.5, 12)
    traj = fs.simulate(net, net.init(1, scale=0.3), x[:, None], np.sin(3 * x), t_end=50.0,
                       method="auto", progress=False)  # fmt: skip
    assert traj.status == "done"
    assert set(name for _, name in traj.method_log) <= {"dopri5", "rkc"}


@pytest.mark.parametrize("method, rtol", [("rodas", 1e-9), ("bdf", 1e-10)])
def test_implicit_methods_locate_events_on_their_dense_output(method, rtol):
    """A non-terminal escape and a terminal loss_below, against dop853 at tight
    tolerance (RODAS: Hermite interpolant; BDF: its differences' polynomial)."""
    x = np.linspace(-1, 1.5, 16)
    X, y = x[:, None], np.sin(3 * x)
    net = fs.TwoLayer("tanh", 6, 1)
    theta0 = net.init(2, scale=1e-3)
    events = (fs.escape(0.05, terminal=False), fs.loss_below(0.05))
    kw = dict(t_end=1e4, events=events, progress=False)
    ref = fs.simulate(net, theta0, X, y, method="dop853", rtol=1e-12, **kw)
    got = fs.simulate(net, theta0, X, y, method=method, rtol=rtol, **kw)
    assert ref.status == got.status == "event"
    assert [e.name for e in got.events] == [e.name for e in ref.events]
    for a, b in zip(got.events, ref.events, strict=True):
        assert a.t == pytest.approx(b.t, rel=1e-5)
    assert got.events[-1].loss == pytest.approx(0.05, rel=1e-6)
