"""Models: output, loss and gradient against tests/naive.py and finite differences;
parameter layout; initialization; the normalized flow of docs/theory.md §2."""

from __future__ import annotations

import naive
import numpy as np
import pytest

import flowsim as fs
from flowsim.activations import REGISTRY
from flowsim.models._base import no_switching

ACTIVATIONS = sorted(REGISTRY) + ["x**2*sin(x)", "log(1+x**4)"]
ALPHA = 1.7

# Every (model, activation) pair: the model kernels are compiled once per family and
# each activation only its own callback (under a second), so all run by default.
KIND_ACT = [
    pytest.param(kind, act, id=f"{kind}-{act}") for kind in ("two", "three") for act in ACTIVATIONS
]


def make_net(kind, act, bias, input_dim=2):
    if kind == "two":
        return fs.TwoLayer(act, 5, input_dim, bias=bias, alpha=ALPHA)
    return fs.ThreeLayer(act, (4, 3), input_dim, bias=bias, alpha=ALPHA)


def random_theta(net, rng, scale=0.8):
    return scale * rng.standard_normal(net.n_params)


def _assert_close_vectors(got, want, rtol):
    """Elementwise rtol, plus the same rtol of the largest entry as an absolute floor."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))


# ------------------------------------------------------------------ output, loss, gradient


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind, act", KIND_ACT)
def test_output_loss_gradient_vs_naive(kind, act, bias, rng, data2):
    X, y = data2
    net = make_net(kind, act, bias)
    for _ in range(2):
        theta = random_theta(net, rng)
        _assert_close_vectors(net.output(theta, X), naive.flat_output(net, theta, X), 1e-12)
        assert net.loss(theta, X, y) == pytest.approx(naive.flat_loss(net, theta, X, y), rel=1e-12)
        _assert_close_vectors(
            net.gradient(theta, X, y), naive.flat_gradient(net, theta, X, y), 1e-10
        )


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind, act", KIND_ACT)
def test_gradient_vs_central_differences(kind, act, bias, rng, data2):
    X, y = data2
    net = make_net(kind, act, bias)
    theta = random_theta(net, rng)
    grad = net.gradient(theta, X, y)
    fd = naive.central_differences(lambda th: net.loss(th, X, y), theta, h=1e-6)
    # truncation ~h^2, cancellation ~eps R / h ~ 1e-10
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()))


def test_gradient_input_forms(rng):
    """1D X for input_dim = 1 and a column-vector y are accepted and mean the same."""
    net = fs.TwoLayer("tanh", 4, 1, bias=True)
    X = rng.standard_normal(6)
    y = rng.standard_normal(6)
    theta = random_theta(net, rng)
    g = net.gradient(theta, X[:, None], y)
    np.testing.assert_array_equal(net.gradient(theta, X, y[:, None]), g)
    _assert_close_vectors(g, naive.flat_gradient(net, theta, X[:, None], y), 1e-10)


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("bias", [True, False])
def test_two_layer_layout(bias, rng):
    m, d = 5, 3
    D = d + int(bias)
    net = fs.TwoLayer("tanh", m, d, bias=bias)
    assert net.D == D
    assert net.n_params == m + m * D
    a = rng.standard_normal(m)
    W = rng.standard_normal((m, D))
    theta = net.pack(a=a, W=W)
    # documented layout: theta = [a, W row-major]
    np.testing.assert_array_equal(theta, np.concatenate([a, W.ravel()]))
    parts = net.unpack(theta)
    assert set(parts) == {"a", "W"}
    assert parts["a"].shape == (m,)
    assert parts["W"].shape == (m, D)
    np.testing.assert_array_equal(parts["a"], a)
    np.testing.assert_array_equal(parts["W"], W)
    np.testing.assert_array_equal(net.pack(**parts), theta)
    # unpack gives views; a leading batch axis is kept
    parts["a"][0] = 123.0
    assert theta[0] == 123.0
    batch = np.stack([theta, 2 * theta])
    assert net.unpack(batch)["W"].shape == (2, m, D)


@pytest.mark.parametrize("bias", [True, False])
def test_three_layer_layout(bias, rng):
    m1, m2, d = 4, 3, 2
    D = d + int(bias)
    m1b = m1 + int(bias)
    net = fs.ThreeLayer("tanh", (m1, m2), d, bias=bias)
    assert net.n_params == m2 + m2 * m1b + m1 * D
    a = rng.standard_normal(m2)
    W = rng.standard_normal((m2, m1b))
    V = rng.standard_normal((m1, D))
    theta = net.pack(a=a, W=W, V=V)
    np.testing.assert_array_equal(theta, np.concatenate([a, W.ravel(), V.ravel()]))
    parts = net.unpack(theta)
    assert {k: v.shape for k, v in parts.items()} == {"a": (m2,), "W": (m2, m1b), "V": (m1, D)}
    np.testing.assert_array_equal(net.pack(**parts), theta)


def test_three_layer_bias_is_last_column_of_W(rng, data2):
    """Changing W[:, -1] shifts every second-layer pre-activation by the same amount."""
    X, _ = data2
    net = fs.ThreeLayer("linear", (4, 3), 2, bias=True)
    theta = random_theta(net, rng)
    p = net.unpack(theta.copy())
    p["W"][:, -1] += 0.5
    shifted = net.pack(**p)
    # linear sigma: f changes by (1/alpha) sum_k a_k * 0.5, the same for every sample
    delta = net.output(shifted, X) - net.output(theta, X)
    np.testing.assert_allclose(delta, 0.5 * p["a"].sum(), rtol=1e-12)


def test_pack_rejects_bad_layers():
    net = fs.TwoLayer("tanh", 3, 2)
    with pytest.raises(ValueError, match="missing"):
        net.pack(a=np.zeros(3))
    with pytest.raises(ValueError, match="W"):
        net.pack(a=np.zeros(3), W=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="theta"):
        net.unpack(np.zeros(5))


# ------------------------------------------------------------------ initialization


def _std(v):
    return float(np.sqrt(np.mean(np.asarray(v) ** 2)))


def test_init_seed_reproducible():
    net = fs.TwoLayer("tanh", 20, 2)
    np.testing.assert_array_equal(net.init(3, scale=0.1), net.init(3, scale=0.1))
    assert not np.array_equal(net.init(3, scale=0.1), net.init(4, scale=0.1))
    net3 = fs.ThreeLayer("tanh", (6, 5), 2)
    np.testing.assert_array_equal(net3.init(7, scale=0.1), net3.init(7, scale=0.1))
    assert not np.array_equal(net3.init(7, scale=0.1), net3.init(8, scale=0.1))


def test_two_layer_init_stds():
    m = 4000
    net = fs.TwoLayer("tanh", m, 2, bias=True, alpha=2.5)
    p = net.unpack(net.init(0, scale=0.03))
    assert _std(p["a"]) == pytest.approx(0.03, rel=0.05)
    assert _std(p["W"]) == pytest.approx(0.03, rel=0.05)
    p = net.unpack(net.init(1, beta1=0.2, beta2=0.005))
    assert _std(p["a"]) == pytest.approx(0.2, rel=0.05)
    assert _std(p["W"]) == pytest.approx(0.005, rel=0.05)
    assert abs(np.mean(p["W"])) < 0.1 * 0.005
    # gamma, gamma': kappa = beta1 beta2 / alpha = m^-gamma, kappa' = beta1/beta2 = m^-gamma'
    gamma, gamma_prime = 1.25, 0.5
    p = net.unpack(net.init(2, gamma=gamma, gamma_prime=gamma_prime))
    beta1, beta2 = _std(p["a"]), _std(p["W"])
    assert np.log(beta1 * beta2 / net.alpha) / np.log(m) == pytest.approx(-gamma, abs=0.01)
    assert np.log(beta1 / beta2) / np.log(m) == pytest.approx(-gamma_prime, abs=0.01)


def test_three_layer_init_stds():
    net = fs.ThreeLayer("tanh", (60, 50), 3, bias=True)
    p = net.unpack(net.init(0, scale=0.02))
    for name in ("a", "W", "V"):
        assert _std(p[name]) == pytest.approx(0.02, rel=0.12 if name == "a" else 0.05)
    net = fs.ThreeLayer("tanh", (60, 2000), 3, bias=True)
    p = net.unpack(net.init(1, beta1=0.3, beta2=0.01))
    assert _std(p["a"]) == pytest.approx(0.3, rel=0.05)
    assert _std(p["W"]) == pytest.approx(0.01, rel=0.05)
    assert _std(p["V"]) == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "scale"),
        ({"scale": 0.1, "beta1": 0.1, "beta2": 0.1}, "not both"),
        ({"beta1": 0.1}, "missing"),
        ({"scale": -1.0}, "> 0"),
        ({"scale": float("nan")}, "> 0"),
        ({"gamma": 1.0}, "gamma_prime"),
        ({"gamma": 1.0, "gamma_prime": 0.0, "scale": 0.1}, "not both"),
    ],
)
def test_init_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.TwoLayer("tanh", 4, 2).init(0, **kwargs)


def _antisymmetric_case(kind):
    if kind == "two":
        return fs.TwoLayer("tanh", 10, 2, bias=True, alpha=ALPHA)
    return fs.ThreeLayer("tanh", (4, 10), 2, bias=True, alpha=ALPHA)


def _output_terms(net, theta, X):
    """Per-output-neuron terms a_k g_k(x_i), shape (n, m), from the naive forward pass."""
    s, _, _ = naive.sigma_functions(net.activation.name)
    p = net.unpack(theta)
    Xa = naive.augment(X, net.bias)
    if isinstance(net, fs.TwoLayer):
        G = s(Xa @ p["W"].T)
    else:
        H = naive.augment(s(Xa @ p["V"].T), net.bias)
        G = s(H @ p["W"].T)
    return G * p["a"] / net.alpha


@pytest.mark.parametrize("kind", ["two", "three"])
def test_antisymmetric_init(kind, data2):
    X, _ = data2
    net = _antisymmetric_case(kind)
    half = 5
    theta = net.init(0, scale=0.7, antisymmetric=True)
    p = net.unpack(theta)
    # exact pairing: same incoming weights, opposite output weight
    np.testing.assert_array_equal(p["W"][half:], p["W"][:half])
    np.testing.assert_array_equal(p["a"][half:], -p["a"][:half])
    assert np.all(p["a"][:half] != 0)
    # so f(theta0) = 0 exactly when each pair is added first
    terms = _output_terms(net, theta, X)
    np.testing.assert_array_equal(terms[:, :half] + terms[:, half:], 0.0)
    # flowsim's kernels add neuron after neuron: zero up to rounding of the partial sums
    f = net.output(theta, X)
    bound = 4 * net.n_params * np.finfo(float).eps * np.abs(terms).sum(axis=1)
    assert np.all(np.abs(f) <= bound), (f, bound)
    with pytest.raises(ValueError, match="even"):
        make_net(kind, "tanh", True).init(0, scale=0.1, antisymmetric=True)


@pytest.mark.parametrize("kind", ["two", "three"])
def test_antisymmetric_output_zero_up_to_rounding(kind, data2):
    """Pairs (k, k + m/2) cancel; the sum over neurons runs in order, so f(theta0) is 0
    up to the rounding of that sum (documented in ``init``)."""
    X, _ = data2
    net = _antisymmetric_case(kind)
    for seed in range(5):
        theta = net.init(seed, scale=0.7, antisymmetric=True)
        scale = np.sum(np.abs(net.unpack(theta)["a"]))
        assert np.max(np.abs(net.output(theta, X))) <= 1e-14 * scale


# ------------------------------------------------------------------ normalized flow


def _random_scales(net, rng):
    return {name: float(10 ** rng.uniform(-3, 0.5)) for name in net.layer_names}


@pytest.mark.parametrize("act", ["tanh", "relu", "xtanh", "softplus", "linear"])
@pytest.mark.parametrize("kind", ["two", "three"])
def test_normalized_flow_equals_scaled_naive_gradient(kind, act, rng, data2):
    """F(theta_bar) = -(T/S) grad R(S theta_bar) for random per-layer scales."""
    X, y = data2
    net = make_net(kind, act, bias=True)
    Xa = np.ascontiguousarray(net.augment(X))
    for _ in range(3):
        scales = _random_scales(net, rng)
        c, T = net.flow_constants(scales)
        S = net.scale_vector(scales)
        theta_bar = rng.standard_normal(net.n_params)
        out = np.empty(net.n_params)
        mode, aux = no_switching()  # evaluate the activation itself (no kink treatment)
        loss = net.kernels_for(Xa.shape[0]).flow(theta_bar, Xa, y, c, net.dims(), mode, aux, out)
        expected = -(T / S) * naive.flat_gradient(net, S * theta_bar, X, y)
        _assert_close_vectors(out, expected, 1e-10)
        assert loss == pytest.approx(naive.flat_loss(net, S * theta_bar, X, y), rel=1e-12)


def test_scale_vector_layout(rng):
    net = fs.ThreeLayer("tanh", (4, 3), 2, bias=True)
    scales = {"a": 2.0, "W": 3.0, "V": 5.0}
    S = net.scale_vector(scales)
    parts = net.unpack(S)
    for name, value in scales.items():
        assert np.all(parts[name] == value)


def test_time_scale_is_product_of_outer_scales(rng):
    two = fs.TwoLayer("tanh", 4, 2)
    assert two.flow_constants({"a": 0.3, "W": 0.02})[1] == pytest.approx(0.3 * 0.02, rel=1e-15)
    three = fs.ThreeLayer("tanh", (4, 3), 2)
    T = three.flow_constants({"a": 0.3, "W": 0.02, "V": 7.0})[1]
    assert T == pytest.approx(0.3 * 0.02, rel=1e-15)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_constants_are_kappa_form(act, rng):
    """[c_f, c_z, c_a, c_w] = [kappa, 1, kappa/kappa', kappa*kappa'] (docs/theory.md §2)."""
    for alpha in (1.0, 0.37, 25.0):
        net = fs.TwoLayer(act, 5, 2, alpha=alpha)
        for _ in range(5):
            beta1, beta2 = 10 ** rng.uniform(-4, 1, size=2)
            kappa = beta1 * beta2 / alpha
            kappa_prime = beta1 / beta2
            c, T = net.flow_constants({"a": beta1, "W": beta2})
            expected = [kappa, 1.0, kappa / kappa_prime, kappa * kappa_prime]
            np.testing.assert_allclose(c, expected, rtol=4e-16, atol=0)
            assert T == beta1 * beta2


def test_general_sigma_constants_theory_form(rng):
    """Non-homogeneous sigma: e = (beta1/alpha) sum a_bar sigma(beta2 w_bar.x) - y,
    d a_bar/dt_bar ~ beta2/alpha, d w_bar/dt_bar ~ kappa kappa' (docs/theory.md §2)."""
    alpha = 0.6
    net = fs.TwoLayer("tanh", 5, 2, alpha=alpha)
    beta1, beta2 = 0.03, 0.002
    c, _ = net.flow_constants({"a": beta1, "W": beta2})
    kappa, kappa_prime = beta1 * beta2 / alpha, beta1 / beta2
    np.testing.assert_allclose(
        c, [beta1 / alpha, beta2, beta2 / alpha, kappa * kappa_prime], rtol=4e-16
    )


