"""Taylor coefficients at 0 of an expression in ``x``, by truncated series arithmetic.

SymPy's ``series`` grows fast with nested and shifted transcendental calls (``tanh``
nested 5 deep 3-9 s, ``erf(erf(x+1)+1)`` over 100 s).  :func:`taylor` instead walks
the expression tree once and combines truncated Laurent series ``x^v (c_0 + c_1 x +
... + c_(n-1) x^(n-1)) + O(x^(v+n))`` node by node, in 256-bit binary floating point
(:mod:`mpmath`): sums and Cauchy products, the reciprocal by its recurrence, and every
function ``f`` of a series ``u = u_0 + t`` through its value ``f(u_0)`` and the
differential equation it satisfies (``w' = w t'`` for ``exp``, ``w = f(u_0) + integral
of g(u) u'`` with ``g = f'`` for ``log``, ``atan``, ``erf`` ...).  The cost is
``O(nodes * n^2)`` arithmetic operations, whatever the nesting.

A sum that cancels to within :data:`CANCELLED` of the magnitude of its terms is set
to exactly 0: equal coefficients reached by different routes (``-1/3`` from the
``tanh`` recurrence and the literal ``x**3/3``) then cancel exactly, so a valuation
(and the multiplicity read from it) is not spoiled by rounding.
"""

from __future__ import annotations

import mpmath
import sympy as sp

PREC = 256
"""Working precision in bits."""

CANCELLED = mpmath.mpf(2) ** -200
"""A sum smaller than this times the sum of its terms' magnitudes is exactly 0."""

_MAX_PAD = 64
"""Most extra orders carried to make up for divisions by series that vanish at 0."""

_MAX_CONSTANT = 1e4
"""Largest magnitude of the constant term of an argument of exp, sinh, cosh, erf...:
beyond it the value is out of double range (or flat), and mpmath's cost grows."""


class SeriesError(ValueError):
    """The expression has no Taylor expansion at 0 (pole, branch point, complex value)."""


class _NeedPrecision(Exception):
    """A coefficient beyond the working order was needed: carry more orders."""


class _Series:
    """``x^v * (c[0] + c[1] x + ...) + O(x^(v + len(c)))``; ``c[0] != 0`` unless ``c`` is
    empty (then the series is ``O(x^v)``)."""

    __slots__ = ("v", "c")

    def __init__(self, v: int, c: list):
        while c and c[0] == 0:
            c = c[1:]
            v += 1
        self.v, self.c = v, c

    @property
    def end(self) -> int:
        """Absolute order of the error term."""
        return self.v + len(self.c)

    def coefficient(self, k: int):
        j = k - self.v
        return self.c[j] if 0 <= j < len(self.c) else mpmath.mpf(0)


def _sum(terms):
    total = mpmath.fsum(terms)
    if total != 0 and abs(total) <= CANCELLED * mpmath.fsum(abs(t) for t in terms):
        return mpmath.mpf(0)
    return total


def _add(a: _Series, b: _Series) -> _Series:
    v, end = min(a.v, b.v), min(a.end, b.end)
    return _Series(v, [_sum([a.coefficient(k), b.coefficient(k)]) for k in range(v, end)])


def _mul(a: _Series, b: _Series) -> _Series:
    n = min(len(a.c), len(b.c))
    c = [_sum([a.c[i] * b.c[k - i] for i in range(k + 1)]) for k in range(n)]
    return _Series(a.v + b.v, c)


def _scale(a: _Series, s) -> _Series:
    return _Series(a.v, [s * c for c in a.c])


def _inverse(b: _Series) -> _Series:
    if not b.c:
        raise _NeedPrecision
    d = [1 / b.c[0]]
    for n in range(1, len(b.c)):
        d.append(-_sum([b.c[j] * d[n - j] for j in range(1, n + 1)]) / b.c[0])
    return _Series(-b.v, d)


def _constant(value, end: int) -> _Series:
    """``value + O(x^end)``."""
    return _Series(0, [mpmath.mpf(value)] + [mpmath.mpf(0)] * (end - 1))


def _split(u: _Series, name: str):
    """``u_0`` and ``t = u - u_0`` for an argument ``u`` that is finite at 0."""
    if u.end <= 0:
        raise _NeedPrecision
    if u.v < 0:
        raise SeriesError(f"the argument of {name} has a pole at 0")
    u0 = u.coefficient(0)
    t = _add(u, _constant(-u0, u.end)) if u0 != 0 else u
    return u0, t


def _derivative(a: _Series) -> _Series:
    return _Series(a.v - 1, [(a.v + j) * c for j, c in enumerate(a.c)])


