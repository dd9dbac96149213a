"""Multiplicity and the leading-order two-layer flow ([ZZJLZX22], docs/theory.md §4).

For ``sigma(z) = c_p z^p + c_{p+1} z^{p+1}`` (sigma0 = 0, multiplicity p,
p = 1..4) the full flow of a width-2 net on n = 2 points in D = 2 is expanded
with ``theta = eps * theta_tilde`` at fixed y:

- the residual is ``e_i = -y_i + O(eps^(p+1))``;
- the flow is ``(c_p/alpha) G(w_k)``, ``(c_p/alpha) a_k grad G(w_k)`` at order
  ``eps^p`` with ``G(w) = (1/n) sum_i y_i (w . x_i)^p``, and the rest starts at
  ``eps^(p+1)`` (one order higher: each neuron moves on its own);
- ``p a^2 - |w|^2`` is conserved by this leading-order flow;
- polar form ``w = r u``: ``dr/dt = (c_p/alpha) p a r^(p-1) G(u)`` and
  ``du/dt = (c_p/alpha) a r^(p-2) (I - u u^T) grad G(u)`` (checked in D = 3 on
  the unit sphere), which is the gradient of G restricted to the sphere
  (checked in D = 2 with u = (cos phi, sin phi)).

References
----------
[ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
condensation of neural networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import (
    Page,
    assert_zero,
    dot,
    eps_series,
    matrix,
    sigma,
    tex,
    two_layer_flow,
    vector,
)

NAME = "leading_order"
TITLE = "leading order: da/dt = (c_p/alpha) G(w), dw/dt = (c_p/alpha) a grad G(w); p a^2 - |w|^2 conserved; polar form"

P_VALUES = (1, 2, 3, 4)
N_POINTS, DIM, WIDTH = 2, 2, 2
POLAR_DIM = 3


def G_of(w, X, y, p):
    """G(w) = (1/n) sum_i y_i (w . x_i)^p for rows x_i of X."""
    return sp.Add(*[y[i] * dot(w, X.row(i)) ** p for i in range(X.rows)]) / X.rows


def grad(expr, w):
    return [sp.diff(expr, wd) for wd in w]


def lo_rhs(a, w, X, y, p, c_p, alpha):
    """Leading-order per-neuron flow: (da/dt, [dw_d/dt]) = (c_p/alpha)(G(w), a grad G(w)).

    ``w`` may hold expressions (e.g. ``r * u``): the gradient is taken in dummy
    variables and evaluated at ``w``.
    """
    v = [sp.Dummy(f"v{d}") for d in range(len(w))]
    G = G_of(v, X, y, p)
    at = dict(zip(v, w, strict=True))
    return c_p / alpha * G.subs(at), [c_p / alpha * a * g.subs(at) for g in grad(G, v)]


ACTIVATIONS = {
    # name: (expression in z, expected (sigma0, p, c_p)) -- docs/theory.md §4
    "tanh": (lambda z: sp.tanh(z), (0, 1, 1)),
    "sigmoid": (lambda z: 1 / (1 + sp.exp(-z)), (sp.Rational(1, 2), 1, sp.Rational(1, 4))),
    "softplus": (lambda z: sp.log(1 + sp.exp(z)), (sp.log(2), 1, sp.Rational(1, 2))),
    "sin": (lambda z: sp.sin(z), (0, 1, 1)),
    "x tanh x": (lambda z: z * sp.tanh(z), (0, 2, 1)),
    "x^2 tanh x": (lambda z: z**2 * sp.tanh(z), (0, 3, 1)),
}


def multiplicity(expr, z, max_order: int = 8):
    """(sigma0, p, c_p): p is the order of the first non-zero Taylor coefficient of order >= 1."""
    series = sp.series(expr, z, 0, max_order + 1).removeO()
    for j in range(1, max_order + 1):
        c = sp.simplify(series.coeff(z, j))
        if c != 0:
            return sp.simplify(expr.subs(z, 0)), j, c
    raise ValueError(f"no non-zero coefficient up to order {max_order}")


def _nonzero(coeffs: dict) -> dict:
    """Expand each coefficient and drop the zero ones, sorted by order."""
    expanded = {k: sp.expand(c) for k, c in sorted(coeffs.items())}
    return {k: c for k, c in expanded.items() if c != 0}


def derive() -> dict:
    """Expand the full flow in eps and form the leading-order flow for p = 1..4.

    Returns
    -------
    dict with keys
        ``symbols``: {"alpha", "c_p", "c_q", "eps", "a", "w", "X", "y", "r", "u", "X3", "a_tilde", "W_tilde", "z"};
        ``multiplicities``: {activation name: (sigma0, p, c_p)} for the table of docs/theory.md §4;
        ``lo_rhs``: the function ``lo_rhs(a, w, X, y, p, c_p, alpha)``;
        ``by_p``: {p: {"G", "da_dt", "dw_dt", "conserved", "dr_dt", "du_dt",
        "e_coeffs", "a_coeffs", "w_coeffs"}} (per-neuron quantities for neuron a, w;
        polar quantities for the D = 3 data X3, y; ``*_coeffs`` are the non-zero
        eps^0 .. eps^(p+1) coefficients of the residuals and of neuron 1's full flow
        in the tilde variables).
    """
    alpha = sp.Symbol("alpha", positive=True)
    eps, r = sp.symbols("epsilon r", positive=True)
    c_p, c_q = sp.symbols("c_p c_{p+1}")
    X = matrix("x", N_POINTS, DIM)
    y = vector("y", N_POINTS)
    a_t = vector(r"\tilde{a}", WIDTH)
    W_t = matrix(r"\tilde{w}", WIDTH, DIM)
    a, w = sp.Symbol("a"), vector("w", DIM)
    X3 = matrix("x", N_POINTS, POLAR_DIM)
    u12 = vector("u", POLAR_DIM - 1)
    u = [*u12, sp.sqrt(1 - u12[0] ** 2 - u12[1] ** 2)]  # |u| = 1
    z = sp.Symbol("z")

    by_p = {}
    for p in P_VALUES:
        act = sp.Lambda(z, c_p * z**p + c_q * z ** (p + 1))
        flow = two_layer_flow([eps * ak for ak in a_t], eps * W_t, X, y, alpha, act)
        # Exact eps-expansion through eps^(p+1); zero coefficients dropped.
        e_coeffs = [_nonzero(eps_series(ei, eps, p + 2)) for ei in flow["e"]]
        a_coeffs = _nonzero(eps_series(flow["rhs_a"][0], eps, p + 2))
        w_coeffs = [_nonzero(eps_series(flow["rhs_W"][0, d], eps, p + 2)) for d in range(DIM)]

        da, dw = lo_rhs(a, w, X, y, p, c_p, alpha)
        G3 = G_of(u, X3, y, p)
        wpol = [r * ud for ud in u]
        da3, dw3 = lo_rhs(a, wpol, X3, y, p, c_p, alpha)
        gradG_u = [alpha / c_p * g for g in lo_rhs(1, u, X3, y, p, c_p, alpha)[1]]
        proj = [gradG_u[d] - u[d] * dot(u, gradG_u) for d in range(POLAR_DIM)]
        by_p[p] = {
            "sigma": act(z),
            "G": G_of(w, X, y, p),
            "da_dt": da,
            "dw_dt": dw,
            "conserved": p * a**2 - dot(w, w),
            "dr_dt": c_p / alpha * p * a * r ** (p - 1) * G3,
            "du_dt": [c_p / alpha * a * r ** (p - 2) * pd for pd in proj],
            "polar_flow": (da3, dw3, wpol),
            "e_coeffs": e_coeffs,
            "a_coeffs": a_coeffs,
            "w_coeffs": w_coeffs,
        }
    return {
        "symbols": {
            "alpha": alpha,
            "c_p": c_p,
            "c_q": c_q,
            "eps": eps,
            "a": a,
            "w": w,
            "X": X,
            "y": y,
            "r": r,
            "u": u,
            "X3": X3,
            "a_tilde": a_t,
            "W_tilde": W_t,
            "z": z,
        },
        "lo_rhs": lo_rhs,
        "by_p": by_p,
        "multiplicities": {name: multiplicity(fn(z), z) for name, (fn, _) in ACTIVATIONS.items()},
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``leading_order.md``."""
    res = derive()
    s = res["symbols"]
    alpha, c_p, eps, a, w, X, y = (s[k] for k in ("alpha", "c_p", "eps", "a", "w", "X", "y"))
    r, u, X3, a_t, W_t = s["r"], s["u"], s["X3"], s["a_tilde"], s["W_tilde"]
    page = Page(
        NAME,
        "Multiplicity and the leading-order flow [ZZJLZX22]",
        "[ZZJLZX22] Zhou et al., NeurIPS 2022; docs/theory.md §4-5",
    )
    page.text(
        r"Multiplicity $p$: $\sigma(z) = \sigma_0 + \sum_{j\ge p} c_j z^j$ with $c_p \ne 0$; here $\sigma_0 = 0$ and $\sigma(z) = c_p z^p + c_{p+1} z^{p+1}$. Small initialization $\theta = \epsilon\tilde\theta$, $y$ fixed, width 2, $n = 2$, $D = 2$, for $p = 1, 2, 3, 4$."
    )

    for p, q in res["by_p"].items():
        # Residual: e_i = -y_i + O(eps^(p+1)).
        for i, ec in enumerate(q["e_coeffs"]):
            assert_zero(ec[0] + y[i], f"p={p}: e_{i + 1} at eps^0")
            assert sorted(ec) == [0, p + 1], f"p={p}: orders of e_{i + 1} through eps^(p+1)"
        # Flow of neuron 1: leading order eps^p, next eps^(p+1).
        w_t = list(W_t.row(0))
        G_t = q["G"].subs(dict(zip(w, w_t, strict=True)))
        ac, wc = q["a_coeffs"], q["w_coeffs"]
        assert sorted(ac) == [p, p + 1], f"p={p}: orders of da/dt {sorted(ac)}"
        assert_zero(ac[p] - c_p / alpha * G_t, f"p={p}: leading da/dt")
        for d in range(DIM):
            assert sorted(wc[d]) == [p, p + 1], f"p={p}: orders of dw/dt"
            assert_zero(
                wc[d][p] - c_p / alpha * a_t[0] * sp.diff(G_t, w_t[d]), f"p={p}: leading dw/dt"
            )
            assert not any(sym in wc[d][p].free_symbols for sym in [a_t[1], *W_t.row(1)])
        # In the original variables: eps^p G(w_tilde) = G(eps w_tilde) = G(w).
        scale = {a: eps * a_t[0]} | {w[d]: eps * w_t[d] for d in range(DIM)}
        assert_zero(q["da_dt"].subs(scale) - eps**p * ac[p], f"p={p}: G homogeneous")
        for d in range(DIM):
            assert_zero(
                q["dw_dt"][d].subs(scale) - eps**p * wc[d][p], f"p={p}: a grad G homogeneous"
            )
        # Conserved quantity.
        C = q["conserved"]
        dC = sp.diff(C, a) * q["da_dt"] + dot(grad(C, w), q["dw_dt"])
        assert_zero(dC, f"p={p}: d/dt (p a^2 - |w|^2)")
        # Polar form in D = 3 on the unit sphere.
        da3, dw3, wpol = q["polar_flow"]
        norm = sp.sqrt(sp.expand(dot(wpol, wpol)))
        assert norm == r
        dr = dot(wpol, dw3) / r
        assert_zero(dr - q["dr_dt"], f"p={p}: dr/dt")
        for d in range(3):
            du = dw3[d] / r - wpol[d] * dot(wpol, dw3) / r**3
            assert_zero(du - q["du_dt"][d], f"p={p}: du_{d + 1}/dt")
        assert_zero(dot(u, q["du_dt"]), f"p={p}: du/dt tangent")
        # Growth conditions: d(a^2)/dt and dr/dt have the sign of c_p a G(u).
        G_u = sp.Add(*[y[i] * dot(u, X3.row(i)) ** p for i in range(N_POINTS)]) / N_POINTS
        assert_zero(2 * a * da3 - 2 * (c_p * a * G_u) * r**p / alpha, f"p={p}: d(a^2)/dt")
        assert_zero(q["dr_dt"] - (c_p * a * G_u) * p * r ** (p - 1) / alpha, f"p={p}: dr/dt sign")
        # Direction flow = gradient of G restricted to the circle (D = 2).
        phi = sp.Symbol("phi")
        uc = [sp.cos(phi), sp.sin(phi)]
        tangent = [sp.diff(ud, phi) for ud in uc]
        G_phi = q["G"].subs(dict(zip(w, uc, strict=True)))
        gradG = [g.subs(dict(zip(w, uc, strict=True))) for g in grad(q["G"], w)]
        proj = [gradG[d] - uc[d] * dot(uc, gradG) for d in range(2)]
        assert_zero(dot(tangent, uc), "tangent is orthogonal to u")
        assert_zero(dot(tangent, proj) - sp.diff(G_phi, phi), f"p={p}: projected gradient")

    for name, (_, expected) in ACTIVATIONS.items():
        got = res["multiplicities"][name]
        assert all(sp.simplify(g - e) == 0 for g, e in zip(got, expected, strict=True)), (name, got)
    page.check(
        "multiplicities (sigma0, p, c_p) from Taylor series: "
        + "; ".join(f"{k}: ({v[0]}, {v[1]}, {v[2]})" for k, v in res["multiplicities"].items())
        + "."
    )
    page.check(
        "p = 1..4: e_i = -y_i + O(eps^(p+1)) (the next term is (c_p/alpha) sum_k a_k (w_k.x_i)^p)."
    )
    page.check(
        "p = 1..4: the full flow of neuron 1 starts at eps^p with (c_p/alpha)(G(w_tilde), a_tilde grad G(w_tilde)), which does not involve neuron 2, and its next term is eps^(p+1)."
    )
    page.check(
        "p = 1..4: eps^p G(w_tilde) = G(w): in the original variables the leading-order flow is (c_p/alpha)(G(w), a grad G(w))."
    )
    page.check(
        "p = 1..4: d/dt (p a^2 - |w|^2) = 0 along the leading-order flow (Euler: w . grad G = p G)."
    )
    page.check(
        "p = 1..4, D = 3, |u| = 1: dr/dt = (c_p/alpha) p a r^(p-1) G(u), du/dt = (c_p/alpha) a r^(p-2) (I - u u^T) grad G(u), u . du/dt = 0."
    )
    page.check(
        "p = 1..4: d(a^2)/dt = 2 (c_p a G(u)) r^p/alpha and dr/dt = (c_p a G(u)) p r^(p-1)/alpha: a neuron grows only where c_p a G(u) > 0."
    )
    page.check(
        "p = 1..4, D = 2, u = (cos phi, sin phi): t(phi) . (I - u u^T) grad G(u) = dG(u(phi))/dphi: the direction flow is the gradient flow of G on the circle, speed (c_p/alpha) a r^(p-2)."
    )

    # p = 2: G(w) = w^T M w; stationary directions on the sphere are eigenvectors of M.
    q2 = res["by_p"][2]
    M = sp.Add(*[y[i] * X.row(i).T * X.row(i) for i in range(N_POINTS)]) / N_POINTS
    wv = sp.Matrix(w)
    assert_zero(q2["G"] - (wv.T * M * wv)[0, 0], "p=2: G = w^T M w")
    assert_zero(sp.Matrix(grad(q2["G"], w)) - 2 * M * wv, "p=2: grad G = 2 M w")
    # Exact example: the projected gradient 2 (M u - (u^T M u) u) vanishes at unit eigenvectors.
    example = dict(zip(X, [1, 2, 3, -1], strict=True)) | dict(zip(y, [1, -2], strict=True))
    M_ex = M.subs(example)
    for mu, _, vecs in M_ex.eigenvects():
        v_ex = vecs[0]  # u = v/|v|: multiply the projected gradient by |v|^3
        norm2 = (v_ex.T * v_ex)[0, 0]
        quad = (v_ex.T * M_ex * v_ex)[0, 0]
        assert_zero(2 * (norm2 * M_ex * v_ex - quad * v_ex), "p=2: eigenvector is stationary")
        assert_zero(quad - mu * norm2, "p=2: G(u) = mu at a unit eigenvector")
    page.check(
        "p = 2: G(w) = w^T M w with M = (1/n) sum_i y_i x~_i x~_i^T and grad G = 2 M w; so (I - u u^T) grad G(u) = 2 (M u - (u^T M u) u) vanishes exactly at unit eigenvectors, where G(u) = mu (checked exactly on x~ = (1, 2), (3, -1), y = (1, -2)): c_2 a > 0 climbs to the top eigenvector (grows if mu > 0), c_2 a < 0 descends to the bottom one (grows if mu < 0)."
    )

    # ReLU (homogeneous of degree 1): with e = -y the flow is (1/alpha)(G, a grad G) exactly.
    a2, W2 = vector("a", 2), matrix("w", 2, DIM)
    relu_flow = two_layer_flow(a2, W2, X, y, alpha, residual=[-yi for yi in y])
    G_relu = sp.Add(*[y[i] * sigma(relu_flow["pre"][0][i]) for i in range(N_POINTS)]) / N_POINTS
    assert_zero(relu_flow["rhs_a"][0] - G_relu / alpha, "e = -y: da/dt = G/alpha")
    for d in range(DIM):
        assert_zero(
            relu_flow["rhs_W"][0, d] - a2[0] * sp.diff(G_relu, W2[0, d]) / alpha,
            "e = -y: dw/dt = a grad G/alpha",
        )
    page.check(
        "ReLU / any sigma: replacing e_i by -y_i in the flow of section 1 gives exactly da/dt = G(w)/alpha, dw/dt = a grad G(w)/alpha with G(w) = (1/n) sum_i y_i sigma(w . x~_i); for ReLU this G is positively homogeneous of degree 1, so the polar form above holds with p = 1, c_p = 1 wherever G is differentiable."
    )

    page.text("Expansion of the full flow (shown for p = 2, neuron 1, tilde variables):")
    page.eq(
        r"e_1",
        tex(sum(c * eps**k for k, c in list(q2["e_coeffs"][0].items())[:2])) + r" + O(\epsilon^4)",
    )
    page.eq(r"\frac{d a_1}{dt}", tex(q2["a_coeffs"][2] * eps**2) + r" + O(\epsilon^3)")
    page.text("Leading-order per-neuron flow, for every p:")
    page.eq(
        r"G(w) = \frac1n\sum_i y_i (w\cdot\tilde x_i)^p,\qquad \frac{da}{dt} = \frac{c_p}{\alpha}G(w),\qquad \frac{dw}{dt} = \frac{c_p}{\alpha}\,a\,\nabla G(w)"
    )
    page.eq(
        r"\frac{d}{dt}\left(p a^2 - |w|^2\right) = \frac{2 c_p a}{\alpha}\left(p G(w) - w\cdot\nabla G(w)\right) = 0"
    )
    page.eq(
        r"w = r u:\quad \frac{dr}{dt} = \frac{c_p}{\alpha}\,p\,a\,r^{p-1}G(u),\qquad \frac{du}{dt} = \frac{c_p}{\alpha}\,a\,r^{p-2}\left(I - u u^T\right)\nabla G(u)"
    )
    page.text(
        r"So directions climb $G$ on the sphere when $c_p a > 0$ and descend when $c_p a < 0$; a neuron grows only where $c_p a G(u) > 0$. With $C = p a_0^2 - |w_0|^2 > 0$, $p a^2 = C + |w|^2 \ge C > 0$, so $a$ keeps its sign; with $C \le 0$ it may change sign."
    )
    page.text("Example, p = 2, D = 2:")
    page.eq(r"\frac{dw_1}{dt}", tex(q2["dw_dt"][0]))
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
