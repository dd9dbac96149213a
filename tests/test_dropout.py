"""Stochastic training (dropout masks, minibatches) and penalties (#12, tracker 17).

References are independent of the compiled kernels: finite differences of plain
NumPy losses, masks and permutations replayed in Python from the generator's
definition, the exact expectation of the masked gradient, and other methods on
the same flow.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import flowsim as fs
from flowsim import _rng


def _fd(fun, theta, h=1e-6):
    """Central finite-difference gradient of ``fun`` at ``theta``."""
    return np.array([(fun(theta + h * e) - fun(theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])  # fmt: skip


def _hidden2(net, theta, X):
    """Hidden outputs sigma(w_k . x~_i) (n, m) of a two-layer net, NumPy."""
    W = net.unpack(theta)["W"]
    return np.tanh(net.augment(X) @ W.T)


def _loss2(net, theta, X, y, mask=None):
    """R of a tanh two-layer net (with a mask (n, m) on the hidden outputs), NumPy."""
    S = _hidden2(net, theta, X)
    if mask is not None:
        S = S * mask
    f = S @ net.unpack(theta)["a"] / net.alpha
    return 0.5 * np.mean((f - y) ** 2)


def _r1(net, theta, X, p):
    """The dropout penalty R1 of THEORY §8, NumPy."""
    a = net.unpack(theta)["a"]
    S = _hidden2(net, theta, X)
    return (1 - p) / (2 * len(X) * p) * np.sum((a * S / net.alpha) ** 2)


def _gd_step(net, theta, X, y, lr=1e-3, **options):
    """The first GD update divided by -lr: the (stochastic) gradient the run used."""
    run = fs.simulate(net, theta, X, y, t_end=lr, method="gd", dt=lr, n_save=2,
                      progress=False, **options)  # fmt: skip
    return (theta - run.theta_final) / lr


@pytest.fixture
def small(rng):
    net = fs.TwoLayer("tanh", width=7, input_dim=1)
    X = rng.uniform(-1, 1, (5, 1))
    y = np.sin(3 * X[:, 0])
    return net, net.init(1, scale=0.5), X, y


def test_dropout_penalty_flow_is_the_gradient_of_r_plus_r1(small):
    net, theta, X, y = small
    p = 0.8
    reference = _fd(lambda t: _loss2(net, t, X, y) + _r1(net, t, X, p), theta)
    got = _gd_step(net, theta, X, y, penalty=fs.penalty.dropout(p))
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-8 * np.abs(reference).max())
    lam = 0.3
    got = _gd_step(net, theta, X, y, penalty=[fs.penalty.dropout(p), fs.penalty.l2(lam)])
    np.testing.assert_allclose(got, reference + lam * theta, rtol=0,
                               atol=1e-8 * np.abs(reference).max())  # fmt: skip


def test_dropout_penalty_of_a_three_layer_net_acts_on_the_last_hidden_layer(rng):
    net = fs.ThreeLayer("tanh", (4, 5), 2)
    theta = net.init(2, scale=0.6)
    X = rng.uniform(-1, 1, (6, 2))
    y = X[:, 0] * X[:, 1]
    p = 0.7
    blocks = net.unpack(theta)

    def penalty(t):
        b = net.unpack(t)
        H = np.tanh(net.augment(X) @ b["V"].T)
        H = np.hstack([H, np.ones((len(X), 1))]) if b["W"].shape[1] > H.shape[1] else H
        G = np.tanh(H @ b["W"].T)
        return (1 - p) / (2 * len(X) * p) * np.sum((b["a"] * G / net.alpha) ** 2)

    assert set(blocks) == {"a", "W", "V"}
    reference = _fd(lambda t: net.loss(t, X, y) + penalty(t), theta)
    got = _gd_step(net, theta, X, y, penalty=fs.penalty.dropout(p))
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-8 * np.abs(reference).max())


def _masks(seed, step, n, m, keep, first=0):
    """The dropout masks of iteration ``step`` replayed from flowsim._rng's definition."""
    out = np.empty((n, m))
    for i in range(n):
        start = np.uint64(_rng.rng_stream(seed, step, i))
        _rng.rng_keep(start, first, keep, 1.0 / keep, out[i])
    return out


