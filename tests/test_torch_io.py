"""Tests of flowsim.torch_io: flowsim weights <-> the state_dict of the equivalent nn.Module,
checked against PyTorch's own forward pass, autograd and SGD step; and the numeric statements
of docs/conventions.md (the authors' parametrization), checked against plain NumPy."""

import numpy as np
import pytest

import flowsim as fs

try:
    import torch

    from flowsim import torch_io
except ImportError:  # the conventions tests below run without torch
    torch = torch_io = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (pip install flowsim[bench])")

NETS = {
    "two_tanh_bias": lambda: fs.TwoLayer("tanh", 6, 2, bias=True, alpha=2.5),
    "two_relu_nobias": lambda: fs.TwoLayer("relu", 5, 3, bias=False, alpha=0.5),
    "two_expression": lambda: fs.TwoLayer("x**2*sin(x)", 4, 2, alpha=1.0),
    "two_gelu": lambda: fs.TwoLayer("gelu", 4, 2, alpha=3.0),
    "three_tanh_bias": lambda: fs.ThreeLayer("tanh", (5, 4), 2, bias=True, alpha=1.5),
    "three_silu_nobias": lambda: fs.ThreeLayer("silu", (3, 6), 2, bias=False, alpha=1.0),
}


@pytest.fixture(params=sorted(NETS))
def case(request, rng):
    net = NETS[request.param]()
    theta = 0.7 * rng.standard_normal(net.n_params)
    X = rng.standard_normal((9, net.input_dim))
    y = np.cos(X[:, 0]) - 0.3 * X[:, -1]
    return net, theta, X, y


@needs_torch
def test_round_trip_is_bitwise(case):
    net, theta, _, _ = case
    state = torch_io.to_state_dict(net, theta)
    assert all(v.dtype == torch.float64 for v in state.values())
    back = torch_io.from_state_dict(net, state)
    assert back.dtype == np.float64 and np.array_equal(back, theta)
    state["0.weight"][0, 0] = 99.0  # a copy: theta is not aliased
    assert theta[net.layer_slices()[net.neuron_layer]][0] != 99.0


@needs_torch
def test_keys_are_those_of_the_torch_module(case):
    net, theta, _, _ = case
    module = torch_io.torch_module(net)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    state = torch_io.to_state_dict(net, theta)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


@needs_torch
def test_bias_is_the_last_column(rng):
    net = fs.TwoLayer("tanh", 3, 2, alpha=1.0)
    W = rng.standard_normal((3, 3))
    theta = net.pack(a=rng.standard_normal(3), W=W)
    state = torch_io.to_state_dict(net, theta)
    np.testing.assert_array_equal(state["0.weight"].numpy(), W[:, :2])
    np.testing.assert_array_equal(state["0.bias"].numpy(), W[:, 2])


@needs_torch
def test_module_output_equals_net_output(case):
    net, theta, X, _ = case
    module = torch_io.torch_module(net, theta)
    out = module(torch.tensor(X, dtype=torch.float64)).detach().numpy()
    assert out.shape == (X.shape[0], 1)
    np.testing.assert_allclose(out[:, 0], net.output(theta, X), rtol=1e-12, atol=1e-12)


@needs_torch
def test_one_torch_sgd_step_is_flowsim_gd(case):
    net, theta, X, y = case
    lr = 0.05
    module = torch_io.torch_module(net, theta)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y[:, None], dtype=torch.float64)
    optimizer.zero_grad()
    torch.nn.MSELoss()(module(Xt), yt).backward()
    optimizer.step()
    expected = torch_io.from_state_dict(net, module.state_dict())
    assert np.max(np.abs(expected - theta)) > 1e-4  # the step moved the weights
    dt = fs.torch_time(lr)
    traj = fs.simulate(net, theta, X, y, t_end=dt, method="gd", dt=dt, progress=False)
    assert traj.n_accepted == 1
    np.testing.assert_allclose(traj.theta_final, expected, rtol=1e-12, atol=1e-12)


@needs_torch
def test_float32_state_dict_widens_exactly(rng):
    net = fs.TwoLayer("tanh", 4, 1)
    theta = rng.standard_normal(net.n_params).astype(np.float32).astype(np.float64)
    state = {k: v.float() for k, v in torch_io.to_state_dict(net, theta).items()}
    assert np.array_equal(torch_io.from_state_dict(net, state), theta)


@needs_torch
def test_errors_name_the_keys(rng):
    net = fs.TwoLayer("tanh", 4, 2)
    state = torch_io.to_state_dict(net, rng.standard_normal(net.n_params))
    missing = dict(state)
    del missing["0.bias"]
    missing["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\].*unexpected keys "
                                         r"\['extra.weight'\]"):  # fmt: skip
        torch_io.from_state_dict(net, missing)
    wrong = dict(state)
    wrong["2.weight"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"'2.weight' has shape \(4,\), expected \(1, 4\)"):
        torch_io.from_state_dict(net, wrong)
    with pytest.raises(TypeError, match="TwoLayer or ThreeLayer"):
        torch_io.to_state_dict(object(), np.zeros(3))
    with pytest.raises(ValueError, match="theta must have shape"):
        torch_io.to_state_dict(net, np.zeros(3))


