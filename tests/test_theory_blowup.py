"""Tests of flowsim.theory.blowup and flowsim.theory.stages: escape and blow-up times.

References: the leading-order ODE integrated by ``scipy.integrate.solve_ivp``
(DOP853, rtol = 1e-12) and the full flow integrated by ``fs.simulate``.
"""

import math

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs
from flowsim.theory import (
    blowup_time,
    escape_time_law,
    fit_escape_exponent,
    fit_plateau_slope,
    plateau_exit_time,
    plateau_slope,
    stable_directions,
)
from flowsim.theory.blowup import compress_form

DELTA = 0.2


@pytest.fixture
def line():
    """1D inputs with bias (D = 2), n = 6, mean(y) = 0.3."""
    X = np.linspace(-1.0, 1.0, 6)[:, None]
    return X, np.sin(2.0 * X[:, 0]) + 0.3


# -- the per-neuron leading-order ODE, integrated by scipy ---------------------------


def lo_reference(net, X, y, a0, w0, *, big, delta=None):
    """Blow-up time of one neuron by solve_ivp (rtol 1e-12) to |w| = big, plus the tail.

    Near blow-up the neuron is balanced on an extremum, so the time left from
    |w| = big is alpha / ((p-1) sqrt(p) |c_p G(u)| big^(p-1)) (relative size
    big^-(p-1) / r0^-(p-1), tiny); also the time to reach |w| = delta.
    """
    act = net.activation
    p, c, alpha = act.multiplicity, act.leading_coefficient, net.alpha
    Xt = net.augment(X)

    def f(_, x):
        a, w = x[0], x[1:]
        z = Xt @ w
        return (c / alpha) * np.concatenate(
            [[np.mean(y * z**p)], a * p * np.mean((y * z ** (p - 1))[:, None] * Xt, axis=0)]
        )

    def at_big(_, x):
        return np.linalg.norm(x[1:]) - big

    at_big.terminal = True

    def at_delta(_, x):
        return np.linalg.norm(x[1:]) - (delta if delta is not None else np.inf)

    x0 = np.concatenate([[a0], w0])
    sol = solve_ivp(
        f, (0, 1e12), x0, method="DOP853", rtol=1e-12, atol=1e-300, events=[at_big, at_delta]
    )
    assert sol.status == 1, "reference did not reach the huge norm"
    w = sol.y_events[0][0][1:]
    r = np.linalg.norm(w)
    g = np.mean(y * (Xt @ (w / r)) ** p)
    tail = alpha / ((p - 1) * math.sqrt(p) * abs(c * g) * r ** (p - 1))
    t_delta = sol.t_events[1][0] if sol.t_events[1].size else None
    return sol.t_events[0][0] + tail, t_delta


@pytest.mark.parametrize("act, big", [("xtanh", 1e7), ("x2tanh", 1e4)])
def test_closed_form_matches_integration(line, act, big):
    X, y = line
    net = fs.TwoLayer(act, 1, 1, alpha=2.0)
    p, c = net.activation.multiplicity, net.activation.leading_coefficient
    d = stable_directions(net, X, y)
    u, g = d.vectors[0], d.value[0]
    r0 = 1e-2
    a0 = math.copysign(r0 / math.sqrt(p), c * g)  # balanced, c_p a G(u) > 0
    theta0 = net.pack(a=[a0], W=[r0 * u])
    pred = blowup_time(net, theta0, X, y, delta=DELTA)
    assert pred.closed_form[0]
    T_formula = net.alpha / ((p - 1) * math.sqrt(p) * abs(c * g) * r0 ** (p - 1))
    # the same formula; G at W0 / |W0| with W0 = r0 u, which may differ from u in
    # the last bit (an AVX2 machine's NumPy: 1 ulp)
    assert pred.per_neuron[0] == pytest.approx(T_formula, rel=1e-14)
    T_ref, t_delta = lo_reference(net, X, y, a0, r0 * u, big=big, delta=DELTA)
    assert pred.per_neuron[0] == pytest.approx(T_ref, rel=1e-9)
    assert pred.network_to_delta == pytest.approx(t_delta, rel=1e-9)
    assert pred.network_to_delta == pytest.approx(T_formula * (1 - (r0 / DELTA) ** (p - 1)))
    # the same neuron pushed off balance by 1e-9 goes through the integrator
    off = net.pack(a=[a0 * (1 + 1e-9)], W=[r0 * u])
    integrated = blowup_time(net, off, X, y, delta=DELTA)
    assert not integrated.closed_form[0]
    assert integrated.per_neuron[0] == pytest.approx(T_formula, rel=1e-7)


