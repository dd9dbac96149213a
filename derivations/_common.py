"""Helpers shared by the derivation scripts.

A symbolic activation ``sigma`` whose derivative prints as ``sigma'``, the
explicit two-layer flow of docs/theory.md §1, expansion in a small
parameter, and the Markdown page writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import sympy as sp

OUT_DIR = Path(__file__).resolve().parent / "out"


class dsigma(sp.Function):
    """sigma', the derivative of the symbolic activation :class:`sigma`."""

    def _latex(self, printer, exp=None):
        body = r"\sigma'\left(" + printer._print(self.args[0]) + r"\right)"
        return body if exp is None else r"{" + body + r"}^{" + printer._print(exp) + r"}"


class sigma(sp.Function):
    """An unspecified activation function; ``diff`` gives :class:`dsigma`."""

    def fdiff(self, argindex=1):
        return dsigma(self.args[0])


def dot(u: Sequence, v: Sequence) -> sp.Expr:
    """Euclidean inner product of two equal-length sequences."""
    if len(u) != len(v):
        raise ValueError(f"dot: lengths differ ({len(u)} and {len(v)})")
    return sp.Add(*[ui * vi for ui, vi in zip(u, v, strict=True)])


def vector(name: str, size: int, **assumptions) -> list[sp.Symbol]:
    """Symbols ``name_1 .. name_size``."""
    return [sp.Symbol(f"{name}_{j + 1}", **assumptions) for j in range(size)]


def matrix(name: str, rows: int, cols: int, **assumptions) -> sp.Matrix:
    """A rows x cols Matrix of symbols ``name_{ij}`` (1-based)."""
    return sp.Matrix(
        rows, cols, lambda i, j: sp.Symbol(f"{name}_{{{i + 1}{j + 1}}}", **assumptions)
    )


def mean(values: Sequence) -> sp.Expr:
    """Arithmetic mean (1/n) sum values."""
    return sp.Add(*values) / len(values)


def two_layer_flow(
    a: Sequence,
    W: sp.Matrix,
    X: sp.Matrix,
    y: Sequence,
    alpha: sp.Expr,
    act: Callable = sigma,
    dact: Callable | None = None,
    residual: Sequence | None = None,
) -> dict:
    """The two-layer flow as written in docs/theory.md §1.

    ``f_i = (1/alpha) sum_k a_k act(w_k . x_i)``, ``e_i = f_i - y_i``,
    ``da_k/dt = -(1/alpha)(1/n) sum_i e_i act(w_k . x_i)``,
    ``dw_k/dt = -(1/alpha)(1/n) sum_i e_i a_k act'(w_k . x_i) x_i``.
    ``X`` has one (augmented) input per row; ``W`` one neuron per row.
    ``residual``, if given, replaces ``e`` (e.g. ``-y`` at leading order).
    """
    n, m = X.rows, len(a)
    if dact is None:
        z = sp.Dummy("z")
        dact = sp.Lambda(z, sp.diff(act(z), z))
    pre = [[dot(W.row(k), X.row(i)) for i in range(n)] for k in range(m)]
    f = [sp.Add(*[a[k] * act(pre[k][i]) for k in range(m)]) / alpha for i in range(n)]
    e = [f[i] - y[i] for i in range(n)] if residual is None else list(residual)
    rhs_a = [-sp.Add(*[e[i] * act(pre[k][i]) for i in range(n)]) / (alpha * n) for k in range(m)]
    rhs_W = sp.Matrix(
        m,
        X.cols,
        lambda k, d: (
            -sp.Add(*[e[i] * a[k] * dact(pre[k][i]) * X[i, d] for i in range(n)]) / (alpha * n)
        ),
    )
    return {"f": f, "e": e, "rhs_a": rhs_a, "rhs_W": rhs_W, "pre": pre}


def eps_coeffs(expr: sp.Expr, eps: sp.Symbol) -> dict[int, sp.Expr]:
    """Coefficients of a polynomial in ``eps``: ``{k: coefficient of eps**k}``."""
    parts: dict[int, list] = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        coeff, power = term.as_coeff_exponent(eps)
        if not (power.is_Integer and power >= 0) or coeff.has(eps):
            raise ValueError(f"not a polynomial in {eps}: term {term}")
        parts.setdefault(int(power), []).append(coeff)
    coeffs = {k: sp.Add(*v) for k, v in parts.items()}
    return {k: c for k, c in sorted(coeffs.items()) if c != 0}


