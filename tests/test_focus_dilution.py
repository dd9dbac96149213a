"""The token-attention model (flowsim.models.token_attention), Markov data and its measures."""

from __future__ import annotations

import itertools

import naive
import numba
import numpy as np
import pytest
from scipy import special, stats
from scipy.integrate import solve_ivp

import flowsim as fs
import flowsim.measure as fm
from flowsim.data import markov_chain, markov_population, markov_sequences, markov_stationary


def _problem(rng, *, V=5, m=3, s=4, n=7, scaled=True, soft=False, size=0.8):
    """A small net, token ids, targets (ids or weights) and parameters of size O(1)."""
    net = fs.TokenAttention(V, m, scaled=scaled)
    ids = rng.integers(0, V, (n, s))
    y = rng.random((n, V)) if soft else rng.integers(0, V, n).astype(float)
    return net, ids, y, size * rng.standard_normal(net.n_params)


def _naive_grad(net, theta, ids, y):
    grads = naive.token_attention_gradient(net.unpack(theta), ids, y, scaled=net.scaled)
    return np.concatenate([grads[name].ravel() for name in net.layer_names])


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("scaled", [True, False])
def test_gradient_matches_central_differences(rng, scaled, soft):
    net, ids, y, theta = _problem(rng, scaled=scaled, soft=soft)
    grad = net.gradient(theta, ids, y)
    step = 1e-5
    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = step
        fd[k] = (net.loss(theta + e, ids, y) - net.loss(theta - e, ids, y)) / (2 * step)
    for name, block in net.unpack(grad - fd).items():
        scale = np.max(np.abs(net.unpack(fd)[name])) + 1e-3
        assert np.max(np.abs(block)) <= 1e-7 * scale, name


@pytest.mark.parametrize("soft", [False, True])
def test_kernels_match_numpy_reference(rng, soft):
    # repeated tokens (V = 3, s = 6) exercise the scatter into the rows of W0
    net, ids, y, theta = _problem(rng, V=3, m=4, s=6, n=11, soft=soft)
    p = net.unpack(theta)
    assert net.loss(theta, ids, y) == pytest.approx(
        naive.token_attention_loss(p, ids, y), rel=1e-13
    )
    np.testing.assert_allclose(net.gradient(theta, ids, y), _naive_grad(net, theta, ids, y),
                               rtol=1e-11, atol=1e-14)  # fmt: skip
    logits = naive._token_attention_forward(p, ids, True)[-1][:, -1, :]
    np.testing.assert_allclose(net.output(theta, ids), logits, rtol=1e-12, atol=1e-14)


def test_one_hot_and_weights_agree_and_weights_are_normalized(rng):
    net, ids, y, theta = _problem(rng)
    onehot = np.eye(net.vocabulary)[y.astype(int)]
    assert net.loss(theta, ids, 3.0 * onehot) == pytest.approx(net.loss(theta, ids, y), rel=1e-14)
    lse = special.logsumexp(net.output(theta, ids), axis=1)
    mean_ce = np.mean(lse - net.output(theta, ids)[np.arange(len(y)), y.astype(int)])
    assert net.loss(theta, ids, y) == pytest.approx(mean_ce, rel=1e-13)


def test_rows_passed_alone_give_their_own_weighted_mean(rng):
    # the discrete loops pass a minibatch's rows of the kernel data to the same kernels
    net, ids, y, theta = _problem(rng, soft=True)
    Xk, mass = net.prepare_data(ids, y)
    c, _ = net.flow_constants(net.unit_scales())
    rows = np.array([1, 4, 5])
    batch = net.kernels_for(rows.size).loss(theta, Xk[rows], mass[rows], c, net.dims())
    assert batch == pytest.approx(net.loss(theta, ids[rows], y[rows]), rel=1e-14)
    assert batch == pytest.approx(naive.token_attention_loss(net.unpack(theta), ids[rows],
                                                             y[rows]), rel=1e-13)  # fmt: skip


def test_gradient_does_not_depend_on_the_thread_count(rng):
    # 625 sequences of 4 tokens: above PARALLEL_MIN_WORK, so the passes run in 8 chunks
    P, _ = markov_chain(5, lam=0.3, high=0.6, delta=0.1)
    ids, Y = markov_population(P, 4)
    net = fs.TokenAttention(5, 8)
    theta = 0.5 * rng.standard_normal(net.n_params)
    results = []
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        results.append((net.loss(theta, ids, Y), net.gradient(theta, ids, Y)))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        assert np.array_equal(grad, results[0][1])
    np.testing.assert_allclose(results[0][1], _naive_grad(net, theta, ids, Y), rtol=1e-10,
                               atol=1e-15)  # fmt: skip


