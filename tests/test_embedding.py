"""Embedding principle (docs/theory.md §16): the exact Hessian, critical points, the
splitting embedding, network reduction and the loss spectrum.

References: the Hessian against a plain-NumPy second derivative (two layers, written
here from the chain rule) and central differences of the independent gradients of
tests/naive.py and of ``net.gradient``; everything else against exact identities.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

import flowsim as fs
import flowsim.measure as fm
from flowsim.theory.embedding import gradient_scale

NETS = [
    pytest.param(lambda: fs.TwoLayer("tanh", 3, 2, alpha=1.7), id="two-tanh"),
    pytest.param(lambda: fs.TwoLayer("softplus", 3, 2, bias=False, alpha=0.8), id="two-softplus"),
    pytest.param(lambda: fs.ThreeLayer("tanh", (3, 2), 2, alpha=1.7), id="three-tanh"),
    pytest.param(lambda: fs.ThreeLayer("x**2*sin(x)", (2, 3), 2, alpha=0.8), id="three-x2sin"),
]


def bump():
    """1-D data whose width-2 tanh net has a finite, non-degenerate minimum."""
    x = np.linspace(-1.5, 1.5, 40)
    return x[:, None], np.exp(-4 * x**2)


def numpy_hessian_two_layer(net, theta, X, y):
    """H = (1/n) sum_i (J_i J_i^T + e_i d2f_i), from docs/theory.md §16, plain NumPy."""
    s, ds, dds = naive.sigma_functions(net.activation.name)
    a, W = naive.two_layer_split(theta, net.width, net.D)
    Xa = naive.augment(X, net.bias)
    n, m, D = Xa.shape[0], net.width, net.D
    Z = Xa @ W.T
    e = s(Z) @ a / net.alpha - y
    J = np.hstack([s(Z), ((a * ds(Z))[:, :, None] * Xa[:, None, :]).reshape(n, m * D)])
    H = J.T @ J / (n * net.alpha**2)
    for k in range(m):
        w = slice(m + k * D, m + (k + 1) * D)
        cross = (e * ds(Z[:, k])) @ Xa / (n * net.alpha)
        H[k, w] += cross
        H[w, k] += cross
        H[w, w] += (Xa.T * (e * a[k] * dds(Z[:, k]))) @ Xa / (n * net.alpha)
    return H


@pytest.mark.parametrize("make", NETS)
def test_hessian_matches_finite_differences(make, rng):
    net = make()
    X = rng.standard_normal((7, net.input_dim))
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    theta = rng.standard_normal(net.n_params)
    H = net.hessian(theta, X, y)
    assert H.shape == (net.n_params, net.n_params)
    assert np.array_equal(H, H.T) or np.abs(H - H.T).max() <= 1e-15 * np.abs(H).max()
    scale = np.abs(H).max()
    naive_fd = naive.central_differences(lambda z: naive.flat_gradient(net, z, X, y), theta, h=1e-5)
    own_fd = naive.central_differences(lambda z: net.gradient(z, X, y), theta, h=1e-5)
    assert np.abs(H - naive_fd).max() <= 1e-8 * scale
    assert np.abs(H - own_fd).max() <= 1e-8 * scale
    if isinstance(net, fs.TwoLayer):
        reference = numpy_hessian_two_layer(net, theta, X, y)
        assert np.abs(H - reference).max() <= 1e-13 * scale


@pytest.fixture(scope="module")
def width2_minimum():
    """The width-2 tanh minimum of :func:`bump` (flow, then critical_point)."""
    X, y = bump()
    net = fs.TwoLayer("tanh", 2, 1)
    traj = fs.simulate(net, net.init(0, scale=1.0), X, y, t_end=1e4, rtol=1e-10,
                       save_state="final", progress=False)  # fmt: skip
    return net, fs.theory.critical_point(net, traj.theta[-1], X, y), X, y


def test_critical_point_converges(width2_minimum):
    net, cp, X, y = width2_minimum
    grad = net.gradient(cp.theta, X, y)
    scale = gradient_scale(net.loss(cp.theta, X, y), net.hessian(cp.theta, X, y))
    assert cp.converged and cp.grad_relative <= 1e-12
    assert np.linalg.norm(grad) <= 1e-12 * scale
    assert cp.spectrum.counts == (0, 0, 6) and cp.index == 0  # a strict minimum
    assert cp.loss == pytest.approx(net.loss(cp.theta, X, y), rel=1e-15)


def _relative_output_change(net, theta, wide, theta_wide, X):
    f = net.output(theta, X)
    return np.abs(wide.output(theta_wide, X) - f).max() / np.abs(f).max()


@pytest.mark.parametrize("lam", [0.3, 0.5, 2.0, -1.0])
def test_embedding_preserves_output_and_criticality_two_layer(width2_minimum, lam):
    net, cp, X, y = width2_minimum
    wide, theta = fs.theory.embed(net, cp.theta, neuron=1, lam=lam)
    assert wide.width == 3
    assert _relative_output_change(net, cp.theta, wide, theta, X) <= 1e-14
    grad = np.linalg.norm(wide.gradient(theta, X, y))
    scale = gradient_scale(wide.loss(theta, X, y), wide.hessian(theta, X, y))
    assert grad <= 1e-12 * scale


def test_embedding_is_linear_in_theta(rng):
    net = fs.TwoLayer("tanh", 3, 2)
    t1, t2 = rng.standard_normal((2, net.n_params))
    embed = lambda t: fs.theory.embed(net, t, neuron=2, lam=-0.7)[1]  # noqa: E731
    assert np.allclose(embed(2.0 * t1 - 3.0 * t2), 2.0 * embed(t1) - 3.0 * embed(t2), rtol=0,
                       atol=1e-14)  # fmt: skip


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("lam", [0.3, 2.0, -1.0])
def test_embedding_three_layer(layer, lam):
    X, y = bump()
    net = fs.ThreeLayer("tanh", (2, 2), 1)
    cp = fs.theory.critical_point(net, net.init(1, scale=1.0), X, y)
    assert cp.converged
    wide, theta = fs.theory.embed(net, cp.theta, neuron=0, lam=lam, layer=layer)
    assert wide.widths == ((3, 2) if layer == 1 else (2, 3))
    assert _relative_output_change(net, cp.theta, wide, theta, X) <= 1e-14
    grad = np.linalg.norm(wide.gradient(theta, X, y))
    assert grad <= 1e-12 * gradient_scale(wide.loss(theta, X, y), wide.hessian(theta, X, y))


def test_split_counts_and_second_order_term(width2_minimum, rng):
    """Each split adds one zero eigenvalue; negative and positive counts never decrease;
    d^T H d = lam (1 - lam) z^T S_k z along the split perturbation."""
    net, cp, X, y = width2_minimum
    counts = [cp.spectrum.counts]
    wide, theta = net, cp.theta
    for k in (0, 1):
        wide, theta = fs.theory.embed(wide, theta, neuron=k, lam=0.5)
        counts.append(fs.theory.hessian_spectrum(wide, theta, X, y).counts)
    for before, after in zip(counts, counts[1:], strict=False):
        assert after[1] == before[1] + 1
        assert after[0] >= before[0] and after[2] >= before[2]
    assert [c[0] for c in counts] == [0, 1, 2]  # measured on this data: the [ZZLX21] example

    p = net.unpack(cp.theta)
    k = 0
    Xa = naive.augment(X, True)
    _, _, dds = naive.sigma_functions("tanh")
    e = naive.flat_output(net, cp.theta, X) - y
    S = p["a"][k] / (net.alpha * X.shape[0]) * (Xa.T * (e * dds(Xa @ p["W"][k]))) @ Xa
    z = rng.standard_normal(2)
    signs = []
    for lam in (0.3, 0.5, 2.0, -1.0):
        wide, theta = fs.theory.embed(net, cp.theta, neuron=k, lam=lam)
        d = np.zeros(wide.n_params)
        d[wide.layer_slices()["W"]] = np.concatenate([(1 - lam) * z, np.zeros(2), -lam * z])
        quad = d @ wide.hessian(theta, X, y) @ d
        expected = lam * (1 - lam) * z @ S @ z
        assert quad == pytest.approx(expected, rel=1e-9)
        signs.append(np.sign(quad))
    assert signs[0] == signs[1] == -signs[2] == -signs[3] != 0


def test_reduce_inverts_embedding(width2_minimum):
    net, cp, X, y = width2_minimum
    wide, theta = net, cp.theta
    for k, lam in ((0, 0.3), (1, 2.0), (0, -1.0)):
        wide, theta = fs.theory.embed(wide, theta, neuron=k, lam=lam)
    narrow, back = fm.reduce(wide, theta)
    assert narrow.width == 2
    # one neuron per group, heaviest group first: compare neuron by neuron in a fixed order
    p0, p1 = net.unpack(cp.theta), narrow.unpack(back)
    order, got = np.argsort(p0["W"][:, 0]), np.argsort(p1["W"][:, 0])
    assert np.allclose(p1["a"][got], p0["a"][order], rtol=1e-14, atol=0)
    assert np.allclose(p1["W"][got], p0["W"][order], rtol=1e-14, atol=0)
    f = net.output(cp.theta, X)
    assert np.abs(narrow.output(back, X) - f).max() <= 1e-14 * np.abs(f).max()


def test_reduce_relu_rule_is_exact_on_one_orientation(rng):
    """ReLU: neurons on one ray merge into a_j' = sum a_k |w_k| / |w_j| exactly."""
    net = fs.TwoLayer("relu", 4, 2)
    u = np.array([0.6, -0.8, 0.5])
    W = np.array([2.0 * u, 0.5 * u, 1.5 * u, [-1.0, 0.2, 0.3]])
    a = np.array([1.0, -0.4, 1.1, 0.9])  # neuron 0 is the heaviest of the ray (|a||w|)
    theta = net.pack(a=a, W=W)
    narrow, reduced = fm.reduce(net, theta, threshold=0.9)
    p = narrow.unpack(reduced)
    assert narrow.width == 2 and np.array_equal(p["W"], W[[0, 3]])
    assert p["a"][0] == pytest.approx(1.0 + (-0.4 * 0.5 + 1.1 * 1.5) / 2.0, rel=1e-15)
    X = rng.standard_normal((30, 2))
    f = net.output(theta, X)
    assert np.abs(narrow.output(reduced, X) - f).max() <= 1e-14 * np.abs(f).max()


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_reduce_inverts_embedding_three_layer(layer, activation, rng):
    """Split neurons of either hidden layer three times, reduce: the original net back
    (neuron order aside) and the same output."""
    X = rng.standard_normal((25, 2))
    net = fs.ThreeLayer(activation, (2, 3), 2)
    theta = rng.standard_normal(net.n_params)
    wide = net, theta
    for k, lam in ((0, 0.3), (1, 2.0), (0, -1.0)):
        wide = fs.theory.embed(*wide, neuron=k, lam=lam, layer=layer)
    narrow, back = fm.reduce(*wide, layer=layer)
    assert narrow.widths == net.widths
    p0, p1 = net.unpack(theta), narrow.unpack(back)
    if layer == 1:  # neurons: rows of V; their output weights: the columns of W
        i0, i1 = np.argsort(p0["V"][:, 0]), np.argsort(p1["V"][:, 0])
        pairs = [(p0["V"][i0], p1["V"][i1]), (p0["W"][:, i0], p1["W"][:, i1]),
                 (p0["W"][:, 2:], p1["W"][:, 2:]), (p0["a"], p1["a"])]  # fmt: skip
    else:  # neurons: rows of W (with the bias); output weights a
        i0, i1 = np.argsort(p0["W"][:, 0]), np.argsort(p1["W"][:, 0])
        pairs = [(p0["W"][i0], p1["W"][i1]), (p0["a"][i0], p1["a"][i1]), (p0["V"], p1["V"])]
    for expected, got in pairs:
        assert np.allclose(got, expected, rtol=1e-13, atol=1e-15)
    f = net.output(theta, X)
    assert np.abs(narrow.output(back, X) - f).max() <= 1e-13 * np.abs(f).max()


