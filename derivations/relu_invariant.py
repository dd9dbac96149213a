"""Balance law of positively homogeneous activations ([DHL18], docs/theory.md §10).

If ``sigma(lambda u) = lambda^p sigma(u)`` for lambda > 0, differentiating at
lambda = 1 gives Euler's identity ``u sigma'(u) = p sigma(u)``.  Along the full
two-layer flow (any width, any data, bias included) it gives

    d/dt (p a_k^2 - |w_k|^2)
      = -(2/alpha)(1/n) sum_i e_i a_k [p sigma(w_k.x~_i) - sigma'(w_k.x~_i) (w_k.x~_i)] = 0,

i.e. ``a_k^2 - |w_k|^2`` is constant for ReLU and leaky ReLU (p = 1).  Checked
with a symbolic sigma (width 2, n = 2, 1D input with bias), with symbolic p,
with ReLU itself at a numeric point, and shown to fail for tanh.

References
----------
[DHL18] Du, Hu, Lee. Algorithmic regularization in learning deep homogeneous
models: layers are automatically balanced. NeurIPS 2018.
"""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derivations._common import (
    Page,
    assert_zero,
    dot,
    dsigma,
    matrix,
    sigma,
    two_layer_flow,
    vector,
)

NAME = "relu_invariant"
TITLE = "homogeneous sigma of degree p: d/dt (p a_k^2 - |w_k|^2) = 0 along the full flow (ReLU: a_k^2 - |w_k|^2), bias included"

N_POINTS, WIDTH = 2, 2


def balance_rate(flow, a, W, p):
    """d/dt (p a_k^2 - |w_k|^2) for every neuron k along ``flow``."""
    return [
        2 * p * a[k] * flow["rhs_a"][k] - 2 * dot(list(W.row(k)), list(flow["rhs_W"].row(k)))
        for k in range(len(a))
    ]


def derive() -> dict:
    """Balance rates of the full flow with a symbolic sigma.

    Returns
    -------
    dict with keys ``symbols`` {"alpha", "p", "u", "a", "W", "x", "y", "X"}; ``euler``: the
    two sides (u sigma'(u), p sigma(u)) from differentiating the homogeneity relation;
    ``rates``: [d/dt (p a_k^2 - |w_k|^2)] with symbolic sigma and p; ``rates_euler``:
    the same after u sigma'(u) -> p sigma(u); ``flow``: the two-layer flow.
    """
    alpha = sp.Symbol("alpha", positive=True)
    p, lam = sp.symbols("p lambda", positive=True)
    u = sp.Symbol("u", real=True)
    lhs = sp.diff(sigma(lam * u), lam).subs(lam, 1)
    rhs = sp.diff(lam**p * sigma(u), lam).subs(lam, 1)
    x, y = vector("x", N_POINTS), vector("y", N_POINTS)
    X = sp.Matrix([[xi, 1] for xi in x])
    a, W = vector("a", WIDTH), matrix("w", WIDTH, 2)
    flow = two_layer_flow(a, W, X, y, alpha)
    rates = balance_rate(flow, a, W, p)
    rates_euler = [r.replace(dsigma, lambda arg: p * sigma(arg) / arg) for r in rates]
    return {
        "symbols": {"alpha": alpha, "p": p, "u": u, "a": a, "W": W, "x": x, "y": y, "X": X},
        "euler": (lhs, rhs),
        "rates": rates,
        "rates_euler": rates_euler,
        "flow": flow,
    }


