"""The attention model (flowsim.models.attention): gradient, references, flow, data."""

from __future__ import annotations

import naive
import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs
from flowsim.data import anchor_function, gaussian_sequences
from flowsim.models._base import no_switching

LOSSES = ("exponential", "squared", "cross_entropy")
VOCAB = 5


def _problem(rng, loss, *, n=5, s=4, d=3, h=2, activation="tanh", ids=False):
    """A small net, data and parameters of size O(1) (softmax far from uniform)."""
    E = rng.standard_normal((VOCAB, d))
    embedding = E if (loss == "cross_entropy" or ids) else None
    net = fs.Attention(d, hidden=h, activation=activation, loss=loss, embedding=embedding)
    X = rng.integers(0, VOCAB, (n, s)) if ids else rng.standard_normal((n, s, d))
    if loss == "exponential":
        y = rng.choice([-1.0, 1.0], n)
    elif loss == "squared":
        y = rng.standard_normal(n)
    else:
        y = rng.integers(0, VOCAB, n).astype(float)
    theta = 0.8 * rng.standard_normal(net.n_params)
    return net, X, y, theta, embedding if loss == "cross_entropy" else None


def _tokens(net, X):
    return net.embedding[X] if np.asarray(X).ndim == 2 else X


@pytest.mark.parametrize("activation", ["tanh", None, "softplus"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_central_differences(rng, activation, loss):
    net, X, y, theta, _ = _problem(rng, loss, activation=activation)
    grad = net.gradient(theta, X, y)
    step = 1e-5
    fd = np.empty_like(theta)
    for k in range(theta.size):
        e = np.zeros_like(theta)
        e[k] = step
        fd[k] = (net.loss(theta + e, X, y) - net.loss(theta - e, X, y)) / (2 * step)
    for name, block in net.unpack(grad - fd).items():
        scale = np.max(np.abs(net.unpack(fd)[name])) + 1e-3
        assert np.max(np.abs(block)) <= 1e-7 * scale, name


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("loss", LOSSES)
def test_kernels_match_numpy_reference(rng, loss, ids):
    net, X, y, theta, U = _problem(rng, loss, ids=ids)
    p = naive.attention_split(theta, net.d, net.hidden, net.layers[-1][1][1])
    Xt = _tokens(net, X)
    reference = naive.attention_join(naive.attention_gradient("tanh", p, Xt, y, loss, U))
    grad = net.gradient(theta, X, y)
    assert np.max(np.abs(grad - reference)) <= 1e-12 * np.max(np.abs(reference))
    value = naive.attention_loss("tanh", p, Xt, y, loss, U)
    assert net.loss(theta, X, y) == pytest.approx(value, rel=1e-13)
    out = naive.attention_output("tanh", p, Xt, U)
    assert net.output(theta, X).shape == out.shape
    np.testing.assert_allclose(net.output(theta, X), out, rtol=1e-12, atol=1e-13)


def test_parallel_chunks_match_reference_and_ignore_thread_count(rng):
    """n large enough for the chunked parallel pass; bit-identical on 1 and 2 threads."""
    n, s, d = 800, 3, 8
    net = fs.Attention(d, loss="squared")
    X = rng.standard_normal((n, s, d))
    y = rng.standard_normal(n)
    theta = net.init(1, scale=0.5)
    kernels = net.kernels_for(n)
    assert kernels is net.kernels  # the parallel module
    assert kernels.sample_chunks(n, net.dims()) > 1
    Xk, yk = net.prepare_data(X, y)
    c, _ = net.flow_constants(net.unit_scales())
    mode, aux = no_switching()
    outs = []
    threads = numba.get_num_threads()
    try:
        for count in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(count)
            out = np.empty_like(theta)
            kernels.flow(theta, Xk, yk, c, net.dims(), mode, aux, out)
            outs.append(out)
    finally:
        numba.set_num_threads(threads)
    assert all(np.array_equal(outs[0], o) for o in outs)
    p = naive.attention_split(theta, d, d, 1)
    reference = naive.attention_join(naive.attention_gradient("tanh", p, X, y, "squared"))
    assert np.max(np.abs(-outs[0] - reference)) <= 1e-12 * np.max(np.abs(reference))


def test_flow_constants_give_the_gradient_at_any_scales(rng):
    """d theta/dt = S * (normalized flow) / T = -grad R for arbitrary per-layer scales."""
    net, X, y, theta, _ = _problem(rng, "cross_entropy")
    scales = dict(zip(net.layer_names, [0.3, 2.0, 0.05, 7.0, 0.6], strict=True))
    c, T = net.flow_constants(scales)
    assert T == pytest.approx((0.05 * 7.0 * 0.6) ** (-1 / 3), rel=1e-15)
    S = net.scale_vector(scales)
    Xk, yk = net.prepare_data(X, y)
    out = np.empty_like(theta)
    value = net.kernels.flow(theta / S, Xk, yk, c, net.dims(), *no_switching(), out)
    np.testing.assert_allclose(S * out / T, -net.gradient(theta, X, y), rtol=1e-12, atol=1e-15)
    assert value == pytest.approx(net.loss(theta, X, y), rel=1e-14)


def test_unpack_pack_round_trip(rng):
    net = fs.Attention(4, hidden=3, loss="cross_entropy", embedding=rng.standard_normal((6, 4)))
    theta = rng.standard_normal(net.n_params)
    parts = net.unpack(theta)
    assert {k: v.shape for k, v in parts.items()} == {
        "WQ": (4, 4), "WK": (4, 4), "WV": (4, 4), "W1": (4, 3), "W2": (3, 4),
    }  # fmt: skip
    assert np.shares_memory(parts["W1"], theta)
    assert np.array_equal(net.pack(**parts), theta)
    scalar = fs.Attention(4)
    assert scalar.unpack(np.zeros(scalar.n_params))["W2"].shape == (4, 1)


def test_init_is_seeded_and_scaled():
    net = fs.Attention(16, hidden=8)
    theta = net.init(3, scale=1e-2)
    assert np.array_equal(theta, net.init(3, scale=1e-2))
    assert np.std(theta) == pytest.approx(1e-2, rel=0.05)
    stds = {"WQ": 1.0, "WK": 1.0, "WV": 1e-3, "W1": 1e-3, "W2": 1e-3}
    parts = net.unpack(net.init(3, scale=stds))
    assert np.std(parts["WQ"]) == pytest.approx(1.0, rel=0.1)
    assert np.std(parts["W1"]) == pytest.approx(1e-3, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d": 0}, "d must be a positive integer"),
        ({"d": 3, "hidden": 0}, "hidden must be a positive integer"),
        ({"d": 3, "loss": "hinge"}, "loss must be one of"),
        ({"d": 3, "activation": "nope("}, "activation|expression"),
        ({"d": 3, "loss": "cross_entropy"}, "cross_entropy' needs the fixed unembedding"),
        ({"d": 3, "embedding": np.ones((4, 2))}, r"embedding must have shape \(V, 3\)"),
        ({"d": 3, "unembedding": np.ones((4, 3))}, "unembedding is used by"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.Attention(**kwargs)


def test_bad_data_raise(rng):
    net = fs.Attention(3)
    X = rng.standard_normal((4, 2, 3))
    theta = net.init(0, scale=0.1)
    with pytest.raises(ValueError, match="labels -1 and \\+1"):
        net.loss(theta, X, np.zeros(4))
    with pytest.raises(ValueError, match=r"X must be token vectors \(n, s, 3\)"):
        net.loss(theta, X[..., :2], np.ones(4))
    with pytest.raises(ValueError, match="need embedding"):
        net.loss(theta, np.zeros((4, 2), dtype=int), np.ones(4))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        net.loss(theta, X, np.ones(3))
    ce = fs.Attention(3, loss="cross_entropy", embedding=rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match=r"token ids in \[0, 4\]"):
        ce.loss(ce.init(0, scale=0.1), X, np.full(4, 5.0))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\]"):
        ce.output(ce.init(0, scale=0.1), np.full((4, 2), 7))
    with pytest.raises(ValueError, match="method 'rodas' is not available"):
        fs.simulate(net, theta, X, np.ones(4), t_end=1.0, method="rodas")
    with pytest.raises(ValueError, match="method 'bdf' is not available"):
        fs.simulate(net, theta, X, np.ones(4), t_end=1.0, method="bdf")


def test_dopri5_matches_solve_ivp_on_the_numpy_gradient(rng):
    net, X, y, _, _ = _problem(rng, "exponential", n=4, s=3, d=2, h=2)
    theta0 = net.init(5, scale={"WQ": 0.5, "WK": 0.5, "WV": 0.2, "W1": 0.2, "W2": 0.2})
    t_end = 3.0

    def rhs(_, theta):
        p = naive.attention_split(theta, 2, 2, 1)
        return -naive.attention_join(naive.attention_gradient("tanh", p, X, y, "exponential"))

    ref = solve_ivp(rhs, (0.0, t_end), theta0, method="DOP853", rtol=1e-12, atol=1e-14)
    run = fs.simulate(net, theta0, X, y, t_end=t_end, method="dopri5", rtol=1e-11,
                      atol=1e-13, n_save=5)  # fmt: skip
    assert run.status == "done"
    error = np.max(np.abs(run.theta_final - ref.y[:, -1])) / np.max(np.abs(ref.y[:, -1]))
    assert error < 1e-9
    # the same run in other normalization scales: the same trajectory in original units
    scales = dict(zip(net.layer_names, [3.0, 0.1, 1.0, 0.02, 5.0], strict=True))
    other = fs.simulate(net, theta0, X, y, t_end=t_end, method="dopri5", rtol=1e-11,
                        atol=1e-13, n_save=5, scales=scales)  # fmt: skip
    assert np.max(np.abs(other.theta_final - ref.y[:, -1])) < 1e-9 * np.max(np.abs(ref.y[:, -1]))
    np.testing.assert_allclose(net.output(other.theta_final, X), net.output(run.theta_final, X),
                               rtol=1e-9)  # fmt: skip
    # observables: layer norms and W1's largest column at the start
    parts = net.unpack(theta0)
    np.testing.assert_allclose(run.norms[0], [np.linalg.norm(parts[k]) for k in net.layer_names],
                               rtol=1e-14)  # fmt: skip
    assert run.max_neuron_norm[0] == pytest.approx(np.linalg.norm(parts["W1"], axis=0).max())


def test_gd_and_adam_follow_numpy_iterates(rng):
    net, X, y, theta0, U = _problem(rng, "cross_entropy", n=4, s=3, d=2, h=2)
    lr, steps = 0.05, 6

    def grad(theta):
        p = naive.attention_split(theta, 2, 2, 2)
        return naive.attention_join(naive.attention_gradient("tanh", p, X, y, "cross_entropy", U))

    theta = theta0.copy()
    for _ in range(steps):
        theta = theta - lr * grad(theta)
    run = fs.simulate(net, theta0, X, y, t_end=lr * steps, method="gd", dt=lr, n_save=2)
    np.testing.assert_allclose(run.theta_final, theta, rtol=1e-12, atol=1e-14)

    b1, b2, eps = 0.9, 0.999, 1e-8  # PyTorch's Adam (Kingma-Ba, algorithm 1)
    theta, m, v = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
    for k in range(1, steps + 1):
        g = grad(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + eps)
    run = fs.simulate(net, theta0, X, y, t_end=lr * steps, method="adam", dt=lr, n_save=2,
                      adam=(b1, b2, eps))  # fmt: skip
    np.testing.assert_allclose(run.theta_final, theta, rtol=1e-10, atol=1e-12)


def test_gaussian_sequences_labels_follow_the_planted_direction():
    w = np.array([1.0, -2.0, 0.5])
    X, y = gaussian_sequences(50, 4, 3, seed=2, direction=w)
    assert X.shape == (50, 4, 3) and y.shape == (50,)
    for i in range(50):
        assert y[i] == (1.0 if sum(X[i, j] @ w for j in range(4)) >= 0 else -1.0)
    assert np.array_equal(gaussian_sequences(50, 4, 3, seed=2)[0], X)
    with pytest.raises(ValueError, match="direction"):
        gaussian_sequences(5, 2, 3, direction=np.zeros(3))
    with pytest.raises(ValueError, match="s: must be an integer >= 1"):
        gaussian_sequences(5, 0, 3)


def test_anchor_function_targets():
    ids, y = anchor_function(200, 6, anchors=(1, 2), keys=range(3, 9), seed=4)
    assert ids.shape == (200, 6) and y.dtype == np.float64
    for row, target in zip(ids, y, strict=True):
        anchor_positions = [j for j, t in enumerate(row) if t in (1, 2)]
        assert len(anchor_positions) == 1 and anchor_positions[0] < 5
        j = anchor_positions[0]
        assert 3 <= row[j + 1] <= 8
        assert target == row[j + 1] + row[j] % 2
    again = anchor_function(200, 6, anchors=(1, 2), keys=range(3, 9), seed=4)
    assert np.array_equal(again[0], ids)
    with pytest.raises(ValueError, match="disjoint"):
        anchor_function(10, 4, anchors=(1, 5), keys=range(5, 9))
    with pytest.raises(ValueError, match="s: must be an integer >= 2"):
        anchor_function(10, 1)
    with pytest.raises(ValueError, match="keys: must be a non-empty sequence"):
        anchor_function(10, 4, keys=[])