def test_reduce_three_layer_first_layer_rule(rng):
    """Layer 1, tanh: two neurons with one input weight v and output columns c1, c2 merge
    into c1 + c2 exactly; with input weights v1 != v2 the merged v' is the
    c'-weighted mean (c_k . c') v_k / sum_k (c_k . c'), c' = c1 + c2."""
    net = fs.ThreeLayer("tanh", (3, 2), 1, bias=False)
    v = np.array([[0.8], [0.81], [-1.3]])
    W = np.array([[0.5, 0.7, 1.1], [-0.2, 0.4, 0.3]])
    a = np.array([1.0, -0.6])
    narrow, reduced = fm.reduce(net, net.pack(a=a, W=W, V=v), threshold=0.5, layer=1)
    p = narrow.unpack(reduced)
    c = W[:, 0] + W[:, 1]
    beta = np.array([W[:, 0] @ c, W[:, 1] @ c])
    group = int(np.argmin(np.abs(p["V"][:, 0] + 1.3)))  # the lone neuron's row
    merged = 1 - group
    assert narrow.widths == (2, 2)
    assert p["V"][merged, 0] == pytest.approx((beta @ v[:2, 0]) / beta.sum(), rel=1e-14)
    assert np.allclose(p["W"][:, merged], c, rtol=1e-15, atol=0)
    assert np.allclose(p["W"][:, group], W[:, 2], rtol=1e-15, atol=0)