# --- docs/conventions.md: the authors' parametrization -------------------------------------


def _script_output(alpha_script, a, w, b, X):
    """scalestudy1d_191224.py's network, written out: alpha_A sum_k a_k tanh(w_k x + b_k)."""
    return alpha_script * (np.tanh(X @ w[None, :] + b[None, :]) @ a)


def test_script_output_scale_is_flowsim_one_over_alpha(rng):
    m, alpha_script = 7, 0.013
    a, w, b = rng.standard_normal(m), rng.standard_normal(m), rng.standard_normal(m)
    X = rng.standard_normal((5, 1))
    net = fs.TwoLayer("tanh", m, 1, alpha=1 / alpha_script)
    theta = net.pack(a=a, W=np.column_stack([w, b]))
    np.testing.assert_allclose(net.output(theta, X), _script_output(alpha_script, a, w, b, X),
                               rtol=1e-13, atol=0)  # fmt: skip


@pytest.mark.parametrize("gamma", [0.85, 1.0, 1.15])
def test_script_exponents_are_gamma_and_gamma_prime(gamma):
    m, gamma_prime, beta1_exp = 300, -1.5, -1.5
    beta2_exp = beta1_exp - gamma_prime
    beta1, beta2 = m**-beta1_exp, m**-beta2_exp
    alpha = 1 / m ** -(gamma - beta1_exp - beta2_exp)  # flowsim's alpha = 1 / alpha_A
    assert beta1 * beta2 / alpha == pytest.approx(m**-gamma, rel=1e-13)
    assert beta1 / beta2 == pytest.approx(m**-gamma_prime, rel=1e-13)


def test_doubled_width_effective_exponents(rng):
    """init(gamma_M, gamma'_M) on M = 2m neurons draws the same kappa, kappa' as m^-gamma."""
    m, gamma, gamma_prime, alpha = 50, 1.15, -1.5, 3.0
    M = 2 * m
    g_M, gp_M = gamma * np.log(m) / np.log(M), gamma_prime * np.log(m) / np.log(M)
    net = fs.TwoLayer("tanh", M, 1, alpha=alpha)
    theta = net.init(3, gamma=g_M, gamma_prime=gp_M)
    # beta1, beta2 with kappa = m^-gamma, kappa' = m^-gamma' and flowsim's sqrt(alpha) split
    beta1 = np.sqrt(alpha * m**-gamma * m**-gamma_prime)
    beta2 = np.sqrt(alpha * m**-gamma / m**-gamma_prime)
    np.testing.assert_allclose(theta, net.init(3, beta1=beta1, beta2=beta2), rtol=1e-12)
    plain = net.init(3, gamma=gamma, gamma_prime=gamma_prime)  # exponents taken in M
    ratio = plain / theta  # per layer: (kappa ratio, kappa' ratio) = (2^-gamma, 2^-gamma')
    a_ratio, w_ratio = ratio[:M], ratio[M:]
    assert np.allclose(a_ratio * w_ratio[: a_ratio.size], 2.0**-gamma, rtol=1e-12)
    assert np.allclose(a_ratio / w_ratio[: a_ratio.size], 2.0**-gamma_prime, rtol=1e-12)


def test_antisymmetric_copy_output_is_zero_at_init(rng):
    m, alpha_script = 40, 1e-3
    a, w, b = 1e3 * rng.standard_normal(m), rng.standard_normal(m), rng.standard_normal(m)
    X = np.array([[-0.5], [0.0], [0.5]])
    # the script: two width-m nets, the second with -a, outputs added: exactly 0
    script = _script_output(alpha_script, a, w, b, X) + _script_output(alpha_script, -a, w, b, X)
    assert np.all(script == 0.0)
    net = fs.TwoLayer("tanh", 2 * m, 1, alpha=1 / alpha_script)
    W = np.column_stack([w, b])
    theta = net.pack(a=np.concatenate([a, -a]), W=np.vstack([W, W]))
    scale = alpha_script * np.abs(np.tanh(X @ w[None, :] + b[None, :])) @ np.abs(a)
    bound = 4 * (2 * m) * np.finfo(float).eps * scale  # rounding of one sum over 2m neurons
    assert np.all(np.abs(net.output(theta, X)) <= bound)
    theta0 = net.init(1, beta1=1e3, beta2=1.0, antisymmetric=True)
    layers = net.unpack(theta0)
    np.testing.assert_array_equal(layers["W"][m:], layers["W"][:m])
    np.testing.assert_array_equal(layers["a"][m:], -layers["a"][:m])
