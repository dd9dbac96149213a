"""Integrators: convergence orders on an exact solution (docs/theory.md §10), whole
trajectories against SciPy's DOP853, invariants, GD/Adam against hand-written loops,
reproducibility, save plans, and the stopping statuses."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs
from flowsim.integrate.simulate import METHODS
from flowsim.integrate.tableaus import TABLEAUS

ADAPTIVE = [name for name, tab in TABLEAUS.items() if tab.error_order > 0]
# adaptive tableaus plus the automatic method switcher, when this build has it
SMOOTH_METHODS = ADAPTIVE + [m for m in ("auto", "rodas") if m in METHODS]


def _register(monkeypatch, tableau, adaptive):
    """Method name for ``tableau`` run adaptively or with a fixed step (dt = given)."""
    for name, (family, rule, flag) in METHODS.items():
        if family == "rk" and rule == tableau and flag == adaptive:
            return name
    name = f"{tableau}-{'adaptive' if adaptive else 'fixed'}"
    monkeypatch.setitem(METHODS, name, ("rk", tableau, adaptive))
    return name


# ------------------------------------------------------------------ Saxe's exact solution


class Saxe:
    """Two-layer linear net, width 1, no bias, whitened input, balanced start [SMG14].

    With target y = s (x . e) and a0 = |w0| = sqrt(alpha u0), w0 along e, the
    product u = a (w . e) / alpha obeys tau du/dt = 2u(s - u), tau = alpha, so
    u(t) = s E / (E - 1 + s/u0), E = exp(2 s t / tau), and a = |w| = sqrt(alpha u).
    """

    def __init__(self, s=2.0, u0=0.01, alpha=1.0, n=6, seed=0):
        self.s, self.u0, self.alpha = s, u0, alpha
        Q = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, 2)))[0]
        self.X = np.sqrt(n) * Q  # (1/n) X^T X = I
        self.e = np.array([0.6, 0.8])
        self.y = s * self.X @ self.e
        self.net = fs.TwoLayer("linear", 1, 2, bias=False, alpha=alpha)
        r = np.sqrt(alpha * u0)
        self.theta0 = self.net.pack(a=[r], W=[r * self.e])

    def u(self, t):
        E = np.exp(2 * self.s * np.asarray(t) / self.alpha)
        return self.s * E / (E - 1 + self.s / self.u0)

    def theta(self, t):
        q = np.sqrt(self.alpha * self.u(t))
        return np.concatenate([[q], q * self.e])

    def simulate(self, **kwargs):
        kwargs.setdefault("progress", False)
        return fs.simulate(self.net, self.theta0, self.X, self.y, **kwargs)


def test_saxe_setup_is_whitened():
    p = Saxe()
    np.testing.assert_allclose(p.X.T @ p.X / len(p.y), np.eye(2), atol=1e-14)
    assert p.u(0.0) == pytest.approx(p.u0, rel=1e-15)


def _fitted_order(errors, steps):
    """Slope of log(error) against log(step) over the last 4 points above roundoff."""
    errors = np.asarray(errors)
    usable = np.nonzero(errors > 1e-12)[0][-4:]
    assert usable.size >= 3, errors
    return np.polyfit(np.log(np.asarray(steps)[usable]), np.log(errors[usable]), 1)[0]


@pytest.mark.parametrize("tableau", sorted(TABLEAUS))
def test_fixed_step_convergence_order(tableau, monkeypatch):
    """Global error at t = 4 ~ dt^order for every tableau run with a fixed step."""
    method = _register(monkeypatch, tableau, adaptive=False)
    p = Saxe(s=2.0, u0=0.01)
    t_end = 4.0
    exact = p.theta(t_end)
    n_steps = np.unique(np.round(4 * 2 ** (np.arange(15) / 2)).astype(int))
    errors, steps = [], []
    for N in n_steps:
        dt = t_end / N
        traj = p.simulate(t_end=t_end, method=method, dt=dt, save=[0.0, t_end],
                          scales={"a": 1.0, "W": 1.0})  # fmt: skip
        assert traj.status == "done"
        errors.append(np.max(np.abs(traj.theta_final - exact)))
        steps.append(dt)
    order = TABLEAUS[tableau].order
    slope = _fitted_order(errors, steps)
    if tableau == "rk4":
        assert abs(slope - 4) < 0.2, (slope, errors)
    else:  # high-order pairs approach their order from above at practical steps
        assert order - 0.3 < slope < order + 1.0, (slope, errors)


def test_gd_is_first_order_in_the_learning_rate():
    p = Saxe(s=1.0, u0=0.1)
    t_end = 4.0
    lrs = 2.0 ** -np.arange(5, 12)
    errors = []
    for lr in lrs:
        traj = p.simulate(t_end=t_end, method="gd", dt=lr, save=[0.0, t_end])
        assert traj.t[-1] == pytest.approx(t_end, rel=1e-12)
        errors.append(np.max(np.abs(traj.theta_final - p.theta(t_end))))
    slope = np.polyfit(np.log(lrs), np.log(errors), 1)[0]
    assert abs(slope - 1) < 0.1, (slope, errors)


@pytest.mark.parametrize("tableau", ADAPTIVE)
def test_adaptive_tolerance_proportionality(tableau, monkeypatch):
    """Global error shrinks with rtol (slope ~1 on log-log) and stays within a few
    tolerances: scaled error (y - y_true)/(atol + rtol |y_true|) = O(1)."""
    method = _register(monkeypatch, tableau, adaptive=True)
    p = Saxe(s=1.0, u0=0.1)
    rtols = 10.0 ** -np.arange(5, 11)
    errors = []
    for rtol in rtols:
        atol = 1e-3 * rtol
        traj = p.simulate(t_end=4.0, method=method, rtol=rtol, atol=atol, n_save=30)
        assert traj.status == "done"
        exact = np.array([p.theta(t) for t in traj.t])
        exact_bar = exact / traj.scale_vector
        scaled = np.abs(traj.theta_bar - exact_bar) / (atol + rtol * np.abs(exact_bar))
        assert scaled.max() < 10, (rtol, scaled.max())
        errors.append(np.max(np.abs(traj.theta - exact)))
    slope = np.polyfit(np.log(rtols), np.log(errors), 1)[0]
    assert 0.7 < slope < 1.6, (slope, errors)
    # cost grows with the accuracy asked for, but stays modest (no runaway rejections)
    assert traj.nfev < 2000


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_saxe_closed_form(alpha):
    p = Saxe(s=1.5, u0=1e-3, alpha=alpha)
    t_end = 8.0 * alpha
    traj = p.simulate(t_end=t_end, method="dopri5", rtol=1e-10, atol=1e-14, n_save=60)
    a = traj.theta[:, 0]
    w = traj.theta[:, 1:]
    u = a * (w @ p.e) / alpha
    assert traj.t[0] == 0.0
    np.testing.assert_allclose(traj.theta[0], p.theta0, rtol=1e-15)  # t = 0 exact
    np.testing.assert_allclose(u, p.u(traj.t), rtol=1e-7)
    # long-time limit: u -> s
    assert u[-1] == pytest.approx(p.s, rel=1e-6)
    # w stays on the line of e, a = |w| (balanced)
    np.testing.assert_allclose(w, np.outer(w @ p.e, p.e), atol=1e-12)


# ------------------------------------------------------------------ against SciPy


def _scipy_reference(net, theta0, X, y, t_eval):
    """DOP853 at rtol 1e-12 on the naive (NumPy) gradient: shares nothing with flowsim."""

    def rhs(_t, theta):
        return -naive.flat_gradient(net, theta, X, y)

    sol = solve_ivp(rhs, (0.0, t_eval[-1]), theta0, method="DOP853", rtol=1e-12, atol=1e-14,
                    t_eval=t_eval, dense_output=True)  # fmt: skip
    assert sol.success
    return sol


def _scaled_error(traj, reference_states, rtol, atol):
    ref_bar = reference_states / traj.scale_vector
    return np.abs(traj.theta_bar - ref_bar) / (atol + rtol * np.abs(ref_bar))


def _two_layer_case(act, rng, width=4):
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer(act, width, 2, bias=True, alpha=1.0)
    theta0 = 0.5 * rng.standard_normal(net.n_params)
    return net, theta0, X, y


@pytest.mark.parametrize("method", SMOOTH_METHODS)
@pytest.mark.parametrize("act", ["tanh", "xtanh"])
def test_smooth_trajectory_vs_scipy(act, method, rng, monkeypatch):
    if method in TABLEAUS:
        method = _register(monkeypatch, method, adaptive=True)
    net, theta0, X, y = _two_layer_case(act, rng)
    t = np.linspace(0.0, 5.0, 16)
    sol = _scipy_reference(net, theta0, X, y, t)
    rtol, atol = 1e-8, 1e-12
    traj = fs.simulate(net, theta0, X, y, t_end=5.0, save=t, method=method, rtol=rtol,
                       atol=atol, progress=False)  # fmt: skip
    assert traj.status == "done"
    np.testing.assert_allclose(traj.state_t, t, rtol=1e-15)
    assert _scaled_error(traj, sol.y.T, rtol, atol).max() < 10


def test_rk4_trajectory_vs_scipy(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    t = np.linspace(0.0, 5.0, 11)
    sol = _scipy_reference(net, theta0, X, y, t)
    errors = []
    for dt in (5.0 / 100, 5.0 / 200):
        traj = fs.simulate(net, theta0, X, y, t_end=5.0, save=t, method="rk4", dt=dt,
                           progress=False)  # fmt: skip
        errors.append(np.abs(traj.theta - sol.y.T).max())
    assert errors[1] < 1e-7
    assert 2**3.5 < errors[0] / errors[1] < 2**4.5  # fourth order, at the save points too


@pytest.mark.parametrize("method", ADAPTIVE)
def test_three_layer_trajectory_vs_scipy(method, rng, monkeypatch):
    method = _register(monkeypatch, method, adaptive=True)
    X = rng.standard_normal((7, 2))
    y = np.cos(X[:, 0]) - X[:, 1]
    net = fs.ThreeLayer("tanh", (4, 3), 2, bias=True, alpha=1.3)
    theta0 = 0.6 * rng.standard_normal(net.n_params)
    t = np.linspace(0.0, 4.0, 9)
    sol = _scipy_reference(net, theta0, X, y, t)
    rtol, atol = 1e-8, 1e-12
    traj = fs.simulate(net, theta0, X, y, t_end=4.0, save=t, method=method, rtol=rtol,
                       atol=atol, progress=False)  # fmt: skip
    assert _scaled_error(traj, sol.y.T, rtol, atol).max() < 10


def _first_sign_change(net, sol, X, t_end, n=4000):
    """First time on a fine grid at which some pre-activation w_k . x~_i changes sign."""
    Xa = naive.augment(X, net.bias)
    grid = np.linspace(0.0, t_end, n)
    signs = []
    for t in grid:
        _, W = naive.two_layer_split(sol.sol(t), net.width, net.D)
        signs.append(np.sign(Xa @ W.T))
    changed = np.nonzero(np.any(np.array(signs) != signs[0], axis=(1, 2)))[0]
    return grid[changed[0]] if changed.size else np.inf


@pytest.mark.parametrize("method", ADAPTIVE)
def test_relu_short_run_without_kinks_vs_scipy(method, rng, monkeypatch):
    """On an interval where no pre-activation crosses 0 the ReLU flow is smooth."""
    method = _register(monkeypatch, method, adaptive=True)
    net, theta0, X, y = _two_layer_case("relu", rng)
    sol = _scipy_reference(net, theta0, X, y, np.array([0.0, 1.0]))
    t_end = min(1.0, 0.5 * _first_sign_change(net, sol, X, 1.0))
    t = np.linspace(0.0, t_end, 7)
    rtol, atol = 1e-8, 1e-12
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, save=t, method=method, rtol=rtol,
                       atol=atol, progress=False)  # fmt: skip
    assert traj.n_switches == 0
    assert _scaled_error(traj, sol.sol(t).T, rtol, atol).max() < 10


def _relu_kink_case():
    """A ReLU net whose flow crosses kinks twice on [0, 5] (t ~ 0.1 and 3.5)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    rng.standard_normal(32)
    net = fs.TwoLayer("relu", 4, 2, bias=True, alpha=1.0)
    theta0 = 0.5 * rng.standard_normal(net.n_params)
    return net, theta0, X, y, 5.0