def test_plateau_levels_collects_later_plateaus():
    t = np.geomspace(1e-2, 1e5, 800)
    curves = []
    for level in (0.1, 0.02):  # two runs: plateau 0.25, drop to `level`, plateau, drop to 1e-3
        loss = 1e-3 + (level - 1e-3) / (1 + (t / 1e3) ** 6) + (0.25 - level) / (1 + t**6)
        curves.append((t, loss))
    levels = fm.plateau_levels(curves)
    assert levels.shape == (4,)
    assert levels[0] == pytest.approx(0.1, rel=0.02) and levels[2] == pytest.approx(0.02, rel=0.02)
    assert levels[1] == pytest.approx(1e-3, rel=0.02) and levels[3] == pytest.approx(1e-3, rel=0.02)
    assert fm.plateau_levels(curves, skip_first=False).shape == (6,)


SPECTRUM_BASE = {"model": {"kind": "two_layer", "activation": "tanh"}, "data": {"kind": "sin1d"},
                 "init": {"seed": 0, "scale": 1e-4},
                 "solver": {"t_end": 3e3, "n_save": 120, "save_state": "final"}}  # fmt: skip
STAGES = {"slope_tol": 0.1, "smooth": 0.05, "min_plateau": 0.2, "min_drop": 0.02}


