"""Activation functions: one SymPy expression, compiled kernels generated from it.

An :class:`Activation` holds a SymPy expression in ``x``.  Everything else is
derived from it: the value and the first two derivatives as Numba kernels
(printed by SymPy, sharing common subexpressions, cached on disk per
expression; Taylor polynomials near 0 where the closed forms cancel there, as in
``exp(x) - 1`` and ``sin(x)/x``), the multiplicity ``p`` and Taylor coefficients at 0
(by series arithmetic, :mod:`flowsim._series`), and the positive-homogeneity degree
of ReLU-like activations.

The analysis of an expression is bounded by construction: the series costs
``O(nodes * MAX_ORDER^2)`` operations, the checks away from 0 a fixed grid and a
fixed number of bisections, and the expression's size is bounded by the parser
(:mod:`flowsim._expressions`).  The slowest accepted expression found (306
characters, 3 transcendental calls) takes 1.7 s on 2 busy cores.

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686 (multiplicity, Definition 1).
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

import mpmath
import numba
import numpy as np
import sympy as sp
from numpy.typing import ArrayLike
from sympy.codegen.cfunctions import log1p
from sympy.printing.pycode import PythonCodePrinter

from flowsim import _abi, _codegen, _expressions, _series

x = sp.Symbol("x", real=True)

MAX_ORDER = 12
"""Highest derivative order searched for the multiplicity."""

# name -> (expression text, positive-homogeneity degree or None).  Sigmoid and
# SiLU are written through tanh, an exact identity whose derivatives stay finite
# for every argument (1/(1+exp(-x)) gives inf/inf in its derivative for x << 0).
REGISTRY: dict[str, tuple[str, int | None]] = {
    "relu": ("Piecewise((x, x > 0), (0, True))", 1),
    "leaky_relu": ("Piecewise((x, x > 0), (x/100, True))", 1),
    "linear": ("x", 1),
    "tanh": ("tanh(x)", None),
    "sigmoid": ("(1 + tanh(x/2))/2", None),
    "softplus": ("log(1 + exp(x))", None),
    "sin": ("sin(x)", None),
    "xtanh": ("x*tanh(x)", None),
    "x2tanh": ("x**2*tanh(x)", None),
    "gelu": ("x*(1 + erf(x/sqrt(2)))/2", None),
    "silu": ("x*(1 + tanh(x/2))/2", None),
}

# Overflow-safe, cancellation-free forms of (sigma, sigma', sigma'') for the compiled
# kernels, equal to the derivatives of the registered expression for every real x
# (tested against 40-digit evaluation): log(1 + exp(x)) overflows for x > ~709 and its
# derivative gives inf/inf; the tanh forms of sigmoid and SiLU lose every digit of
# 1 + tanh(x/2) for x << 0.  With E = exp(-|x|): sigmoid = 1/(1+E) (x >= 0) or E/(1+E),
# sigmoid' = E/(1+E)^2, sigmoid'' = sign(x) E (E-1)/(1+E)^3.
_SIG = "Piecewise((1/(1 + exp(-Abs(x))), x >= 0), (exp(-Abs(x))/(1 + exp(-Abs(x))), True))"
_DSIG = "exp(-Abs(x))/(1 + exp(-Abs(x)))**2"
_D2SIG = "sign(x)*exp(-Abs(x))*(exp(-Abs(x)) - 1)/(1 + exp(-Abs(x)))**3"
KERNEL_FORMS: dict[str, tuple[str, str, str]] = {
    "sigmoid": (_SIG, _DSIG, _D2SIG),
    "silu": (f"x*{_SIG}", f"{_SIG} + x*{_DSIG}", f"2*{_DSIG} + x*{_D2SIG}"),
    "softplus": (
        "Max(x, 0) + log(1 + exp(-Abs(x)))",
        _SIG,
        _DSIG,
    ),
}

_NONSMOOTH = (sp.Piecewise, sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign)


class _KernelPrinter(PythonCodePrinter):
    """Python printer whose output Numba compiles (math module, floats)."""

    def _print_Rational(self, expr):
        return f"({float(expr.p)!r}/{float(expr.q)!r})"

    def _print_Integer(self, expr):
        return f"{float(expr.p)!r}"

    # call-free versions that let the kernels' loops vectorize (flowsim._vmath)
    def _print_tanh(self, expr):
        return f"_vm.tanh({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"_vm.exp({self._print(expr.args[0])})"

    def _print_log(self, expr):
        if len(expr.args) != 1:
            return super()._print_log(expr)
        return f"_vm.log({self._print(expr.args[0])})"

    def _print_log1p(self, expr):
        return f"_vm.log1p({self._print(expr.args[0])})"

    def _print_DiracDelta(self, expr):
        return "0.0"  # zero almost everywhere: the kernels see no atoms

    def _print_Heaviside(self, expr):
        arg = self._print(expr.args[0])
        return f"(1.0 if {arg} > 0 else 0.0)"


def _print(expr: sp.Expr) -> str:
    return _KernelPrinter({"fully_qualified_modules": True}).doprint(expr)


def _with_log1p(expr: sp.Expr) -> sp.Expr:
    return expr.replace(
        lambda e: isinstance(e, sp.log) and e.args[0].is_Add and 1 in e.args[0].args,
        lambda e: log1p(e.args[0] - 1),
    )


def _function_source(name: str, exprs: list[sp.Expr], near_zero=None) -> str:
    """Source of a scalar ``@jit`` function of ``z`` returning ``exprs`` (inlined
    into its callers when it returns more than two: see :data:`flowsim._jit.jit_inline`).

    ``near_zero = (r, polynomials)``: for ``|z| < r`` return the polynomials (Horner
    text, one per expression) instead of the closed forms."""
    z = sp.Symbol("z", real=True)
    # log(1 + u) -> log1p(u) before common subexpressions are taken out: once 1 + u
    # is its own variable the printer can no longer see it (log(1 + 1e-12) != 1e-12)
    exprs = [_with_log1p(e.subs(x, z)) for e in exprs]
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_t"))
    lines = ["@jit_inline" if len(exprs) > 2 else "@jit", f"def {name}(z):"]
    if near_zero is not None:
        radius, polynomials = near_zero
        lines.append(f"    if abs(z) < {radius!r}:")
        lines.append(f"        return {', '.join(polynomials)}")
    for sym, sub in replacements:
        lines.append(f"    {sym} = {_print(sub)}")
    values = ", ".join(f"float({_print(e)})" for e in reduced)
    lines.append(f"    return {values}")
    return "\n".join(lines) + "\n"


_ARRAY_KERNEL = '''
@jit
def apply(z, order, out):
    """out[i] = sigma^(order)(z[i]) for order in 0, 1, 2."""
    for i in range(z.size):
        if order == 0:
            out[i] = sigma(z[i])
        elif order == 1:
            out[i] = dsigma(z[i])
        else:
            out[i] = d2sigma(z[i])


@jit
def activate(z, scale, order, s, ds, d2s):
    """The models' activation kernel (flowsim._abi.ACTIVATION_SIGNATURE), one loop
    per order so that each vectorizes."""
    if order == 0:
        for j in range(z.size):
            s[j] = sigma(scale * z[j])
    elif order == 1:
        for j in range(z.size):
            s[j], ds[j] = sigma_dsigma(scale * z[j])
    else:
        for j in range(z.size):
            s[j], ds[j], d2s[j] = sigma_derivs(scale * z[j])


def _c_activate(z, n, scale, order, s, ds, d2s):
    shape = (n,)
    activate(carray(z, shape), scale, order, carray(s, shape), carray(ds, shape),
             carray(d2s, shape))
    return 0.0
'''


def kernel_source(
    expr: sp.Expr, forms: tuple[sp.Expr, sp.Expr, sp.Expr] | None = None, taylor=None
) -> str:
    """Numba source of ``sigma``, ``dsigma``, ``d2sigma``, ``sigma_dsigma`` and
    ``sigma_derivs`` (value and both derivatives, common subexpressions shared).

    ``forms`` replaces (sigma, sigma', sigma'') by numerically safer equal forms.
    ``taylor`` (coefficients ``c_0 .. c_(MAX_ORDER + TAIL)`` at 0): where the closed forms
    lose digits near 0, the kernels evaluate Taylor polynomials there
    (:func:`_near_zero_polynomials`).
    """
    if forms is None:
        d1 = sp.diff(expr, x)
        d2 = sp.diff(d1, x)
    else:
        expr, d1, d2 = forms
    exprs = (expr, d1, d2)
    near_zero = None if taylor is None else _near_zero_polynomials(exprs, taylor)
    parts = []
    for name, which in _KERNELS:
        chosen = near_zero and (near_zero[0], [near_zero[1][j] for j in which])
        parts.append(_function_source(name, [exprs[j] for j in which], chosen))
    return "\n\n".join([*parts, _ARRAY_KERNEL])


_KERNELS = (
    ("sigma", (0,)),
    ("dsigma", (1,)),
    ("d2sigma", (2,)),
    ("sigma_dsigma", (0, 1)),
    ("sigma_derivs", (0, 1, 2)),
)

NEAR_ZERO_POINTS = tuple(s * z for z in (1e-14, 1e-11, 1e-8, 1e-5, 1e-3, 1e-2) for s in (1, -1))
"""Where the closed forms of sigma, sigma', sigma'' are compared with 60-digit values."""

TAIL = 8
"""Omitted Taylor terms that bound the near-zero polynomials' truncation error."""

CANCELS = 2.0**-46
"""Relative error (64 ulp) of a closed form near 0 above which the kernels switch to
the Taylor polynomials there."""


def _identity(function):
    return function


def _closed_form_error(exprs) -> float:
    """Largest relative error at :data:`NEAR_ZERO_POINTS` of the printed closed forms
    of ``exprs`` evaluated in double precision, against mpmath values (60 digits, more
    until two precisions agree: ``log(1 + x**4)`` itself cancels in 60 digits)."""
    # the text printed for the kernel, run in Python: flowsim's own printer output of a
    # parsed expression (numbers, z and math calls), not user text
    namespace = {"jit_inline": _identity, "jit": _identity, "math": math, "_vm": math}
    exec(_function_source("closed_form", list(exprs)), namespace)  # noqa: S102
    closed_form = namespace["closed_form"]
    reference = sp.lambdify(x, list(exprs), "mpmath")
    worst = 0.0
    for z in NEAR_ZERO_POINTS:
        try:
            want = _reference(reference, z)
            got = closed_form(z)
        except (ArithmeticError, TypeError, ValueError):  # the series proved it finite
            return math.inf
        for g, w in zip(got, want, strict=True):
            error = abs(g - w) / max(abs(w), 1e-300) if math.isfinite(g) else math.inf
            worst = max(worst, error)
    return worst


def _reference(function, z: float) -> list[float]:
    """``function(z)`` rounded to double, at the first of 60, 120, ... 1920 digits that
    agrees with the next to 30 digits."""
    previous = None
    for dps in (60, 120, 240, 480, 960, 1920):
        with mpmath.workdps(dps):
            values = [mpmath.mpf(v) for v in function(mpmath.mpf(z))]
        if previous is not None and all(
            abs(a - b) <= 1e-30 * abs(b) for a, b in zip(previous, values, strict=True)
        ):
            break
        previous = values
    return [float(v) for v in values]


def _near_zero_polynomials(exprs, taylor) -> tuple[float, list[str]] | None:
    """``(r, [Horner text of sigma, sigma', sigma''])`` when the closed forms cancel near
    0 (:data:`CANCELS`), else None.

    With ``N = MAX_ORDER``, sigma^(j) is replaced by its Taylor polynomial
    ``g_0 + ... + g_(N-j) z^(N-j)``, ``g_k = (k+1)...(k+j) c_(k+j)``, for ``|z| < r``,

        r = min over j and t = N-j+1 .. N-j+T of (eps |g_m| / (2 T |g_t|))^(1 / (t - m)),

    ``m`` the first non-zero ``g``, ``T`` = :data:`TAIL`, ``eps = 2^-53``: each of the
    first ``T`` omitted terms is then below ``eps / (2 T)`` of the leading one, their
    sum below half an ulp of ``sigma^(j)(z) ~ g_m z^m``.  (``T`` terms rather than one:
    ``log(1 + x**4)`` has non-zero coefficients at every fourth order only.)
    """
    if not _closed_form_error(exprs) > CANCELS:
        return None
    radius, polynomials = 1.0, []
    for j in range(3):
        g = [math.prod(range(k + 1, k + j + 1)) * taylor[k + j] for k in range(len(taylor) - j)]
        degree = MAX_ORDER - j
        m = next((k for k in range(degree + 1) if g[k] != 0), None)
        for t in range(degree + 1, degree + TAIL + 1):
            if m is not None and g[t] != 0:
                bound = (2.0**-53 * abs(g[m]) / (2 * TAIL * abs(g[t]))) ** (1 / (t - m))
                radius = min(radius, float(bound))
        polynomials.append(_horner([float(c) for c in g[: degree + 1]]))
    return radius, polynomials


def _horner(coefficients: list[float]) -> str:
    """``c_0 + z*(c_1 + z*(...))`` (zero terms left out)."""
    while coefficients and coefficients[-1] == 0:
        coefficients = coefficients[:-1]
    if not coefficients:
        return "0.0"
    text = repr(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        text = f"z*({text})" if c == 0 else f"{c!r} + z*({text})"
    return text


class Activation:
    """An activation function defined by a SymPy expression in ``x``.

    Use :func:`activation` to make one.  Calling the object evaluates it
    elementwise on arrays through its compiled kernel.

    Attributes
    ----------
    name : str
        Registered name, or the expression text.
    expr : sympy.Expr
        The expression in the real symbol ``x``: the single source of truth.
    text : str
        ``str(expr)``, printed once (every trajectory records it).
    homogeneous : int or None
        Degree of positive homogeneity (1 for ReLU, leaky ReLU, linear), else None.
    multiplicity : int
        ``p``: order of the first non-zero derivative of order >= 1 at 0
        ([ZZJLZX22]); for a homogeneous activation, its degree.
    sigma0 : float
        ``sigma(0)`` (its limit where the expression is 0/0 there, ``sin(x)/x``).
    leading_coefficient : float
        ``c_p = sigma^(p)(0) / p!`` (for a homogeneous activation, its slope
        on the positive axis).
    """

    def __init__(self, name: str, expr: sp.Expr, homogeneous: int | None, forms=None):
        self.name = name
        self.expr = expr
        self.text = str(expr)
        self.homogeneous = homogeneous
        taylor = None
        if homogeneous is None:
            # TAIL orders beyond MAX_ORDER bound the truncation error of the near-zero
            # polynomials (_near_zero_polynomials)
            taylor = _taylor_coefficients(expr, MAX_ORDER + TAIL, name)
            nonzero = [j for j in range(1, MAX_ORDER + 1) if taylor[j] != 0]
            if not nonzero:
                raise _flat_at_zero(name)
            self._taylor = taylor[: MAX_ORDER + 1]
            self.sigma0 = float(taylor[0])
            self.multiplicity = nonzero[0]
            self.leading_coefficient = float(taylor[self.multiplicity])
        else:
            value0 = complex(sp.N(expr.subs(x, 0)))
            if not (math.isfinite(value0.real) and value0.imag == 0):
                raise ValueError(f"activation {name!r} is not finite at 0")
            self.sigma0 = value0.real
            self._taylor = None
            self.multiplicity = homogeneous
            self.leading_coefficient = float(expr.subs(x, 1))
        self.key = sp.srepr(expr)
        try:
            self.source = kernel_source(expr, forms, None if forms else taylor)
        except Exception as exc:  # noqa: BLE001 - printer errors name the function
            raise ValueError(f"activation {name!r} cannot be compiled: {exc}") from None

    def __repr__(self) -> str:
        return f"Activation({self.name!r}, p={self.multiplicity})"

    def __getstate__(self) -> dict:
        """Pickled without the compiled module and the callback's address: both belong
        to this process (an address sent to another would point anywhere)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("kernels", "address")}

    def taylor(self, order: int) -> np.ndarray:
        """Taylor coefficients ``c_0 .. c_order`` at 0, ``c_j = sigma^(j)(0)/j!``.

        Raises
        ------
        ValueError
            For a positively homogeneous activation (not smooth at 0).
        """
        if self._taylor is None:
            raise ValueError(
                f"activation {self.name!r} is positively homogeneous of degree "
                f"{self.homogeneous}: it has no Taylor expansion at 0"
            )
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        coefficients = self._taylor
        if order > MAX_ORDER:
            coefficients = _taylor_coefficients(self.expr, order, self.name)
        return np.array([float(c) for c in coefficients[: order + 1]])

    @functools.cached_property
    def kernels(self) -> ModuleType:
        """The compiled module with ``sigma``, ``dsigma``, ``d2sigma``, ``sigma_dsigma``."""
        return _codegen.build_module("activation", ["from numba import carray", self.source])

    @functools.cached_property
    def address(self) -> int:
        """Address of the compiled activation callback the models call
        (:data:`flowsim._abi.ACTIVATION_SIGNATURE`), compiled on first use and cached;
        one process compiles, concurrent ones wait and load its cache."""
        module = self.kernels
        with _codegen.compile_lock(module, f"activation kernels for {self.name}", "_c_activate"):
            callback = numba.cfunc(_abi.ACTIVATION_SIGNATURE, **_abi.CFUNC_OPTIONS)
            return callback(module._c_activate).address

    def _apply(self, z: ArrayLike, order: int) -> np.ndarray | float:
        z_arr = np.ascontiguousarray(z, dtype=np.float64)
        out = np.empty(z_arr.size)
        self.kernels.apply(z_arr.ravel(), order, out)
        result = out.reshape(z_arr.shape)
        return float(out[0]) if np.ndim(z) == 0 else result

    def __call__(self, z: ArrayLike) -> np.ndarray | float:
        return self._apply(z, 0)

    def derivative(self, z: ArrayLike, order: int = 1) -> np.ndarray | float:
        """``sigma'(z)`` (``order=1``) or ``sigma''(z)`` (``order=2``), elementwise."""
        if order not in (1, 2):
            raise ValueError(f"derivative order must be 1 or 2, got {order}")
        return self._apply(z, order)


def _flat_at_zero(name: str) -> ValueError:
    return ValueError(
        f"activation {name!r}: all derivatives of order 1..{MAX_ORDER} vanish at 0, so its "
        "multiplicity is undefined (flat at 0 or constant)"
    )


def _taylor_coefficients(expr: sp.Expr, order: int, name: str) -> list[mpmath.mpf]:
    """``c_0 .. c_order`` at 0 by series arithmetic (:mod:`flowsim._series`)."""
    try:
        return _series.taylor(expr, x, order)
    except _series.SeriesError as exc:
        raise ValueError(f"activation {name!r} has no Taylor expansion at 0: {exc}") from None


def _parse(text: str, *, series: bool = True) -> sp.Expr:
    """The expression in ``x`` that ``text`` denotes, read by the whitelist parser
    (:mod:`flowsim._expressions`: never evaluated).  ``series=False`` (flowsim's own
    kernel forms, printed but never expanded in series) lifts the bound on the number
    of transcendental calls."""
    key = text.strip()
    if key.isidentifier() and key != "x" and key not in REGISTRY:
        raise ValueError(
            f"unknown activation {key!r}: the registered names are {', '.join(REGISTRY)}; "
            "or write an expression in x such as 'x*tanh(x)'"
        )
    try:
        limit = _expressions.MAX_TRANSCENDENTAL if series else math.inf
        return _expressions.parse(text, {"x": x}, max_transcendental=limit)
    except ValueError as exc:
        raise ValueError(f"activation {text!r}: {exc}") from None


def _homogeneity(expr: sp.Expr) -> int | None:
    """Degree k with sigma(l z) = l^k sigma(z) for all l > 0, for non-smooth expressions.

    Checked numerically at fixed points of both signs (symbolic simplification
    of ``Max``/``Piecewise`` identities is unreliable); smooth expressions get
    None: their Taylor expansion is what matters.
    """
    if not expr.has(*_NONSMOOTH):
        return None
    f = sp.lambdify(x, expr, "math")
    points = (-2.1, -0.7, -0.05, 0.03, 0.9, 3.3)
    scales = (0.01, 0.37, 2.5, 40.0)
    for k in (1, 2, 3):
        try:
            ok = all(
                abs(f(s * z) - s**k * f(z)) <= 1e-12 * (1 + abs(s**k * f(z)))
                for z in points
                for s in scales
            )
        except (ArithmeticError, TypeError, ValueError):
            return None
        if ok:
            return k
    return None


CHECKED_RANGE = 10.0
"""An expression activation must be finite, with finite first and second derivatives,
on ``[-CHECKED_RANGE, CHECKED_RANGE]``: the pre-activations ``w . x`` that runs from
small initializations visit on data of unit scale.  Poles and branch points there
(``tan``, ``1/(1-x)``, ``log(2+x)``) are refused."""

_GRID = np.linspace(-CHECKED_RANGE, CHECKED_RANGE, 4001)

_BISECTIONS = 60
"""Halvings of a grid interval (width 0.005) where a function changes sign: down to
adjacent doubles (0.005 / 2^60 = 4e-21)."""


def _check_smooth_away_from_zero(expr: sp.Expr, name: str, at_zero=None) -> None:
    """Value and two derivatives finite and real on a grid of the checked range, and
    without a pole between grid points.

    The value at 0 itself (0/0 in ``sin(x)/x``) is ``at_zero`` (sigma, sigma',
    sigma'' there from the Taylor series), or left out.  A pole between two grid
    points makes the function or its derivative change sign there (a pole of order k
    makes sigma^(j) change sign for j = 0 or 1); every interval with a sign change is
    bisected down to adjacent doubles: a zero crossing ends on values smaller than at
    the interval's ends, a pole on larger ones.  Bounded work: the grid, and
    :data:`_BISECTIONS` vectorized evaluations per function.
    """
    d1 = sp.diff(expr, x)
    d2 = sp.diff(d1, x)
    grid = _GRID if at_zero is not None else _GRID[_GRID != 0]
    for j, (label, e) in enumerate(
        (("value", expr), ("first derivative", d1), ("second derivative", d2))
    ):
        e = e.replace(lambda n: isinstance(n, sp.DiracDelta), lambda n: sp.S.Zero)  # a.e.
        f = sp.lambdify(x, e, modules=["scipy", "numpy"], cse=True)
        with np.errstate(all="ignore"):
            values = np.array(np.broadcast_to(np.asarray(f(grid)), grid.shape))
        if at_zero is not None:
            values[grid == 0] = at_zero[j]
        bad = ~np.isfinite(values) | (np.abs(np.imag(values)) > 0)
        if bad.any():
            raise ValueError(
                f"activation {name!r}: {label} is not a finite real number at "
                f"x = {grid[bad][0]:.6g} (checked on [-{CHECKED_RANGE:g}, {CHECKED_RANGE:g}])"
            )
        pole = _pole_between(f, grid, np.real(values))
        if pole is not None:
            raise ValueError(
                f"activation {name!r} has a pole or branch point in the range the "
                f"simulation visits: its {label} changes sign and grows without bound at "
                f"x = {pole:.6g} (checked on [-{CHECKED_RANGE:g}, {CHECKED_RANGE:g}])"
            )


def _pole_between(f, grid: np.ndarray, values: np.ndarray) -> float | None:
    """Where ``f`` changes sign through a pole between grid points (see
    :func:`_check_smooth_away_from_zero`), else None."""
    changes = np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)
    if grid[0] < 0 and 0 not in grid:  # the interval around 0 has no value at 0
        changes = changes[~((grid[changes] < 0) & (grid[changes + 1] > 0))]
    if changes.size == 0:
        return None
    lo, hi = grid[changes], grid[changes + 1]
    f_lo, f_hi = values[changes], values[changes + 1]
    bound = np.maximum(np.abs(f_lo), np.abs(f_hi))
    with np.errstate(all="ignore"):
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            f_mid = np.real(np.broadcast_to(np.asarray(f(mid)), mid.shape))
            left = np.sign(f_mid) == np.sign(f_lo)
            lo, f_lo = np.where(left, mid, lo), np.where(left, f_mid, f_lo)
            hi, f_hi = np.where(left, hi, mid), np.where(left, f_hi, f_mid)
    pole = ~(np.minimum(np.abs(f_lo), np.abs(f_hi)) <= bound)  # NaN counts as a pole
    return float(lo[pole][0]) if pole.any() else None


@functools.cache
def _activation_from_text(text: str) -> Activation:
    key = text.strip()
    if key in REGISTRY:
        body, degree = REGISTRY[key]
        forms = KERNEL_FORMS.get(key)
        forms = tuple(_parse(f, series=False) for f in forms) if forms else None
        return Activation(key, _parse(body), degree, forms)
    try:
        return _expression_activation(key)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy fails in many ways on odd input
        raise ValueError(
            f"activation {key!r} cannot be used: {type(exc).__name__}: {exc}"
        ) from None


def _expression_activation(key: str) -> Activation:
    expr = _parse(key)
    degree = _homogeneity(expr)
    if degree is None and expr.has(*_NONSMOOTH):
        raise ValueError(
            f"activation {key!r} is not smooth at 0 and not positively homogeneous: "
            "it has neither a multiplicity nor a homogeneous leading order"
        )
    at_zero = None
    if degree is None:
        try:
            c = _series.taylor(expr, x, 2)
            at_zero = (float(c[0]), float(c[1]), 2 * float(c[2]))
        except _series.SeriesError:
            pass  # reported by Activation, after the checks away from 0
    _check_smooth_away_from_zero(expr, key, at_zero)
    return Activation(key, expr, degree)


def activation(spec: str | sp.Expr | Activation) -> Activation:
    """Make an :class:`Activation` from a registered name or a SymPy expression.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        A name in :data:`REGISTRY` (``"relu"``, ``"tanh"``, ``"xtanh"``...) or an
        expression in ``x`` (``"x**2*sin(x)"``, ``"log(1+x**4)"``).

    Raises
    ------
    ValueError
        Unparseable text, free symbols other than ``x``, a function that is not
        finite or not differentiable, or one whose derivatives of order
        1..12 all vanish at 0.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, sp.Expr):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"activation must be a registered name ({', '.join(REGISTRY)}) or an "
            f"expression in x, got {spec!r}"
        )
    return _activation_from_text(spec)