@pytest.mark.parametrize(
    "method",
    ADAPTIVE,
)
def test_relu_through_kinks_vs_scipy_at_step_ends(method, monkeypatch):
    """Across sign changes of pre-activations: final state and coarse save points."""
    method = _register(monkeypatch, method, adaptive=True)
    net, theta0, X, y, t_end = _relu_kink_case()
    t = np.linspace(0.0, t_end, 6)
    sol = _scipy_reference(net, theta0, X, y, t)
    assert _first_sign_change(net, sol, X, t_end) < t_end, "test setup: no kink is crossed"
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, save=t, method=method, rtol=1e-9,
                       atol=1e-12, progress=False)  # fmt: skip
    assert traj.n_switches >= 1
    np.testing.assert_allclose(traj.theta_final, sol.y[:, -1], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "method",
    ADAPTIVE,
)
def test_relu_through_kinks_vs_scipy_dense_output(method, monkeypatch):
    """Many save points, some inside the steps that end on a kink."""
    method = _register(monkeypatch, method, adaptive=True)
    net, theta0, X, y, t_end = _relu_kink_case()
    t = np.linspace(0.0, t_end, 400)
    sol = _scipy_reference(net, theta0, X, y, t)
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, save=t, method=method, rtol=1e-9,
                       atol=1e-12, progress=False)  # fmt: skip
    np.testing.assert_allclose(traj.theta, sol.y.T, rtol=0, atol=1e-7)


