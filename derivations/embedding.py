"""One-step embedding of a two-layer net ([ZZLX21], docs/theory.md §16).

Split neuron 1 of a width-2 net into two copies with the same input weights and output
weights ``lam a_1``, ``(1 - lam) a_1``.  With a symbolic sigma, symbolic lam, alpha and
data (n = 2, input (x, 1)) the script asserts: the output is unchanged; every partial
derivative of the wide loss at the embedded point is a multiple (1, lam, 1 - lam) of
one of the narrow loss, so critical points map to critical points; along the perturbation
``d`` of the copies' input weights by ``(1 - lam) z`` and ``-lam z`` the outputs do not
move at first order and ``d^T H d = lam (1 - lam) z^T S_1 z`` with
``S_1 = (a_1 / (alpha n)) sum_i e_i sigma''(w_1 . x~_i) x~_i x~_i^T``, so the sign flips
when lam leaves [0, 1].

References
----------
[ZZLX21] Zhang, Zhang, Luo, Xu. Embedding principle of loss landscape of deep neural
networks. NeurIPS 2021. arXiv:2105.14573.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import Page, assert_zero, dot, matrix, mean, sigma, vector

NAME = "embedding"
TITLE = "splitting a neuron (lam, 1 - lam) keeps f and critical points; d^T H d = lam (1 - lam) z^T S_k z"

N_POINTS = 2


def _output(a, W, X, alpha):
    return [sp.Add(*[a[k] * sigma(dot(W.row(k), X.row(i))) for k in range(len(a))]) / alpha
            for i in range(X.rows)]  # fmt: skip


def derive() -> dict:
    """The narrow and embedded losses with symbolic sigma.

    Returns
    -------
    dict with keys ``symbols``; ``f``, ``f_wide``: outputs; ``R``, ``R_wide``: losses (as
    functions of the parameters); ``second``: d^2/dt^2 R_wide(theta' + t d) at t = 0;
    ``S``: the matrix S_1; ``z``: the perturbation direction.
    """
    alpha = sp.Symbol("alpha", positive=True)
    lam, t = sp.symbols("lambda t", real=True)
    x, y = vector("x", N_POINTS), vector("y", N_POINTS)
    X = sp.Matrix([[xi, 1] for xi in x])
    a, W = vector("a", 2), matrix("w", 2, 2)
    z = vector("z", 2)
    f = _output(a, W, X, alpha)
    R = mean([(f[i] - y[i]) ** 2 for i in range(N_POINTS)]) / 2
    # wide net: neuron 1 -> (lam a_1, w_1) and a new neuron 3 = ((1 - lam) a_1, w_1)
    a_wide = [lam * a[0], a[1], (1 - lam) * a[0]]
    W_wide = sp.Matrix([list(W.row(0)), list(W.row(1)), list(W.row(0))])
    f_wide = _output(a_wide, W_wide, X, alpha)
    # perturbation d: copy 1 by (1 - lam) z, copy 3 by -lam z
    W_t = sp.Matrix([[W[0, j] + t * (1 - lam) * z[j] for j in range(2)], list(W.row(1)),
                     [W[0, j] - t * lam * z[j] for j in range(2)]])  # fmt: skip
    f_t = _output(a_wide, W_t, X, alpha)
    R_t = mean([(f_t[i] - y[i]) ** 2 for i in range(N_POINTS)]) / 2
    second = sp.diff(R_t, t, 2).subs(t, 0)
    e = [f[i] - y[i] for i in range(N_POINTS)]
    S = sp.zeros(2, 2)
    for i in range(N_POINTS):
        # sigma''(w_1 . x~_i), as SymPy writes it: d/dw_12 of sigma'(w_1 . x~_i) (x~_i2 = 1)
        d2 = sp.diff(sigma(dot(W.row(0), X.row(i))), W[0, 1], 2)
        S += e[i] * d2 * X.row(i).T * X.row(i)
    S = a[0] / (alpha * N_POINTS) * S
    return {"symbols": {"alpha": alpha, "lam": lam, "t": t, "a": a, "W": W, "x": x, "y": y,
                        "X": X},
            "f": f, "f_wide": f_wide, "R": R, "a_wide": a_wide, "W_wide": W_wide,
            "f_t": f_t, "second": second, "S": S, "z": z}  # fmt: skip


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``embedding.md``."""
    res = derive()
    sy = res["symbols"]
    lam, t, a, W, alpha = sy["lam"], sy["t"], sy["a"], sy["W"], sy["alpha"]
    page = Page(NAME, "One-step embedding of a two-layer net [ZZLX21]",
                "[ZZLX21] Zhang, Zhang, Luo, Xu, NeurIPS 2021; docs/theory.md §16")  # fmt: skip

    for i, (fw, f) in enumerate(zip(res["f_wide"], res["f"], strict=True)):
        assert_zero(fw - f, f"output at x_{i + 1}")
    page.check("symbolic sigma, lam, alpha, n = 2, input (x, 1): the embedded output equals "
               "the narrow one at every point, for every lam.")  # fmt: skip

    # wide loss as a function of free wide parameters, differentiated, then evaluated at
    # the embedded point: each partial derivative is a multiple of a narrow one
    b = vector("b", 3)
    V = matrix("v", 3, 2)
    fw = _output(b, V, sy["X"], alpha)
    R_w = mean([(fw[i] - sy["y"][i]) ** 2 for i in range(N_POINTS)]) / 2
    at = {b[k]: res["a_wide"][k] for k in range(3)}
    at |= {V[k, j]: res["W_wide"][k, j] for k in range(3) for j in range(2)}
    R = res["R"]
    pairs = [(sp.diff(R_w, b[0]), sp.diff(R, a[0])), (sp.diff(R_w, b[1]), sp.diff(R, a[1])),
             (sp.diff(R_w, b[2]), sp.diff(R, a[0]))]  # fmt: skip
    pairs += [(sp.diff(R_w, V[0, j]), lam * sp.diff(R, W[0, j])) for j in range(2)]
    pairs += [(sp.diff(R_w, V[1, j]), sp.diff(R, W[1, j])) for j in range(2)]
    pairs += [(sp.diff(R_w, V[2, j]), (1 - lam) * sp.diff(R, W[0, j])) for j in range(2)]
    for wide, narrow in pairs:
        assert_zero(wide.subs(at) - narrow, "gradient of the embedded loss")
    page.check("at the embedded point dR'/da_1' = dR'/da_3' = dR/da_1, dR'/dw_1' = lam dR/dw_1, "
               "dR'/dw_3' = (1 - lam) dR/dw_1, the other neuron's unchanged: a critical point "
               "maps to a critical point.")  # fmt: skip

    for i, ft in enumerate(res["f_t"]):
        assert_zero(sp.diff(ft, t).subs(t, 0), f"first-order output change at x_{i + 1}")
    z = sp.Matrix(res["z"])
    quad = (z.T * res["S"] * z)[0, 0]
    assert_zero(res["second"] - lam * (1 - lam) * quad, "d^T H d")
    page.check("perturbing the copies' input weights by (1 - lam) z and -lam z moves no output "
               "at first order (J d = 0), and d^T H d = lam (1 - lam) z^T S_1 z.")  # fmt: skip
    sign = lam * (1 - lam)
    assert sign.subs(lam, sp.Rational(1, 2)) > 0 and sign.subs(lam, 2) < 0
    assert sign.subs(lam, -1) < 0
    page.check("lam (1 - lam) > 0 on (0, 1) and < 0 outside [0, 1] (lam = 2, -1): the term "
               "changes sign when lam leaves [0, 1].")  # fmt: skip

    page.text(r"Split neuron $k$ into copies with output weights $\lambda a_k$ and "
              r"$(1-\lambda)a_k$ and the same $w_k$. The output is unchanged, and along "
              r"$d = ((1-\lambda)z, -\lambda z)$ on the copies' input weights")  # fmt: skip
    page.eq(r"d^\top H d = \lambda(1-\lambda)\, z^\top S_k z, \qquad "
            r"S_k = \frac{a_k}{\alpha n}\sum_i e_i\,\sigma''(w_k\cdot\tilde x_i)\,"
            r"\tilde x_i\tilde x_i^\top")  # fmt: skip
    page.text("the Gauss-Newton part vanishes because J d = 0; the loss itself changes by half "
              "of this, (1/2) d^T H d, at second order.")  # fmt: skip
    page.correction("the second-order term lam (1 - lam) z^T S_k z is d^T H d, the second "
                    "derivative along d; the loss changes by half of it (the notes call it the "
                    "change of the loss).")  # fmt: skip
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
