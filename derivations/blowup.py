"""Escape and blow-up times of the leading-order flow (docs/theory.md §7).

p >= 2: along a stationary orientation u* (u stays put) with ``g* = G(u*)``
the leading-order flow reduces to ``da/dt = (c_p/alpha) g* r^p``,
``dr/dt = (c_p/alpha) p a r^(p-1) g*``.  On the balanced set ``p a^2 = r^2``
with ``sign(a) = sign(c_p g*)`` this is ``dr/dt = (|c_p g*|/alpha) sqrt(p) r^p``,
solved by ``r(t) = r0 (1 - t/T*)^(-1/(p-1))`` with

    T* = alpha / ((p - 1) sqrt(p) |c_p g*| r0^(p-1)),
    T_LO(delta) = T* [1 - (r0/delta)^(p-1)]   (time to reach r = delta),

so with ``r0 = eps rho0`` both scale as ``eps^-(p-1)`` and
``T* - T_LO(delta)`` does not depend on eps.  p = 1: the pair
``(a, w . v/|v|)`` obeys a linear system with eigenvalues
``+-lambda``, ``lambda = |c_1| |v| / alpha``, and the escape time is
``(1/lambda) log(1/eps) + O(1)``.

References
----------
[ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
condensation of neural networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import Page, assert_zero, tex

NAME = "blowup"
TITLE = "blow-up: dr/dt = (|c_p g*|/alpha) sqrt(p) r^p, T* = alpha/((p-1) sqrt(p) |c_p g*| r0^(p-1)); p = 1: lambda = |c_1||v|/alpha"

P_EXPLICIT = (2, 3, 4)


def derive() -> dict:
    """Blow-up time, time to reach delta, and the p = 1 growth rate.

    Returns
    -------
    dict with keys
        ``symbols``: {"alpha", "p", "K" (= |c_p g*| > 0), "r0", "delta", "t", "eps", "rho0", "c1", "vnorm"};
        ``r_ode``: right-hand side of dr/dt in (r, p, K, alpha);
        ``r_solution``: r(t); ``T_star``, ``T_LO``: closed forms;
        ``T_star_eps``: T* with r0 = eps rho0; ``p1_matrix``, ``p1_eigenvalues``, ``p1_rate``.
    """
    alpha, K, r0, delta, t, eps, rho0 = sp.symbols(
        "alpha K r_0 delta t epsilon rho_0", positive=True
    )
    p = sp.Symbol("p", positive=True)
    r = sp.Symbol("r", positive=True)
    c1, vnorm = sp.Symbol("c_1", nonzero=True, real=True), sp.Symbol("|v|", positive=True)
    T_star = alpha / ((p - 1) * sp.sqrt(p) * K * r0 ** (p - 1))
    r_ode = K / alpha * sp.sqrt(p) * r**p
    r_solution = r0 * (1 - t / T_star) ** (-1 / (p - 1))
    T_LO = T_star * (1 - (r0 / delta) ** (p - 1))
    A = sp.Matrix([[0, c1 * vnorm / alpha], [c1 * vnorm / alpha, 0]])
    eigenvalues = list(A.eigenvals())
    return {
        "symbols": {
            "alpha": alpha,
            "p": p,
            "K": K,
            "r0": r0,
            "delta": delta,
            "t": t,
            "eps": eps,
            "rho0": rho0,
            "r": r,
            "c1": c1,
            "vnorm": vnorm,
        },
        "r_ode": r_ode,
        "r_solution": r_solution,
        "T_star": T_star,
        "T_LO": T_LO,
        "T_star_eps": T_star.subs(r0, eps * rho0),
        "p1_matrix": A,
        "p1_eigenvalues": eigenvalues,
        "p1_rate": sp.Abs(c1) * vnorm / alpha,
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``blowup.md``."""
    res = derive()
    sy = res["symbols"]
    alpha, p, K, r0, delta, t, eps, rho0, r = (
        sy[k] for k in ("alpha", "p", "K", "r0", "delta", "t", "eps", "rho0", "r")
    )
    c1, vnorm = sy["c1"], sy["vnorm"]
    T_star, T_LO = res["T_star"], res["T_LO"]
    page = Page(
        NAME,
        "Escape and blow-up times of the leading-order flow",
        "[ZZJLZX22]; docs/theory.md §7 and §10",
    )

    # Reduction on the balanced set: both signs of c_p g*.
    a, cg = sp.symbols("a c_pg")
    for sign in (1, -1):
        for pv in P_EXPLICIT:
            sub = {cg: sign * K, a: sign * r / sp.sqrt(pv)}
            dr = (cg / alpha * pv * a * r ** (pv - 1) * 1).subs(sub)  # G(u*) folded into cg
            assert_zero(dr - res["r_ode"].subs(p, pv), f"p={pv}, sign {sign}: dr/dt on p a^2 = r^2")
            da = (cg / alpha * r**pv).subs(sub)
            # a = sign r / sqrt(p) stays consistent: da/dt = sign (dr/dt) / sqrt(p)
            assert_zero(
                da - sign * res["r_ode"].subs(p, pv) / sp.sqrt(pv),
                f"p={pv}: balanced set invariant",
            )
    page.check(
        "p = 2, 3, 4, c_p g* = +-K: on p a^2 = r^2 with sign(a) = sign(c_p g*), dr/dt = (K/alpha) sqrt(p) r^p, and da/dt = sign(a) (dr/dt)/sqrt(p) keeps the start balanced."
    )

    # Solution by substitution, symbolic p > 1 (tau = 1 - t/T* in (0, 1]).
    tau = sp.Symbol("tau", positive=True)
    sol_tau = r0 * tau ** (-1 / (p - 1))
    dr_dt = sp.diff(sol_tau, tau) * (-1 / T_star)
    ratio = sp.powdenest(
        sp.expand_power_base(dr_dt / res["r_ode"].subs(r, sol_tau), force=True), force=True
    )
    assert sp.simplify(sp.powsimp(ratio, force=True)) == 1, ratio
    assert res["r_solution"].subs(t, 0) == r0
    assert sp.limit(res["r_solution"].subs(p, 2), t, T_star.subs(p, 2), "-") == sp.oo
    page.check(
        "symbolic p: r(t) = r0 (1 - t/T*)^(-1/(p-1)) solves dr/dt = (K/alpha) sqrt(p) r^p with r(0) = r0; r -> infinity as t -> T* (p = 2)."
    )

    # dsolve for explicit p: implicit solution -1/((p-1) r^(p-1)) = C(t); blow-up where C(t) = 0.
    rf = sp.Function("r")
    for pv in P_EXPLICIT:
        ode = sp.Eq(rf(t).diff(t), res["r_ode"].subs({p: pv, r: rf(t)}))
        implicit = sp.dsolve(ode, rf(t), ics={rf(0): r0}, simplify=False)
        assert implicit.lhs == -1 / ((pv - 1) * rf(t) ** (pv - 1)), implicit
        blowup_times = sp.solve(implicit.rhs, t)
        assert len(blowup_times) == 1 and sp.simplify(blowup_times[0] - T_star.subs(p, pv)) == 0
        check = (implicit.lhs - implicit.rhs).subs(rf(t), res["r_solution"].subs(p, pv))
        assert sp.simplify(check) == 0, (pv, check)
    page.check(
        "p = 2, 3, 4: dsolve with r(0) = r0 gives -1/((p-1) r^(p-1)) = (K/alpha) sqrt(p) t - 1/((p-1) r0^(p-1)); the right side vanishes at t = T*, and r(t) above satisfies it."
    )

    # Time to reach delta.
    T_delta = T_LO
    assert_zero(
        sp.powsimp(res["r_solution"].subs(t, T_delta), force=True).subs(p, 2) - delta,
        "r(T_LO) = delta, p = 2",
    )
    for pv in P_EXPLICIT:
        val = res["r_solution"].subs({p: pv}).subs(t, T_delta.subs(p, pv))
        assert sp.simplify(val - delta) == 0, (pv, val)
    assert_zero(T_star - T_LO - alpha / ((p - 1) * sp.sqrt(p) * K * delta ** (p - 1)), "T* - T_LO")
    page.check(
        "p = 2, 3, 4: r(T_LO(delta)) = delta with T_LO = T* [1 - (r0/delta)^(p-1)]; T* - T_LO = alpha/((p-1) sqrt(p) K delta^(p-1)) is independent of r0."
    )

    # Scaling with eps.
    for pv in P_EXPLICIT:
        Te = res["T_star_eps"].subs(p, pv)
        assert sp.simplify(Te * eps ** (pv - 1)).has(eps) is False
        TLe = T_LO.subs({p: pv, r0: eps * rho0})
        assert sp.limit(TLe * eps ** (pv - 1), eps, 0) == sp.simplify(Te * eps ** (pv - 1))
        assert sp.limit(TLe / Te, eps, 0) == 1
    page.check(
        "p = 2, 3, 4, r0 = eps rho0: eps^(p-1) T* is independent of eps, eps^(p-1) T_LO(delta) -> the same constant, T_LO/T* -> 1."
    )

    # p = 1.
    A = res["p1_matrix"]
    lam = res["p1_rate"]
    assert {sp.Abs(e) for e in res["p1_eigenvalues"]} == {lam}
    assert sp.simplify(sum(res["p1_eigenvalues"])) == 0
    # The p = 1 leading-order flow projected on v: a' = (c1/alpha) w.v, w' = (c1/alpha) a v.
    v1, v2, w1, w2 = sp.symbols("v_1 v_2 w_1 w_2", real=True)
    vn = sp.sqrt(v1**2 + v2**2)
    da = c1 / alpha * (w1 * v1 + w2 * v2)
    dw = [c1 / alpha * a * v1, c1 / alpha * a * v2]
    qdot = (dw[0] * v1 + dw[1] * v2) / vn
    assert_zero(
        da - (A[0, 1] * (w1 * v1 + w2 * v2) / vn).subs(vnorm, vn), "p=1: da/dt = c1 |v| q / alpha"
    )
    assert_zero(qdot - (A[1, 0] * a).subs(vnorm, vn), "p=1: dq/dt = c1 |v| a / alpha")
    # Exact solution: (a, q)(t) = exp(A t)(a0, q0); growing mode ~ exp(lambda t).
    a0, q0 = sp.symbols("a_0 q_0", real=True)
    expAt = (A * t).exp()
    sol = expAt * sp.Matrix([a0, q0])
    assert_zero(sp.diff(sol[0], t) - (A * sol)[0], "p=1: exp(A t) solves")
    # Escape time for p = 1: growing component g = a + sign(c1) q grows like exp(lambda t).
    c1p = sp.Symbol("c_1", positive=True)
    g = (sol[0] + sol[1]).subs(c1, c1p)
    assert_zero(sp.simplify(g - (a0 + q0) * sp.exp(lam.subs(c1, c1p) * t)), "p=1: growing mode")
    g0 = sp.Symbol("g_0", positive=True)
    T_esc = sp.solve(sp.Eq(eps * g0 * sp.exp(lam.subs(c1, c1p) * t), delta), t)[0]
    assert_zero(
        sp.expand(sp.expand_log(T_esc, force=True))
        - (sp.log(1 / eps) + sp.log(delta / g0)) / lam.subs(c1, c1p),
        "p=1: T_esc",
    )
    page.check(
        "p = 1, c1 > 0: a + q = (a0 + q0) exp(lambda t); reaching delta from eps g0 takes (1/lambda)(log(1/eps) + log(delta/g0))."
    )
    page.check(
        "p = 1: with q = w . v/|v|, (da/dt, dq/dt) = A (a, q), A = [[0, c1|v|/alpha], [c1|v|/alpha, 0]], eigenvalues +-|c1||v|/alpha; exp(A t)(a0, q0) solves it (the part of w orthogonal to v is constant)."
    )

    page.text(
        r"Along a stationary orientation $u^*$ of $G$ ($u$ does not move), with $g^* = G(u^*)$ and $K = |c_p g^*|$, the leading-order flow is $\dot a = \frac{c_p}{\alpha} g^* r^p$, $\dot r = \frac{c_p}{\alpha} p\,a\,r^{p-1} g^*$. On the balanced set $p a^2 = r^2$ with $\mathrm{sign}(a) = \mathrm{sign}(c_p g^*)$:"
    )
    page.eq(r"\frac{dr}{dt}", tex(res["r_ode"]))
    page.eq(r"r(t)", tex(res["r_solution"]))
    page.eq(r"T^*", tex(T_star))
    page.eq(r"T_{LO}(\delta)", tex(T_LO) + r" = T^*\left[1 - (r_0/\delta)^{p-1}\right]")
    page.eq(r"T^* - T_{LO}(\delta) = \frac{\alpha}{(p-1)\sqrt{p}\,K\,\delta^{p-1}}")
    page.text(
        r"With $r_0 = \epsilon\rho_0$ (for $w_0 \sim N(0, \epsilon^2 I_D)$, $\rho_0 \approx \sqrt D$):"
    )
    page.eq(r"T^*", tex(res["T_star_eps"]) + r" \propto \epsilon^{-(p-1)}")
    page.text(r"$p = 1$: $G(w) = w\cdot v$; with $q = w\cdot v/|v|$,")
    page.eq(
        r"\frac{d}{dt}\begin{pmatrix}a\\ q\end{pmatrix}",
        tex(A) + r"\begin{pmatrix}a\\ q\end{pmatrix},\qquad \lambda = " + tex(lam),
    )
    page.text(
        r"so the growing mode is $\propto \epsilon e^{\lambda t}$ and reaches a fixed $\delta$ at $T_{esc} = \frac{1}{\lambda}\log\frac{1}{\epsilon} + O(1)$."
    )
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
