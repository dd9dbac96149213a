"""Dropout's explicit regularizer ([ZX24], docs/theory.md §18).

Dropout with keep probability p multiplies unit k's output on sample i by ``1 + eta_ik``,
``eta = (1-p)/p`` with probability p and ``-1`` otherwise.  The script asserts:

(i) the two-point law has mean 0 and variance ``(1-p)/p``; averaging the squared loss of
    a net whose last hidden layer (outputs ``h_ik``, any function of the input: two- or
    three-layer) is masked, over all 2^(n m) masks (n = 2, m = 3, every symbol free),
    gives ``R + R1``, ``R1 = ((1-p)/(2 n p)) sum_i sum_k (a_k h_ik / alpha)^2``; the same
    with one mask shared by all samples; R1 does not involve the targets.  Dropout on
    the first layer of a three-layer net (sigma(z) = z^2, one unit per layer) instead
    gives an ``E R_drop - R`` that depends on the targets: no penalty of the R1 kind.
(ii) the two-neuron argument: R depends on the units only through their summed output
    vectors ``u = sum_k u_k`` (``u_k = (a_k h_ik)_i``) while ``R1`` is proportional to
    ``sum_k |u_k|^2``; for fixed u this is smallest exactly at ``u_k = u/m`` (all
    units equal, m = 2 and 3); parallel but unequal shares cost more; for fixed norms
    ``|u_1|, |u_2|`` the ratio ``R1 / |u|^2`` decreases with the cosine of their angle.
(iii) the mean dropout-GD step is exactly the GD step on ``R + R1`` (any lr: R1 has no
    lr in it); the one-step map of GD matches the flow of ``L + (lr/4)|grad L|^2`` to
    O(lr^2) for any smooth L ([BD21]), the 1/4 being the only such coefficient;
    ``E|grad R_drop|^2 = |grad (R + R1)|^2 + E|grad R_drop - grad (R + R1)|^2``, which
    splits [ZX24]'s learning-rate term into that of R + R1 and a noise part; with
    gradient noise of fixed variance (linear model) the spread of the iterates at
    fixed time is O(lr).

References
----------
[ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024. arXiv:2207.05952.
[BD21] Barrett, Dherin. Implicit gradient regularization. ICLR 2021. arXiv:2009.11162.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import Page, assert_zero, dot, is_zero, matrix, sigma, vector

NAME = "dropout"
TITLE = "E_eta R_drop = R + R1 (last hidden layer); R1 ~ sum_k |u_k|^2 is least at u_k = u/m; mean step = GD on R + R1"

N_POINTS, WIDTH = 2, 3


def expect(expr: sp.Expr, etas, p: sp.Expr) -> sp.Expr:
    """Exact expectation over independent two-point ``eta``s: eta = (1-p)/p w.p. p, else -1."""
    for eta in etas:
        expr = sp.expand(p * expr.subs(eta, (1 - p) / p) + (1 - p) * expr.subs(eta, -1))
    return expr


def _masked_loss(a, h, y, alpha, masks):
    """``1/(2n) sum_i ((1/alpha) sum_k a_k h_ik masks_ik - y_i)^2``; h, masks: (n, m)."""
    n, m = h.shape
    f = [sp.Add(*[a[k] * h[i, k] * masks[i, k] for k in range(m)]) / alpha for i in range(n)]
    return sp.Add(*[(f[i] - y[i]) ** 2 for i in range(n)]) / (2 * n)


def derive() -> dict:
    """The expectation identity, the two-neuron inequalities and the step analysis.

    Returns
    -------
    dict with keys ``symbols``; ``moments`` (E eta, E eta^2); ``R``, ``R1``,
    ``expected`` (E R_drop, independent masks), ``expected_shared`` (one mask per unit);
    ``first_layer_excess`` (E R_drop - R, three layers, dropout on the first layer);
    ``split`` (|u/2 + d|^2 + |u/2 - d|^2), ``ratio_slope`` (d/dc of R1/|u|^2 at fixed
    norms); ``igr_residual`` (lr^2 coefficient of GD minus the modified flow, with a
    free coefficient ``c`` in place of 1/4); ``spread`` (lim Var theta_N / lr).
    """
    p = sp.Symbol("p", positive=True)
    alpha = sp.Symbol("alpha", positive=True)
    n, m = N_POINTS, WIDTH
    a, y = vector("a", m, real=True), vector("y", n, real=True)
    h = matrix("h", n, m, real=True)
    eta = matrix("eta", n, m, real=True)
    e1 = sp.Symbol("eta", real=True)
    moments = (expect(e1, [e1], p), expect(e1**2, [e1], p))

    R = _masked_loss(a, h, y, alpha, sp.ones(n, m))
    R1 = (1 - p) / (2 * n * p) * sp.Add(*[(a[k] * h[i, k] / alpha) ** 2
                                         for i in range(n) for k in range(m)])  # fmt: skip
    R_drop = _masked_loss(a, h, y, alpha, sp.ones(n, m) + eta)
    expected = expect(R_drop, list(eta), p)
    shared = eta[0, :]
    R_shared = _masked_loss(a, h, y, alpha, sp.ones(n, m) + sp.Matrix([shared] * n))
    expected_shared = expect(R_shared, list(shared), p)

    # three layers, one unit per layer, sigma(z) = z^2, dropout on the FIRST hidden layer:
    # f_i = (1/alpha) b sigma(w sigma(v x_i) (1 + eta_i))
    b, w, v = sp.symbols("b w v", real=True)
    x = vector("x", n, real=True)
    sq = lambda z: z**2  # noqa: E731
    f3 = [b * sq(w * sq(v * x[i]) * (1 + eta[i, 0])) / alpha for i in range(n)]
    f3_0 = [fi.subs(eta[i, 0], 0) for i, fi in enumerate(f3)]
    loss3 = lambda f: sp.Add(*[(f[i] - y[i]) ** 2 for i in range(n)]) / (2 * n)  # noqa: E731
    first_layer_excess = expect(loss3(f3), list(eta[:, 0]), p) - sp.expand(loss3(f3_0))

    # (ii) vectors over 3 samples
    u1, u2, d = vector("u", 3, real=True), vector("v", 3, real=True), vector("d", 3, real=True)
    u = [u1[i] + u2[i] for i in range(3)]
    half = [ui / 2 for ui in u]
    split = dot([half[i] + d[i] for i in range(3)], [half[i] + d[i] for i in range(3)])
    split += dot([half[i] - d[i] for i in range(3)], [half[i] - d[i] for i in range(3)])
    r1, r2 = sp.symbols("r_1 r_2", positive=True)
    c = sp.Symbol("c", real=True)
    ratio = (r1**2 + r2**2) / (r1**2 + r2**2 + 2 * r1 * r2 * c)
    ratio_slope = sp.factor(sp.diff(ratio, c))

    # (iii) backward error analysis of GD on a generic smooth L(theta_1, theta_2)
    lr, coeff = sp.symbols("lr c_lr", positive=True)
    th = sp.symbols("theta_1 theta_2", real=True)
    L = sp.Function("L")(*th)
    g = sp.Matrix([sp.diff(L, t) for t in th])
    field = -g - coeff * lr * sp.Matrix([sp.diff(dot(g, g), t) for t in th])
    # one step of the flow of `field`: theta + lr F + lr^2/2 (DF) F + O(lr^3)
    flow_step = lr * field + lr**2 / 2 * field.jacobian(th) * field
    gd_step = -lr * g
    difference = (flow_step - gd_step).applyfunc(sp.expand)
    igr = {k: difference.applyfunc(lambda entry, k=k: entry.coeff(lr, k)) for k in (1, 2)}

    # spread: theta_{k+1} = theta_k - lr (lam theta_k + xi_k), Var xi = s^2, N = t/lr steps
    lam, s, t = sp.symbols("lambda s t", positive=True)
    var_N = lr**2 * s**2 * (1 - (1 - lr * lam) ** (2 * t / lr)) / (1 - (1 - lr * lam) ** 2)
    q = 1 - lr * lam
    k = sp.Symbol("k", integer=True, nonnegative=True)
    var_k = var_N.subs(t, k * lr)  # after k steps
    recursion = (var_k.subs(k, 0), sp.simplify(var_k.subs(k, k + 1) - q**2 * var_k - lr**2 * s**2))
    spread = sp.limit(var_N / lr, lr, 0)

    return {"symbols": {"p": p, "alpha": alpha, "a": a, "h": h, "y": y, "eta": eta,
                        "u1": u1, "u2": u2, "d": d, "r1": r1, "r2": r2, "c": c, "lr": lr,
                        "c_lr": coeff, "theta": th, "L": L, "lam": lam, "s": s, "t": t,
                        "b": b, "w": w, "v": v, "x": x},
            "moments": moments, "R": R, "R1": R1, "R_drop": R_drop, "expected": expected,
            "expected_shared": expected_shared, "first_layer_excess": first_layer_excess,
            "u": u, "split": split, "ratio": ratio, "ratio_slope": ratio_slope,
            "grad": g, "igr_residual": igr, "var_N": var_N, "recursion": recursion,
            "spread": spread}  # fmt: skip


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``dropout.md``."""
    res = derive()
    sy = res["symbols"]
    p, a, h, y, eta = sy["p"], sy["a"], sy["h"], sy["y"], sy["eta"]
    R, R1 = res["R"], res["R1"]
    page = Page(NAME, "Dropout's explicit regularizer [ZX24]",
                "[ZX24] Zhang, Xu, IEEE TPAMI 2024 (arXiv:2207.05952); [BD21] Barrett, "
                "Dherin, ICLR 2021 (arXiv:2009.11162); docs/theory.md §18")  # fmt: skip

    # (i) ------------------------------------------------------------------------------
    assert_zero(res["moments"][0], "E eta")
    assert_zero(res["moments"][1] - (1 - p) / p, "E eta^2")
    page.check("the two-point law eta = (1-p)/p w.p. p, -1 w.p. 1-p has E eta = 0 and "
               "E eta^2 = (1-p)/p (so E(1 + eta) = 1: the mean output is kept).")  # fmt: skip
    assert_zero(res["expected"] - sp.expand(R + R1), "E R_drop - (R + R1)")
    page.check(f"n = {N_POINTS}, m = {WIDTH}, every a_k, h_ik, y_i, alpha, p a free symbol: "
               "the average of R_drop over all 2^(n m) = 64 masks, each with its probability, "
               "is R + R1 exactly.  h_ik is any output of the masked layer, so this holds "
               "for the hidden layer of a two-layer net and the last hidden layer of a "
               "three-layer one.")  # fmt: skip
    assert_zero(res["expected_shared"] - sp.expand(R + R1), "shared masks")
    page.check("one mask per unit shared by all samples (8 masks) gives the same R + R1: "
               "the expectation sees only each sample's own masks.")  # fmt: skip
    assert all(not sp.expand(R1).has(yi) for yi in y)
    excess = res["first_layer_excess"]
    assert any(sp.expand(sp.diff(excess, yi)) != 0 for yi in y)
    page.check("dropout on the FIRST hidden layer of a three-layer net (one unit per layer, "
               "sigma(z) = z^2): E R_drop - R depends on the targets y_i (its y-derivative "
               "is not zero), while R1 does not involve y: there is no penalty of the R1 "
               "kind there (the masks pass through sigma and shift the mean output).")  # fmt: skip

    page.text(
        "With $\\eta_{ik}$ independent, mean 0 and variance $(1-p)/p$, the squared "
        "loss averaged over the masks of the layer that feeds the output linearly is"
    )
    page.eq(sp.Symbol(r"\mathbb{E}_\eta R_{\rm drop}"),
            sp.Symbol(r"R + \frac{1-p}{2np}\sum_{i=1}^n\sum_{k=1}^m "
                      r"\Big(\frac{a_k h_{ik}}{\alpha}\Big)^2"))  # fmt: skip

    # (ii) ------------------------------------------------------------------------------
    u1, u2, d = sy["u1"], sy["u2"], sy["d"]
    u = res["u"]
    assert_zero(dot(u1, u1) + dot(u2, u2) - (dot(u, u) - 2 * dot(u1, u2)), "|u1|^2 + |u2|^2")
    assert_zero(res["split"] - (dot(u, u) / 2 + 2 * dot(d, d)), "split of a fixed u")
    page.check("u = u_1 + u_2 (vectors over 3 samples): |u_1|^2 + |u_2|^2 = |u|^2 - 2 u_1.u_2, "
               "and with u_1 = u/2 + d, u_2 = u/2 - d it is |u|^2/2 + 2|d|^2: for fixed u "
               "the minimum |u|^2/2 is reached exactly at u_1 = u_2 = u/2.")  # fmt: skip
    tt = sp.Symbol("t_share", real=True)
    parallel = (tt**2 + (1 - tt) ** 2) * dot(u, u) - dot(u, u) / 2
    assert_zero(parallel - 2 * (tt - sp.Rational(1, 2)) ** 2 * dot(u, u), "parallel shares")
    page.check("parallel shares u_1 = t u, u_2 = (1 - t) u cost (t^2 + (1-t)^2)|u|^2 = "
               "|u|^2/2 + 2(t - 1/2)^2 |u|^2: parallel is not enough, the shares must be "
               "equal.")  # fmt: skip
    r1, r2, c = sy["r1"], sy["r2"], sy["c"]
    slope = res["ratio_slope"]
    assert_zero(slope + 2 * r1 * r2 * (r1**2 + r2**2) / (r1**2 + r2**2 + 2 * r1 * r2 * c) ** 2,
                "d/dc of R1/|u|^2")  # fmt: skip
    at_one = res["ratio"].subs(c, 1)
    assert_zero(at_one - sp.Rational(1, 2) - (r1 - r2) ** 2 / (2 * (r1 + r2) ** 2), "c = 1")
    page.check("fixed norms |u_1| = r_1, |u_2| = r_2 > 0, cosine c of their angle: "
               "d/dc [(r_1^2 + r_2^2)/|u|^2] = -2 r_1 r_2 (r_1^2 + r_2^2)/|u|^4 < 0, so the "
               "penalty per squared output is least for parallel outputs (c = 1), where it "
               "is (r_1^2 + r_2^2)/(r_1 + r_2)^2 >= 1/2.")  # fmt: skip
    U = [vector(f"U{k + 1}", 2, real=True) for k in range(3)]
    total = [sp.Add(*[U[k][i] for k in range(3)]) for i in range(2)]
    devs = [[U[k][i] - total[i] / 3 for i in range(2)] for k in range(3)]
    mean_dev = sp.Add(*[dot(dev, dev) for dev in devs])
    assert_zero(sp.Add(*[dot(Uk, Uk) for Uk in U]) - dot(total, total) / 3 - mean_dev, "m = 3")
    page.check("m = 3 units, outputs over 2 samples: sum_k |u_k|^2 = |u|^2/3 + "
               "sum_k |u_k - u/3|^2, least exactly when every u_k = u/3.")  # fmt: skip
    page.text(
        "Write $u_k = (a_k h_{ik})_{i}$ for unit $k$'s contribution to the output "
        "over the samples. $R$ sees the units only through $u = \\sum_k u_k$, while"
    )
    page.eq(sp.Symbol("R_1"),
            sp.Symbol(r"\frac{1-p}{2np\alpha^2}\sum_k |u_k|^2 = "
                      r"\frac{1-p}{2np\alpha^2}\Big(\frac{|u|^2}{m} + "
                      r"\sum_k \big|u_k - \tfrac{u}{m}\big|^2\Big)"))  # fmt: skip
    page.text("So among all ways of sharing a given output $u$ (hence a given $R$), $R_1$ "
              "is least exactly when every unit carries the same output $u/m$: a fully "
              "condensed configuration in output space. This is a statement about the "
              "penalty at fixed output, not about the dynamics: it does not say the "
              "flow of $R + R_1$ reaches such a point, nor that $u/m$ is an output a single "
              "unit can produce (if not, the minimum over what the net represents lies "
              "elsewhere), nor that equal "
              "outputs mean equal input weights.")  # fmt: skip

    # (iii) -----------------------------------------------------------------------------
    w_sym = matrix("w", WIDTH, 2, real=True)
    xs = vector("x", N_POINTS, real=True)
    hs = sp.Matrix(N_POINTS, WIDTH, lambda i, k: sigma(dot(w_sym.row(k), [xs[i], 1])))
    sub_h = {h[i, k]: hs[i, k] for i in range(N_POINTS) for k in range(WIDTH)}
    params = list(a) + list(w_sym)
    lr = sy["lr"]
    R_drop = res["R_drop"].subs(sub_h)
    mean_R = (R + R1).subs(sub_h)
    for q in params[:2] + [w_sym[0, 0], w_sym[0, 1]]:
        grad_drop = sp.diff(R_drop, q)
        assert_zero(expect(q - lr * grad_drop, list(eta), p) - (q - lr * sp.diff(mean_R, q)),
                    f"mean step in {q}")  # fmt: skip
        g_mean = sp.diff(mean_R, q)
        second = expect(grad_drop**2, list(eta), p)
        noise = expect((grad_drop - g_mean) ** 2, list(eta), p)
        assert_zero(second - g_mean**2 - noise, f"E|grad R_drop|^2 split in {q}")
    page.check("two-layer net, symbolic sigma, input (x_i, 1), n = 2, m = 3: for a_1, a_2, "
               "w_11, w_12 the dropout-GD step averaged over the masks is theta - lr "
               "d(R + R1)/dtheta exactly, for every lr (E commutes with d/dtheta; R1 has no "
               "lr); and E (dR_drop/dtheta)^2 = (d(R + R1)/dtheta)^2 + "
               "E (dR_drop/dtheta - d(R + R1)/dtheta)^2.")  # fmt: skip
    igr = res["igr_residual"]
    g = res["grad"]
    assert_zero(igr[1], "O(lr) of GD vs modified flow")
    c_lr = sy["c_lr"]
    hess_g = g.jacobian(sy["theta"]) * g
    assert_zero(igr[2] - (sp.Rational(1, 2) - 2 * c_lr) * hess_g, "lr^2 residual")
    assert sp.solve(sp.Rational(1, 2) - 2 * c_lr, c_lr) == [sp.Rational(1, 4)]
    page.check("generic smooth L(theta_1, theta_2): one step of the flow of "
               "-grad(L + c lr |grad L|^2) differs from the GD step theta - lr grad L by "
               "(1/2 - 2c) lr^2 H grad L + O(lr^3); zero exactly for c = 1/4 [BD21].")  # fmt: skip
    assert all(is_zero(r) for r in res["recursion"])
    assert_zero(res["spread"] - sy["s"] ** 2 * (1 - sp.exp(-2 * sy["lam"] * sy["t"]))
                / (2 * sy["lam"]), "spread")  # fmt: skip
    page.check("linear model theta_{k+1} = theta_k - lr (lam theta_k + xi_k), xi_k independent, "
               "Var xi = s^2: Var theta_k = lr^2 s^2 (1 - q^(2k))/(1 - q^2), q = 1 - lr lam, "
               "solves Var_{k+1} = q^2 Var_k + lr^2 s^2 from 0; at k = t/lr, "
               "Var / lr -> s^2 (1 - e^(-2 lam t))/(2 lam): the spread of the runs at a "
               "fixed time is O(lr) (dropout's gradient noise, too, has a variance that "
               "does not vanish with lr), so a mean over S seeds carries a statistical "
               "error O(sqrt(lr/S)).")  # fmt: skip
    page.text("The masks average out of the step exactly: the mean dropout-GD step is the "
              "GD step on $R + R_1$, for every learning rate, so $R_1$ survives as "
              "$\\mathrm{lr} \\to 0$. For a fixed loss $L$, GD follows the flow of "
              "$L + \\frac{\\mathrm{lr}}{4}|\\nabla L|^2$ to one order more [BD21]. [ZX24] "
              "state (by the modified-flow method, not rederived here) that dropout GD "
              "follows $R + R_1 + R_2$ with")  # fmt: skip
    page.eq(sp.Symbol("R_2"),
            sp.Symbol(r"\frac{\mathrm{lr}}{4}\mathbb{E}_\eta|\nabla R_{\rm drop}|^2 = "
                      r"\frac{\mathrm{lr}}{4}|\nabla(R + R_1)|^2 + \frac{\mathrm{lr}}{4}"
                      r"\mathbb{E}_\eta|\nabla R_{\rm drop} - \nabla(R + R_1)|^2"))  # fmt: skip
    page.text(
        "the first part being [BD21]'s term for $R + R_1$ and the second the "
        "gradient noise. Both are O(lr), as is the spread of the runs; what the "
        "validation checks is the O(lr) rate, not the coefficient."
    )
    page.correction("the project notes (THEORY.md §8) say R1 is smallest, for a fixed "
                    "total output, when the neurons' outputs are parallel; the minimum is "
                    "at EQUAL outputs u_k = u/m: parallel outputs with unequal shares cost "
                    "2 (t - 1/2)^2 |u|^2 more (two units).  At fixed norms, parallel "
                    "outputs minimize R1 per squared output |u|^2.")  # fmt: skip
    page.correction("R2 = (lr/4) E|grad R_drop|^2 of [ZX24] is stated, not derived here; "
                    "derived: it is (lr/4)|grad(R + R1)|^2 ([BD21], the deterministic part) "
                    "plus (lr/4) times the mean squared gradient noise; the spread of the "
                    "runs is O(lr) as well.")  # fmt: skip
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