def test_small_runs_use_the_serial_variant_with_identical_results():
    """Below PARALLEL_MIN_WORK simulate uses kernels whose parallel loops are compiled
    serial (no parfors compile); they compute the same bits."""
    from flowsim._jit import PARALLEL_MIN_WORK
    from flowsim.models._base import no_switching

    net = fs.TwoLayer("tanh", 7, 2)
    theta = net.init(0, scale=0.5)
    X = np.random.default_rng(1).normal(size=(9, 2))
    y = np.sin(X[:, 0])
    assert net.kernels_for(9) is net._serial_kernels
    big = PARALLEL_MIN_WORK // net.n_params + 1
    assert net.kernels_for(big) is net.kernels
    assert "@pjit" not in open(net._serial_kernels.__file__).read()
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(net.default_scales(theta))
    mode, aux = no_switching()
    out = [np.empty(theta.size), np.empty(theta.size)]
    for module, o in zip((net.kernels, net._serial_kernels), out, strict=True):
        module.flow(theta, Xa, y, c, net.dims(), mode, aux, o)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("act", ["tanh", "gelu", "x**2*sin(x)"])
def test_one_pass_flow_equals_two_pass_flow_for_any_chunks_and_threads(act):
    """The one-pass flow (the activation once per pair, chunks of samples with their
    own sums) agrees with the two passes over neuron blocks and with the naive
    gradient for one chunk or several; for a fixed chunk count it gives the same
    bits on one thread as on two."""
    import numba

    from flowsim._jit import PARALLEL_MIN_WORK
    from flowsim.models._base import no_switching

    rng = np.random.default_rng(3)
    net = fs.TwoLayer(act, 1500, 2, alpha=ALPHA)
    n = PARALLEL_MIN_WORK // (net.width * net.D) + 7
    X = rng.uniform(-1.0, 1.0, size=(n, 2))
    y = np.sin(2.0 * X[:, 0])
    theta = net.init(0, scale=0.7)
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(net.unit_scales())
    mode, aux = no_switching()
    module = net.kernels_for(n)
    assert module is net.kernels and module.one_pass_chunks(n, net.width, net.D) == 4
    e, two_pass = np.empty(n), np.empty(theta.size)
    loss2 = module.residuals(theta, Xa, y, c, net.dims(), mode, e)
    module.flow_from_residuals(theta, Xa, e, c, net.dims(), mode, aux, two_pass)
    naive_flow = -naive.flat_gradient(net, theta, X, y)
    for nch in (1, 4, 7):
        one_pass = np.empty(theta.size)
        loss1 = module._flow_one_pass(theta, Xa, y, c, net.dims(), nch, -1, one_pass)
        assert loss1 == pytest.approx(loss2, rel=1e-13)
        _assert_close_vectors(one_pass, two_pass, 1e-12)
        _assert_close_vectors(one_pass, naive_flow, 1e-10)
    flows = []
    threads = numba.get_num_threads()
    try:
        for count in (1, threads):
            numba.set_num_threads(count)
            flows.append(np.empty(theta.size))
            module.flow(theta, Xa, y, c, net.dims(), mode, aux, flows[-1])
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(flows[0], flows[1])