def test_dopri5_matches_solve_ivp_on_the_numpy_gradient(rng):
    net, ids, y, _ = _problem(rng, V=4, m=2, s=3, n=5, soft=True)
    theta0 = net.init(3, scale={"W0": 0.5, "WQ": 0.7, "WK": 0.7, "W1": 0.3})
    t_end = 4.0
    ref = solve_ivp(lambda _, th: -_naive_grad(net, th, ids, y), (0.0, t_end), theta0,
                    method="DOP853", rtol=1e-12, atol=1e-14)  # fmt: skip
    for scales in (None, {"W0": 3.0, "WQ": 0.1, "WK": 1.0, "W1": 0.02}):
        run = fs.simulate(net, theta0, ids, y, t_end=t_end, method="dopri5", rtol=1e-11,
                          atol=1e-13, n_save=5, scales=scales, progress=False)  # fmt: skip
        assert run.status == "done"
        error = np.max(np.abs(run.theta_final - ref.y[:, -1])) / np.max(np.abs(ref.y[:, -1]))
        assert error < 1e-9
    parts = net.unpack(theta0)
    np.testing.assert_allclose(run.norms[0], [np.linalg.norm(parts[k]) for k in net.layer_names],
                               rtol=1e-14)  # fmt: skip
    assert run.max_neuron_norm[0] == pytest.approx(np.linalg.norm(parts["W0"], axis=1).max())
    assert run.loss[0] == pytest.approx(naive.token_attention_loss(parts, ids, y), rel=1e-13)


def test_gd_follows_numpy_iterates_and_escape_event_fires(rng):
    net, ids, y, theta0 = _problem(rng, V=4, m=2, s=3, n=5, size=0.3)
    lr, steps = 0.1, 5
    theta = theta0.copy()
    for _ in range(steps):
        theta = theta - lr * _naive_grad(net, theta, ids, y)
    run = fs.simulate(net, theta0, ids, y, t_end=lr * steps, method="gd", dt=lr, n_save=2,
                      progress=False)  # fmt: skip
    np.testing.assert_allclose(run.theta_final, theta, rtol=1e-12, atol=1e-14)
    # escape: the largest token vector (row of W0) reaches a norm
    start = np.linalg.norm(net.unpack(theta0)["W0"], axis=1).max()
    run = fs.simulate(net, theta0, ids, y, t_end=200.0, events=[fs.escape(1.5 * start)],
                      progress=False)  # fmt: skip
    assert run.status == "event"
    row = np.linalg.norm(net.unpack(run.theta_final)["W0"], axis=1).max()
    assert row == pytest.approx(1.5 * start, rel=1e-6)


def test_bad_data_is_refused_with_the_field_named(rng):
    net, ids, y, theta = _problem(rng)
    with pytest.raises(ValueError, match=r"X: token ids must lie in \[0, 4\]"):
        net.loss(theta, ids + 5, y)
    with pytest.raises(ValueError, match="X: token ids must be integers"):
        net.loss(theta, ids + 0.5, y)
    with pytest.raises(ValueError, match=r"y must be next-token ids \(7,\) or target weights"):
        net.loss(theta, ids, np.zeros((7, 3)))
    with pytest.raises(ValueError, match="y: target weights"):
        net.loss(theta, ids, -np.ones((7, 5)))
    with pytest.raises(ValueError, match="y: next-token ids"):
        net.loss(theta, ids, y + 10)
    with pytest.raises(ValueError, match="vocabulary must be a positive integer"):
        fs.TokenAttention(0, 3)
    with pytest.raises(ValueError, match="scale: unknown layers"):
        net.init(0, scale={"WV": 1.0})


# -- Markov data -----------------------------------------------------------------------------