def main(out_dir: Path | str | None = None) -> Path:
    """Derive, assert, and write ``relu_invariant.md``."""
    res = derive()
    sy = res["symbols"]
    alpha, p, u, a, W, X, y = (sy[k] for k in ("alpha", "p", "u", "a", "W", "X", "y"))
    page = Page(
        NAME,
        "Balance law for positively homogeneous activations [DHL18]",
        "[DHL18] Du, Hu, Lee, NeurIPS 2018; docs/theory.md §10",
    )

    lhs, rhs = res["euler"]
    assert lhs == u * dsigma(u) and sp.expand(rhs) == p * sigma(u)
    page.check(
        "d/dlambda at lambda = 1 of sigma(lambda u) = lambda^p sigma(u) gives u sigma'(u) = p sigma(u)."
    )

    # Euler's identity for concrete activations, piece by piece.
    upos, uneg = sp.Symbol("u", positive=True), sp.Symbol("u", negative=True)
    leak = sp.Symbol("ell", positive=True)
    pieces = {
        "ReLU": (lambda v: v, lambda v: 0, 1),
        "leaky ReLU": (lambda v: v, lambda v: leak * v, 1),
        "ReLU^2": (lambda v: v**2, lambda v: 0, 2),
        "ReLU^3": (lambda v: v**3, lambda v: 0, 3),
    }
    for name, (pos, neg, deg) in pieces.items():
        for piece, var in ((pos, upos), (neg, uneg)):
            assert_zero(
                var * sp.diff(piece(var), var) - deg * piece(var), f"Euler identity, {name}"
            )
    page.check(
        "Euler's identity on each piece (u > 0, u < 0) for ReLU, leaky ReLU (p = 1), ReLU^2 (p = 2), ReLU^3 (p = 3); at u = 0 both sides vanish for any finite sigma'(0)."
    )

    for k, r in enumerate(res["rates_euler"]):
        assert_zero(r, f"d/dt (p a_{k + 1}^2 - |w_{k + 1}|^2)")
    page.check(
        "symbolic sigma and p, width 2, n = 2, input (x, 1): d/dt (p a_k^2 - |w_k|^2) = 0 for k = 1, 2 once u sigma'(u) = p sigma(u); the bias weight enters w_k like any other input weight."
    )

    # ReLU itself at a numeric point (sigma' = Heaviside), and tanh as a counterexample.
    R = sp.Rational
    point = {
        a[0]: R(7, 10),
        a[1]: R(-13, 10),
        W[0, 0]: R(2, 5),
        W[0, 1]: R(-1, 5),
        W[1, 0]: R(-9, 10),
        W[1, 1]: R(1, 2),
    }
    point |= {sy["x"][0]: R(3, 2), sy["x"][1]: R(-4, 5), y[0]: R(3, 10), y[1]: R(-11, 10), alpha: 2}
    z = sp.Symbol("z")
    relu = two_layer_flow(
        a, W, X, y, alpha, sp.Lambda(z, sp.Max(0, z)), sp.Lambda(z, sp.Heaviside(z))
    )
    tanh = two_layer_flow(a, W, X, y, alpha, sp.Lambda(z, sp.tanh(z)))
    relu_rates = [sp.nsimplify(r.subs(point)) for r in balance_rate(relu, a, W, 1)]
    tanh_rates = [float(r.subs(point)) for r in balance_rate(tanh, a, W, 1)]
    assert relu_rates == [0, 0], relu_rates
    assert min(abs(r) for r in tanh_rates) > 1e-3, tanh_rates
    page.check(
        f"numeric point, ReLU with sigma' = Heaviside: both rates exactly 0 (rational point); tanh (not homogeneous): rates {tanh_rates[0]:.3f}, {tanh_rates[1]:.3f}, not conserved."
    )

    page.text(
        r"For $\sigma(\lambda u) = \lambda^p\sigma(u)$, $\lambda > 0$, Euler's identity $u\,\sigma'(u) = p\,\sigma(u)$ turns the full two-layer flow (docs/theory.md §1) into"
    )
    page.eq(
        r"\frac{d}{dt}\left(p a_k^2 - |w_k|^2\right) = -\frac{2}{\alpha}\frac1n\sum_i e_i\,a_k\left[p\,\sigma(w_k\cdot\tilde x_i) - \sigma'(w_k\cdot\tilde x_i)\,w_k\cdot\tilde x_i\right] = 0"
    )
    page.text(
        r"for every neuron, whatever the other neurons and the residuals do. ReLU and leaky ReLU ($p = 1$): $a_k^2 - |w_k|^2$ is constant, with the bias weight counted in $w_k$. A smooth $\sigma$ with multiplicity $p$ conserves $p a_k^2 - |w_k|^2$ only at leading order (see leading_order.md)."
    )
    return page.write(out_dir)


if __name__ == "__main__":
    print(main())
