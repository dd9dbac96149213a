"""Exact solution of a two-layer linear net ([SMG14], docs/theory.md §10).

``f(x) = (1/alpha) a^T W x`` (sigma(z) = z, no bias), whitened input
``(1/n) sum_i x_i x_i^T = I``.  The loss depends on the data only through
``beta = W^T a / alpha``: ``R = |beta|^2/2 - beta . v + mean(y^2)/2`` with
``v = (1/n) sum_i y_i x_i``, ``s = |v|``.  The balanced, aligned start
``a = q e``, ``W = q e v^T/s`` (|e| = 1) is kept by the flow, with
``u = q^2/alpha`` (the strength of beta along v) obeying

    tau du/dt = 2 u (s - u),  tau = alpha,
    u(t) = s e^(2 s t/tau) / (e^(2 s t/tau) - 1 + s/u0).

The anti-aligned start ``W = -q e v^T/s`` (also balanced, a a^T = W W^T) has
u < 0 and ``tau du/dt = -2 u (s - u)``: the mode decays and the formula does
not apply.

References
----------
[SMG14] Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks. arXiv:1312.6120.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import Page, assert_zero, dot, matrix, tex, vector

NAME = "saxe"
TITLE = "linear net, whitened input, balanced start: tau du/dt = 2u(s - u), tau = alpha, u(t) = s e^(2st/tau)/(e^(2st/tau) - 1 + s/u0)"

WIDTH, DIM = 2, 2


def derive() -> dict:
    """Reduce the linear two-layer flow to the mode strength u and solve it.

    Returns
    -------
    dict with keys ``symbols`` {"alpha", "tau", "s", "u0", "t", "u"}; ``u_ode``: du/dt as a
    function of u; ``u_solution``: u(t); ``tau``: alpha; ``q_rate``, ``q_rate_anti``:
    dq/dt on the aligned and anti-aligned sets.
    """
    alpha, s, u0, t, tau = sp.symbols("alpha s u_0 t tau", positive=True)
    u = sp.Symbol("u", real=True)
    u_ode = 2 * u * (s - u) / tau
    u_solution = s * sp.exp(2 * s * t / tau) / (sp.exp(2 * s * t / tau) - 1 + s / u0)
    return {
        "symbols": {"alpha": alpha, "tau": tau, "s": s, "u0": u0, "t": t, "u": u},
        "tau": alpha,
        "u_ode": u_ode,
        "u_solution": u_solution,
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``saxe.md``."""
    res = derive()
    sy = res["symbols"]
    alpha, tau, s, u0, t, u = (sy[k] for k in ("alpha", "tau", "s", "u0", "t", "u"))
    page = Page(
        NAME,
        "Two-layer linear network: exact solution [SMG14]",
        "[SMG14] Saxe, McClelland, Ganguli 2014; docs/theory.md §10",
    )

    # The loss depends on the data through Sigma_xx and v only (n = 3, d = 2).
    n = 3
    Xd = matrix("x", n, DIM)
    yd = vector("y", n)
    beta = vector(r"\beta", DIM)
    R_data = sp.Add(*[(dot(beta, Xd.row(i)) - yd[i]) ** 2 for i in range(n)]) / (2 * n)
    Sxx = Xd.T * Xd / n
    v_data = sp.Matrix([sp.Add(*[yd[i] * Xd[i, d] for i in range(n)]) / n for d in range(DIM)])
    bm = sp.Matrix(beta)
    R_moments = (
        (bm.T * Sxx * bm)[0, 0] / 2
        - (bm.T * v_data)[0, 0]
        + sp.Add(*[yi**2 for yi in yd]) / (2 * n)
    )
    assert_zero(R_data - R_moments, "R in terms of Sigma_xx and v")
    page.check(
        "R = (1/2) beta^T Sigma_xx beta - beta . v + mean(y^2)/2 for n = 3 points in d = 2: the data enter only through Sigma_xx and v."
    )

    # Whitened input: flow of (a, W) for width 2, d = 2, generic v.
    a = sp.Matrix(vector("a", WIDTH))
    W = matrix("W", WIDTH, DIM)
    v1, v2 = sp.symbols("v_1 v_2", real=True)
    v = sp.Matrix([v1, v2])
    beta_aW = W.T * a / alpha
    R = (beta_aW.T * beta_aW)[0, 0] / 2 - (beta_aW.T * v)[0, 0]
    da = -sp.Matrix([sp.diff(R, ak) for ak in a])
    dW = -sp.Matrix(WIDTH, DIM, lambda k, d: sp.diff(R, W[k, d]))
    # Ansatz: a = q e, W = +-q e vhat^T, e = (e1, sqrt(1 - e1^2)).
    q, e1 = sp.symbols("q e_1", positive=True)
    e = sp.Matrix([e1, sp.sqrt(1 - e1**2)])
    snorm = sp.sqrt(v1**2 + v2**2)
    vhat = v / snorm
    for sign in (1, -1):
        on_set = {a[k]: q * e[k] for k in range(WIDTH)}
        on_set |= {W[k, d]: sign * q * e[k] * vhat[d] for k in range(WIDTH) for d in range(DIM)}
        u_set = sign * q**2 / alpha
        q_rate = sign * q * (snorm - u_set) / alpha
        for k in range(WIDTH):
            assert_zero(
                da[k].subs(on_set) - q_rate * e[k], f"sign {sign}: da_{k + 1}/dt on the set"
            )
            for d in range(DIM):
                assert_zero(
                    dW[k, d].subs(on_set) - sign * q_rate * e[k] * vhat[d],
                    f"sign {sign}: dW_{k + 1}{d + 1}/dt on the set",
                )
        u_rate = sp.diff(u_set, q) * q_rate
        assert_zero(u_rate - sign * 2 * u_set * (snorm - u_set) / alpha, f"sign {sign}: du/dt")
        assert_zero((beta_aW.subs(on_set) - u_set * vhat), "beta = u vhat")
    page.check(
        "whitened input, width 2, d = 2: on a = q e, W = +-q e v^T/|v| the flow is da/dt = (dq/dt) e, dW/dt = +-(dq/dt) e v^T/|v| (the set is invariant), beta = u v/|v| with u = +-q^2/alpha."
    )
    page.check(
        "aligned (+): alpha du/dt = 2u(s - u); anti-aligned (-, u < 0): alpha du/dt = -2u(s - u), which decays: the closed form needs u0/s > 0."
    )

    # Closed form.
    sol = res["u_solution"]
    assert_zero(sp.diff(sol, t) - res["u_ode"].subs(u, sol), "u(t) solves tau du/dt = 2u(s - u)")
    assert sp.simplify(sol.subs(t, 0) - u0) == 0
    assert sp.limit(sol, t, sp.oo) == s
    uf = sp.Function("u")
    general = sp.dsolve(
        sp.Eq(uf(t).diff(t), res["u_ode"].subs(u, uf(t))), uf(t), hint="Bernoulli"
    ).rhs
    (C1,) = general.free_symbols - {s, t, tau}
    constant = sp.solve(sp.Eq(general.subs(t, 0), u0), C1)
    assert len(constant) == 1 and sp.cancel(general.subs(C1, constant[0]) - sol) == 0, general
    page.check(
        "u(t) = s e^(2st/tau)/(e^(2st/tau) - 1 + s/u0) satisfies tau du/dt = 2u(s - u), u(0) = u0, u -> s; dsolve gives the same function."
    )

    page.text(
        r"Two-layer linear net $f(x) = \frac1\alpha a^T W x$, whitened input. The loss depends on the weights only through $\beta = W^T a/\alpha$:"
    )
    page.eq(
        r"R = \tfrac12|\beta|^2 - \beta\cdot v + \tfrac12\overline{y^2},\qquad v = \frac1n\sum_i y_i x_i,\quad s = |v|"
    )
    page.text(
        r"Balanced aligned start $a = q e$, $W = q\,e\,v^T/s$: the flow keeps this form, with $\dot q = q(s - u)/\alpha$ and $u = q^2/\alpha$, so"
    )
    page.eq(r"\tau\frac{du}{dt} = 2u(s - u),\qquad \tau = " + tex(res["tau"]))
    page.eq(r"u(t)", tex(sol))
    page.text(
        r"Anti-aligned start ($W = -q\,e\,v^T/s$, also balanced): $u = -q^2/\alpha < 0$ and $\tau\dot u = -2u(s - u)$; the mode decays to 0."
    )
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
