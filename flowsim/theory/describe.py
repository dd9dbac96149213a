"""What the theory says about an activation: ``flowsim derive``'s content.

References
----------
.. [ZZJLZX22] Zhou et al. Towards understanding the condensation of neural
   networks at initial training. NeurIPS 2022 (multiplicity, at most 2p
   orientations).
"""

from __future__ import annotations

import sympy as sp

from flowsim.activations import activation, x


def _conserved_tex(p: int) -> str:
    return rf"{p}a_k^2-|w_k|^2" if p != 1 else r"a_k^2-|w_k|^2"


def _taylor_term(act, j: int) -> sp.Expr:
    """``sigma^(j)(0) / j!`` exactly where the expression can be evaluated at 0, else (a
    removable singularity, ``sin(x)/x``) the activation's series coefficient."""
    exact = sp.diff(act.expr, x, j).subs(x, 0) / sp.factorial(j)
    if exact.is_finite and exact.is_real:
        return sp.nsimplify(exact)
    return sp.nsimplify(float(act.taylor(j)[j]))


def describe(spec) -> dict:
    """Leading-order facts of an activation, as plain text, LaTeX and numbers.

    Returns a dict with ``name``, ``expr``, ``latex``, ``sigma0``,
    ``multiplicity``, ``leading_coefficient`` (exact text and float),
    ``homogeneous``, ``leading_order_ode`` / ``leading_order_ode_latex``,
    ``G`` / ``G_latex``, ``conserved`` / ``conserved_latex``,
    ``max_orientations`` (2p; None for homogeneous activations, whose
    orientations are set by the data's activation regions), ``escape_law``,
    ``escape_exponent`` (0 for the log law, p - 1 otherwise), ``conditions``
    (for ``multiplicity``, ``leading_order_ode``, ``conserved``,
    ``max_orientations`` and ``escape_law``: when the number or formula holds)
    and ``notes`` (the regime of every leading-order statement, and caveats:
    for p >= 3 the 2p bound holds only for an augmented input dimension D <= 2).
    """
    act = activation(spec)
    p = act.multiplicity
    notes = [
        "every formula below the leading coefficient is leading order in the initialization "
        "scale eps -> 0 (small initialization) and describes training before the escape "
        "[ZZJLZX22]"
    ]
    conditions = {
        "multiplicity": "exactly: sigma(x) - sigma(0) = c_p x^p + O(x^(p+1)) at x = 0",
        "leading_order_ode": "at small initialization, until the escape: the Taylor term of "
        "sigma dominates and the output is small against y (residual f - y ~ -y)",
        "conserved": "exactly along the leading-order flow; along the full flow approximately, "
        "while the neurons are small",
    }
    if act.homogeneous is not None:
        cp = act.expr.subs(x, 1)
        G = r"(1/n) sum_i y_i sigma(w . x_i)"
        G_tex = r"G(w)=\frac{1}{n}\sum_i y_i\,\sigma(w\cdot\tilde x_i)"
        conserved = f"{p}*a^2 - |w|^2" if p != 1 else "a^2 - |w|^2"
        conserved_tex = (
            rf"{p}a_k^2-|w_k|^2" if p != 1 else r"a_k^2-|w_k|^2"
        ) + r"\ \text{(full flow)}"
        max_orientations = None
        conditions.update(
            multiplicity=f"exactly: sigma is positively homogeneous of degree {act.homogeneous}",
            leading_order_ode="until the escape, while the output is small against y "
            "(residual f - y ~ -y); G is built from sigma itself, no Taylor term",
            conserved="exactly along the full flow (positive homogeneity) [DHL18]",
            max_orientations="for any data: the orientations are extrema of a piecewise-smooth "
            "G set by the data's activation regions, not by the multiplicity",
        )
        notes.append(
            f"positively homogeneous of degree {act.homogeneous}: no Taylor expansion; the "
            "leading-order form holds exactly with G built from sigma itself, and the "
            "conservation law holds along the full flow [DHL18]; the orientations are extrema "
            "of a piecewise-smooth G set by the data's activation regions, not bounded by 2p"
        )
    else:
        cp = _taylor_term(act, p)
        G = f"(1/n) sum_i y_i (w . x_i)^{p}" if p > 1 else "(1/n) sum_i y_i (w . x_i) = w . v"
        G_tex = rf"G(w)=\frac{{1}}{{n}}\sum_i y_i\,(w\cdot\tilde x_i)^{{{p}}}"
        conserved = f"{p}*a^2 - |w|^2" if p != 1 else "a^2 - |w|^2"
        conserved_tex = (
            rf"{p}a_k^2-|w_k|^2" if p != 1 else r"a_k^2-|w_k|^2"
        ) + r"\ \text{(leading order)}"
        max_orientations = 2 * p
        if p == 1:
            conditions["max_orientations"] = (
                "for any input dimension: neurons align with +-v, v = (1/n) sum_i y_i x~_i (v != 0)"
            )
        elif p == 2:
            conditions["max_orientations"] = (
                "for any input dimension: +- the top and bottom eigenvectors of "
                "(1/n) sum_i y_i x~_i x~_i^T"
            )
        else:
            conditions["max_orientations"] = (
                "only if the augmented input dimension D <= 2 (d = 1 with a bias, d = 2 "
                f"without); not for D > 2 at p = {p} (see the notes)"
            )
            notes.append(
                f"the bound 2p = {2 * p} on the orientations fails for D > 2 at p >= 3: a "
                "degree-p form on a higher-dimensional sphere can have more extrema (XOR data "
                "x in {+-1}^2 with a bias, y = x_1 x_2, p = 3: G(w) = 6 w_1 w_2 w_3 has 8 "
                "extrema (+-1, +-1, +-1)/sqrt(3), all collecting neurons); "
                "flowsim.theory.max_orientations(act, D=net.D) gives the bound for a net"
            )
    if act.sigma0 != 0:
        notes.append(
            f"sigma(0) = {_taylor_term(act, 0)} != 0: a fast output mode relaxes "
            "first; afterwards the leading order sees the centred target y - mean(y)"
        )
    cp_text = sp.sstr(cp)
    cp_tex = sp.latex(cp)
    ode = f"da_k/dt = ({cp_text}/alpha) G(w_k),  dw_k/dt = ({cp_text}/alpha) a_k grad G(w_k)"
    ode_tex = (
        rf"\frac{{da_k}}{{dt}}=\frac{{{cp_tex}}}{{\alpha}}G(w_k),\quad "
        rf"\frac{{dw_k}}{{dt}}=\frac{{{cp_tex}}}{{\alpha}}a_k\nabla G(w_k)"
    )
    if act.homogeneous == 1:
        law = "T_esc ~ (1/lambda) log(1/eps), lambda = max |G(u)| / alpha over extremal u"
        exponent = 0
    elif p == 1:
        law, exponent = "T_esc ~ (1/lambda) log(1/eps), lambda = |c_1| |v| / alpha", 0
    else:
        law, exponent = f"T_esc ~ eps^-{p - 1} (finite-time blow-up of the leading order)", p - 1
    conditions["escape_law"] = (
        "as eps -> 0 (eps: initialization scale) with the initial directions fixed; the "
        "prefactor depends on the data and the initial directions"
        + ("; needs v != 0" if p == 1 and act.homogeneous is None else "")
    )
    return {
        "name": act.name,
        "expr": sp.sstr(act.expr),
        "latex": sp.latex(act.expr),
        "sigma0": act.sigma0,
        "multiplicity": p,
        "leading_coefficient": float(cp),
        "leading_coefficient_exact": cp_text,
        "homogeneous": act.homogeneous,
        "leading_order_ode": ode,
        "leading_order_ode_latex": ode_tex,
        "G": G,
        "G_latex": G_tex,
        "conserved": conserved,
        "conserved_latex": conserved_tex,
        "max_orientations": max_orientations,
        "escape_law": law,
        "escape_exponent": exponent,
        "conditions": conditions,
        "notes": notes,
    }