@pytest.mark.parametrize("act, big", [("xtanh", 1e7), ("x2tanh", 1e4), ("x**3*tanh(x)", 30.0)])
def test_integrated_neurons_match_scipy(line, act, big):
    X, y = line
    net = fs.TwoLayer(act, 6, 1)
    theta0 = net.init(11, scale=1e-2)
    pred = blowup_time(net, theta0, X, y, delta=DELTA)
    parts = net.unpack(theta0)
    assert not pred.closed_form.any()
    checked = 0
    for k in range(net.width):
        if not np.isfinite(pred.per_neuron[k]):
            continue
        T_ref, t_delta = lo_reference(net, X, y, parts["a"][k], parts["W"][k], big=big, delta=DELTA)
        assert pred.per_neuron[k] == pytest.approx(T_ref, rel=1e-8)
        assert pred.per_neuron_to_delta[k] == pytest.approx(t_delta, rel=1e-8)
        checked += 1
    assert checked >= 3
    assert pred.network == np.min(pred.per_neuron)
    assert pred.network_to_delta == np.min(pred.per_neuron_to_delta)
    assert pred.law == "power" and pred.exponent == net.activation.multiplicity - 1


def test_neurons_that_do_not_blow_up(line):
    # p = 3: some neurons keep a and lose w (c_p a G(u) < 0 where their direction settles)
    X, y = line
    net = fs.TwoLayer("x2tanh", 200, 1)
    theta0 = net.init(0, scale=1e-2)
    pred = blowup_time(net, theta0, X, y)
    dead = np.flatnonzero(~np.isfinite(pred.per_neuron))
    assert 0 < dead.size < net.width and "do not blow up" in pred.note
    parts = net.unpack(theta0)
    Xt = net.augment(X)
    k = dead[0]

    def f(_, x):
        a, w = x[0], x[1:]
        z = Xt @ w
        return np.concatenate([[np.mean(y * z**3)], a * 3 * np.mean((y * z**2)[:, None] * Xt, 0)])

    x0 = np.concatenate([[parts["a"][k]], parts["W"][k]])
    T_alive = np.min(pred.per_neuron)
    sol = solve_ivp(f, (0, 100 * T_alive), x0, method="DOP853", rtol=1e-10, atol=1e-14)
    r = np.linalg.norm(sol.y[1:], axis=0)
    assert r[-1] < 0.2 * r[0] and r.max() < 2 * r[0]  # w shrinks, no blow-up


def test_many_neurons_vectorized(line):
    X, y = line
    net = fs.TwoLayer("xtanh", 2000, 1)
    theta0 = net.init(1, scale=1e-3)
    pred = blowup_time(net, theta0, X, y, delta=DELTA)
    assert pred.per_neuron.shape == (2000,) and np.isfinite(pred.network)
    k = pred.fastest
    parts = net.unpack(theta0)
    T_ref, _ = lo_reference(net, X, y, parts["a"][k], parts["W"][k], big=1e7)
    assert pred.network == pytest.approx(T_ref, rel=1e-8)


