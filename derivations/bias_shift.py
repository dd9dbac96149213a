"""The fast output mode when sigma(0) != 0 (docs/theory.md §6, sigmoid and softplus).

``sigma(z) = sigma0 + c1 z + c2 z^2`` with sigma0 != 0, width m = 2, n = 3 points,
1D input with bias (D = 2), first-layer weights ``w = eps w_tilde`` small and the
output weights a left free (they do not stay small).  At order eps^0:

- every output is the same number ``F = (sigma0/alpha) sum_k a_k``;
- every a_k has the same velocity ``-(sigma0/alpha)(F - mean(y))``;
- hence ``dF/dt = -(m sigma0^2/alpha^2)(F - mean(y))``: F relaxes to mean(y)
  at rate ``m sigma0^2/alpha^2``, shifting every a_k by
  ``alpha (mean(y) - F0)/(m sigma0)``;
- afterwards the residual is ``-(y_i - mean(y))`` and the input weights follow
  ``dw_k/dt = (c1/alpha) a_k v_c`` with
  ``v_c = (1/n) sum_i (y_i - mean(y)) x~_i``, whose bias component is 0.

References
----------
[ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
condensation of neural networks at initial training. NeurIPS 2022. arXiv:2105.11686.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import (
    LATEX_NAMES,
    Page,
    assert_zero,
    eps_coeffs,
    matrix,
    mean,
    tex,
    two_layer_flow,
    vector,
)

NAME = "bias_shift"
TITLE = "sigma0 != 0: output mode relaxes at rate m sigma0^2/alpha^2, common shift alpha(mean y - F0)/(m sigma0), centred residual"

N_POINTS, WIDTH = 3, 2


def derive() -> dict:
    """Expand the flow in eps with a free and w = eps w_tilde.

    Returns
    -------
    dict with keys ``symbols``; ``F`` (the output mode (sigma0/alpha) sum a_k);
    ``e0`` (residuals at eps^0); ``a0_rhs`` (da_k/dt at eps^0); ``F_rhs`` (dF/dt at eps^0);
    ``rate`` (m sigma0^2/alpha^2 with m = WIDTH); ``rate_m`` (same with symbolic m);
    ``shift_m`` (alpha (mean(y) - F0)/(m sigma0), symbolic m); ``w0_rhs`` (dw_k/dt at
    eps^0); ``v_c`` (the centred v); ``x_mean`` (mean augmented input); ``kick``
    (coefficient of x_mean in the input-weight displacement during the fast transient,
    in terms of a_k(0) = ``a_init`` and the shift ``Delta``).
    """
    alpha = sp.Symbol("alpha", positive=True)
    eps, t = sp.symbols("epsilon t", positive=True)
    sigma0 = sp.Symbol("sigma_0", real=True, nonzero=True)
    c1, c2 = sp.symbols("c_1 c_2", real=True)
    m = sp.Symbol("m", positive=True, integer=True)
    F_sym, F0 = sp.symbols("F F_0", real=True)
    x, y = vector("x", N_POINTS), vector("y", N_POINTS)
    X = sp.Matrix([[xi, 1] for xi in x])
    a = vector("a", WIDTH)
    W_t = matrix(r"\tilde{w}", WIDTH, 2)
    z = sp.Symbol("z")
    act = sp.Lambda(z, sigma0 + c1 * z + c2 * z**2)
    flow = two_layer_flow(a, eps * W_t, X, y, alpha, act)
    F = sigma0 / alpha * sp.Add(*a)
    ybar = mean(y)
    e0 = [eps_coeffs(ei, eps).get(0, 0) for ei in flow["e"]]
    a0_rhs = [eps_coeffs(r, eps).get(0, 0) for r in flow["rhs_a"]]
    F_rhs = sigma0 / alpha * sp.Add(*a0_rhs)
    w0_rhs = flow["rhs_W"].applyfunc(lambda r: eps_coeffs(r, eps).get(0, 0))
    v_c = [sp.Add(*[(y[i] - ybar) * X[i, d] for i in range(N_POINTS)]) / N_POINTS for d in range(2)]
    x_mean = [mean(list(X.col(d))) for d in range(2)]
    a_init, Delta = sp.symbols("a_k0 Delta", real=True)
    LATEX_NAMES[a_init] = "a_k(0)"
    return {
        "symbols": {
            "alpha": alpha,
            "eps": eps,
            "t": t,
            "sigma0": sigma0,
            "c1": c1,
            "m": m,
            "F": F_sym,
            "F0": F0,
            "x": x,
            "y": y,
            "a": a,
            "W_tilde": W_t,
        },
        "flow": flow,
        "F": F,
        "e0": e0,
        "a0_rhs": a0_rhs,
        "F_rhs": F_rhs,
        "rate": WIDTH * sigma0**2 / alpha**2,
        "rate_m": m * sigma0**2 / alpha**2,
        "shift_m": alpha * (ybar - F0) / (m * sigma0),
        "w0_rhs": w0_rhs,
        "v_c": v_c,
        "ybar": ybar,
        "x_mean": x_mean,
        "kick": c1 / sigma0 * Delta * (a_init + Delta / 2),
        "kick_symbols": (a_init, Delta),
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``bias_shift.md``."""
    res = derive()
    sy = res["symbols"]
    alpha, t, sigma0, c1, m, F_sym, F0 = (
        sy[k] for k in ("alpha", "t", "sigma0", "c1", "m", "F", "F0")
    )
    y, a = sy["y"], sy["a"]
    F, ybar = res["F"], res["ybar"]
    page = Page(
        NAME,
        "Fast output mode and centred target when sigma(0) != 0",
        "[ZZJLZX22]; docs/theory.md §6 (sigma0 != 0)",
    )

    # Order eps^0: residual, common velocity of a_k, relaxation of F.
    for i in range(N_POINTS):
        assert_zero(res["e0"][i] - (F - y[i]), f"e_{i + 1} at eps^0")
    for k in range(WIDTH):
        assert_zero(res["a0_rhs"][k] + sigma0 / alpha * (F - ybar), f"da_{k + 1}/dt at eps^0")
    assert_zero(res["F_rhs"] + res["rate"] * (F - ybar), "dF/dt at eps^0")
    page.check(
        "at eps^0: e_i = F - y_i, da_k/dt = -(sigma0/alpha)(F - mean(y)) for every k, dF/dt = -(m sigma0^2/alpha^2)(F - mean(y)) (m = 2, n = 3)."
    )

    # Symbolic m: solve the fast mode, integrate the shift.
    Ff = sp.Function("F")
    rate = res["rate_m"]
    sol = sp.dsolve(sp.Eq(Ff(t).diff(t), -rate * (Ff(t) - ybar)), Ff(t), ics={Ff(0): F0}).rhs
    assert_zero(sp.expand(sol - (ybar + (F0 - ybar) * sp.exp(-rate * t))), "F(t)")
    shift = sp.integrate(-sigma0 / alpha * (sol - ybar), (t, 0, sp.oo), conds="none")
    assert_zero(sp.simplify(shift - res["shift_m"]), "shift of a_k")
    # The shift brings the output mode exactly to mean(y): F0 + (sigma0/alpha) m shift = mean(y).
    assert_zero(sp.expand(F0 + sigma0 / alpha * m * res["shift_m"] - ybar), "F after the shift")
    page.check(
        "symbolic m: F(t) = mean(y) + (F0 - mean(y)) exp(-m sigma0^2 t/alpha^2); each a_k moves by the integral alpha (mean(y) - F0)/(m sigma0), which puts F at mean(y)."
    )

    # Input weights at eps^0 for any F: dw_k/dt = (c1/alpha) a_k (v_c - (F - mean(y)) x_mean).
    v_c, x_mean = res["v_c"], res["x_mean"]
    a_last = sp.solve(F - F_sym, a[-1])[0]
    for k in range(WIDTH):
        for d in range(2):
            got = res["w0_rhs"][k, d].subs(a[-1], a_last)
            want = (c1 / alpha * a[k] * (v_c[d] - (F_sym - ybar) * x_mean[d])).subs(a[-1], a_last)
            assert_zero(got - want, f"dw_{k + 1}{d + 1}/dt at eps^0")
    # Displacement of w_k along x_mean during the transient.
    a_init, Delta = res["kick_symbols"]
    lam_f = res["rate_m"]
    a_of_t = a_init + Delta * (1 - sp.exp(-lam_f * t))
    assert_zero(
        sp.diff(a_of_t, t)
        + sigma0 / alpha * (sol - ybar).subs(F0, ybar - m * sigma0 * Delta / alpha),
        "a_k(t) during the transient",
    )
    kick = sp.integrate(
        -c1 / alpha * a_of_t * (sol - ybar).subs(F0, ybar - m * sigma0 * Delta / alpha),
        (t, 0, sp.oo),
        conds="none",
    )
    assert_zero(sp.simplify(kick - res["kick"]), "kick along x_mean")
    page.check(
        "at eps^0 and any F: dw_k/dt = (c1/alpha) a_k (v_c - (F - mean(y)) x_mean), x_mean = (1/n) sum_i x~_i; over the transient a_k(t) = a_k(0) + Delta (1 - exp(-lambda_fast t)) and the part along x_mean integrates to (c1/sigma0) Delta (a_k(0) + Delta/2)."
    )

    # After relaxation (F = mean(y)): centred residual, centred v without bias component.
    relaxed = {F_sym: ybar}
    for i in range(N_POINTS):
        assert_zero(
            res["e0"][i].subs(a[-1], sp.solve(F - F_sym, a[-1])[0]).subs(relaxed) + (y[i] - ybar),
            f"centred e_{i + 1}",
        )
    assert_zero(v_c[1], "bias component of v_c")
    for k in range(WIDTH):
        for d in range(2):
            got = res["w0_rhs"][k, d].subs(a[-1], a_last).subs(relaxed)
            want = (c1 / alpha * a[k] * v_c[d]).subs(a[-1], a_last).subs(relaxed)
            assert_zero(got - want, f"dw_{k + 1}{d + 1}/dt after relaxation")
    page.check(
        "with F = mean(y): e_i = -(y_i - mean(y)) at eps^0 and dw_k/dt = (c1/alpha) a_k v_c at eps^0, v_c = (1/n) sum_i (y_i - mean(y)) x~_i, whose bias component is 0."
    )

    page.text(
        r"Write $\sigma(z) = \sigma_0 + c_1 z + c_2 z^2$, $w_k = \epsilon\tilde w_k$, $a_k$ free. At order $\epsilon^0$ every output equals the mode $F = \frac{\sigma_0}{\alpha}\sum_k a_k$, and"
    )
    page.eq(
        r"\frac{da_k}{dt} = -\frac{\sigma_0}{\alpha}\left(F - \bar y\right),\qquad \frac{dF}{dt} = "
        + tex(-res["rate_m"] * (F_sym - sp.Symbol(r"\bar{y}")))
    )
    page.text(
        "so F relaxes to mean(y) at the fast rate below and every a_k moves by the same amount:"
    )
    page.eq(r"\lambda_{fast}", tex(res["rate_m"]))
    page.eq(r"\Delta a_k", tex(res["shift_m"].subs(ybar, sp.Symbol(r"\bar{y}"))))
    page.text(
        r"After it, the residual is the centred target and the slow ($p = 1$) dynamics uses $v_c$:"
    )
    page.eq(
        r"e_i = -(y_i - \bar y) + O(\epsilon),\qquad \frac{dw_k}{dt} = \frac{c_1}{\alpha}a_k v_c,\qquad v_c = \frac1n\sum_i (y_i - \bar y)\tilde x_i = "
        + tex(sp.Matrix(v_c).T)
    )
    page.text(
        r"During the transient itself the input weights are not idle: at order $\epsilon^0$, $dw_k/dt = \frac{c_1}{\alpha}a_k\left(v_c - (F - \bar y)\bar x\right)$ with $\bar x = \frac1n\sum_i\tilde x_i$, so every neuron receives a displacement along the mean input (bias component 1):"
    )
    page.eq(r"\Delta w_k \approx " + tex(res["kick"]) + r"\;\bar x")
    page.text(
        r"This is $O(\Delta^2)$, common to all neurons, and can exceed $|w_k(0)| = O(\epsilon)$ for very small $\epsilon$; only its part along $v_c$ takes part in the $p = 1$ growth, the rest stays as a constant offset that matters only while $|w_k|$ is comparable to it."
    )
    page.text(
        r"Conditions: the time scales separate only if $m\sigma_0^2/\alpha^2 \gg |c_1||v_c|/\alpha$ (their ratio $m\sigma_0^2/(\alpha|c_1||v_c|)$ is $O(1)$ under mean-field scaling $\alpha = m$). The common drift of the $a_k$ that keeps $\bar e \approx 0$ while the slow modes grow is $O(\epsilon)$ times the ratio of slow to fast rates, so it drops out at leading order. The shift $\Delta a_k$ is $O(\alpha|\bar y|/(m|\sigma_0|))$ and can dwarf the initial $a_k = O(\epsilon)$, so $\mathrm{sign}(c_1 a_k)$, and hence the orientation $\pm v_c$ each neuron goes to, is mostly set by the shift."
    )
    page.correction(
        "Not an error, an omission: during the fast transient the input weights move by (c1/sigma0) Delta (a_k(0) + Delta/2) x_mean (x_mean = mean augmented input, Delta = alpha (mean(y) - S0)/(m sigma0) the common shift), an O(Delta^2) displacement common to all neurons that a statement of the shift alone leaves out (docs/theory.md §6, §14); it can exceed the O(eps) initial input weights."
    )
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
