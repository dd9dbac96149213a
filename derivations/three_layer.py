"""Three-layer network at small initialization ([CL24], docs/theory.md §8).

``h_j = sigma(v_j . x~)``, ``g_k = sigma(sum_j W_kj h_j [+ b_k])``,
``f = (1/alpha) sum_k a_k g_k`` with ``sigma(z) = c1 z + c2 z^2`` (p = 1,
sigma0 = 0), all weights ``eps * tilde``; m1 = m2 = 2, 1D input with bias
(D = 2), n = 2 points.  Without a second-layer bias:

- ``f = eps^3 (c1^2/alpha) a^T W V x~ + O(eps^4)`` and
  ``R = R0 - eps^3 E + O(eps^4)`` with the cubic energy
  ``E = (c1^2/alpha) a^T W V v``, ``v = (1/n) sum_i y_i x~_i``;
- the flow is ``grad E`` at leading order; with ``z = V v`` and ``c = c1^2/alpha``:
  ``da/dt = c W z``, ``dW/dt = c a z^T``, ``dV/dt = c (W^T a) v^T`` (rows of V move
  along v only), ``dz/dt = c |v|^2 W^T a``;
- conserved: ``a_k^2 - sum_j W_kj^2``, ``sum_k W_kj^2 - |V_j|^2`` and
  ``sum_k W_kj^2 - z_j^2/|v|^2``;
- the field is homogeneous of degree 2, so ``eps X(eps t)`` solves it when
  ``X(t)`` does: blow-up time ``T*/eps``.

With a second-layer bias b the output gains ``eps^2 (c1/alpha) a^T b`` (and
``eps^3 (c2/alpha) sum_k a_k b_k^2``); in the energy these enter multiplied by
mean(y), so for mean(y) != 0 the quadratic term leads and drives an exponential
mode of rate ``|c1 mean(y)|/alpha``; for a centred target the cubic energy
leads again.

References
----------
[CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
condensation. 2024. arXiv:2402.15958.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import Page, assert_zero, dot, eps_coeffs, matrix, tex, truncate, vector

NAME = "three_layer"
TITLE = "three layers: cubic energy (c1^2/alpha) a^T W V v, reduced flow (a, W, z = V v), two conservation laws, T* ~ 1/eps; second-layer bias warning"

M1, M2, N_POINTS = 2, 2, 2
ORDER = 5  # keep eps^0 .. eps^4


def _forward(a, W, V, X, act, eps, b=None):
    """Outputs f(x_i) of the three-layer net, truncated below eps^ORDER."""
    out = []
    for i in range(X.rows):
        h = [truncate(act(dot(V.row(j), X.row(i))), eps, ORDER) for j in range(V.rows)]
        g = []
        for k in range(W.rows):
            pre = dot(W.row(k), h) + (b[k] if b is not None else 0)
            g.append(truncate(act(pre), eps, ORDER))
        out.append(truncate(dot(a, g), eps, ORDER))
    return out


def reduced_flow(a, W, z, vsq, c):
    """(da/dt, dW/dt, dz/dt) = (c W z, c a z^T, c |v|^2 W^T a)."""
    a, z = sp.Matrix(a), sp.Matrix(z)
    return c * W * z, c * a * z.T, c * vsq * W.T * a


def derive() -> dict:
    """Expand the three-layer net in eps, with and without a second-layer bias.

    Returns
    -------
    dict with keys ``symbols``; ``f_coeffs`` / ``f_coeffs_bias``: eps-coefficients of f(x_1);
    ``E``: the cubic energy in tilde variables; ``E_bias``: eps-coefficients of
    (1/n) sum_i y_i f_i with the bias; ``grad_coeffs``: eps-coefficients of -grad R in
    the original variables evaluated at eps * tilde, for a, W, V (dicts of Matrices);
    ``reduced_flow``: the function ``reduced_flow(a, W, z, vsq, c)``.
    """
    alpha, eps = sp.symbols("alpha epsilon", positive=True)
    c1, c2 = sp.symbols("c_1 c_2", real=True)
    z_ = sp.Symbol("z")
    act = sp.Lambda(z_, c1 * z_ + c2 * z_**2)
    x, y = vector("x", N_POINTS), vector("y", N_POINTS)
    X = sp.Matrix([[xi, 1] for xi in x])
    a = sp.Matrix(vector(r"\tilde{a}", M2))
    b = vector(r"\tilde{b}", M2)
    W = matrix(r"\tilde{W}", M2, M1)
    V = matrix(r"\tilde{V}", M1, 2)
    v = [sp.Add(*[y[i] * X[i, d] for i in range(N_POINTS)]) / N_POINTS for d in range(2)]
    c = c1**2 / alpha

    f = [fi / alpha for fi in _forward(eps * a, eps * W, eps * V, X, act, eps)]
    f_b = [
        fi / alpha
        for fi in _forward(eps * a, eps * W, eps * V, X, act, eps, [eps * bk for bk in b])
    ]
    R = truncate(
        sp.Add(*[(fi - yi) ** 2 for fi, yi in zip(f, y, strict=True)]) / (2 * N_POINTS), eps, ORDER
    )
    E = c * (a.T * W * V * sp.Matrix(v))[0, 0]
    # -grad_theta R at theta = eps * tilde equals -(1/eps) grad_tilde [R(eps tilde)].
    grad_coeffs = {
        "a": [eps_coeffs(-sp.diff(R, ak) / eps, eps) for ak in a],
        "W": {
            (k, j): eps_coeffs(-sp.diff(R, W[k, j]) / eps, eps)
            for k in range(M2)
            for j in range(M1)
        },
        "V": {
            (j, d): eps_coeffs(-sp.diff(R, V[j, d]) / eps, eps) for j in range(M1) for d in range(2)
        },
    }
    E_bias = eps_coeffs(sp.Add(*[yi * fi for yi, fi in zip(y, f_b, strict=True)]) / N_POINTS, eps)
    return {
        "symbols": {
            "alpha": alpha,
            "eps": eps,
            "c1": c1,
            "c2": c2,
            "x": x,
            "y": y,
            "X": X,
            "a": a,
            "b": b,
            "W": W,
            "V": V,
            "v": v,
            "c": c,
        },
        "f_coeffs": eps_coeffs(f[0], eps),
        "f_coeffs_bias": eps_coeffs(f_b[0], eps),
        "R_coeffs": eps_coeffs(R, eps),
        "E": E,
        "E_bias": E_bias,
        "grad_coeffs": grad_coeffs,
        "reduced_flow": reduced_flow,
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``three_layer.md``."""
    res = derive()
    sy = res["symbols"]
    alpha, eps, c1, c2, y, X, a, b, W, V, v, c = (
        sy[k] for k in ("alpha", "eps", "c1", "c2", "y", "X", "a", "b", "W", "V", "v", "c")
    )
    page = Page(
        NAME,
        "Three-layer network: cubic energy and blow-up [CL24]",
        "[CL24] Chen, Luo 2024; docs/theory.md §8",
    )
    vv = sp.Matrix(v)

    # Output and loss.
    fc = res["f_coeffs"]
    assert min(fc) == 3, sorted(fc)
    assert_zero(fc[3] - c * (a.T * W * V * X.row(0).T)[0, 0], "f at eps^3")
    Rc = res["R_coeffs"]
    assert set(Rc) <= {0, 3, 4}, sorted(Rc)
    assert_zero(Rc[0] - sp.Add(*[yi**2 for yi in y]) / (2 * N_POINTS), "R0")
    assert_zero(Rc[3] + res["E"], "R at eps^3 = -E")
    page.check(
        "no second-layer bias: f(x) = eps^3 (c1^2/alpha) a^T W V x~ + O(eps^4); R = R0 - eps^3 E + O(eps^4) with E = (c1^2/alpha) a^T W V v."
    )

    # Leading-order flow = grad E, in the reduced variables.
    g = res["grad_coeffs"]
    z = V * vv
    for k in range(M2):
        assert min(g["a"][k]) == 2
        assert_zero(g["a"][k][2] - sp.diff(res["E"], a[k]), f"da_{k + 1}/dt")
        assert_zero(g["a"][k][2] - c * (W * z)[k], f"da_{k + 1}/dt = c (W z)_k")
    for (k, j), gc in g["W"].items():
        assert min(gc) == 2
        assert_zero(gc[2] - c * a[k] * z[j], f"dW_{k + 1}{j + 1}/dt = c a_k z_j")
    Vdot = sp.zeros(M1, 2)
    for (j, d), gc in g["V"].items():
        assert min(gc) == 2
        Vdot[j, d] = gc[2]
        assert_zero(gc[2] - c * (W.T * a)[j] * v[d], f"dV_{j + 1}{d + 1}/dt = c (W^T a)_j v_d")
    zdot = Vdot * vv
    vsq = dot(v, v)
    for j in range(M1):
        assert_zero(zdot[j] - c * vsq * (W.T * a)[j], f"dz_{j + 1}/dt")
    page.check(
        "-grad R = eps^2 grad E(tilde) + O(eps^3) for a, W, V; grad E = (c W z, c a z^T, c (W^T a) v^T) with z = V v, so dz/dt = c |v|^2 W^T a and each row of V moves along v."
    )

    # Conservation laws (reduced variables, general a, W, z, |v|^2).
    A = sp.Matrix(vector("a", M2))
    Wm = matrix("W", M2, M1)
    Z = sp.Matrix(vector("z", M1))
    s2 = sp.Symbol("|v|^2", positive=True)
    cc = sp.Symbol("c", positive=True)
    da, dW, dz = reduced_flow(A, Wm, Z, s2, cc)
    for k in range(M2):
        dCk = 2 * A[k] * da[k] - sum(2 * Wm[k, j] * dW[k, j] for j in range(M1))
        assert_zero(dCk, f"d/dt (a_{k + 1}^2 - sum_j W_{k + 1}j^2)")
    for j in range(M1):
        dDj = sum(2 * Wm[k, j] * dW[k, j] for k in range(M2)) - 2 * Z[j] * dz[j] / s2
        assert_zero(dDj, f"d/dt (sum_k W_k{j + 1}^2 - z_{j + 1}^2/|v|^2)")
        dVj = sum(2 * W[k, j] * (c * a[k] * z[j]) for k in range(M2)) - sum(
            2 * V[j, d] * Vdot[j, d] for d in range(2)
        )
        assert_zero(dVj, f"d/dt (sum_k W_k{j + 1}^2 - |V_{j + 1}|^2)")
    page.check(
        "d/dt (a_k^2 - sum_j W_kj^2) = 0 and d/dt (sum_k W_kj^2 - z_j^2/|v|^2) = 0 along the reduced flow; d/dt (sum_k W_kj^2 - |V_j|^2) = 0 along the flow of (a, W, V)."
    )

    # Homogeneity of degree 2 and the eps scaling of solutions.
    lam, t = sp.symbols("lambda t", positive=True)
    F = [*da, *dW, *dz]
    state = [*A, *Wm, *Z]
    F_scaled = [fi.subs({s: lam * s for s in state}, simultaneous=True) for fi in F]
    for fi, fs in zip(F, F_scaled, strict=True):
        assert_zero(fs - lam**2 * fi, "degree-2 homogeneity")
    funcs = [sp.Function(f"X{i}") for i in range(len(state))]
    s_ = sp.Symbol("s")
    Y = [eps * fn(eps * t) for fn in funcs]
    on_Y = dict(zip(state, Y, strict=True))
    on_X = dict(zip(state, [fn(s_) for fn in funcs], strict=True))
    for i, fi in enumerate(F):
        lhs = sp.diff(Y[i], t) - fi.subs(on_Y, simultaneous=True)
        rhs = (eps**2 * (sp.diff(funcs[i](s_), s_) - fi.subs(on_X, simultaneous=True))).subs(
            s_, eps * t
        )
        assert_zero(sp.expand((lhs - rhs).doit()), "eps-scaling of solutions")
    page.check(
        "the reduced field F satisfies F(lambda X) = lambda^2 F(X), and d/dt[eps X(eps t)] - F(eps X(eps t)) = eps^2 [X' - F(X)](eps t): eps X(eps t) solves the flow iff X does, so T*(eps X0) = T*(X0)/eps."
    )

    # Balanced one-neuron-per-layer example: a = W = z/|v| = rho, rho' = c |v| rho^2.
    rho, rho0, vn = sp.symbols("rho rho_0 |v|", positive=True)
    da1, dW1, dz1 = reduced_flow([rho], sp.Matrix([[rho]]), [vn * rho], vn**2, cc)
    assert_zero(da1[0] - dW1[0, 0], "balanced: a' = W'")
    assert_zero(da1[0] - dz1[0] / vn, "balanced: a' = z'/|v|")
    rf = sp.Function("rho")
    sol = sp.dsolve(sp.Eq(rf(t).diff(t), cc * vn * rf(t) ** 2), rf(t), ics={rf(0): rho0}).rhs
    T_star = sp.solve(sp.denom(sp.together(sol)), t)[0]
    assert_zero(T_star - 1 / (cc * vn * rho0), "balanced T*")
    page.check(
        "m1 = m2 = 1, a = W = z/|v| = rho stays balanced; rho' = c |v| rho^2, rho(t) = rho0/(1 - c |v| rho0 t), T* = 1/(c |v| rho0) = O(1/eps) for rho0 = O(eps)."
    )

    # Second-layer bias.
    fb = res["f_coeffs_bias"]
    ab = dot(list(a), b)
    assert min(fb) == 2
    assert_zero(fb[2] - c1 / alpha * ab, "f at eps^2 with bias")
    assert_zero(
        fb[3]
        - c * (a.T * W * V * X.row(0).T)[0, 0]
        - c2 / alpha * sum(a[k] * b[k] ** 2 for k in range(M2)),
        "f at eps^3 with bias",
    )
    Eb = res["E_bias"]
    ybar = sp.Add(*y) / N_POINTS
    assert_zero(Eb[2] - ybar * c1 / alpha * ab, "energy at eps^2 with bias")
    assert_zero(
        Eb[3] - res["E"] - ybar * c2 / alpha * sum(a[k] * b[k] ** 2 for k in range(M2)),
        "energy at eps^3 with bias",
    )
    centred = {y[-1]: -sp.Add(*y[:-1])}
    assert sp.expand(Eb[2].subs(centred)) == 0
    assert_zero(Eb[3].subs(centred) - res["E"].subs(centred), "centred target: cubic energy only")
    # Quadratic mode: da/dt = (c1 ybar/alpha) b, db/dt = (c1 ybar/alpha) a; rate |c1 ybar|/alpha.
    M = sp.Matrix(2 * M2, 2 * M2, lambda i, j: sp.diff(Eb[2], (list(a) + b)[i], (list(a) + b)[j]))
    rate = sp.Abs(c1 * ybar / alpha)
    eig = M.eigenvals()
    assert {sp.simplify(sp.Abs(e) - rate) for e in eig} == {0}
    page.check(
        "with a second-layer bias: f = eps^2 (c1/alpha) a^T b + eps^3 [(c1^2/alpha) a^T W V x~ + (c2/alpha) sum_k a_k b_k^2] + O(eps^4); the energy (1/n) sum_i y_i f_i is eps^2 mean(y) (c1/alpha) a^T b + eps^3 [E + mean(y)(c2/alpha) sum_k a_k b_k^2] + ..."
    )
    page.check(
        "its eps^2 part drives the linear mode (a, b) with rates +-|c1 mean(y)|/alpha; for a centred target (sum y = 0) both bias terms vanish and the energy is the cubic E."
    )

    page.text(
        r"All weights $O(\epsilon)$, $\sigma(z) = c_1 z + c_2 z^2$ ($p = 1$, $\sigma_0 = 0$), no second-layer bias:"
    )
    page.eq(
        r"f(x) = \epsilon^3\,\frac{c_1^2}{\alpha}\,\tilde a^T\tilde W\tilde V\tilde x + O(\epsilon^4),\qquad R = R_0 - \epsilon^3 E(\tilde\theta) + O(\epsilon^4),\qquad E = \frac{c_1^2}{\alpha}\,a^T W V v"
    )
    page.text(r"Leading-order flow, $c = c_1^2/\alpha$, $z = Vv$:")
    page.eq(
        r"\frac{da}{dt} = c\,W z,\qquad \frac{dW}{dt} = c\,a z^T,\qquad \frac{dV}{dt} = c\,(W^T a)\,v^T,\qquad \frac{dz}{dt} = c\,|v|^2 W^T a"
    )
    page.eq(
        r"\frac{d}{dt}\Big(a_k^2 - \sum_j W_{kj}^2\Big) = 0,\qquad \frac{d}{dt}\Big(\sum_k W_{kj}^2 - |V_j|^2\Big) = \frac{d}{dt}\Big(\sum_k W_{kj}^2 - \frac{z_j^2}{|v|^2}\Big) = 0"
    )
    page.text(
        r"Homogeneous of degree 2: $\epsilon X(\epsilon t)$ solves the flow when $X(t)$ does, so the blow-up time from $\epsilon X_0$ is $T^*(X_0)/\epsilon$. Balanced single path ($a = W = z/|v| = \rho$): $\rho(t) = \rho_0/(1 - c|v|\rho_0 t)$, $T^* = 1/(c|v|\rho_0)$."
    )
    page.text(r"With a second-layer bias $b = \epsilon\tilde b$:")
    page.eq(
        r"f = "
        + tex(fb[2] * eps**2)
        + r" + \epsilon^3\Big(\frac{c_1^2}{\alpha}\tilde a^T\tilde W\tilde V\tilde x + "
        + tex(c2 / alpha * sum(a[k] * b[k] ** 2 for k in range(M2)))
        + r"\Big) + O(\epsilon^4)"
    )
    page.text(
        r"The energy contains these terms multiplied by $\bar y$: for $\bar y \ne 0$ the $O(\epsilon^2)$ term $\bar y\frac{c_1}{\alpha}a^Tb$ leads (it exceeds the cubic term unless $|\bar y| \lesssim \epsilon|c_1||v|$) and drives an exponential mode of rate $|c_1\bar y|/\alpha$ instead of the blow-up; for $\bar y = 0$ (centred target) or without $b$ the cubic energy leads."
    )
    page.correction(
        "Refinement, not an error: with a second-layer bias the O(eps^3) part of f also contains (c2/alpha) sum_k a_k b_k^2 (c2 = sigma''(0)/2), not only the cubic a^T W V x~ term. Like the O(eps^2) term (c1/alpha) sum_k a_k b_k it does not depend on x, so it enters the energy multiplied by mean(y) and vanishes for a centred target."
    )
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
