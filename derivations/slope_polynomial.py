"""Condensed orientations for 1D input with bias ([ZZJLZX22], docs/theory.md §5).

With ``x~_i = (x_i, 1)`` (D = 2) and ``G(u) = (1/n) sum_i y_i (u . x~_i)^p``, a
direction u on the unit circle is stationary for the direction flow iff
``Q(u) = u2 dG/du1 - u1 dG/du2 = 0`` (``dG(cos phi, sin phi)/dphi = -Q``).  Q is
homogeneous of degree p, so ``Q(u) = u2^p P(s)`` with ``s = u1/u2`` and

    P(s) = (p/n) sum_i y_i (x_i - s) (1 + s x_i)^(p-1),

a polynomial of degree at most p whose s^p coefficient is
``-(p/n) sum_i y_i x_i^(p-1)``.  Each real root is a line through 0 (two
orientations +-u): at most p lines, 2p orientations.  When
``sum_i y_i x_i^(p-1) = 0`` the degree drops and the missing root sits at
s = infinity (u = (+-1, 0), Q(1, 0) = 0); when P is identically zero every
direction is stationary (degenerate, reported rather than counted).

References
----------
[ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
condensation of neural networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sympy as sp

from derivations._common import Page, assert_zero, tex, vector

NAME = "slope_polynomial"
TITLE = "1D input + bias: stationary slope s = u1/u2 solves a degree-p polynomial (<= p lines, <= 2p orientations)"

P_VALUES = (1, 2, 3, 4)
N_POINTS = 3


def _G(u1, u2, x, y, p):
    return sp.Add(*[yi * (u1 * xi + u2) ** p for xi, yi in zip(x, y, strict=True)]) / len(x)


def derive() -> dict:
    """Form G, Q and the slope polynomial P for p = 1..4 (n = 3 symbolic points).

    Returns
    -------
    dict with keys ``symbols`` {"s", "u1", "u2", "phi", "x", "y"} and ``by_p``:
    {p: {"G", "Q", "P", "P_closed", "leading"}} where ``leading`` is the
    coefficient of s^p.
    """
    s, u1, u2, phi = sp.symbols("s u_1 u_2 phi")
    x, y = vector("x", N_POINTS), vector("y", N_POINTS)
    by_p = {}
    for p in P_VALUES:
        G = _G(u1, u2, x, y, p)
        Q = sp.expand(u2 * sp.diff(G, u1) - u1 * sp.diff(G, u2))
        P = sp.expand(Q.subs({u1: s, u2: 1}))
        closed = sp.Rational(p, N_POINTS) * sp.Add(
            *[yi * (xi - s) * (1 + s * xi) ** (p - 1) for xi, yi in zip(x, y, strict=True)]
        )
        leading = -sp.Rational(p, N_POINTS) * sp.Add(
            *[yi * xi ** (p - 1) for xi, yi in zip(x, y, strict=True)]
        )
        by_p[p] = {"G": G, "Q": Q, "P": P, "P_closed": closed, "leading": leading}
    return {"symbols": {"s": s, "u1": u1, "u2": u2, "phi": phi, "x": x, "y": y}, "by_p": by_p}


def count_orientations(P_numeric, s, G_prime, phi, grid: int = 20001):
    """(2 * number of real roots of P, number of sign changes of G'(phi) on [0, 2 pi))."""
    coeffs = [float(c) for c in sp.Poly(P_numeric, s).all_coeffs()]
    roots = np.roots(coeffs)
    n_real = int(np.sum(np.abs(roots.imag) < 1e-9))
    f = sp.lambdify(phi, G_prime, "numpy")
    values = f(np.linspace(0.0, 2 * np.pi, grid, endpoint=False) + 1e-3)
    changes = int(np.sum(np.sign(values) != np.sign(np.roll(values, 1))))
    return 2 * n_real, changes


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``slope_polynomial.md``."""
    res = derive()
    sy = res["symbols"]
    s, u1, u2, phi, x, y = (sy[k] for k in ("s", "u1", "u2", "phi", "x", "y"))
    lam = sp.Symbol("lambda")
    page = Page(
        NAME,
        "Slope polynomial for 1D input with bias",
        "[ZZJLZX22]; docs/theory.md §5 (case 1D input with bias)",
    )
    rng = np.random.default_rng(0)
    for p, q in res["by_p"].items():
        G, Q, P = q["G"], q["Q"], q["P"]
        on_circle = {u1: sp.cos(phi), u2: sp.sin(phi)}
        G_prime = sp.diff(G.subs(on_circle), phi)
        assert_zero(G_prime + Q.subs(on_circle), f"p={p}: dG/dphi = -Q")
        assert_zero(Q.subs({u1: lam * u1, u2: lam * u2}) - lam**p * Q, f"p={p}: Q homogeneous")
        assert_zero(Q - u2**p * P.subs(s, u1 / u2), f"p={p}: Q = u2^p P(u1/u2)")
        assert_zero(P - q["P_closed"], f"p={p}: closed form of P")
        assert sp.degree(P, s) <= p
        assert_zero(P.coeff(s, p) - q["leading"], f"p={p}: leading coefficient")
        assert_zero(Q.subs({u1: 1, u2: 0}) - q["leading"], f"p={p}: Q(1, 0)")
        assert_zero(G.subs({u1: -u1, u2: -u2}) - (-1) ** p * G, f"p={p}: G(-u) = (-1)^p G(u)")
        # Degenerate data: sum y x^(p-1) = 0 puts a root at infinity.
        xd = [-1, 1, 2]
        yd = [1, 2, -sp.Rational(1 * (-1) ** (p - 1) + 2, 2 ** (p - 1))]
        deg_data = dict(zip(x, xd, strict=True)) | dict(zip(y, yd, strict=True))
        assert q["leading"].subs(deg_data) == 0
        P_deg = sp.expand(P.subs(deg_data))
        assert P_deg != 0 and sp.degree(P_deg, s) == p - 1, (p, P_deg)
        assert Q.subs(deg_data).subs({u1: 1, u2: 0}) == 0
        # Generic numeric data: real roots of P <-> sign changes of G'(phi).
        for _ in range(3):
            data = dict(zip(x, rng.normal(size=N_POINTS), strict=True))
            data |= dict(zip(y, rng.normal(size=N_POINTS), strict=True))
            from_roots, from_grid = count_orientations(P.subs(data), s, G_prime.subs(data), phi)
            assert from_roots == from_grid <= 2 * p, (p, from_roots, from_grid)
            assert abs(float(q["leading"].subs(data))) > 1e-12
    # G' = 0 identically: p = 2, M = (1/n) sum y x~ x~^T proportional to I.
    ident = dict(zip(x, [1, -1, 0], strict=True)) | dict(zip(y, [1, 1, 0], strict=True))
    assert sp.expand(res["by_p"][2]["P"].subs(ident)) == 0

    page.check(
        "p = 1..4: dG(cos phi, sin phi)/dphi = -Q(cos phi, sin phi) with Q = u2 dG/du1 - u1 dG/du2."
    )
    page.check("p = 1..4: Q(lambda u) = lambda^p Q(u) and Q(u) = u2^p P(u1/u2).")
    page.check(
        "p = 1..4: P(s) = (p/n) sum_i y_i (x_i - s)(1 + s x_i)^(p-1), deg P <= p, s^p coefficient -(p/n) sum_i y_i x_i^(p-1) = Q(1, 0)."
    )
    page.check("p = 1..4: G(-u) = (-1)^p G(u).")
    page.check(
        "p = 1..4, data x = (-1, 1, 2) with sum y x^(p-1) = 0: deg P = p - 1 and u = (1, 0) is stationary (root at s = infinity)."
    )
    page.check(
        "p = 1..4, 3 random data sets each: 2 x (real roots of P) equals the number of sign changes of G'(phi) on the circle, and is <= 2p."
    )
    page.check(
        "p = 2, x = (1, -1), y = (1, 1): P = 0 identically (M = I): every direction stationary, a degenerate case."
    )

    page.text(
        r"Input $\tilde x_i = (x_i, 1)$, $G(u) = \frac1n\sum_i y_i(u_1 x_i + u_2)^p$. On the circle $u = (\cos\varphi, \sin\varphi)$:"
    )
    page.eq(
        r"\frac{dG}{d\varphi} = -Q(u),\qquad Q(u) = u_2\,\partial_1 G - u_1\,\partial_2 G = u_2^p\,P(s),\quad s = u_1/u_2"
    )
    page.eq(
        r"P(s) = \frac{p}{n}\sum_i y_i\,(x_i - s)\,(1 + s x_i)^{p-1} = -\frac{p}{n}\Big(\sum_i y_i x_i^{p-1}\Big)s^p + \dots + \frac{p}{n}\sum_i y_i x_i"
    )
    page.text(
        r"$Q$ is a binary form of degree $p$: it vanishes on at most $p$ lines, i.e. at most $2p$ orientations $\pm u$ (for odd $p$ a maximum at $u$ is a minimum at $-u$; for even $p$, $G(-u) = G(u)$). If $\sum_i y_i x_i^{p-1} = 0$ the degree of $P$ drops and the line $u_2 = 0$ is stationary (root at infinity). If $P \equiv 0$, $G' \equiv 0$: degenerate, report it."
    )
    for p in (1, 2):
        page.eq(rf"p = {p}:\quad P(s)", tex(sp.collect(res["by_p"][p]["P"], s)))
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
