"""One attention layer at small initialization: condensation, then rank collapse ([CL25]).

Model (docs/theory.md, attention): ``f(X) = sigma(a(X) X WV W1) W2`` with
``a(X) = softmax(X_s WQ WK^T X^T / sqrt(d))`` the last token's attention row,
exponential loss ``L = (1/n) sum_i exp(-y_i f(X_i))``.  Worked at d = h = 2,
s = 2 (stage 1) or s = 3 (stage 2), n = 2 (n = 1), with
``sigma(z) = c1 z + c2 z^2 + c3 z^3``, which fixes every term below eps^7:

(i)   ``softmax(eps^2 z) = 1/s + eps^2 (z - zbar)/s + O(eps^4)``;
      ``f = eps^3 c1 xbar WV W1 W2 + O(eps^5)`` (no eps^4 term) and
      ``L = 1 - eps^3 c1 (|S|/(n s)) E + O(eps^5)``, ``E = v WV W1 W2``,
      ``v = S/|S|``, ``S = sum_i y_i sum_j X_ij``: the prefactor is 1/n;
(ii)  with ``tbar = eps c1 |S| t/(n s)`` the normalized flow is
      ``grad E + O(eps^2)``; WQ, WK get ``O(eps^2)`` in tbar;
(iii) ``wv_k^2 - |W1_k.|^2``, ``W2_c^2 - |W1_.c|^2`` and ``(I - v v^T) WV`` are
      conserved, ``d|wv|^2/dtbar = 2E``;
(iv)  ``dE/dtbar = |W1 W2|^2 + |wv|^2 |W2|^2 + |wv W1|^2 >= 3 E^(4/3)``, so
      ``d(E^(-1/3))/dtbar <= -1`` and ``T* <= E(0)^(-1/3)`` (equality on the
      balanced rank-one set);
(v)   with frozen outer weights and small WQ, WK (identity outer activation):
      ``dWQ/dt = F WK``, ``dWK/dt = F^T WQ``,
      ``F = (1/(n s sqrt d)) sum_i y_i L1_i X_is^T u^T C_i``, ``C_i`` the centred
      scatter (symmetric); the cosh/sinh solution through the SVD of F, and
      sigma_2/sigma_1 of WQ falling like ``exp(-(s_1 - s_2) t)``.

Each symbolic identity is also checked numerically on a small random case
(complex-step derivatives of the full loss, ``scipy.linalg.expm``).

References
----------
[CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis of
transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sympy as sp

from derivations._common import Page, assert_zero, eps_series, matrix, tex, vector

NAME = "attention"
TITLE = "attention [CL25]: L = 1 - eps^3 c1 (|S|/(n s)) E (prefactor 1/n, not 1/(2n)), grad-ascent of E = v WV W1 W2, invariants, T* <= E(0)^(-1/3); stage 2: dWQ/dt = F WK, rate s1 - s2"

D, H, S_TOKENS, N_SEQ = 2, 2, 2, 2
ORDER = 6  # keep eps^0 .. eps^5


def _softmax_series(s: int, eps: sp.Symbol) -> tuple[list, list]:
    """softmax(eps^2 z) by sp.series to O(eps^4), and the claimed 1/s + eps^2 (z - zbar)/s."""
    z = vector("z", s)
    zbar = sp.Add(*z) / s
    total = sp.Add(*[sp.exp(eps**2 * zj) for zj in z])
    series = [sp.series(sp.exp(eps**2 * zj) / total, eps, 0, 4).removeO() for zj in z]
    claimed = [sp.Rational(1, s) + eps**2 * (zj - zbar) / s for zj in z]
    return series, claimed


def _model(eps):
    """Symbols and the stage-1 expansion of the loss (normalized weights, truncated)."""
    c1, c2, c3 = sp.symbols("c_1 c_2 c_3", real=True)
    act = sp.Lambda(sp.Symbol("x"), c1 * sp.Symbol("x") + c2 * sp.Symbol("x") ** 2
                    + c3 * sp.Symbol("x") ** 3)  # fmt: skip
    WQ, WK, WV = matrix(r"\bar{Q}", D, D), matrix(r"\bar{K}", D, D), matrix(r"\bar{V}", D, D)
    W1, W2 = matrix(r"\bar{W}^{1}", D, H), sp.Matrix(vector(r"\bar{W}^{2}", H))
    X = [matrix(f"X^{{({i + 1})}}", S_TOKENS, D) for i in range(N_SEQ)]
    y = vector("y", N_SEQ)
    f = []
    for Xi in X:
        # logits eps^2 z_j with the claimed softmax expansion (checked separately)
        z = [(Xi.row(S_TOKENS - 1) * WQ * WK.T * Xi.row(j).T)[0, 0] / sp.sqrt(D)
             for j in range(S_TOKENS)]  # fmt: skip
        zbar = sp.Add(*z) / S_TOKENS
        a = sp.Matrix([[sp.Rational(1, S_TOKENS) + eps**2 * (zj - zbar) / S_TOKENS for zj in z]])
        pre = a * Xi * (eps * WV) * (eps * W1)
        f.append(sp.Add(*[act(p) * eps * w for p, w in zip(pre, W2, strict=True)]))
    # eps_series works on the unexpanded tree and drops eps^ORDER and beyond as it goes
    f_coeffs = [eps_series(fi, eps, ORDER) for fi in f]
    # exp(-y f) = 1 - y f + y^2 f^2/2 - ..., f = O(eps^3): below eps^6 only 1 - y f remains
    L = sp.Add(*[1 - yi * sum(c * eps**k for k, c in fc.items())
                 for yi, fc in zip(y, f_coeffs, strict=True)]) / N_SEQ  # fmt: skip
    S = sp.zeros(1, D)
    for yi, Xi in zip(y, X, strict=True):
        for j in range(S_TOKENS):
            S += yi * Xi.row(j)
    return {
        "c1": c1, "c2": c2, "c3": c3, "WQ": WQ, "WK": WK, "WV": WV, "W1": W1, "W2": W2,
        "X": X, "y": y, "f": f, "f_coeffs": f_coeffs, "L": L, "S": S,
    }  # fmt: skip


def lo_rhs(v, WV, W1, W2):
    """Leading-order flow (grad E) of the cubic energy ``E = v WV W1 W2``; v a row, W2 a column."""
    return v.T * (W1 * W2).T, (v * WV).T * W2.T, (v * WV * W1).T


def stage2_F(X: list, y: list, u: sp.Matrix, d: int):
    """``F = (1/(n s sqrt d)) sum_i y_i L1_i X_is^T u^T C_i`` for identity outer activation."""
    n, s = len(X), X[0].rows
    F = sp.zeros(d, d)
    for Xi, yi in zip(X, y, strict=True):
        xbar = sp.Add(*[Xi.row(j) for j in range(s)]) / s
        C = sp.Add(*[(Xi.row(j) - xbar).T * (Xi.row(j) - xbar) for j in range(s)])
        L1 = sp.exp(-yi * (xbar * u)[0, 0])
        F += yi * L1 * Xi.row(s - 1).T * u.T * C
    return F / (n * s * sp.sqrt(d))


def derive() -> dict:
    """Stage-1 expansion and stage-2 matrix F, symbolically.

    Returns
    -------
    dict with keys ``symbols`` (eps and the model's symbols), ``f_coeffs`` (eps-coefficients
    of each f_i), ``L_coeffs`` (of the loss), ``E`` (the cubic energy with v = S/|S|),
    ``time_factor`` (tbar = time_factor * t for the normalized weights),
    ``softmax`` ((series, claimed)), ``lo_rhs`` and ``stage2_F`` (functions).
    """
    eps = sp.Symbol("epsilon", positive=True)
    m = _model(eps)
    Snorm = sp.sqrt(sp.expand((m["S"] * m["S"].T)[0, 0]))
    v = m["S"] / Snorm
    E = (v * m["WV"] * m["W1"] * m["W2"])[0, 0]
    return {
        "symbols": {
            "eps": eps,
            **{k: m[k] for k in ("c1", "c2", "c3", "WQ", "WK", "WV", "W1", "W2", "X", "y", "S")},
        },  # fmt: skip
        "f_coeffs": m["f_coeffs"],
        "L_coeffs": eps_series(m["L"], eps, ORDER),
        "L": m["L"],
        "E": E,
        "v": v,
        "Snorm": Snorm,
        "time_factor": eps * m["c1"] * Snorm / (N_SEQ * S_TOKENS),
        "softmax": _softmax_series(3, eps),
        "lo_rhs": lo_rhs,
        "stage2_F": stage2_F,
    }


def main(out_dir: Path | str | None = None) -> Path:  # noqa: C901 - one page, step by step
    """Derive, assert, and write ``attention.md``."""
    res = derive()
    sy = res["symbols"]
    c1, c2 = sy["c1"], sy["c2"]
    WQ, WK, WV, W1, W2, X, y, S = (sy[k] for k in ("WQ", "WK", "WV", "W1", "W2", "X", "y", "S"))
    page = Page(NAME, "One attention layer: condensation, then rank collapse [CL25]",
                "[CL25] Chen, Luo, NeurIPS 2025, arXiv:2510.06954; docs/theory.md, attention")  # fmt: skip

    # (i) softmax at small logits, output and loss expansion.
    series, claimed = res["softmax"]
    for got, want in zip(series, claimed, strict=True):
        assert_zero(got - want, "softmax(eps^2 z) to O(eps^4)")
    page.check("s = 3: softmax_j(eps^2 z) = 1/s + eps^2 (z_j - zbar)/s + O(eps^4) (sympy series).")
    for i, fc in enumerate(res["f_coeffs"]):
        xbar = sp.Add(*[X[i].row(j) for j in range(S_TOKENS)]) / S_TOKENS
        assert min(k for k, c in fc.items() if not sp.expand(c) == 0) == 3
        assert_zero(fc[3] - c1 * (xbar * WV * W1 * W2)[0, 0], f"f_{i + 1} at eps^3")
        assert sp.expand(fc.get(4, 0)) == 0 and sp.expand(fc.get(2, 0)) == 0
        z = [(X[i].row(S_TOKENS - 1) * WQ * WK.T * X[i].row(j).T)[0, 0] / sp.sqrt(D)
             for j in range(S_TOKENS)]  # fmt: skip
        zbar = sp.Add(*z) / S_TOKENS
        attn = sp.Add(*[(zj - zbar) * X[i].row(j) for j, zj in enumerate(z)]) / S_TOKENS
        five = c1 * (attn * WV * W1 * W2)[0, 0] + c2 * sum(
            (xbar * WV * W1)[c] ** 2 * W2[c] for c in range(H)
        )
        assert_zero(fc[5] - five, f"f_{i + 1} at eps^5")
    page.check(
        "sigma = c1 z + c2 z^2 + c3 z^3, d = h = s = n = 2: f_i = eps^3 c1 xbar_i WV W1 W2 + "
        "eps^5 [c1 (1/s) sum_j (z_j - zbar) X_ij WV W1 W2 + c2 sum_c (xbar_i WV W1)_c^2 W2_c] "
        "+ O(eps^7) (no eps^2, eps^4, eps^6 terms below eps^7; WQ, WK first enter at eps^5)."
    )
    Lc = res["L_coeffs"]
    assert sp.expand(Lc[0]) == 1, Lc[0]
    assert all(sp.expand(Lc.get(k, 0)) == 0 for k in (1, 2, 4))
    energy = c1 * res["Snorm"] / (N_SEQ * S_TOKENS) * res["E"]
    assert_zero(Lc[3] + energy, "L at eps^3 = -c1 (|S|/(n s)) E")
    Sdot = sp.Add(*[y[i] * sp.Add(*[X[i].row(j) for j in range(S_TOKENS)]) for i in range(N_SEQ)])
    assert_zero(Sdot - S, "S = sum_i y_i sum_j X_ij")
    page.check(
        "exponential loss: L = 1 - eps^3 c1 (|S|/(n s)) E + O(eps^5), E = v WV W1 W2, v = S/|S|: "
        "L(eps = 0) = 1, so the prefactor of the bracket is 1/n."
    )
    page.correction(
        "[CL25] print L = (1/(2n)) sum_i [1 - eps^3 (...) + o(eps^3)] (Eq. 5); that gives L = 1/2 "
        "at eps = 0, while exp(-y f) = 1 at f = 0: the prefactor is 1/n (the 1/2 belongs to the "
        "squared loss). With it, the eps^3 coefficient is -c1 (1/n) sum_i y_i xbar_i WV W1 W2 = "
        "-c1 (|S|/(n s)) E. docs/theory.md states 1/n and asks for this check: confirmed."
    )
    page.correction(
        "The time rescaling carries c1 = sigma'(0): tbar = eps c1 |S| t/(n s) (for normalized "
        "weights W/eps; c1 |S| t/(n s) for the net's own weights). docs/theory.md's "
        "tbar = (eps/(n s)) |S| t is the tanh case c1 = 1; for c1 < 0 the flow ascends -E "
        "(use v = sign(c1) S/|S|)."
    )

    # (ii) the normalized flow is grad E in tbar; WQ, WK are O(eps^2).
    # d(theta_bar)/dt = -(1/eps^2) dL/d(theta_bar) = eps (c1/(n s)) grad(S WV W1 W2) + O(eps^3),
    # and S WV W1 W2 = |S| E: divided by dtbar/dt = eps c1 |S|/(n s) it is grad E + O(eps^2).
    # L is a polynomial in eps here (truncated), so dL/dtheta_bar has the coefficients dL_k/dtheta_bar.
    rhs = lo_rhs(S, WV, W1, W2)  # grad of S WV W1 W2 = |S| grad E
    assert_zero((S * WV * W1 * W2)[0, 0] - res["Snorm"] * res["E"], "S WV W1 W2 = |S| E")
    blocks = {"WV": (WV, rhs[0]), "W1": (W1, rhs[1]), "W2": (W2, rhs[2])}
    for name, (M, R) in blocks.items():
        for idx in np.ndindex(M.shape):
            lead = -sp.diff(Lc[3], M[idx])
            assert_zero(lead - c1 / (N_SEQ * S_TOKENS) * R[idx], f"d{name}{idx}/dtbar = grad E")
            assert_zero(R[idx] - sp.diff((S * WV * W1 * W2)[0, 0], M[idx]), f"grad, {name}{idx}")
    attention = set(WQ) | set(WK)
    assert not any(Lc.get(k, sp.S.Zero).free_symbols & attention for k in range(5))
    assert Lc[5].free_symbols & attention
    page.check(
        "with tbar = eps c1 |S| t/(n s): d(theta_bar)/dtbar = grad E + O(eps^2) for WV, W1, W2, "
        "with grad E = (v^T (W1 W2)^T, (v WV)^T W2^T, (v WV W1)^T); dL/dWQ_bar, dL/dWK_bar = "
        "O(eps^5), so WQ, WK move O(eps^2) in tbar (O(eps^4) against O(eps^2) in t)."
    )

    # (iii) conserved quantities, d = 2, h = 3, v a general row with |v|^2 = vsq; unit v: vsq = 1.
    d, h = 2, 3
    vu = sp.Matrix([vector("v", d)])
    vsq = (vu * vu.T)[0, 0]
    V_, W1_, W2_ = matrix("V", d, d), matrix("W", d, h), sp.Matrix(vector("w", h))
    dV, dW1, dW2 = lo_rhs(vu, V_, W1_, W2_)
    wv, dwv = vu * V_, vu * dV
    assert_zero(dwv - vsq * (W1_ * W2_).T, "dwv/dtbar = |v|^2 (W1 W2)^T")
    dwv = (W1_ * W2_).T  # from here on |v| = 1
    for k in range(d):
        row = 2 * wv[k] * dwv[k] - sum(2 * W1_[k, c] * dW1[k, c] for c in range(h))
        assert_zero(row, f"d/dtbar (wv_{k + 1}^2 - |W1 row|^2)")
    for c in range(h):
        col = 2 * W2_[c] * dW2[c] - sum(2 * W1_[k, c] * dW1[k, c] for k in range(d))
        assert_zero(col, f"d/dtbar (W2_{c + 1}^2 - |W1 column|^2)")
    proj = vsq * sp.eye(d) - vu.T * vu  # |v|^2 times the projector on v's complement
    assert_zero(proj * dV, "(I - v^T v) dWV/dtbar = 0")
    Ecub = (wv * W1_ * W2_)[0, 0]
    assert_zero((2 * wv * dwv.T)[0, 0] - 2 * Ecub, "d|wv|^2/dtbar = 2E")
    assert_zero(sp.Add(*[2 * W2_[c] * dW2[c] for c in range(h)]) - 2 * Ecub, "d|W2|^2 = 2E")
    page.check(
        "unit v (d = 2, h = 3): wv_k^2 - |row k of W1|^2 and W2_c^2 - |column c of W1|^2 are "
        "conserved, (I - v^T v) WV does not move (WV - WV(0) is rank one along v), and "
        "d|wv|^2/dtbar = d|W2|^2/dtbar = 2E."
    )

    # (iv) dE/dtbar >= 3 E^(4/3) and the blow-up bound.
    dE = sum((sp.diff(Ecub, q) * r) for Mq, Mr in ((V_, dV), (W1_, dW1), (W2_, dW2))
             for q, r in zip(Mq, Mr, strict=True))  # fmt: skip
    u = W1_ * W2_
    A, B = vsq * (u.T * u)[0, 0], (wv * wv.T)[0, 0] * (W2_.T * W2_)[0, 0]
    C = ((wv * W1_) * (wv * W1_).T)[0, 0]
    assert_zero(dE - (A + B + C), "dE/dtbar = |v|^2 |W1 W2|^2 + |wv|^2 |W2|^2 + |wv W1|^2")
    a_, b_ = vector("a", 3), vector("b", 3)
    lagrange = sum((a_[i] * b_[j] - a_[j] * b_[i]) ** 2 for i in range(3) for j in range(i + 1, 3))
    lhs = (
        sum(x**2 for x in a_) * sum(x**2 for x in b_)
        - sum(p * q for p, q in zip(a_, b_, strict=True)) ** 2
    )
    assert_zero(lhs - lagrange, "Lagrange identity (Cauchy-Schwarz)")
    p_, q_, r_ = sp.symbols("p q r", nonnegative=True)
    amgm = (p_ + q_ + r_) * ((p_ - q_) ** 2 + (q_ - r_) ** 2 + (r_ - p_) ** 2) / 2
    assert_zero(p_**3 + q_**3 + r_**3 - 3 * p_ * q_ * r_ - amgm, "AM-GM for three terms")
    tb = sp.Symbol("tbar", nonnegative=True)
    Ef = sp.Function("E")
    # d(E^(-1/3))/dt = -(1/3) E^(-4/3) dE/dt, equal to -1 when dE/dt = 3 E^(4/3)
    assert sp.simplify(sp.diff(Ef(tb) ** sp.Rational(-1, 3), tb).subs(
        sp.Derivative(Ef(tb), tb), 3 * Ef(tb) ** sp.Rational(4, 3))) == -1  # fmt: skip
    tau = sp.Symbol("tau", positive=True)  # E0^(-1/3) - tbar > 0 before the blow-up
    extremal = tau**-3  # d/dtbar = -d/dtau
    assert_zero(-sp.diff(extremal, tau) - 3 * extremal ** sp.Rational(4, 3),
                "E = (E0^(-1/3) - t)^(-3) solves dE/dt = 3 E^(4/3)")  # fmt: skip
    # equality on the balanced rank-one set wv = r p, W1 = r p^T q, W2 = r q (unit v, p, q)
    unit_v = sp.Matrix([[sp.Rational(5, 13), sp.Rational(12, 13)]])
    pu = sp.Matrix([[sp.Rational(3, 5), sp.Rational(4, 5)]])
    qu = sp.Matrix([[sp.Rational(2, 7), sp.Rational(3, 7), sp.Rational(6, 7)]])
    rr = sp.Symbol("r", positive=True)
    pairs = ((V_, unit_v.T * rr * pu), (W1_, rr * pu.T * qu), (W2_, rr * qu.T), (vu, unit_v))
    bal = {k: val for M, value in pairs for k, val in zip(M, value, strict=True)}
    assert_zero(dE.subs(bal) - 3 * rr**4, "balanced: dE/dtbar = 3 r^4")
    assert_zero(Ecub.subs(bal) - rr**3, "balanced: E = r^3")
    page.check(
        "dE/dtbar = |grad E|^2 = |W1 W2|^2 + |wv|^2 |W2|^2 + |wv W1|^2; with E^2 <= |wv|^2 |W1 W2|^2 "
        "and E^2 <= |wv W1|^2 |W2|^2 (Lagrange identity) and AM-GM (x^3 + y^3 + z^3 - 3xyz = "
        "(x+y+z)((x-y)^2 + (y-z)^2 + (z-x)^2)/2): dE/dtbar >= 3 E^(4/3), so d(E^(-1/3))/dtbar <= -1, "
        "E(tbar) >= (E0^(-1/3) - tbar)^(-3) and T* <= E0^(-1/3); equality on the balanced "
        "rank-one set (E = r^3, dE/dtbar = 3 r^4), where E^(-1/3) falls with slope exactly -1."
    )

    # (v) stage 2: linearization of the WQ, WK flow (identity outer activation), s = 3, n = 1.
    d2, s2 = 2, 3
    Xs = [matrix("x", s2, d2)]
    ys = sp.Symbol("y", real=True)
    uu = sp.Matrix(vector("u", d2))
    Qm, Km = matrix("Q", d2, d2), matrix("K", d2, d2)
    delta = sp.Symbol("delta", positive=True)
    Xi = Xs[0]
    z = [(Xi.row(s2 - 1) * Qm * Km.T * Xi.row(j).T)[0, 0] / sp.sqrt(d2) for j in range(s2)]
    ex = [sp.exp(zj) for zj in z]
    f2 = sp.Add(*[ex[j] * (Xi.row(j) * uu)[0, 0] for j in range(s2)]) / sp.Add(*ex)
    loss2 = sp.exp(-ys * f2)
    F = stage2_F(Xs, [ys], uu, d2)
    A0, B0 = matrix("A", d2, d2), matrix("B", d2, d2)
    scale = {**{Qm[i]: delta * A0[i] for i in range(d2 * d2)},
             **{Km[i]: delta * B0[i] for i in range(d2 * d2)}}  # fmt: skip
    for M, partner, Fm in ((Qm, B0, F), (Km, A0, F.T)):
        lin = Fm * partner
        for idx in np.ndindex(d2, d2):
            flow = -sp.diff(loss2, M[idx]).subs(scale)
            first = sp.diff(flow, delta).subs(delta, 0)
            assert flow.subs(delta, 0) == 0
            assert_zero(sp.expand(first - lin[idx], power_exp=True), f"stage-2 linearization {idx}")
    xbar = sp.Add(*[Xi.row(j) for j in range(s2)]) / s2
    Cs = sp.Add(*[(Xi.row(j) - xbar).T * (Xi.row(j) - xbar) for j in range(s2)])
    Cr = sp.Add(*[Xi.row(j).T * (Xi.row(j) - xbar) for j in range(s2)])
    assert_zero(Cs - Cr, "C = sum_j X_j^T (X_j - xbar) is the centred scatter (symmetric)")
    page.check(
        "d = 2, s = 3, n = 1, identity outer activation, WQ = delta A, WK = delta B: -dL/dWQ = "
        "delta F B + O(delta^2) and -dL/dWK = delta F^T A + O(delta^2) with "
        "F = (1/(n s sqrt d)) sum_i y_i exp(-y_i xbar_i u) X_is^T u^T C_i; "
        "C_i = sum_j X_ij^T (X_ij - xbar_i) is symmetric."
    )
    # cosh/sinh solution through the SVD: F = P diag(s) Q^T, P, Q rotations.
    tt = sp.Symbol("t", real=True)
    sv = sp.symbols("s_1 s_2", positive=True)
    P = sp.Matrix([[3, -4], [4, 3]]) / 5
    Qr = sp.Matrix([[5, 12], [12, -5]]) / 13
    assert_zero(P.T * P - sp.eye(2), "P orthogonal")
    Fs = P * sp.diag(*sv) * Qr.T
    ch = sp.diag(*[sp.cosh(si * tt) for si in sv])
    sh = sp.diag(*[sp.sinh(si * tt) for si in sv])
    WQt = P * ch * P.T * A0 + P * sh * Qr.T * B0
    WKt = Qr * sh * P.T * A0 + Qr * ch * Qr.T * B0
    assert_zero(sp.expand(WQt.diff(tt) - Fs * WKt), "dWQ/dt = F WK")
    assert_zero(sp.expand(WKt.diff(tt) - Fs.T * WQt), "dWK/dt = F^T WQ")
    assert_zero(WQt.subs(tt, 0) - A0, "WQ(0)")
    page.check(
        "with F = P diag(s) Q^T: WQ(t) = P cosh(S t) P^T WQ0 + P sinh(S t) Q^T WK0 and "
        "WK(t) = Q sinh(S t) P^T WQ0 + Q cosh(S t) Q^T WK0 solve dWQ/dt = F WK, dWK/dt = F^T WQ "
        "(d = 2, P, Q rotations); so WQ ~ e^(s1 t) p1 c/2, WK ~ e^(s1 t) q1 c/2 with "
        "c = p1^T WQ0 + q1^T WK0, WQ WK^T ~ p1 q1^T, and d^2 WQ/dt^2 = F F^T WQ."
    )
    _numeric_checks(page)

    page.text(
        r"Model: $f(X) = \sigma\big(a(X)\,X W_V W_1\big) W_2$, $a(X) = \mathrm{softmax}(X_s W_Q W_K^T X^T/\sqrt d)$, "
        r"$L = \frac1n\sum_i e^{-y_i f(X_i)}$; all weights $\epsilon\,\bar W$, $\sigma(z) = c_1 z + c_2 z^2 + \dots$"
    )
    page.eq(
        r"\mathrm{softmax}_j(\epsilon^2 z)",
        tex(claimed[0]).replace("z_{1}", "z_j") + r" + O(\epsilon^4)",
    )
    page.eq(
        r"L = 1 - \epsilon^3 c_1 \frac{|S|}{n s} E + O(\epsilon^5),\quad E = v \bar W_V \bar W_1 \bar W_2,\quad v = \frac{S}{|S|},\quad S = \sum_i y_i \sum_j X_{ij}"
    )
    page.eq(
        r"\bar t = \frac{\epsilon c_1 |S|}{n s} t:\quad \frac{d\bar W_V}{d\bar t} = v^T (\bar W_1 \bar W_2)^T,\ \frac{d\bar W_1}{d\bar t} = (v\bar W_V)^T \bar W_2^T,\ \frac{d\bar W_2}{d\bar t} = (v \bar W_V \bar W_1)^T"
    )
    page.eq(
        r"\frac{dE}{d\bar t} = |W_1W_2|^2 + |w_v|^2|W_2|^2 + |w_vW_1|^2 \ge 3E^{4/3} \ \Rightarrow\ T^* \le E(0)^{-1/3}"
    )
    page.eq(
        r"\frac{dW_Q}{dt} = F W_K,\ \frac{dW_K}{dt} = F^T W_Q,\quad F = "
        + tex(sp.Symbol("F_expr")).replace(
            "F_{expr}", r"\frac{1}{n s \sqrt d}\sum_i y_i e^{-y_i \bar x_i u} X_{is}^T u^T C_i"
        )
    )
    return page.write(out_dir)


def _numeric_checks(page: Page) -> None:
    """The stage-1 flow and F against complex-step derivatives of the full loss (d = 3)."""
    from scipy.linalg import expm

    rng = np.random.default_rng(7)
    n, s, d, h = 4, 4, 3, 2
    X = rng.standard_normal((n, s, d))
    y = rng.choice([-1.0, 1.0], n)

    def loss(WQ, WK, WV, W1, W2):
        z = np.einsum("ia,ab,cb,ijc->ij", X[:, -1, :], WQ, WK, X) / np.sqrt(d)
        a = np.exp(z)
        a = a / a.sum(axis=1, keepdims=True)
        return np.mean(np.exp(-y * (np.tanh(np.einsum("ij,ijc->ic", a, X) @ WV @ W1) @ W2)))

    def grad(params, k):
        G = np.zeros(params[k].shape)
        for idx in np.ndindex(G.shape):
            q = [p.astype(complex) for p in params]
            q[k][idx] += 1e-30j
            G[idx] = loss(*q).imag / 1e-30
        return G

    theta = [rng.standard_normal((d, d)) for _ in range(3)]
    theta += [rng.standard_normal((d, h)), rng.standard_normal(h)]
    S = np.einsum("i,ijd->d", y, X)
    v, kappa = S / np.linalg.norm(S), np.linalg.norm(S) / (n * s)
    WV, W1, W2 = theta[2:]
    wv = v @ WV
    rhs = [np.outer(v, W1 @ W2), np.outer(wv, W2), wv @ W1]
    errors = []
    for eps in (1e-2, 1e-3):
        scaled = [eps * p for p in theta]
        err = max(np.max(np.abs(-grad(scaled, k + 2) / (eps**2 * kappa) - r)) / np.max(np.abs(r))
                  for k, r in enumerate(rhs))  # fmt: skip
        errors.append(err)
    assert errors[1] < 1e-4 and 80 < errors[0] / errors[1] < 120, errors
    # stage 2, tanh kept: u_i = WV W1 (sigma'(h_i) W2), L1_i = exp(-y_i tanh(h_i) W2)
    xbar = X.mean(axis=1)
    hid = xbar @ WV @ W1
    u = ((1 - np.tanh(hid) ** 2) * W2) @ W1.T @ WV.T
    L1 = np.exp(-y * (np.tanh(hid) @ W2))
    C = np.einsum("ija,ijb->iab", X - xbar[:, None], X - xbar[:, None])
    F = np.einsum("i,ia,ic,icb->ab", y * L1, X[:, -1], u, C) / (n * s * np.sqrt(d))
    A, B = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    rel = []
    for delta in (1e-3, 1e-4):
        params = [delta * A, delta * B, WV, W1, W2]
        rel.append(max(np.max(np.abs(-grad(params, 0) - F @ (delta * B))) / np.max(np.abs(F @ (delta * B))),
                       np.max(np.abs(-grad(params, 1) - F.T @ (delta * A))) / np.max(np.abs(F.T @ (delta * A)))))  # fmt: skip
    assert rel[1] < 1e-6 and 80 < rel[0] / rel[1] < 120, rel
    # solution and rate against expm
    P, sv, Qt = np.linalg.svd(F)
    M = np.block([[np.zeros((d, d)), F], [F.T, np.zeros((d, d))]])
    t = 40.0 / sv[0]
    Z = expm(M * t) @ np.vstack([A, B])
    ratio = []
    for tk in (0.8 * t, t):
        WQ = (expm(M * tk) @ np.vstack([A, B]))[:d]
        sq = np.linalg.svd(WQ, compute_uv=False)
        ratio.append(sq[1] / sq[0])
    slope = np.log(ratio[1] / ratio[0]) / (0.2 * t)
    assert abs(slope + (sv[0] - sv[1])) < 1e-3 * (sv[0] - sv[1]), (slope, sv)
    c = P[:, 0] @ A + Qt[0] @ B
    limit = np.outer(P[:, 0], c) / np.linalg.norm(c)
    assert np.max(np.abs(Z[:d] / np.linalg.norm(Z[:d]) - limit)) < 1e-6
    page.check(
        f"numerically (d = 3, h = 2, s = 4, n = 4, tanh, complex-step gradients): the rescaled flow "
        f"of WV, W1, W2 matches grad E to {errors[0]:.1e} at eps = 1e-2 and {errors[1]:.1e} at "
        f"eps = 1e-3 (ratio ~ 100: O(eps^2)); -dL/dWQ, -dL/dWK match F WK, F^T WQ (tanh kept: "
        f"u_i = WV W1 (sigma'(h_i) W2)) to {rel[0]:.1e} and {rel[1]:.1e} at delta = 1e-3, 1e-4 "
        f"(O(delta^2)); with expm, log(sigma_2/sigma_1) of WQ falls at s1 - s2 (rel. 1e-3) and "
        f"WQ/|WQ| -> p1 c/|c|."
    )


if __name__ == "__main__":
    print(main())