def test_dropout_step_is_the_gradient_of_the_masked_net(small):
    net, theta, X, y = small
    p, seed = 0.6, 11
    mask = _masks(seed, 0, len(X), net.width, p)
    assert set(np.unique(mask)) <= {0.0, 1.0 / p} and 0 < np.count_nonzero(mask) < mask.size
    reference = _fd(lambda t: _loss2(net, t, X, y, mask), theta)
    got = _gd_step(net, theta, X, y, dropout=p, seed=seed)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-8 * np.abs(reference).max())
    # the second iteration draws new masks: a two-step run replays both
    lr = 1e-3
    run = fs.simulate(net, theta, X, y, t_end=2 * lr, method="gd", dt=lr, n_save=2,
                      dropout=p, seed=seed, progress=False)  # fmt: skip
    mid = theta - lr * reference
    mask1 = _masks(seed, 1, len(X), net.width, p)
    assert not np.array_equal(mask1, mask)
    second = _fd(lambda t: _loss2(net, t, X, y, mask1), mid)
    np.testing.assert_allclose(run.theta_final, mid - lr * second, rtol=0, atol=1e-12)


def test_masks_keep_each_unit_with_probability_p():
    p = 0.9
    mask = _masks(5, 3, 400, 500, p) > 0
    kept = mask.mean()
    assert abs(kept - p) < 4 * np.sqrt(p * (1 - p) / mask.size)
    # neighbouring samples and units are uncorrelated
    for a, b in ((mask[:-1], mask[1:]), (mask[:, :-1], mask[:, 1:])):
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < 4 / np.sqrt(a.size)


def test_dropout_gd_mean_step_is_the_penalty_flow(small):
    """E over the masks of the dropout gradient = grad (R + R1) exactly (THEORY §8):
    Hotelling's T^2 of the mean step over seeds against it."""
    net, theta, X, y = small
    p = 0.8
    target = _fd(lambda t: _loss2(net, t, X, y) + _r1(net, t, X, p), theta)
    steps = np.array([_gd_step(net, theta, X, y, dropout=p, seed=s) for s in range(3000)])
    diff = steps.mean(axis=0) - target
    cov = np.cov(steps.T) / len(steps)
    t2 = diff @ np.linalg.solve(cov, diff)
    k, N = theta.size, len(steps)
    f_stat = t2 * (N - k) / (k * (N - 1))
    assert stats.f.sf(f_stat, k, N - k) > 1e-3
    # and the plain gradient is rejected by the same statistic (the test has power)
    plain = _fd(lambda t: _loss2(net, t, X, y), theta)
    diff = steps.mean(axis=0) - plain
    f_plain = diff @ np.linalg.solve(cov, diff) * (N - k) / (k * (N - 1))
    assert stats.f.sf(f_plain, k, N - k) < 1e-6


def test_minibatches_replay_the_epoch_permutations(rng):
    net = fs.TwoLayer("tanh", width=4, input_dim=1)
    theta = net.init(3, scale=0.5)
    X = rng.uniform(-1, 1, (7, 1))
    y = np.cos(2 * X[:, 0])
    lr, B, seed = 1e-3, 3, 4
    n_steps = 5  # two epochs of 3 batches (3, 3, 1), the second cut short
    run = fs.simulate(net, theta, X, y, t_end=n_steps * lr, method="gd", dt=lr, n_save=2,
                      batch_size=B, seed=seed, progress=False)  # fmt: skip
    state = theta.copy()
    perm = np.empty(len(X), dtype=np.int64)
    for it in range(n_steps):
        epoch, q = divmod(it, 3)
        _rng.rng_permutation(seed, epoch, perm)
        assert sorted(perm) == list(range(len(X)))
        rows = perm[q * B : (q + 1) * B]
        state = state - lr * _fd(lambda t, r=rows: _loss2(net, t, X[r], y[r]), state)
    np.testing.assert_allclose(run.theta_final, state, rtol=0, atol=1e-12)
    # the recorded loss is the full-data R at the saved state
    assert run.loss[-1] == pytest.approx(net.loss(run.theta_final, X, y), rel=1e-12)


def test_same_seed_same_run_and_resume_bit_for_bit(small):
    net, theta, X, y = small
    options = dict(method="gd", dt=1e-2, dropout=0.7, batch_size=2, seed=3, progress=False)
    first = fs.simulate(net, theta, X, y, t_end=1.0, **options)
    again = fs.simulate(net, theta, X, y, t_end=1.0, **options)
    other = fs.simulate(net, theta, X, y, t_end=1.0, **{**options, "seed": 4})
    assert np.array_equal(first.theta_final, again.theta_final)
    assert not np.array_equal(first.theta_final, other.theta_final)
    half = fs.simulate(net, theta, X, y, t_end=0.37, **options)
    resumed = fs.simulate(net, half, X, y, t_end=1.0, **options)
    assert np.array_equal(resumed.theta_final, first.theta_final)
    assert first.config["seed"] == 3 and first.config["dropout"] == [0.7, 1.0]


