"""Normalized two-layer flow of [LXMZ21] (docs/theory.md §1 and §2).

Starting from the loss ``R = 1/(2n) sum_i (f(x_i) - y_i)^2`` of the two-layer
net ``f(x) = (1/alpha) sum_k a_k sigma(w_k . x)``, the gradient flow is derived
with a symbolic ``sigma`` (n = 2 points, D = 2, m = 2 neurons, so all sums are
explicit), checked against the formula of section 1, and rewritten in the
normalized variables ``a = beta1 a_bar``, ``w = beta2 w_bar``,
``t = beta1 beta2 t_bar``.  The result is matched term by term with the form
the engine integrates,

    z = c_z (w_bar . x),  f = c_f sum_k a_bar_k sigma(z),
    d a_bar/d t_bar = -c_a (1/n) sum_i e_i sigma(z),
    d w_bar/d t_bar = -c_w (1/n) sum_i e_i a_bar sigma'(z) x_i,

giving ``c = [beta1/alpha, beta2, beta2/alpha, beta1^2/alpha]`` for a general
sigma and, with positive homogeneity of degree 1 (ReLU, leaky ReLU:
``sigma(beta2 u) = beta2 sigma(u)``, ``sigma'(beta2 u) = sigma'(u)``),
``c = [kappa, 1, kappa/kappa', kappa kappa']``.

References
----------
[LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks
at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import (
    LATEX_NAMES,
    Page,
    assert_zero,
    dot,
    dsigma,
    matrix,
    sigma,
    tex,
    two_layer_flow,
    vector,
)

NAME = "normalized_flow"
TITLE = "normalized flow: c = [beta1/alpha, beta2, beta2/alpha, beta1^2/alpha]; ReLU: [kappa, 1, kappa/kappa', kappa kappa']"

N_POINTS, DIM, WIDTH = 2, 2, 2


def _engine_form(abar, Wbar, X, y, c):
    """The engine's flow in normalized variables with coefficients c = [c_f, c_z, c_a, c_w]."""
    c_f, c_z, c_a, c_w = c
    n, m = X.rows, len(abar)
    z = [[c_z * dot(Wbar.row(k), X.row(i)) for i in range(n)] for k in range(m)]
    e = [c_f * sp.Add(*[abar[k] * sigma(z[k][i]) for k in range(m)]) - y[i] for i in range(n)]
    rhs_a = [-c_a * sp.Add(*[e[i] * sigma(z[k][i]) for i in range(n)]) / n for k in range(m)]
    rhs_W = sp.Matrix(
        m,
        X.cols,
        lambda k, d: (
            -c_w * sp.Add(*[e[i] * abar[k] * dsigma(z[k][i]) * X[i, d] for i in range(n)]) / n
        ),
    )
    return e, rhs_a, rhs_W


def _homogeneous(expr, beta2):
    """Apply sigma(beta2 u) = beta2 sigma(u) and sigma'(beta2 u) = sigma'(u) (beta2 > 0)."""
    expr = expr.replace(sigma, lambda u: beta2 * sigma(sp.expand(u / beta2)))
    return expr.replace(dsigma, lambda u: dsigma(sp.expand(u / beta2)))