def _integral(d: _Series, w0) -> _Series:
    """``w0 + integral of d`` (``d`` free of ``x^-1``)."""
    if d.c and d.v < 0:
        raise SeriesError("logarithmic term")
    c = [mpmath.mpf(0)] * max(d.v, 0) + list(d.c)
    return _Series(0, [mpmath.mpf(w0)] + [ck / (k + 1) for k, ck in enumerate(c)])


def _real(value, name: str):
    value = mpmath.mpmathify(value)
    if not isinstance(value, mpmath.mpf) or not mpmath.isfinite(value):
        raise SeriesError(f"{name} is not a finite real number at 0 ({mpmath.nstr(value, 8)})")
    return value


def _exp_like(t: _Series, w0, sign: int):
    """``w = w0 * exp(t)`` (sign 0) or the pair (sin, cos) / (sinh, cosh) of ``u_0 + t``
    from their derivatives, by the recurrences ``n w_n = sum_k k t_k ...``."""
    n = t.end
    tk = [t.coefficient(k) for k in range(n)]
    if sign == 0:
        w = [mpmath.mpf(w0)]
        for m in range(1, n):
            w.append(_sum([k * tk[k] * w[m - k] for k in range(1, m + 1)]) / m)
        return _Series(0, w)
    s, c = [mpmath.mpf(w0[0])], [mpmath.mpf(w0[1])]
    for m in range(1, n):
        s_m = _sum([k * tk[k] * c[m - k] for k in range(1, m + 1)]) / m
        c_m = sign * _sum([k * tk[k] * s[m - k] for k in range(1, m + 1)]) / m
        s.append(s_m)
        c.append(c_m)
    return _Series(0, s), _Series(0, c)


def _power(base: _Series, alpha: sp.Expr) -> _Series:
    """``base ** alpha`` for a constant real ``alpha`` (a SymPy number)."""
    if alpha.is_integer:
        k = int(alpha)
        if k < 0:
            base, k = _inverse(base), -k
        result, square = _constant(1, len(base.c)), base
        while k:
            if k & 1:
                result = _mul(result, square)
            k >>= 1
            if k:
                square = _mul(square, square)
        return result
    # base = b0 x^v (1 + s) is smooth and real for x of both signs iff b0 > 0, v is
    # even and v * alpha is an even integer (x^v = |x|^v, so the power is |x|^(v alpha))
    if not base.c:
        raise _NeedPrecision
    b0, v = base.c[0], base.v
    degree = v * alpha
    if b0 < 0 or v % 2 or not degree.is_integer or int(degree) % 2:
        raise SeriesError(f"power {alpha} is not smooth or not real at 0")
    # (1 + s)^alpha by n w_n = sum_j (alpha j - n + j) s_j w_(n-j)
    a = mpmath.mpf(alpha.evalf(90))
    s = [c / b0 for c in base.c]
    w = [mpmath.mpf(1)]
    for m in range(1, len(s)):
        w.append(_sum([(a * j - m + j) * s[j] * w[m - j] for j in range(1, m + 1)]) / m)
    return _Series(int(degree), [b0**a * c for c in w])


def _compose(name: str, u: _Series) -> _Series:
    """``name(u)`` for a function of one argument."""
    if name == "exp" and u.end <= 0:
        raise _NeedPrecision
    if name == "exp" and u.v < 0:
        lead = u.c[0]
        if u.v % 2 == 0 and lead < 0:  # exp(-c/x^2k): flat, every coefficient 0
            return _Series(u.end - u.v, [])
        raise SeriesError("exp of an expression with a pole at 0")
    u0, t = _split(u, name)
    if name in ("exp", "sin", "cos", "sinh", "cosh", "tan", "tanh", "erf", "erfc"):
        if abs(u0) > _MAX_CONSTANT:
            raise SeriesError(f"{name} of {mpmath.nstr(u0, 8)} at 0 is out of range")
    if name == "exp":
        return _exp_like(t, mpmath.exp(u0), 0)
    if name in ("sin", "cos", "tan"):
        s, c = _exp_like(t, (mpmath.sin(u0), mpmath.cos(u0)), -1)
        return s if name == "sin" else c if name == "cos" else _mul(s, _inverse(c))
    if name in ("sinh", "cosh", "tanh"):
        s, c = _exp_like(t, (mpmath.sinh(u0), mpmath.cosh(u0)), 1)
        return s if name == "sinh" else c if name == "cosh" else _mul(s, _inverse(c))
    if name == "log":
        if u.v != 0:
            raise SeriesError("log of an expression that vanishes at 0")
        return _integral(_mul(_derivative(u), _inverse(u)), _real(mpmath.log(u0), "log"))
    # w = f(u0) + integral of g(u) u'
    one, du = _constant(1, u.end), _derivative(u)
    square = _mul(u, u)
    half = sp.Rational(1, 2)
    g = {
        "atan": lambda: _inverse(_add(one, square)),
        "atanh": lambda: _inverse(_add(one, _scale(square, -1))),
        "asin": lambda: _power(_add(one, _scale(square, -1)), -half),
        "acos": lambda: _scale(_power(_add(one, _scale(square, -1)), -half), -1),
        "asinh": lambda: _power(_add(one, square), -half),
        "acosh": lambda: _power(_add(square, _scale(one, -1)), -half),
        "erf": lambda: _scale(_compose("exp", _scale(square, -1)), 2 / mpmath.sqrt(mpmath.pi)),
        "erfc": lambda: _scale(_compose("exp", _scale(square, -1)), -2 / mpmath.sqrt(mpmath.pi)),
    }
    if name not in g:
        raise SeriesError(f"no series rule for {name}")
    w0 = _real(getattr(mpmath, name)(u0), f"{name}({mpmath.nstr(u0, 8)})")
    return _integral(_mul(g[name](), du), w0)