def test_a_small_runs_module_takes_one_pass_beyond_the_cache():
    """A single sample on a net too wide for the one-pass buffers: the parallel module
    takes two passes over neuron blocks; the serial module of a smooth activation
    (which does not compile the two passes) takes one.  Both equal the naive flow."""
    from flowsim._jit import PARALLEL_MIN_WORK

    net = fs.TwoLayer("tanh", 66_000, 1)  # D = 2 with the bias
    X, y = np.array([[0.4]]), np.array([0.3])
    assert net.kernels_for(1) is net._serial_kernels and net.n_params < PARALLEL_MIN_WORK
    assert net.kernels.one_pass_chunks(1, net.width, net.D) == 0  # beyond the cache
    theta = net.init(0, scale=0.5)
    Xa = np.ascontiguousarray(net.augment(X))
    c, _ = net.flow_constants(net.unit_scales())
    mode, aux = no_switching()
    flows, losses = [], []
    for module in (net.kernels, net._serial_kernels):
        flows.append(np.empty(theta.size))
        losses.append(module.flow(theta, Xa, y, c, net.dims(), mode, aux, flows[-1]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-13)
    _assert_close_vectors(flows[1], flows[0], 1e-12)
    _assert_close_vectors(flows[1], -naive.flat_gradient(net, theta, X, y), 1e-10)