def test_loss_spectrum_runs_a_resumable_sweep(tmp_path):
    """The spectrum's runs go through the sweep into the store: its levels are those of the
    same configs simulated here, and a larger spectrum computes only the missing runs."""
    store = tmp_path / "store"
    first = fm.loss_spectrum(SPECTRUM_BASE, store, widths=[1, 2], seeds=1, workers=2,
                             progress=False, **STAGES)  # fmt: skip
    assert first.computed == 2 and first.failures == ()
    more = fm.loss_spectrum(SPECTRUM_BASE, store, widths=[1, 2], seeds=[0, 1], workers=2,
                            progress=False, **STAGES)  # fmt: skip
    assert more.computed == 2  # seed 1 of each width; seed 0 came from the store
    again = fm.loss_spectrum(SPECTRUM_BASE, store, widths=[1, 2], seeds=2, progress=False,
                             **STAGES)  # fmt: skip
    assert again.computed == 0 and again.seeds == (0, 1)
    assert list(more.levels) == [1, 2] and more.keys == again.keys
    for width in (1, 2):
        curves, finals = [], []
        for seed in (0, 1):
            cfg = fs.RunConfig.from_dict({**SPECTRUM_BASE,
                                          "model": {**SPECTRUM_BASE["model"], "width": width},
                                          "init": {"seed": seed, "scale": 1e-4}})  # fmt: skip
            traj = fs.run_config(cfg)
            curves.append((traj.t, traj.loss))
            finals.append(traj.loss[-1])
        expected = fm.plateau_levels(curves, **STAGES)
        assert expected.size >= 2  # every run has a later plateau (the linear-limit one at least)
        assert np.allclose(more.levels[width], expected, rtol=1e-9, atol=0)
        assert np.array_equal(again.levels[width], more.levels[width])
        assert np.allclose(more.final[width], finals, rtol=1e-9, atol=0)


