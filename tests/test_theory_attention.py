"""Tests of flowsim.theory.attention ([CL25]): stage 1 and stage 2 against plain-NumPy references.

References: complex-step derivatives of the exact attention loss written here in
NumPy, ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12), ``scipy.linalg.expm``.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from flowsim.theory import stage1, stage2

N, S, D, H = 5, 4, 3, 2


@pytest.fixture
def data(rng):
    X = rng.standard_normal((N, S, D))
    y = rng.choice([-1.0, 1.0], N)
    return X, y


def _loss(X, y, WQ, WK, WV, W1, W2, act=np.tanh):
    """Exponential loss of f(X) = act(softmax(X_s WQ WK^T X^T/sqrt d) X WV W1) W2 (complex-safe)."""
    z = np.einsum("ia,ab,cb,ijc->ij", X[:, -1, :], WQ, WK, X) / np.sqrt(X.shape[2])
    a = np.exp(z)
    a = a / a.sum(axis=1, keepdims=True)
    f = act(np.einsum("ij,ijc->ic", a, X) @ WV @ W1) @ W2
    return np.mean(np.exp(-y * f))


def _grad(X, y, params, k, act=np.tanh):
    """Complex-step derivative of the loss in parameter block k (exact to rounding)."""
    G = np.zeros(params[k].shape)
    for idx in np.ndindex(G.shape):
        shifted = [p.astype(complex) for p in params]
        shifted[k][idx] += 1e-30j
        G[idx] = _loss(X, y, *shifted, act=act).imag / 1e-30
    return G


def _outer_weights(rng, d=D, h=H):
    return rng.standard_normal((d, d)), rng.standard_normal((d, h)), rng.standard_normal(h)


def _positive_start(st, rng, h=H):
    while True:
        WV, W1, W2 = _outer_weights(rng, st.d, h)
        if st.energy(WV, W1, W2) > 0.1:
            return WV, W1, W2


# --- stage 1 --------------------------------------------------------------------------------


def test_direction_and_time_factor_by_hand(data):
    X, y = data
    st = stage1(X, y)
    S_hand = sum(y[i] * X[i, j] for i in range(N) for j in range(S))
    np.testing.assert_allclose(st.S, S_hand, rtol=1e-14)
    np.testing.assert_allclose(st.v, S_hand / np.linalg.norm(S_hand), rtol=1e-14)
    assert st.time_factor == pytest.approx(np.linalg.norm(S_hand) / (N * S), rel=1e-14)
    flipped = stage1(X, y, activation="-2*tanh(x)")  # c1 = -2: the flow ascends -E
    assert flipped.c1 == -2.0
    np.testing.assert_allclose(flipped.v, -st.v, rtol=1e-14)
    assert flipped.time_factor == pytest.approx(2 * st.time_factor, rel=1e-14)
    assert "Stage1(n=5, s=4, d=3" in repr(st)


@pytest.mark.parametrize("act, name", [(np.tanh, "tanh"), (lambda z: z, None)])
def test_rhs_is_eps_limit_of_exponential_loss_gradient(data, rng, act, name):
    """-grad L(eps theta_bar)/(eps^2 * eps * time_factor) -> grad E, the error falls like eps^2."""
    X, y = data
    st = stage1(X, y, activation=name)
    theta = [rng.standard_normal((D, D)), rng.standard_normal((D, D)), *_outer_weights(rng)]
    expected = st.rhs(*theta[2:])
    errors, attention = [], []
    for eps in (1e-2, 1e-3):
        scaled = [eps * p for p in theta]
        flow = [-_grad(X, y, scaled, k, act) / (eps**2 * st.time_factor) for k in range(5)]
        errors.append(max(np.max(np.abs(f - e)) / np.max(np.abs(e))
                          for f, e in zip(flow[2:], expected, strict=True)))  # fmt: skip
        attention.append(max(np.max(np.abs(flow[0])), np.max(np.abs(flow[1]))))
    assert errors[1] < 2e-5
    assert errors[0] / errors[1] == pytest.approx(100, rel=0.2)  # O(eps^2)
    assert attention[0] / attention[1] == pytest.approx(100, rel=0.2)  # WQ, WK: O(eps^2) in tbar


def test_rhs_is_gradient_of_energy_and_vectorized(data, rng):
    X, y = data
    st = stage1(X, y)
    WV, W1, W2 = _outer_weights(rng)
    dWV, dW1, dW2 = st.rhs(WV, W1, W2)
    h = 1e-6
    for block, deriv in ((0, dWV), (1, dW1), (2, dW2)):
        for idx in np.ndindex(deriv.shape):
            plus = [WV.copy(), W1.copy(), W2.copy()]
            minus = [WV.copy(), W1.copy(), W2.copy()]
            plus[block][idx] += h
            minus[block][idx] -= h
            fd = (st.energy(*plus) - st.energy(*minus)) / (2 * h)
            assert deriv[idx] == pytest.approx(fd, rel=1e-8, abs=1e-10)
    stack = [np.stack([M, 2 * M]) for M in (WV, W1, W2)]
    E = st.energy(*stack)
    assert E.shape == (2,) and E[1] == pytest.approx(8 * E[0], rel=1e-14)
    assert st.energy(WV, W1, W2[:, None]) == pytest.approx(E[0], rel=1e-15)  # W2 as a column
    for one, both in zip(st.rhs(WV, W1, W2), st.rhs(*stack), strict=True):
        np.testing.assert_allclose(both[1], 4 * one, rtol=1e-14)


def _solve_lo(st, WV, W1, W2, t_end, **kw):
    d, h = W1.shape
    sizes = (d * d, d * h, h)

    def split(z):
        a, b, _ = np.cumsum(sizes)
        return z[:a].reshape(d, d), z[a:b].reshape(d, h), z[b:]

    def f(_, z):
        return np.concatenate([part.ravel() for part in st.rhs(*split(z))])

    z0 = np.concatenate([WV.ravel(), W1.ravel(), W2])
    sol = solve_ivp(f, (0, t_end), z0, method="DOP853", rtol=1e-12, atol=1e-14, **kw)
    return sol, split


def test_invariants_conserved_along_solve_ivp_and_simulate(data, rng):
    X, y = data
    st = stage1(X, y)
    WV, W1, W2 = _positive_start(st, rng)
    t_end = 0.8 * st.blowup(WV, W1, W2).T_star
    sol, split = _solve_lo(st, WV, W1, W2, t_end, dense_output=True)
    times = np.linspace(0, t_end, 9)
    states = [split(sol.sol(t)) for t in times]
    series = [np.stack([s[k] for s in states]) for k in range(3)]
    inv = st.invariants(*series)
    growth = np.linalg.norm(series[2][-1]) / np.linalg.norm(W2)
    assert growth > 2  # the run went somewhere
    for key, values in inv.items():
        scale = max(1.0, np.max(np.abs(values)))
        assert np.max(np.abs(values - values[0])) < 1e-9 * scale, key
    # d|wv|^2/dtbar = 2E, by the chain rule on the dense output
    wv2 = np.sum(np.einsum("a,tab->tb", st.v, series[0]) ** 2, axis=1)
    dt = 1e-5
    for t in times[1:-1]:
        ahead = np.sum((st.v @ split(sol.sol(t + dt))[0]) ** 2)
        behind = np.sum((st.v @ split(sol.sol(t - dt))[0]) ** 2)
        assert (ahead - behind) / (2 * dt) == pytest.approx(2 * st.energy(*split(sol.sol(t))),
                                                            rel=1e-6)  # fmt: skip
    assert wv2[-1] > wv2[0]
    # the compiled leading order (flowsim.simulate) from the same start agrees with solve_ivp
    run = st.simulate(WV, W1, W2, t_end=t_end, method="dop853", rtol=1e-12, atol=1e-14,
                      save_state="final", n_save=2, progress=False)  # fmt: skip
    got = st.unpack(run.theta_final, H)
    for g, ref in zip(got, split(sol.y[:, -1]), strict=True):
        np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-10 * np.max(np.abs(ref)))


@pytest.mark.parametrize("seed", range(4))
def test_blowup_time_below_bound_and_matches_solve_ivp(data, seed):
    X, y = data
    st = stage1(X, y)
    rng = np.random.default_rng(seed)
    WV, W1, W2 = _positive_start(st, rng, h=4)
    b = st.blowup(WV, W1, W2)
    assert b.status == "blow-up"
    E0 = st.energy(WV, W1, W2)
    assert b.E0 == E0 and b.bound == pytest.approx(E0 ** (-1 / 3), rel=1e-15)
    assert b.T_star <= b.bound
    assert b.T_star_error < 1e-5 * b.T_star
    assert b.t_star == pytest.approx(b.T_star / st.time_factor, rel=1e-15)

    size = max(np.linalg.norm(WV), np.linalg.norm(W1), np.linalg.norm(W2))

    def big(_, z):
        return np.max(np.abs(z)) - 1e5 * size

    big.terminal = True
    sol, split = _solve_lo(st, WV, W1, W2, b.bound * 1.01, events=big)
    t_b = sol.t_events[0][0]
    E_b = st.energy(*split(sol.y_events[0][0]))
    lower, upper = t_b, t_b + E_b ** (-1 / 3)  # T* lies in [t_b, t_b + E(t_b)^(-1/3)]
    assert lower - 1e-9 <= b.T_star <= upper + 1e-9
    assert b.T_star - b.T_star_error <= upper + 1e-9


def test_blowup_from_negative_energy_and_scaling(data, rng):
    """E0 <= 0: no bound, yet E grows (dE/dt = |grad E|^2) and the flow blows up; T* ~ 1/eps."""
    X, y = data
    st = stage1(X, y)
    while True:
        WV, W1, W2 = _outer_weights(rng)
        if st.energy(WV, W1, W2) < 0:
            break
    b = st.blowup(WV, W1, W2)
    assert b.bound == np.inf and b.status == "blow-up" and np.isfinite(b.T_star)
    small = st.blowup(1e-3 * WV, 1e-3 * W1, 1e-3 * W2)  # cubic field: T*(eps x) = T*(x)/eps
    assert small.T_star == pytest.approx(1e3 * b.T_star, rel=1e-6)


def test_assumption1_fractions_on_constructed_states(data):
    X, y = data
    st = stage1(X, y)
    p, q = np.array([1.0, -2.0, 0.5]), np.array([0.3, -1.0])
    WV = np.outer(st.v, p)  # v WV = p
    W1, W2 = np.outer(p, q), q  # the rank-one limit: every coordinate moves away from 0
    assert st.assumption1(WV, W1, W2) == (1.0, 1.0)
    W1b = W1.copy()
    W1b[0, 0] = -W1b[0, 0]  # one entry of W1 against the sign of wv^T W2^T
    a1, a2 = st.assumption1(WV, W1b, W2)
    assert a2 == 5 / 6
    u = W1b @ W2
    assert a1 == np.mean(p * u > 0)
    both = st.assumption1(np.stack([WV, WV]), np.stack([W1, W1b]), np.stack([W2, W2]))
    np.testing.assert_array_equal(both[1], [1.0, 5 / 6])


def test_stage1_rejects_bad_input(data):
    X, y = data
    with pytest.raises(ValueError, match=r"X must have shape \(n, s, d\)"):
        stage1(X[0], y)
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        stage1(X, y[:3])
    with pytest.raises(ValueError, match="S = sum_i y_i sum_j X_ij is zero"):
        stage1(np.ones((2, 3, 2)), np.array([1.0, -1.0]))
    for act in ("relu", "sigmoid", "xtanh"):
        with pytest.raises(ValueError, match="activation: stage 1 is derived"):
            stage1(X, y, activation=act)
    st = stage1(X, y)
    with pytest.raises(ValueError, match=r"WV must have shape \(\.\.\., 3, 3\)"):
        st.energy(np.eye(2), np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="W2 must have shape"):
        st.energy(np.eye(3), np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="growth must be"):
        st.blowup(np.eye(3), np.ones((3, 2)), np.ones(2), growth=0.5)


# --- stage 2 --------------------------------------------------------------------------------


@pytest.mark.parametrize("act, name", [(lambda z: z, None), (np.tanh, "tanh")])
def test_F_is_the_linearization_of_the_WQ_WK_gradient(data, rng, act, name):
    """-dL/dWQ = F WK + O(delta^3) at WQ, WK = O(delta), from complex-step derivatives."""
    X, y = data
    WV, W1, W2 = _outer_weights(rng)
    st = stage2(WV, W1, W2, X, y, activation=name)
    A, B = rng.standard_normal((D, D)), rng.standard_normal((D, D))
    errors = []
    for delta in (1e-3, 1e-4):
        params = [delta * A, delta * B, WV, W1, W2]
        gQ, gK = -_grad(X, y, params, 0, act), -_grad(X, y, params, 1, act)
        want_Q, want_K = st.F @ (delta * B), st.F.T @ (delta * A)
        errors.append(max(np.max(np.abs(gQ - want_Q)) / np.max(np.abs(want_Q)),
                          np.max(np.abs(gK - want_K)) / np.max(np.abs(want_K))))  # fmt: skip
    assert errors[1] < 1e-6
    assert errors[0] / errors[1] == pytest.approx(100, rel=0.2)


def test_stage2_svd_solution_limits_and_rate(data, rng):
    X, y = data
    st = stage2(*_outer_weights(rng), X, y)
    np.testing.assert_allclose(st.P @ np.diag(st.singular_values) @ st.Q.T, st.F, atol=1e-14)
    assert st.simple and st.rate == pytest.approx(st.singular_values[0] - st.singular_values[1])
    WQ0, WK0 = 1e-3 * rng.standard_normal((D, D)), 1e-3 * rng.standard_normal((D, D))
    M = np.block([[np.zeros((D, D)), st.F], [st.F.T, np.zeros((D, D))]])
    times = np.array([0.0, 1.0, 7.0]) / st.singular_values[0]
    WQ, WK = st.solve(WQ0, WK0, times)
    for k, t in enumerate(times):
        ref = expm(M * t) @ np.vstack([WQ0, WK0])
        np.testing.assert_allclose(WQ[k], ref[:D], rtol=1e-10, atol=1e-16)
        np.testing.assert_allclose(WK[k], ref[D:], rtol=1e-10, atol=1e-16)
    late = 60.0 / st.rate
    lim = st.limits(WQ0, WK0)
    Z = expm(M * late) @ np.vstack([WQ0, WK0])
    Q_late, K_late = Z[:D], Z[D:]
    np.testing.assert_allclose(Q_late / np.linalg.norm(Q_late), lim["WQ"], atol=1e-8)
    np.testing.assert_allclose(K_late / np.linalg.norm(K_late), lim["WK"], atol=1e-8)
    prod = Q_late @ K_late.T
    np.testing.assert_allclose(prod / np.linalg.norm(prod), lim["WQWK"], atol=1e-8)
    # sigma_2/sigma_1 of WQ decays at s1 - s2 (fitted on the expm solution)
    ratios = []
    t1, t2 = 12.0 / st.rate, 16.0 / st.rate  # sigma_2/sigma_1 ~ 1e-5 .. 1e-7, above rounding
    for t in (t1, t2):
        sv = np.linalg.svd((expm(M * t) @ np.vstack([WQ0, WK0]))[:D], compute_uv=False)
        ratios.append(sv[1] / sv[0])
    slope = np.log(ratios[1] / ratios[0]) / (t2 - t1)
    assert slope == pytest.approx(-st.rate, rel=1e-3)
    assert "Stage2(d=3" in repr(st) and "simple=True" in repr(st)


def test_stage2_degenerate_and_bad_input(data, rng):
    X, y = data
    WV, W1, W2 = _outer_weights(rng)
    st = stage2(WV, W1, W2, X, y)
    with pytest.raises(ValueError, match=r"WQ0 must have shape \(3, 3\)"):
        st.solve(np.eye(2), np.eye(3), 1.0)
    with pytest.raises(ValueError, match="growing mode is not excited"):
        # c = p1^T WQ0 + q1^T WK0 = 0
        st.limits(np.outer(st.P[:, 0], st.Q[:, 0]), -np.outer(st.Q[:, 0], st.Q[:, 0]))
    with pytest.raises(ValueError, match=r"WV must have shape \(\.\.\., 3, 3\) to match"):
        stage2(np.eye(2), np.ones((2, 2)), np.ones(2), X, y)
    # F = 0 (u = 0): no simple top singular value, no limit
    zero = stage2(np.zeros((D, D)), W1, W2, X, y)
    assert not zero.simple
    with pytest.raises(ValueError, match="not simple"):
        zero.limits(np.eye(D), np.eye(D))