def test_rescaled_runs_do_not_depend_on_threads_or_batch(line):
    # each neuron is one system of the integrator core's batch loop: the same bits on one
    # thread or two, and whichever other neurons share the batch
    X, y = line
    net = fs.TwoLayer("x2tanh", 64, 1, alpha=1.0)
    theta0 = net.init(3, scale=1e-2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = blowup_time(net, theta0, X, y, delta=DELTA)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = blowup_time(net, theta0, X, y, delta=DELTA)
    finally:
        numba.set_num_threads(before)
    assert np.isfinite(one.per_neuron).sum() > 10 and np.isinf(one.per_neuron).sum() > 0
    np.testing.assert_array_equal(two.per_neuron, one.per_neuron)
    np.testing.assert_array_equal(two.per_neuron_to_delta, one.per_neuron_to_delta)
    parts = net.unpack(theta0)
    few = fs.TwoLayer("x2tanh", 5, 1, alpha=1.0)
    alone = blowup_time(few, few.pack(a=parts["a"][:5], W=parts["W"][:5]), X, y, delta=DELTA)
    np.testing.assert_array_equal(alone.per_neuron, one.per_neuron[:5])
    np.testing.assert_array_equal(alone.per_neuron_to_delta, one.per_neuron_to_delta[:5])


def test_compress_form_keeps_G(rng):
    X = rng.standard_normal((300, 2))
    w = rng.standard_normal(300) / 300
    for p in (2, 3, 4):
        Z, lam = compress_form(X, w, p)
        assert Z.shape[0] == 2 * (p + 1)
        U = rng.standard_normal((50, 2))
        np.testing.assert_allclose((U @ Z.T) ** p @ lam, (U @ X.T) ** p @ w, rtol=1e-9, atol=1e-12)
    Z, lam = compress_form(X[:5], w[:5], 3)  # nothing to gain
    assert Z.shape[0] == 5


# -- against the full flow ------------------------------------------------------------


def escape_ratios(act, eps_list, X, y, width=4, seed=3):
    rows = []
    for eps in eps_list:
        net = fs.TwoLayer(act, width, 1)
        theta0 = eps * net.init(seed, scale=1.0)
        pred = blowup_time(net, theta0, X, y, delta=DELTA)
        traj = fs.simulate(
            net, theta0, X, y, t_end=3 * pred.network_to_delta, rtol=1e-10,
            events=[fs.escape(norm=DELTA)], save_state="final",
        )  # fmt: skip
        rows.append((traj.event("escape").t, pred.network_to_delta, pred.network))
    return np.array(rows)


@pytest.mark.parametrize("act, p", [("xtanh", 2), ("x2tanh", 3)])
def test_full_flow_escape_time(line, act, p):
    X, y = line
    eps = np.array([1e-2, 1e-3])
    T_esc, T_LO, T_star = escape_ratios(act, eps, X, y).T
    error = np.abs(T_esc / T_LO - 1)
    assert error[1] < error[0] < 1e-2 and error[1] < 1e-3
    assert np.all(T_esc < T_star)  # escape precedes the leading-order blow-up
    assert abs(fit_escape_exponent(eps, T_esc) - (p - 1)) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("act, p", [("xtanh", 2), ("x2tanh", 3)])
def test_full_flow_escape_time_three_scales(line, act, p):
    X, y = line
    eps = np.array([1e-2, 1e-3, 1e-4])
    T_esc, T_LO, _ = escape_ratios(act, eps, X, y).T
    error = np.abs(T_esc / T_LO - 1)
    assert np.all(np.diff(error) < 0) and error[-1] < 1e-4
    assert abs(fit_escape_exponent(eps, T_esc) - (p - 1)) < 0.05
    assert abs(fit_escape_exponent(eps[1:], T_esc[1:]) - (p - 1)) < 0.01


def test_p1_tanh_plateau_exit(line):
    X, y = line
    net = fs.TwoLayer("tanh", 20, 1)
    eps = np.array([1e-2, 1e-4, 1e-6])
    T_esc, T_pred = [], []
    for e in eps:
        theta0 = e * net.init(3, scale=1.0)
        pred = blowup_time(net, theta0, X, y, delta=DELTA)
        assert pred.law == "log" and pred.exponent == 0 and np.all(np.isinf(pred.per_neuron))
        assert (
            pred.network
            == pred.network_to_delta
            == plateau_exit_time(net, theta0, X, y, delta=DELTA)
        )
        traj = fs.simulate(
            net, theta0, X, y, t_end=5 * pred.network, rtol=1e-10,
            events=[fs.escape(norm=DELTA)], save_state="final",
        )  # fmt: skip
        T_esc.append(traj.event("escape").t)
        T_pred.append(pred.network)
        lam = pred.growth_rate
        assert pred.network == pytest.approx(math.log(DELTA / pred.r0_eff) / lam, abs=1e-3)
    T_esc, T_pred = np.array(T_esc), np.array(T_pred)
    assert np.all(np.abs(T_esc - T_pred) < 0.5)  # + O(1)
    slope = plateau_slope(net, X, y)
    assert slope == pytest.approx(1 / lam)
    assert fit_plateau_slope(eps, T_esc) == pytest.approx(slope, rel=0.02)


def test_p1_hitting_times_match_scipy(line):
    # the linear leading-order flow da/dt = (c/alpha) v.w, dw/dt = (c/alpha) a v, per neuron
    X, y = line
    net = fs.TwoLayer("tanh", 8, 1, alpha=0.7)
    theta0 = net.init(5, scale=1e-3)
    pred = blowup_time(net, theta0, X, y, delta=DELTA)
    Xt = net.augment(X)
    v = y @ Xt / y.size
    k_c = net.activation.leading_coefficient / net.alpha
    parts = net.unpack(theta0)

    def f(_, x):
        return k_c * np.concatenate([[v @ x[1:]], x[0] * v])

    def hit(_, x):
        return np.linalg.norm(x[1:]) - DELTA

    hit.terminal = True
    for k in range(net.width):
        x0 = np.concatenate([[parts["a"][k]], parts["W"][k]])
        sol = solve_ivp(f, (0, 1e4), x0, method="DOP853", rtol=1e-12, atol=1e-300, events=hit)
        assert pred.per_neuron_to_delta[k] == pytest.approx(sol.t_events[0][0], rel=1e-9)


@pytest.mark.parametrize("act", ["sigmoid", "softplus"])
def test_p1_sigma0_pinned_mode(line, act):
    # sigma(0) != 0: after the fast transient sum_k a_k is pinned (module docstring)
    X, y = line
    net = fs.TwoLayer(act, 20, 1)
    delta = 0.05
    for eps in (1e-3, 1e-6):
        theta0 = eps * net.init(3, scale=1.0)
        pred = blowup_time(net, theta0, X, y, delta=delta)
        traj = fs.simulate(
            net, theta0, X, y, t_end=5 * pred.network, rtol=1e-10,
            events=[fs.escape(norm=delta)], save_state="final",
        )  # fmt: skip
        assert traj.event("escape").t == pytest.approx(pred.network, rel=0.03)


def test_three_layer(line):
    X, y = line
    eps = np.array([1e-3, 1e-4])
    T_esc, T_LO = [], []
    for e in eps:
        net = fs.ThreeLayer("tanh", (6, 5), 1, bias=False)
        theta0 = e * net.init(3, scale=1.0)
        pred = blowup_time(net, theta0, X, y, delta=DELTA)
        assert pred.model == "three_layer" and pred.exponent == 1 and pred.law == "power"
        assert pred.network_to_delta < pred.network
        traj = fs.simulate(
            net, theta0, X, y, t_end=3 * pred.network, rtol=1e-10,
            events=[fs.escape(norm=DELTA)], save_state="final",
        )  # fmt: skip
        T_esc.append(traj.event("escape").t)
        T_LO.append(pred.network_to_delta)
    ratio = np.array(T_esc) / np.array(T_LO)
    assert abs(ratio[1] - 1) < abs(ratio[0] - 1) < 1e-3
    assert abs(fit_escape_exponent(eps, T_esc) - 1) < 0.05
    # homogeneity of degree 2: T*(eps x0) = T*(x0) / eps
    net = fs.ThreeLayer("tanh", (6, 5), 1, bias=False)
    theta0 = net.init(3, scale=1.0)
    a = blowup_time(net, 1e-3 * theta0, X, y).network
    b = blowup_time(net, 1e-5 * theta0, X, y).network
    assert b == pytest.approx(100 * a, rel=1e-8)


def test_three_layer_balanced_path_closed_form():
    # m1 = m2 = 1, a = W = z/|v| = rho: T* = 1/(c |v| rho0), c = c_1^2/alpha
    X = np.array([[1.0], [2.0], [-0.5]])
    y = np.array([1.0, 0.5, -1.0])
    net = fs.ThreeLayer("tanh", (1, 1), 1, bias=False, alpha=1.5)
    v = y @ X / y.size
    rho = 1e-3
    theta0 = net.pack(a=[rho], W=[[rho]], V=[[rho * np.sign(v[0])]])
    pred = blowup_time(net, theta0, X, y)
    c = 1.0 / net.alpha
    assert pred.network == pytest.approx(1 / (c * abs(v[0]) * rho), rel=1e-9)


# -- errors -----------------------------------------------------------------------------


def test_unsupported_cases(line):
    X, y = line
    relu = fs.TwoLayer("relu", 4, 1)
    with pytest.raises(ValueError, match="piecewise linear"):
        blowup_time(relu, relu.init(0, scale=1e-3), X, y, delta=DELTA)
    tanh = fs.TwoLayer("tanh", 4, 1)
    with pytest.raises(ValueError, match="give delta"):
        blowup_time(tanh, tanh.init(0, scale=1e-3), X, y)
    cos = fs.TwoLayer("cos(x)", 4, 1)  # p = 2, sigma(0) = 1
    with pytest.raises(ValueError, match=r"sigma\(0\)"):
        blowup_time(cos, cos.init(0, scale=1e-3), X, y)
    biased = fs.ThreeLayer("tanh", (4, 3), 1, bias=True)
    theta0 = biased.init(0, scale=1e-3)
    with pytest.raises(ValueError, match="second-layer bias"):
        blowup_time(biased, theta0, X, y)
    assert np.isfinite(blowup_time(biased, theta0, X, y - y.mean()).network)
    with pytest.raises(ValueError, match="three-layer"):
        p2 = fs.ThreeLayer("xtanh", (4, 3), 1, bias=False)
        blowup_time(p2, p2.init(0, scale=1e-3), X, y)
    net = fs.TwoLayer("xtanh", 4, 1)
    with pytest.raises(ValueError, match="delta"):
        blowup_time(net, net.init(0, scale=1e-3), X, y, delta=-1.0)
    with pytest.raises(ValueError, match="rtol"):
        blowup_time(net, net.init(0, scale=1e-3), X, y, rtol=1.0)
    with pytest.raises(ValueError, match="theta"):
        blowup_time(net, np.zeros(3), X, y)


def test_escape_time_law():
    eps = np.array([1e-2, 1e-3])
    np.testing.assert_allclose(escape_time_law(eps, 3, prefactor=2.0), 2.0 * eps**-2.0)
    assert escape_time_law(1e-3, 1, rate=0.5, offset=1.0) == pytest.approx(1 + 2 * math.log(1e3))
    assert fit_escape_exponent(eps, escape_time_law(eps, 3)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="rate"):
        escape_time_law(eps, 1)
    with pytest.raises(ValueError, match="eps"):
        escape_time_law([0.0], 2)
