"""Tests for ``derivations/``: every script derives, asserts and writes its page;
the exported ``derive()`` results agree with plain-NumPy computations."""

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

try:
    from derivations import SCRIPTS, blowup, leading_order, normalized_flow, saxe
    from derivations.__main__ import run
except ImportError:  # plain `pytest` without (or with a stale editable) install
    for _name in [k for k in sys.modules if k == "derivations" or k.startswith("derivations.")]:
        del sys.modules[_name]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from derivations import SCRIPTS, blowup, leading_order, normalized_flow, saxe
    from derivations.__main__ import run


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_asserts_and_writes_page(name, tmp_path):
    module = __import__(f"derivations.{name}", fromlist=["main"])
    path = module.main(tmp_path)
    assert path == tmp_path / f"{name}.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ")
    assert (
        "$$" in text
        and "## Asserted" in text
        and "## Refinements and corrections (docs/theory.md §14)" in text
    )


def test_run_counts_failures(tmp_path, capsys):
    assert run(tmp_path, ["no_such_script"]) == 1
    assert "FAIL no_such_script" in capsys.readouterr().out


# --- two-layer flow in plain NumPy -------------------------------------------------


def two_layer_rhs(a, W, X, y, alpha, act, dact):
    """(da/dt, dW/dt) of docs/theory.md §1; X has one input per row."""
    pre = W @ X.T  # (m, n)
    e = a @ act(pre) / alpha - y
    n = X.shape[0]
    return -act(pre) @ e / (alpha * n), -(a[:, None] * dact(pre) * e) @ X / (alpha * n)


def relu(z):
    return np.maximum(z, 0.0)


def step(z):
    return (z > 0).astype(float)


def tanh_prime(z):
    return 1.0 - np.tanh(z) ** 2


@pytest.fixture(scope="module")
def normalized():
    return normalized_flow.derive()


def test_normalized_coefficients_at_sample_numbers(normalized):
    s = normalized["symbols"]
    args = (s["alpha"], s["beta1"], s["beta2"])
    general = sp.lambdify(args, normalized["c_general"])(2.0, 3.0, 5.0)
    homogeneous = sp.lambdify(args, normalized["c_homogeneous"])(2.0, 3.0, 5.0)
    np.testing.assert_allclose(general, [1.5, 5.0, 2.5, 4.5])
    np.testing.assert_allclose(homogeneous, [7.5, 1.0, 12.5, 4.5])
    kappa = float(normalized["kappa"].subs({s["alpha"]: 2, s["beta1"]: 3, s["beta2"]: 5}))
    kappa_p = float(normalized["kappa_prime"].subs({s["beta1"]: 3, s["beta2"]: 5}))
    in_kappa = sp.lambdify((s["kappa"], s["kappa_prime"]), normalized["c_homogeneous_kappa"])
    np.testing.assert_allclose(in_kappa(kappa, kappa_p), homogeneous)