def test_markov_chain_is_the_stated_matrix():
    P, pi = markov_chain(4, lam=0.25, high=0.55, delta=0.2)
    low = 0.45 / 3 * (1 + 0.2 * np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(pi, np.concatenate([[0.55], low]), rtol=1e-15)
    np.testing.assert_allclose(P, 0.25 * np.eye(4) + 0.75 * np.ones((4, 1)) * pi, rtol=1e-15)
    np.testing.assert_allclose(pi @ P, pi, rtol=1e-14)  # stationary
    np.testing.assert_allclose(markov_stationary(P), pi, rtol=1e-12)
    sym = markov_chain(5, delta=0.0)[1]
    assert np.all(sym[1:] == sym[1])  # exactly symmetric low-frequency tokens
    for kwargs, field in (({"lam": 1.0}, "lam"), ({"high": 0.0}, "high"),
                          ({"delta": -0.1}, "delta"), ({"lam": True}, "lam")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{field}: must be a number"):
            markov_chain(4, **kwargs)
    with pytest.raises(ValueError, match="P: every row must sum to 1"):
        markov_stationary(np.ones((3, 3)))


def test_markov_sequences_follow_the_chain():
    P, pi = markov_chain(4, lam=0.4, high=0.5, delta=0.3)
    ids, y = markov_sequences(P, 20000, 3, seed=5)
    assert ids.shape == (20000, 3) and y.shape == (20000,) and ids.dtype == np.int64
    # first tokens ~ pi; every transition (within the sequence and to the target) ~ P
    first = np.bincount(ids[:, 0], minlength=4)
    assert stats.chisquare(first, 20000 * pi).pvalue > 1e-3
    path = np.column_stack([ids, y.astype(np.int64)])
    for a in range(4):
        nxt = path[:, 1:][path[:, :-1] == a]
        counts = np.bincount(nxt, minlength=4)
        assert stats.chisquare(counts, counts.sum() * P[a]).pvalue > 1e-3, a
    assert np.array_equal(markov_sequences(P, 20000, 3, seed=5)[0], ids)


def test_population_loss_is_the_expected_next_token_cross_entropy(rng):
    V, s = 3, 3
    P, _ = markov_chain(V, lam=0.3, high=0.5, delta=0.2)
    pi0 = markov_stationary(P)
    net = fs.TokenAttention(V, 2)
    theta = rng.standard_normal(net.n_params)
    ids, Y = markov_population(P, s)
    assert ids.shape == (V**s, s) and Y.sum() == pytest.approx(1.0, rel=1e-14)
    # brute force: every path x_1 .. x_{s+1} with its probability, the NumPy model's logits
    p = net.unpack(theta)
    expected = 0.0
    for path in itertools.product(range(V), repeat=s + 1):
        prob = pi0[path[0]] * np.prod([P[a, b] for a, b in itertools.pairwise(path)])
        logits = naive._token_attention_forward(p, np.array([path[:s]]), True)[-1][0, -1]
        expected -= prob * (logits[path[s]] - special.logsumexp(logits))
    assert net.loss(theta, ids, Y) == pytest.approx(expected, rel=1e-12)
    # and a large sample's mean cross-entropy approaches it
    sample_ids, sample_y = markov_sequences(P, 40000, s, seed=1)
    assert net.loss(theta, sample_ids, sample_y) == pytest.approx(expected, rel=0.02)
    with pytest.raises(ValueError, match="s: V\\^s"):
        markov_population(markov_chain(10)[0], 7)


# -- measures ------------------------------------------------------------------------------


def test_attention_measures_against_the_numpy_model(rng):
    net, ids, y, theta = _problem(rng, V=4, m=3, s=5, n=6)
    A = naive._token_attention_forward(net.unpack(theta), ids, True)[3][:, -1, :]
    a = fm.last_query_attention(net, theta, ids)
    np.testing.assert_allclose(a, A, rtol=1e-12)
    stack = fm.last_query_attention(net, np.stack([theta, 2 * theta]), ids)
    assert stack.shape == (2, 6, 5) and np.array_equal(stack[0], a)
    mass = fm.attention_on_tokens(a, ids, 4)
    for i in range(6):
        for v in range(4):
            assert mass[i, v] == pytest.approx(sum(A[i, j] for j in range(5) if ids[i, j] == v))
    H = fm.attention_entropy(a)
    np.testing.assert_allclose(H, [-np.sum(row * np.log(row)) for row in A], rtol=1e-12)
    w = np.arange(1.0, 7.0)
    assert fm.attention_entropy(a, w) == pytest.approx(np.sum(w * H) / w.sum())
    assert fm.attention_entropy(np.full((2, 4), 0.25)) == pytest.approx([np.log(4)] * 2)
    assert fm.attention_entropy(np.array([[1.0, 0.0]]))[0] == 0.0


def test_phi_alignment_exact_cases():
    pi = np.array([0.6, 0.3, 0.1])
    W0 = np.outer(pi, [1.0, 2.0])  # rank one, rows proportional to pi
    WQ = np.array([[1.0, 0.0], [0.5, 1.0]])
    WK = np.array([[2.0, 1.0], [0.0, 1.0]])
    kappa = np.array([1.0, 2.0]) @ WQ @ WK.T @ np.array([1.0, 2.0])  # Phi = kappa pi pi^T
    assert fm.phi_alignment(W0, WQ, WK, np.outer(pi, pi)) == pytest.approx(np.sign(kappa))
    assert fm.phi_alignment(W0, WQ, -WK, np.outer(pi, pi)) == pytest.approx(-np.sign(kappa))
    assert fm.phi_alignment(W0, WQ, WK, np.eye(3)) == pytest.approx(
        np.trace(np.outer(pi, pi)) / (np.linalg.norm(np.outer(pi, pi)) * np.sqrt(3))
    )
    assert fm.phi_alignment(np.zeros((3, 2)), WQ, WK, np.eye(3)) == 0.0
    with pytest.raises(ValueError, match="target must have shape"):
        fm.phi_alignment(W0, WQ, WK, np.eye(2))