def _series_mul(left: dict, right: dict, order: int) -> dict:
    out: dict[int, sp.Expr] = {}
    for i, ci in left.items():
        for j, cj in right.items():
            if i + j < order:
                out[i + j] = out.get(i + j, sp.S.Zero) + ci * cj
    return out


def eps_series(expr: sp.Expr, eps: sp.Symbol, order: int) -> dict[int, sp.Expr]:
    """Coefficients of ``eps**0 .. eps**(order-1)`` of a polynomial in ``eps``.

    Works on the expression tree (sums, products, integer powers) and drops
    higher orders as it goes, so nothing beyond the requested order is ever
    expanded.  Coefficients are returned unexpanded; zero ones may remain.
    """
    if not expr.has(eps):
        return {0: expr}
    if expr == eps:
        return {1: sp.S.One} if order > 1 else {}
    if expr.is_Add:
        out: dict[int, sp.Expr] = {}
        for arg in expr.args:
            for k, c in eps_series(arg, eps, order).items():
                out[k] = out.get(k, sp.S.Zero) + c
        return out
    if expr.is_Mul:
        out = {0: sp.S.One}
        for arg in expr.args:
            out = _series_mul(out, eps_series(arg, eps, order), order)
        return out
    if expr.is_Pow and expr.exp.is_Integer and expr.exp >= 0:
        base = eps_series(expr.base, eps, order)
        out = {0: sp.S.One}
        for _ in range(int(expr.exp)):
            out = _series_mul(out, base, order)
        return out
    raise ValueError(f"eps_series: not a polynomial in {eps}: {expr}")


def truncate(expr: sp.Expr, eps: sp.Symbol, order: int) -> sp.Expr:
    """Drop every term of order ``eps**order`` and higher."""
    return sp.Add(*[c * eps**k for k, c in eps_coeffs(expr, eps).items() if k < order])


def is_zero(expr: sp.Expr) -> bool:
    """Zero after ``expand`` (and ``cancel`` for rational expressions); matrices entrywise."""
    if isinstance(expr, sp.MatrixBase):
        return all(is_zero(entry) for entry in expr)
    expr = sp.expand(expr)
    return expr == 0 or sp.cancel(sp.together(expr)) == 0


def assert_zero(expr: sp.Expr, what: str) -> None:
    """Assert an identity ``lhs - rhs == 0``, naming it on failure."""
    if not is_zero(expr):
        raise AssertionError(f"{what}: residual {sp.simplify(expr)} is not zero")


#: LaTeX names of symbols whose SymPy names are plain text (``kappa'``).
LATEX_NAMES: dict[sp.Symbol, str] = {}


def tex(expr) -> str:
    """LaTeX of a SymPy object (or a string passed through)."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, (tuple, list)):
        expr = sp.Tuple(*expr)
    names = {s: LATEX_NAMES[s] for s in getattr(expr, "free_symbols", ()) if s in LATEX_NAMES}
    return sp.latex(expr, symbol_names=names)


class Page:
    """A short Markdown page: title, source, text, display equations, checks."""

    def __init__(self, name: str, title: str, source: str):
        self.name = name
        self.lines = [f"# {title}", "", f"Source: {source}", ""]
        self.checks: list[str] = []
        self.corrections: list[str] = []

    def text(self, paragraph: str) -> None:
        self.lines += [paragraph, ""]

    def eq(self, lhs, rhs=None) -> None:
        body = tex(lhs) if rhs is None else f"{tex(lhs)} = {tex(rhs)}"
        self.lines += ["$$", body, "$$", ""]

    def check(self, statement: str) -> None:
        """Record an assertion that passed."""
        self.checks.append(statement)

    def correction(self, statement: str) -> None:
        """Record where the derivation refines or corrects the theory (docs/theory.md §14)."""
        self.corrections.append(statement)

    def write(self, out_dir: Path | str | None = None) -> Path:
        out = Path(out_dir) if out_dir is not None else OUT_DIR
        out.mkdir(parents=True, exist_ok=True)
        lines = list(self.lines)
        lines += ["## Asserted", ""] + [f"- {c}" for c in self.checks] + [""]
        lines += ["## Refinements and corrections (docs/theory.md §14)", ""]
        lines += [f"- {c}" for c in self.corrections] or ["- none found"]
        path = out / f"{self.name}.md"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