def test_bad_input_is_refused():
    net = fs.TwoLayer("tanh", 2, 1)
    theta = np.ones(net.n_params)
    with pytest.raises(ValueError, match=r"neuron must be an integer in \[0, 1\]"):
        fs.theory.embed(net, theta, neuron=2)
    with pytest.raises(ValueError, match="lam must be finite"):
        fs.theory.embed(net, theta, neuron=0, lam=np.nan)
    with pytest.raises(ValueError, match="layer must be None or 1"):
        fs.theory.embed(net, theta, neuron=0, layer=2)
    three = fs.ThreeLayer("tanh", (2, 2), 1)
    with pytest.raises(ValueError, match=r"layer must be 1 \(V, width m1\) or 2"):
        fs.theory.embed(three, np.ones(three.n_params), neuron=0)
    with pytest.raises(ValueError, match=r"threshold must be in \(-1, 1\]"):
        fm.reduce(net, theta, threshold=1.5)
    with pytest.raises(TypeError, match="reduce takes a TwoLayer or ThreeLayer"):
        fm.reduce("net", theta)
    with pytest.raises(ValueError, match=r"layer must be 1 \(V, width m1\) or 2"):
        fm.reduce(three, np.ones(three.n_params))
    with pytest.raises(ValueError, match="layer must be None or 1"):
        fm.reduce(net, theta, layer=2)
    with pytest.raises(ValueError, match="zero_rtol must be in"):
        fs.theory.hessian_spectrum(net, theta, [[0.0]], [0.0], zero_rtol=-1)
    with pytest.raises(ValueError, match="gtol must be a positive number"):
        fs.theory.critical_point(net, theta, [[0.0]], [0.0], gtol=0)


def test_runner_forwards_the_store_to_a_check_that_takes_it(tmp_path, monkeypatch):
    """``flowsim validate --store DIR`` reaches a check without sweep files whose simulate
    takes ``store`` (the embedding check's loss spectrum), and only the options it takes."""
    import types

    from flowsim.validation import _runner
    from flowsim.validation import embedding as check

    seen = {}

    def simulate(size, store=None, workers=None):
        seen.update(size=size, store=store, workers=workers)
        return {"x": np.ones(2)}

    module = types.SimpleNamespace(NAME="fake", SIZES={"quick": {}}, __file__=check.__file__,
                                   simulate=simulate)  # fmt: skip
    options = {"store": tmp_path / "store", "scheduler": "local", "workers": None}
    data, _ = _runner.simulation_data(module, "quick", tmp_path, sweep=options)
    assert seen == {"size": "quick", "store": tmp_path / "store", "workers": None}
    assert np.array_equal(data["x"], np.ones(2))
    assert _runner._accepted(lambda size: None, options) == {}
    assert set(_runner._accepted(check.simulate, options)) == {"store", "scheduler"}