def derive() -> dict:
    """Derive the normalized flow and its engine coefficients.

    Returns
    -------
    dict with keys
        ``symbols``: {"alpha", "beta1", "beta2", "kappa", "kappa_prime"} (positive Symbols);
        ``c_general``, ``c_homogeneous``: lists ``[c_f, c_z, c_a, c_w]`` in (alpha, beta1, beta2);
        ``c_homogeneous_kappa``: the same in (kappa, kappa');
        ``kappa``, ``kappa_prime``: their definitions in (alpha, beta1, beta2);
        ``rhs_general``, ``rhs_homogeneous``: (e, rhs_a, rhs_W) of the normalized flow
        for the small explicit problem; ``flow``: the original flow from -grad R.
    """
    alpha, beta1, beta2 = sp.symbols("alpha beta1 beta2", positive=True)
    kappa, kappa_p = sp.symbols("kappa kappa'", positive=True)
    LATEX_NAMES[kappa_p] = r"\kappa'"
    X = matrix("x", N_POINTS, DIM)
    y = vector("y", N_POINTS)
    a = vector("a", WIDTH)
    W = matrix("w", WIDTH, DIM)
    abar = vector(r"\bar{a}", WIDTH)
    Wbar = matrix(r"\bar{w}", WIDTH, DIM)

    # Gradient flow from the loss, and the explicit form of docs/theory.md §1.
    flow = two_layer_flow(a, W, X, y, alpha)
    R = sp.Add(*[(fi - yi) ** 2 for fi, yi in zip(flow["f"], y, strict=True)]) / (2 * N_POINTS)
    grad_a = [-sp.diff(R, ak) for ak in a]
    grad_W = sp.Matrix(WIDTH, DIM, lambda k, d: -sp.diff(R, W[k, d]))

    # Change of variables: d a_bar/d t_bar = (dt/dt_bar)(1/beta1) da/dt = beta2 da/dt, etc.
    sub = {a[k]: beta1 * abar[k] for k in range(WIDTH)}
    sub |= {W[k, d]: beta2 * Wbar[k, d] for k in range(WIDTH) for d in range(DIM)}
    f_bar = [fi.subs(sub) for fi in flow["f"]]
    rhs_a_bar = [beta2 * r.subs(sub) for r in flow["rhs_a"]]
    rhs_W_bar = (beta1 * flow["rhs_W"]).subs(sub)

    # Read the coefficients off the normalized flow (general sigma).
    c_z = sp.cancel(flow["pre"][0][0].subs(sub) / dot(Wbar.row(0), X.row(0)))
    unit_sum = sp.Add(*[abar[k] * sigma(c_z * dot(Wbar.row(k), X.row(0))) for k in range(WIDTH)])
    c_f = sp.cancel(f_bar[0] / unit_sum)
    _, unit_a, unit_W = _engine_form(abar, Wbar, X, y, [c_f, c_z, 1, 1])
    c_a = sp.cancel(rhs_a_bar[0] / unit_a[0])
    c_w = sp.cancel(rhs_W_bar[0, 0] / unit_W[0, 0])
    c_general = [c_f, c_z, c_a, c_w]

    # Positively homogeneous of degree 1: pull beta2 out of sigma and sigma'.
    f_h = [_homogeneous(fi, beta2) for fi in f_bar]
    rhs_a_h = [_homogeneous(r, beta2) for r in rhs_a_bar]
    rhs_W_h = rhs_W_bar.applyfunc(lambda r: _homogeneous(r, beta2))
    unit_sum_h = sp.Add(*[abar[k] * sigma(dot(Wbar.row(k), X.row(0))) for k in range(WIDTH)])
    h_f = sp.cancel(f_h[0] / unit_sum_h)
    _, unit_a_h, unit_W_h = _engine_form(abar, Wbar, X, y, [h_f, 1, 1, 1])
    c_homogeneous = [
        h_f,
        sp.S.One,
        sp.cancel(rhs_a_h[0] / unit_a_h[0]),
        sp.cancel(rhs_W_h[0, 0] / unit_W_h[0, 0]),
    ]

    kappa_def = beta1 * beta2 / alpha
    kappa_p_def = beta1 / beta2
    c_homogeneous_kappa = [kappa, sp.S.One, kappa / kappa_p, kappa * kappa_p]

    return {
        "symbols": {
            "alpha": alpha,
            "beta1": beta1,
            "beta2": beta2,
            "kappa": kappa,
            "kappa_prime": kappa_p,
        },
        "c_general": c_general,
        "c_homogeneous": c_homogeneous,
        "c_homogeneous_kappa": c_homogeneous_kappa,
        "kappa": kappa_def,
        "kappa_prime": kappa_p_def,
        "flow": flow,
        "grad": (grad_a, grad_W),
        "rhs_general": (f_bar, rhs_a_bar, rhs_W_bar),
        "rhs_homogeneous": (f_h, rhs_a_h, rhs_W_h),
        "problem": {"X": X, "y": y, "a": a, "W": W, "abar": abar, "Wbar": Wbar},
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``normalized_flow.md``."""
    res = derive()
    s = res["symbols"]
    alpha, beta1, beta2 = s["alpha"], s["beta1"], s["beta2"]
    kappa, kappa_p = s["kappa"], s["kappa_prime"]
    P = res["problem"]
    X, y, abar, Wbar = P["X"], P["y"], P["abar"], P["Wbar"]
    page = Page(
        NAME,
        "Normalized two-layer flow [LXMZ21]",
        "[LXMZ21] Luo, Xu, Ma, Zhang, JMLR 22(71), 2021; docs/theory.md §1-2",
    )

    # Section 1: -grad R equals the explicit flow.
    grad_a, grad_W = res["grad"]
    flow = res["flow"]
    for k in range(WIDTH):
        assert_zero(grad_a[k] - flow["rhs_a"][k], f"da_{k + 1}/dt")
        for d in range(DIM):
            assert_zero(grad_W[k, d] - flow["rhs_W"][k, d], f"dw_{k + 1}{d + 1}/dt")
    page.check(
        "-grad R equals the flow of docs/theory.md §1 (n = 2, D = 2, m = 2, symbolic sigma)."
    )

    # General sigma: engine form with the derived coefficients reproduces the normalized flow.
    expected_general = [beta1 / alpha, beta2, beta2 / alpha, beta1**2 / alpha]
    for got, want in zip(res["c_general"], expected_general, strict=True):
        assert_zero(got - want, "general coefficient")
    f_bar, rhs_a_bar, rhs_W_bar = res["rhs_general"]
    e_eng, a_eng, W_eng = _engine_form(abar, Wbar, X, y, res["c_general"])
    for i in range(N_POINTS):
        assert_zero(f_bar[i] - y[i] - e_eng[i], f"e_{i + 1} (general)")
    for k in range(WIDTH):
        assert_zero(rhs_a_bar[k] - a_eng[k], f"d a_bar_{k + 1} (general)")
        for d in range(DIM):
            assert_zero(rhs_W_bar[k, d] - W_eng[k, d], f"d w_bar_{k + 1}{d + 1} (general)")
    assert_zero(res["c_general"][3] - res["kappa"] * res["kappa_prime"], "c_w = kappa kappa'")
    page.check(
        "general sigma: every component of the normalized flow equals the engine form with c = [beta1/alpha, beta2, beta2/alpha, beta1^2/alpha]; c_w = kappa kappa'."
    )

    # Homogeneous of degree 1.
    kappa_sub = {kappa: res["kappa"], kappa_p: res["kappa_prime"]}
    for got, want in zip(res["c_homogeneous"], res["c_homogeneous_kappa"], strict=True):
        assert_zero(got - want.subs(kappa_sub), "homogeneous coefficient")
    f_h, rhs_a_h, rhs_W_h = res["rhs_homogeneous"]
    c_h = [c.subs(kappa_sub) for c in res["c_homogeneous_kappa"]]
    e_eng, a_eng, W_eng = _engine_form(abar, Wbar, X, y, c_h)
    for i in range(N_POINTS):
        assert_zero(f_h[i] - y[i] - e_eng[i], f"e_{i + 1} (ReLU)")
    for k in range(WIDTH):
        assert_zero(rhs_a_h[k] - a_eng[k], f"d a_bar_{k + 1} (ReLU)")
        for d in range(DIM):
            assert_zero(rhs_W_h[k, d] - W_eng[k, d], f"d w_bar_{k + 1}{d + 1} (ReLU)")
    page.check(
        "positively homogeneous degree 1 (ReLU): the normalized flow equals the engine form with c = [kappa, 1, kappa/kappa', kappa kappa'] (kappa = beta1 beta2/alpha, kappa' = beta1/beta2)."
    )

    # One choice of (alpha, beta1, beta2) for given (gamma, gamma', m).
    m, gamma, gamma_p = sp.symbols("m gamma gamma'", positive=True)
    choice = {alpha: 1, beta1: m ** (-(gamma + gamma_p) / 2), beta2: m ** (-(gamma - gamma_p) / 2)}
    assert sp.powsimp(res["kappa"].subs(choice) / m ** (-gamma)) == 1
    assert sp.powsimp(res["kappa_prime"].subs(choice) / m ** (-gamma_p)) == 1
    page.check(
        "alpha = 1, beta1 = m^(-(gamma+gamma')/2), beta2 = m^(-(gamma-gamma')/2) gives kappa = m^-gamma, kappa' = m^-gamma'."
    )

    # Page.
    page.text("Two-layer net, loss and flow (docs/theory.md §1), with e_i = f(x_i) - y_i:")
    page.eq(
        r"\frac{da_k}{dt} = -\frac{1}{\alpha}\frac{1}{n}\sum_i e_i\,\sigma(w_k\cdot\tilde x_i),\qquad \frac{dw_k}{dt} = -\frac{1}{\alpha}\frac{1}{n}\sum_i e_i\,a_k\,\sigma'(w_k\cdot\tilde x_i)\,\tilde x_i"
    )
    page.text(
        r"Change of variables $a = \beta_1\bar a$, $w = \beta_2\bar w$, $t = \beta_1\beta_2\bar t$: $d\bar a/d\bar t = \beta_2\,da/dt$ and $d\bar w/d\bar t = \beta_1\,dw/dt$. Matching with the engine form $z = c_z\,\bar w\cdot\tilde x$, $f = c_f\sum_k \bar a_k\sigma(z)$, $d\bar a/d\bar t = -c_a\frac1n\sum_i e_i\sigma(z)$, $d\bar w/d\bar t = -c_w\frac1n\sum_i e_i\bar a\sigma'(z)\tilde x_i$ gives, for a general $\sigma$:"
    )
    page.eq(r"(c_f, c_z, c_a, c_w)", tex(tuple(res["c_general"])))
    page.text(
        r"For $\sigma$ positively homogeneous of degree 1 (ReLU, leaky ReLU), $\sigma(\beta_2 u) = \beta_2\sigma(u)$ and $\sigma'(\beta_2 u) = \sigma'(u)$ for $\beta_2 > 0$, so"
    )
    page.eq(
        r"(c_f, c_z, c_a, c_w)",
        tex(tuple(res["c_homogeneous"])) + " = " + tex(tuple(res["c_homogeneous_kappa"])),
    )
    page.eq(r"\kappa = " + tex(res["kappa"]) + r",\qquad \kappa' = " + tex(res["kappa_prime"]))
    page.text(
        r"The homogeneous flow depends on $(\alpha, \beta_1, \beta_2)$ only through $(\kappa, \kappa')$; the map back to real time, $t = \beta_1\beta_2\bar t$, does not."
    )
    page.text("Example (first component, general sigma, n = 2, D = 2):")
    page.eq(r"\frac{d\bar a_1}{d\bar t}", tex(rhs_a_bar[0]))
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