_FUNCTIONS = {
    sp.exp: "exp",
    sp.log: "log",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.tan: "tan",
    sp.sinh: "sinh",
    sp.cosh: "cosh",
    sp.tanh: "tanh",
    sp.asin: "asin",
    sp.acos: "acos",
    sp.atan: "atan",
    sp.asinh: "asinh",
    sp.acosh: "acosh",
    sp.atanh: "atanh",
    sp.erf: "erf",
    sp.erfc: "erfc",
}


class _Evaluator:
    def __init__(self, x: sp.Symbol, end: int):
        self.x, self.end, self.memo = x, end, {}

    def __call__(self, expr: sp.Expr) -> _Series:
        if expr not in self.memo:
            self.memo[expr] = self.series(expr)
        return self.memo[expr]

    def series(self, expr: sp.Expr) -> _Series:
        if expr == self.x:
            return _Series(1, [mpmath.mpf(1)] + [mpmath.mpf(0)] * (self.end - 2))
        if expr.is_Number or expr.is_NumberSymbol:
            return _constant(_real(mpmath.mpf(expr.evalf(90)), str(expr)), self.end)
        if expr.is_Add:
            terms = [self(a) for a in expr.args]
            v, end = min(t.v for t in terms), min(t.end for t in terms)
            c = [_sum([t.coefficient(k) for t in terms]) for k in range(v, end)]
            return _Series(v, c)
        if expr.is_Mul:
            result = self(expr.args[0])
            for a in expr.args[1:]:
                result = _mul(result, self(a))
            return result
        if expr.is_Pow:
            base, exponent = expr.args
            if exponent.free_symbols:
                return _compose("exp", self(exponent * sp.log(base)))
            return _power(self(base), exponent)
        if isinstance(expr, sp.Function) and type(expr) in _FUNCTIONS and len(expr.args) == 1:
            return _compose(_FUNCTIONS[type(expr)], self(expr.args[0]))
        raise SeriesError(f"no series rule for {type(expr).__name__}")


def taylor(expr: sp.Expr, x: sp.Symbol, order: int) -> list:
    """Coefficients ``c_0 .. c_order`` of the Taylor series of ``expr`` at ``x = 0``.

    Parameters
    ----------
    expr : sympy.Expr
        Built from numbers, ``x``, ``+ * **`` and the functions exp, log, sin, cos,
        tan, sinh, cosh, tanh, asin, acos, atan, asinh, acosh, atanh, erf, erfc.
    x : sympy.Symbol
    order : int

    Returns
    -------
    list of mpmath.mpf
        ``PREC``-bit coefficients; exact zeros where terms cancel (:data:`CANCELLED`).

    Raises
    ------
    SeriesError
        A pole or branch point at 0, a value that is not real, an unsupported node.
    """
    with mpmath.workprec(PREC):
        pad = 0
        while True:
            try:
                result = _Evaluator(x, order + 1 + pad)(expr)
                if result.end > order:
                    break
                missing = order + 1 - result.end
            except _NeedPrecision:
                missing = order + 1
            if pad >= _MAX_PAD:
                raise SeriesError(
                    f"divisions by expressions that vanish at 0 to order {_MAX_PAD} or more"
                )
            pad = min(_MAX_PAD, pad + missing + 2)
        if result.v < 0:
            raise SeriesError(f"pole of order {-result.v} at 0")
        return [result.coefficient(k) for k in range(order + 1)]