def test_three_layer_dropout_masks_each_layer(rng):
    net = fs.ThreeLayer("tanh", (3, 4), 1, bias=False)
    theta = net.init(2, scale=0.7)
    X = rng.uniform(-1, 1, (4, 1))
    y = np.sin(X[:, 0])
    p1, p2, seed = 0.6, 0.75, 9
    M1 = _masks(seed, 0, len(X), 3, p1)
    M2 = _masks(seed, 0, len(X), 4, p2, first=3)

    def masked(t):
        b = net.unpack(t)
        H = np.tanh(X @ b["V"].T) * M1
        G = np.tanh(H @ b["W"].T) * M2
        return 0.5 * np.mean((G @ b["a"] / net.alpha - y) ** 2)

    reference = _fd(masked, theta)
    got = _gd_step(net, theta, X, y, dropout=(p1, p2), seed=seed)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-8 * np.abs(reference).max())


def test_penalty_flow_agrees_across_methods(small):
    """dopri5 and bdf (whose Newton factor has the l2 term exactly and not R1's)
    integrate the same penalized flow."""
    net, theta, X, y = small
    penalty = [fs.penalty.dropout(0.7), fs.penalty.l2(0.05)]
    runs = {method: fs.simulate(net, theta, X, y, t_end=30.0, method=method, rtol=1e-10,
                                atol=1e-12, penalty=penalty, progress=False)
            for method in ("dopri5", "bdf")}  # fmt: skip
    a, b = runs["dopri5"].theta_final, runs["bdf"].theta_final
    assert np.abs(a - b).max() < 1e-6 * np.abs(a).max()
    values = fs.penalty.values(runs["dopri5"], net, X, y)
    states = runs["dopri5"].theta
    np.testing.assert_allclose(values["dropout"], [_r1(net, t, X, 0.7) for t in states],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(values["l2"], 0.025 * np.sum(states**2, axis=1), rtol=1e-12)
    # the penalized flow does not minimize R alone: R1 falls below its value at the R-flow's end
    plain = fs.simulate(net, theta, X, y, t_end=30.0, progress=False)
    assert _r1(net, a, X, 0.7) < _r1(net, plain.theta_final, X, 0.7)


@pytest.mark.parametrize(
    "options, field",
    [
        (dict(method="dopri5", dropout=0.9), "dropout"),
        (dict(method="gd", dt=0.1, dropout=1.5), "dropout"),
        (dict(method="gd", dt=0.1, dropout=(0.9, 0.9)), "dropout"),
        (dict(method="gd", dt=0.1, batch_size=0), "batch_size"),
        (dict(method="dopri5", batch_size=2), "batch_size"),
        (dict(method="gd", dt=0.1, seed=-1), "seed"),
        (dict(method="rodas", penalty=fs.penalty.dropout(0.9)), "rodas"),
        (dict(method="gd", dt=0.1, dropout=0.9, penalty=fs.penalty.dropout(0.9)), "one of them"),
        (dict(method="gd", dt=0.1, penalty="l2"), "penalty"),
    ],
)
def test_bad_options_name_the_field(small, options, field):
    net, theta, X, y = small
    with pytest.raises(ValueError, match=field):
        fs.simulate(net, theta, X, y, t_end=1.0, progress=False, **options)


def test_bad_penalties_are_refused():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        fs.penalty.dropout(0.0)
    with pytest.raises(ValueError, match="lam"):
        fs.penalty.l2(-1.0)
    with pytest.raises(ValueError, match="kind"):
        fs.penalty.from_config({"penalty": [{"kind": "__import__('os')", "value": 1.0}]})


@pytest.mark.slow
def test_dropout_gd_does_not_depend_on_the_thread_count(tmp_path):
    """Above PARALLEL_MIN_WORK the kernels run parallel: 1 and 2 threads, same bits."""
    script = (
        "import numpy as np, flowsim as fs, sys\n"
        "net = fs.TwoLayer('tanh', width=300, input_dim=2)\n"
        "X = np.random.default_rng(0).uniform(-1, 1, (500, 2)); y = np.sin(X[:, 0])\n"
        "run = fs.simulate(net, net.init(1, scale=0.3), X, y, t_end=0.5, method='gd',\n"
        "                  dt=0.05, dropout=0.8, batch_size=300, seed=2, progress=False)\n"
        "np.save(sys.argv[1], run.theta_final)\n"
    )
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"theta{threads}.npy"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        results.append(np.load(out))
    assert np.array_equal(results[0], results[1])