def format_text(info: dict) -> str:
    """Human-readable summary for the terminal: each number with the conditions it holds under."""
    import textwrap

    conditions = info["conditions"]
    indent = " " * 18

    def entry(label: str, value: str, key: str | None = None) -> list[str]:
        lines = [f"{label:<17} {value}"]
        if key is not None:
            lines += textwrap.wrap(f"holds {conditions[key]}", 100, initial_indent=indent,
                                   subsequent_indent=indent)  # fmt: skip
        return lines

    orientations = info["max_orientations"]
    lines = [
        *entry("activation", info["name"]),
        *entry("expression", f"sigma(x) = {info['expr']}"),
        *entry("sigma(0)", f"{info['sigma0']:g}"),
        *entry("multiplicity p", str(info["multiplicity"]), "multiplicity"),
        *entry(
            "leading coeff c_p",
            f"{info['leading_coefficient_exact']} ({info['leading_coefficient']:g})",
        ),
        *entry("G(w)", info["G"]),
        *entry("leading order", info["leading_order_ode"], "leading_order_ode"),
        *entry("conserved", info["conserved"], "conserved"),
        *entry(
            "max orientations",
            str(orientations) if orientations else "not bounded by 2p",
            "max_orientations",
        ),
        *entry("escape time", info["escape_law"], "escape_law"),
        "",
        "LaTeX",
        f"  {info['G_latex']}",
        f"  {info['leading_order_ode_latex']}",
        f"  {info['conserved_latex']}",
    ]
    for note in info["notes"]:
        lines += [""] + textwrap.wrap(f"note: {note}", 100, subsequent_indent="      ")
    return "\n".join(lines)