def test_fixed_step_rule_keeps_its_step_after_a_kink():
    """rk4 re-takes the step that ends on a kink, then goes on with its own dt
    (it used to keep the shortened step for the rest of the run)."""
    net, theta0, X, y, t_end = _relu_kink_case()
    dt = 0.01
    ref = fs.simulate(net, theta0, X, y, t_end=t_end, rtol=1e-12, atol=1e-14,
                      save_state="final", progress=False)  # fmt: skip
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, method="rk4", dt=dt,
                       save_state="final", progress=False)  # fmt: skip
    assert traj.n_switches >= 1
    assert traj.n_accepted <= round(t_end / dt) + 2 * traj.n_switches
    np.testing.assert_allclose(traj.theta_final, ref.theta_final, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ invariants


@pytest.mark.parametrize(
    "method",
    ADAPTIVE,
)
def test_relu_balance_invariant(method, monkeypatch):
    """a_k^2 - |w_k|^2 is constant along the exact ReLU flow (bias included) [DHL18]:
    conserved to 1e-8 of the neurons' size through the plateau and the descent."""
    method = _register(monkeypatch, method, adaptive=True)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((10, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("relu", 10, 2, bias=True)
    theta0 = net.init(3, scale=1e-2)
    traj = fs.simulate(net, theta0, X, y, t_end=300.0, method=method, rtol=1e-10, atol=1e-12,
                       progress=False)  # fmt: skip
    assert traj.status == "done"
    assert traj.loss[-1] < 1e-2 * traj.loss[0]  # went through plateau and descent
    parts = net.unpack(traj.theta)
    a, W = parts["a"], parts["W"]
    C = a**2 - np.sum(W**2, axis=-1)
    size = (a**2 + np.sum(W**2, axis=-1)).max(axis=0)
    drift = np.abs(C - C[0]) / size
    assert drift.max() < 1e-8, drift.max()


# ------------------------------------------------------------------ discrete methods


def test_gd_matches_numpy_loop(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter = 0.05, 200
    reference = naive.gradient_descent(net, theta0, X, y, lr, n_iter)
    save = np.linspace(0.0, lr * n_iter, 21)
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="gd", dt=lr, save=save,
                       progress=False)  # fmt: skip
    assert traj.status == "done"
    assert traj.n_accepted == n_iter
    iterations = np.rint(traj.t / lr).astype(int)
    np.testing.assert_array_equal(iterations, np.rint(save / lr).astype(int))
    expected = reference[iterations]
    np.testing.assert_allclose(
        traj.theta, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max()
    )
    np.testing.assert_allclose(traj.theta_final, reference[-1], rtol=1e-12, atol=1e-14)
    losses = [naive.flat_loss(net, th, X, y) for th in expected]
    np.testing.assert_allclose(traj.loss, losses, rtol=1e-12)


def test_gd_records_first_iterate_at_or_after_each_save_time(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    lr = 0.1
    traj = fs.simulate(net, theta0, X, y, t_end=1.0, method="gd", dt=lr,
                       save=[0.0, 0.05, 0.1, 0.33, 1.0], progress=False)  # fmt: skip
    np.testing.assert_allclose(traj.t, [0.0, 0.1, 0.1, 0.4, 1.0], rtol=1e-12)


def test_adam_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="torch is the reference Adam implementation")
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter, betas, eps = 0.01, 100, (0.9, 0.99), 1e-8
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr,
                       adam=(*betas, eps), save=[0.0, lr * n_iter / 2, lr * n_iter],
                       progress=False)  # fmt: skip
    assert traj.n_accepted == n_iter

    a0, W0 = naive.two_layer_split(theta0, net.width, net.D)
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    W = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    Xa = torch.tensor(naive.augment(X, True), dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    optimizer = torch.optim.Adam([a, W], lr=lr, betas=betas, eps=eps)
    states = {0: theta0.copy()}
    for k in range(1, n_iter + 1):
        optimizer.zero_grad()
        f = torch.tanh(Xa @ W.T) @ a / net.alpha
        loss = 0.5 * torch.mean((f - yt) ** 2)
        loss.backward()
        optimizer.step()
        states[k] = naive.two_layer_join(a.detach().numpy(), W.detach().numpy())
    iterations = np.rint(traj.t / lr).astype(int)
    expected = np.array([states[k] for k in iterations])
    np.testing.assert_allclose(traj.theta, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(traj.theta_final, states[n_iter], rtol=1e-9, atol=1e-12)


def _numpy_adam(net, theta0, X, y, lr, n_iter, b1, b2, eps, form, wd=0.0):
    """Adam on the naive gradient, iterates (n_iter + 1, P): ``form`` "torch"
    (Kingma-Ba algorithm 1) or "tf1" (TensorFlow 1's epsilon-hat); ``wd``:
    AdamW's decoupled weight decay as PyTorch applies it (theta scaled by
    1 - lr wd before the Adam step)."""
    theta = np.array(theta0, dtype=float)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = [theta.copy()]
    for k in range(1, n_iter + 1):
        g = naive.flat_gradient(net, theta, X, y)
        theta = theta * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if form == "torch":
            theta = theta - lr * (m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + eps)
        else:
            lr_k = lr * np.sqrt(1 - b2**k) / (1 - b1**k)
            theta = theta - lr_k * m / (np.sqrt(v) + eps)
        out.append(theta.copy())
    return np.array(out)


@pytest.mark.parametrize("form", ["torch", "tf1"])
def test_adam_eps_forms_match_numpy(form, rng):
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter, b1, b2, eps = 0.01, 100, 0.9, 0.99, 1e-2  # eps large: the forms differ
    reference = _numpy_adam(net, theta0, X, y, lr, n_iter, b1, b2, eps, form)
    other = _numpy_adam(
        net, theta0, X, y, lr, n_iter, b1, b2, eps, {"torch": "tf1"}.get(form, "torch")
    )
    assert np.abs(other[-1] - reference[-1]).max() > 1e-6  # the test tells the forms apart
    save = [0.0, lr * n_iter / 2, lr * n_iter]
    for adam in ((b1, b2, eps, form), dict(beta1=b1, beta2=b2, eps=eps, eps_form=form)):
        traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr,
                           adam=adam, save=save, progress=False)  # fmt: skip
        assert traj.config["adam"]["eps_form"] == form
        np.testing.assert_allclose(traj.theta, reference[[0, n_iter // 2, n_iter]], rtol=0,
                                   atol=1e-13)  # fmt: skip
        np.testing.assert_allclose(traj.theta_final, reference[-1], rtol=0, atol=1e-13)
    if form == "torch":  # the default form, and the old 3-tuple
        plain = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr,
                            adam=(b1, b2, eps), save=save, progress=False)  # fmt: skip
        np.testing.assert_array_equal(plain.theta_final, traj.theta_final)


@pytest.mark.parametrize("form", ["torch", "tf1"])
def test_adamw_weight_decay_matches_numpy(form, rng):
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter, b1, b2, eps, wd = 0.01, 100, 0.9, 0.99, 1e-8, 0.5
    reference = _numpy_adam(net, theta0, X, y, lr, n_iter, b1, b2, eps, form, wd)
    plain = _numpy_adam(net, theta0, X, y, lr, n_iter, b1, b2, eps, form)
    assert np.abs(plain[-1] - reference[-1]).max() > 1e-3  # the decay is seen
    adam = dict(beta1=b1, beta2=b2, eps=eps, eps_form=form, weight_decay=wd)
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr, adam=adam,
                       save=[0.0, lr * n_iter / 2, lr * n_iter], progress=False)  # fmt: skip
    assert traj.config["adam"]["weight_decay"] == wd
    np.testing.assert_allclose(traj.theta, reference[[0, n_iter // 2, n_iter]], rtol=0,
                               atol=1e-13)  # fmt: skip


def test_adamw_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="torch is the reference AdamW implementation")
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter, betas, eps, wd = 0.01, 100, (0.9, 0.99), 1e-8, 0.3
    adam = dict(beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=wd)
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr, adam=adam,
                       save=[lr * n_iter], progress=False)  # fmt: skip
    a0, W0 = naive.two_layer_split(theta0, net.width, net.D)
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    W = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    Xa = torch.tensor(naive.augment(X, True), dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    optimizer = torch.optim.AdamW([a, W], lr=lr, betas=betas, eps=eps, weight_decay=wd)
    for _ in range(n_iter):
        optimizer.zero_grad()
        loss = 0.5 * torch.mean((torch.tanh(Xa @ W.T) @ a / net.alpha - yt) ** 2)
        loss.backward()
        optimizer.step()
    expected = naive.two_layer_join(a.detach().numpy(), W.detach().numpy())
    np.testing.assert_allclose(traj.theta_final, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "adam, message",
    [
        ((0.9, 0.99, 1e-8, "keras"), "eps_form must be one of"),
        (dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=-0.1), "weight_decay must be"),
        (dict(beta1=0.9, beta2=0.99), "missing keys"),
        (dict(beta1=0.9, beta2=0.99, eps=1e-8, epsilon=1), "unknown keys"),
        ((0.9, 0.99), "adam must be"),
        ((1.0, 0.99, 1e-8), "0 <= beta1"),
    ],
)
def test_adam_options_rejected_with_a_clear_message(adam, message, rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    with pytest.raises(ValueError, match=message):
        fs.simulate(net, theta0, X, y, t_end=1.0, method="adam", dt=0.1, adam=adam)


def test_adam_event_stops_at_the_numpy_loops_iterate(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng, width=5)
    lr, n_iter = 0.01, 200
    reference = _numpy_adam(net, theta0, X, y, lr, n_iter, 0.9, 0.999, 1e-8, "torch")
    losses = np.array([naive.flat_loss(net, th, X, y) for th in reference])
    k = int(np.flatnonzero(losses <= 0.5 * (losses[0] + losses.min()))[0])
    assert k > 0 and losses[:k].min() > losses[k]
    threshold = 0.5 * (losses[:k].min() + losses[k])  # first reached at iterate k
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="adam", dt=lr,
                       events=[fs.loss_below(threshold)], progress=False)  # fmt: skip
    assert traj.status == "event" and traj.n_accepted == k
    assert traj.events[0].t == pytest.approx(k * lr, rel=1e-15)
    np.testing.assert_allclose(traj.events[0].theta, reference[k], rtol=0, atol=1e-13)


# ------------------------------------------------------------------ saving, reproducibility


def test_bitwise_reproducible(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    runs = [fs.simulate(net, theta0, X, y, t_end=3.0, n_save=20, progress=False) for _ in range(2)]
    for field in ("t", "t_bar", "loss", "norms", "max_neuron_norm", "state_t", "theta_bar",
                  "theta_final", "scale_vector"):  # fmt: skip
        np.testing.assert_array_equal(getattr(runs[0], field), getattr(runs[1], field))
    for field in ("nfev", "n_accepted", "n_rejected", "status"):
        assert getattr(runs[0], field) == getattr(runs[1], field)


def test_observables_match_saved_states(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    traj = fs.simulate(net, theta0, X, y, t_end=3.0, n_save=12, progress=False)
    parts = net.unpack(traj.theta)
    np.testing.assert_allclose(traj.theta[0], theta0, rtol=1e-15)
    np.testing.assert_allclose(
        traj.loss, [naive.flat_loss(net, th, X, y) for th in traj.theta], rtol=1e-12
    )
    np.testing.assert_allclose(traj.layer_norm("a"), np.linalg.norm(parts["a"], axis=1), rtol=1e-13)
    np.testing.assert_allclose(
        traj.layer_norm("W"), np.linalg.norm(parts["W"], axis=(1, 2)), rtol=1e-13
    )
    np.testing.assert_allclose(
        traj.max_neuron_norm, np.linalg.norm(parts["W"], axis=2).max(axis=1), rtol=1e-13
    )
    np.testing.assert_array_equal(traj.theta_final, traj.theta[-1])
    np.testing.assert_allclose(traj.t_bar * traj.time_scale, traj.t, rtol=1e-15)


def test_default_save_times_log_spaced(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    t_end, n_save = 7.0, 25
    traj = fs.simulate(net, theta0, X, y, t_end=t_end, n_save=n_save, progress=False)
    assert traj.t.size == n_save
    assert traj.t[0] == 0.0
    assert traj.t[-1] == pytest.approx(t_end, rel=2.3e-16)
    np.testing.assert_allclose(traj.t[1:], np.geomspace(1e-6 * t_end, t_end, n_save - 1),
                               rtol=1e-13)  # fmt: skip


def test_custom_save_times_honoured(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    save = np.array([0.0, 0.013, 0.1, 0.37, 0.37, 1.0, 2.9])
    traj = fs.simulate(net, theta0, X, y, t_end=2.9, save=save, progress=False)
    np.testing.assert_allclose(traj.t, save, rtol=2.3e-16, atol=0)
    np.testing.assert_array_equal(traj.theta[3], traj.theta[4])


def test_save_times_exact(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    save = np.array([0.0, 0.013, 0.1, 0.37, 1.0, 2.9])
    traj = fs.simulate(net, theta0, X, y, t_end=2.9, save=save, progress=False)
    default = fs.simulate(net, theta0, X, y, t_end=7.0, n_save=25, progress=False)
    assert default.t[-1] == 7.0
    np.testing.assert_array_equal(traj.t, save)


def test_save_state_final_and_stride(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    common = dict(t_end=2.0, n_save=10, progress=False)
    full = fs.simulate(net, theta0, X, y, save_state="all", **common)
    final = fs.simulate(net, theta0, X, y, save_state="final", **common)
    strided = fs.simulate(net, theta0, X, y, save_state=3, **common)
    for traj in (final, strided):
        # observables at every save point, identical to the full run
        np.testing.assert_array_equal(traj.t, full.t)
        np.testing.assert_array_equal(traj.loss, full.loss)
        np.testing.assert_array_equal(traj.norms, full.norms)
        np.testing.assert_array_equal(traj.theta_final, full.theta_final)
    assert full.theta_bar.shape == (10, net.n_params)
    assert final.theta_bar.shape == (1, net.n_params)
    np.testing.assert_array_equal(final.state_t, full.t[-1:])
    np.testing.assert_array_equal(final.theta_bar[0], full.theta_bar[-1])
    rows = np.arange(0, 10, 3)
    np.testing.assert_array_equal(strided.state_t, full.t[rows])
    np.testing.assert_array_equal(strided.theta_bar, full.theta_bar[rows])


# ------------------------------------------------------------------ stopping statuses


@pytest.mark.parametrize("method", ["gd", "rk4"])
def test_nonfinite_keeps_last_finite_state(method, rng):
    X = rng.standard_normal((6, 2))
    y = X[:, 0] ** 2
    net = fs.TwoLayer("linear", 3, 2, bias=True)
    theta0 = net.init(0, scale=1.0)
    traj = fs.simulate(net, theta0, X, y, t_end=1e4, method=method, dt=10.0, n_save=50,
                       progress=False)  # fmt: skip
    assert traj.status == "nonfinite"
    assert "non-finite" in traj.message
    assert np.all(np.isfinite(traj.theta_final))
    assert traj.n_accepted < 1000
    assert np.all(np.isfinite(traj.loss)) and np.all(np.isfinite(traj.theta))


def test_max_steps(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    traj = fs.simulate(net, theta0, X, y, t_end=50.0, max_steps=7, progress=False)
    assert traj.status == "max_steps"
    assert traj.n_accepted == 7
    assert "max_steps" in traj.message
    gd = fs.simulate(net, theta0, X, y, t_end=50.0, method="gd", dt=0.01, max_steps=13,
                     progress=False)  # fmt: skip
    assert gd.status == "max_steps"
    assert gd.n_accepted == 13
    np.testing.assert_allclose(
        gd.theta_final, naive.gradient_descent(net, theta0, X, y, 0.01, 13)[-1], rtol=1e-12
    )


def test_max_wall(rng):
    net, theta0, X, y = _two_layer_case("tanh", rng)
    traj = fs.simulate(net, theta0, X, y, t_end=1e6, method="gd", dt=0.01, max_wall=0.3,
                       progress=False)  # fmt: skip
    assert traj.status == "max_wall"
    assert 0.3 <= traj.wall_time < 10.0
    assert 0 < traj.n_accepted < 10**8
    assert np.all(np.isfinite(traj.theta_final))


def test_atol_zero_is_rejected():
    """atol = 0 leaves a component at 0 uncontrollable (error / 0): a clear ValueError."""
    net = fs.TwoLayer("linear", 1, 2, bias=False)
    p = Saxe(s=1.0, u0=0.1)
    theta0 = net.pack(a=[0.3], W=[[0.3, 0.0]])
    with pytest.raises(ValueError, match="atol must be in"):
        fs.simulate(net, theta0, p.X, p.X[:, 0], t_end=2.0, rtol=1e-8, atol=0.0)