@pytest.mark.parametrize("kind", ["general", "homogeneous"])
def test_normalized_coefficients_reproduce_the_flow(normalized, rng, kind):
    """Engine form with c equals the chain rule applied to the original NumPy flow."""
    s = normalized["symbols"]
    alpha, beta1, beta2 = 1.7, 0.3, 2.2
    c_f, c_z, c_a, c_w = (
        float(c)
        for c in sp.lambdify((s["alpha"], s["beta1"], s["beta2"]), normalized[f"c_{kind}"])(
            alpha, beta1, beta2
        )
    )
    act, dact = (np.tanh, tanh_prime) if kind == "general" else (relu, step)
    m, n, D = 5, 7, 3
    abar, Wbar = rng.normal(size=m), rng.normal(size=(m, D))
    X, y = rng.normal(size=(n, D)), rng.normal(size=n)
    da, dW = two_layer_rhs(beta1 * abar, beta2 * Wbar, X, y, alpha, act, dact)
    want_a, want_W = beta2 * da, beta1 * dW  # d/dt_bar with t = beta1 beta2 t_bar
    z = c_z * Wbar @ X.T
    e = c_f * abar @ act(z) - y
    got_a = -c_a * act(z) @ e / n
    got_W = -c_w * (abar[:, None] * dact(z) * e) @ X / n
    np.testing.assert_allclose(got_a, want_a, rtol=1e-12)
    np.testing.assert_allclose(got_W, want_W, rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_leading_order_is_the_small_eps_limit(rng, p):
    """Full flow at eps * theta, divided by eps^p, tends to the leading-order field."""
    alpha, c_p, c_q = 1.3, 0.8, -0.6
    m, n, D = 3, 4, 2
    a_t, W_t = rng.normal(size=m), rng.normal(size=(m, D))
    X, y = rng.normal(size=(n, D)), rng.normal(size=n)
    act = lambda z: c_p * z**p + c_q * z ** (p + 1)  # noqa: E731
    dact = lambda z: p * c_p * z ** (p - 1) + (p + 1) * c_q * z**p  # noqa: E731
    G_t = (W_t @ X.T) ** p @ y / n
    gradG_t = (p * (W_t @ X.T) ** (p - 1) * y) @ X / n
    lo_a, lo_W = c_p / alpha * G_t, c_p / alpha * a_t[:, None] * gradG_t
    errors = []
    for eps in (1e-2, 1e-3):
        da, dW = two_layer_rhs(eps * a_t, eps * W_t, X, y, alpha, act, dact)
        errors.append(max(np.max(np.abs(da / eps**p - lo_a)), np.max(np.abs(dW / eps**p - lo_W))))
    assert errors[1] < 2e-2 and errors[1] / errors[0] < 0.2  # O(eps)


def test_leading_order_symbolic_rhs_matches_numpy(rng):
    a, c_p, alpha = sp.symbols("a c_p alpha")
    w, y = sp.symbols("w1 w2"), sp.symbols("y1 y2")
    X = sp.Matrix(2, 2, sp.symbols("x11 x12 x21 x22"))
    da, dw = leading_order.lo_rhs(a, w, X, y, 2, c_p, alpha)
    f = sp.lambdify((a, *w, *X, *y, c_p, alpha), [da, *dw])
    a0, w0 = 0.7, rng.normal(size=2)
    X0, y0 = rng.normal(size=(2, 2)), rng.normal(size=2)
    got = f(a0, *w0, *X0.ravel(), *y0, 1.1, 0.9)
    G = np.mean(y0 * (X0 @ w0) ** 2)
    gradG = (2 * y0 * (X0 @ w0)) @ X0 / 2
    np.testing.assert_allclose(got, [1.1 / 0.9 * G, *(1.1 / 0.9 * a0 * gradG)], rtol=1e-12)


def rk4(f, y0, t_end, steps):
    y, h = np.array(y0, dtype=float), t_end / steps
    for _ in range(steps):
        k1 = f(y)
        k2 = f(y + h / 2 * k1)
        k3 = f(y + h / 2 * k2)
        k4 = f(y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


@pytest.mark.parametrize("p", [2, 3])
def test_blowup_time_to_delta(p):
    """Integrate the balanced per-neuron flow (a, r) to T_LO(delta): r must equal delta."""
    res = blowup.derive()
    s = res["symbols"]
    alpha, c_p, g, r0, delta = 1.5, -0.7, -1.2, 0.05, 0.4
    K = abs(c_p * g)
    T = float(
        res["T_LO"].subs({s["alpha"]: alpha, s["p"]: p, s["K"]: K, s["r0"]: r0, s["delta"]: delta})
    )
    a0 = np.sign(c_p * g) * r0 / np.sqrt(p)

    def field(state):
        a, r = state
        return np.array([c_p / alpha * g * r**p, c_p / alpha * p * a * r ** (p - 1) * g])

    a_end, r_end = rk4(field, [a0, r0], T, 4000)
    assert r_end == pytest.approx(delta, rel=1e-8)
    assert p * a_end**2 == pytest.approx(r_end**2, rel=1e-8)


def test_saxe_closed_form_against_full_linear_flow(rng):
    res = saxe.derive()
    s = res["symbols"]
    alpha, m, d, n = 0.8, 3, 4, 8
    X = np.linalg.qr(rng.normal(size=(n, d)))[0] * np.sqrt(n)  # (1/n) X^T X = I
    y = rng.normal(size=n)
    v = X.T @ y / n
    strength, vhat = np.linalg.norm(v), v / np.linalg.norm(v)
    e = rng.normal(size=m)
    e /= np.linalg.norm(e)
    q0 = 0.05
    a0, W0 = q0 * e, q0 * np.outer(e, vhat)
    t_end = 3.0

    def field(state):
        a, W = state[:m], state[m:].reshape(m, d)
        da, dW = two_layer_rhs(a, W, X, y, alpha, lambda z: z, np.ones_like)
        return np.concatenate([da, dW.ravel()])

    final = rk4(field, np.concatenate([a0, W0.ravel()]), t_end, 3000)
    a, W = final[:m], final[m:].reshape(m, d)
    u_sim = vhat @ W.T @ a / alpha
    u_exact = float(
        res["u_solution"].subs(
            {
                s["s"]: strength,
                s["u0"]: q0**2 / alpha,
                s["tau"]: res["tau"].subs(s["alpha"], alpha),
                s["t"]: t_end,
            }
        )
    )
    assert u_sim == pytest.approx(u_exact, rel=1e-9)


@pytest.mark.parametrize("act, kind", [("tanh", "general"), ("relu", "homogeneous")])
def test_engine_constants_equal_the_derivation(normalized, act, kind):
    """TwoLayer.flow_constants is the derived change of variables ([LXMZ21])."""
    import flowsim as fs

    s = normalized["symbols"]
    derived = sp.lambdify((s["alpha"], s["beta1"], s["beta2"]), normalized[f"c_{kind}"])
    for alpha, beta1, beta2 in [(1.0, 1e-3, 2e-2), (3.7, 0.4, 1.9), (0.2, 1e-6, 1e-6)]:
        net = fs.TwoLayer(act, 3, 1, alpha=alpha)
        c, T = net.flow_constants({"a": beta1, "W": beta2})
        np.testing.assert_allclose(c, np.array(derived(alpha, beta1, beta2), float), rtol=1e-14)
        assert T == pytest.approx(beta1 * beta2, rel=1e-15)


def test_attention_library_equals_the_derivation(rng):
    """flowsim.theory.attention's grad E and F are derivations.attention's, at random numbers."""
    from derivations import attention
    from flowsim.theory import stage1, stage2

    n, s, d, h = 3, 4, 3, 2
    X, y = rng.standard_normal((n, s, d)), rng.choice([-1.0, 1.0], n)
    WV, W1, W2 = rng.standard_normal((d, d)), rng.standard_normal((d, h)), rng.standard_normal(h)
    st = stage1(X, y, activation=None)
    want = attention.lo_rhs(sp.Matrix([st.v]), sp.Matrix(WV), sp.Matrix(W1), sp.Matrix(W2))
    for got, ref in zip(st.rhs(WV, W1, W2), want, strict=True):
        np.testing.assert_allclose(got, np.array(ref, float).reshape(got.shape), rtol=1e-12)
    Xs = [sp.Matrix(Xi) for Xi in X]
    F = attention.stage2_F(Xs, list(y), sp.Matrix(WV @ W1 @ W2), d)
    np.testing.assert_allclose(stage2(WV, W1, W2, X, y).F, np.array(F, float), rtol=1e-12)


def test_dropout_library_equals_the_derivation(rng):
    """flowsim.theory.dropout_penalty is derivations.dropout's R1, at random numbers."""
    import flowsim as fs
    from derivations import dropout
    from flowsim.theory import dropout_penalty

    res = dropout.derive()
    s = res["symbols"]
    n, m, alpha, p = dropout.N_POINTS, dropout.WIDTH, 1.4, 0.7
    net = fs.TwoLayer("tanh", m, 1, alpha=alpha)
    theta = rng.standard_normal(net.n_params)
    X, y = rng.standard_normal((n, 1)), rng.standard_normal(n)
    a, W = theta[:m], theta[m:].reshape(m, 2)
    h = np.tanh(np.hstack([X, np.ones((n, 1))]) @ W.T)
    values = {s["p"]: p, s["alpha"]: alpha}
    values |= {s["a"][k]: a[k] for k in range(m)}
    values |= {s["h"][i, k]: h[i, k] for i in range(n) for k in range(m)}
    want = float(res["R1"].subs(values))
    assert dropout_penalty(net, theta, X, y, p) == pytest.approx(want, rel=1e-13)
