"""Activation functions: one SymPy expression, compiled kernels generated from it.

An :class:`Activation` holds a SymPy expression in ``x``.  Everything else is
derived from it: the value and the first two derivatives as Numba kernels
(printed by SymPy, sharing common subexpressions, cached on disk per
expression), the multiplicity ``p`` and Taylor coefficients at 0, and the
positive-homogeneity degree of ReLU-like activations.

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

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import log1p
from sympy.parsing.sympy_parser import (
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)
from sympy.printing.pycode import PythonCodePrinter

from flowsim import _codegen

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


def _function_source(name: str, exprs: list[sp.Expr]) -> str:
    """Source of a scalar ``@jit`` function of ``z`` returning ``exprs`` (inlined
    into its callers when it returns more than two: see :data:`flowsim._jit.jit_inline`)."""
    z = sp.Symbol("z", real=True)
    # log(1 + u) -> log1p(u) before common subexpressions are taken out: once 1 + u
    # is its own variable the printer can no longer see it (log(1 + 1e-12) != 1e-12)
    exprs = [_with_log1p(sp.sympify(e).subs(x, z)) for e in exprs]
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_t"))
    lines = ["@jit_inline" if len(exprs) > 2 else "@jit", f"def {name}(z):"]
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
'''


def kernel_source(expr: sp.Expr, forms: tuple[sp.Expr, sp.Expr, sp.Expr] | None = None) -> str:
    """Numba source of ``sigma``, ``dsigma``, ``d2sigma``, ``sigma_dsigma`` and
    ``sigma_derivs`` (value and both derivatives, common subexpressions shared).

    ``forms`` replaces (sigma, sigma', sigma'') by numerically safer equal forms.
    """
    if forms is None:
        d1 = sp.diff(expr, x)
        d2 = sp.diff(d1, x)
    else:
        expr, d1, d2 = forms
    return "\n\n".join(
        [
            _function_source("sigma", [expr]),
            _function_source("dsigma", [d1]),
            _function_source("d2sigma", [d2]),
            _function_source("sigma_dsigma", [expr, d1]),
            _function_source("sigma_derivs", [expr, d1, d2]),
            _ARRAY_KERNEL,
        ]
    )


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
        ``sigma(0)``.
    leading_coefficient : float
        ``c_p = sigma^(p)(0) / p!`` (for a homogeneous activation, its slope
        on the positive axis).
    """

    def __init__(self, name: str, expr: sp.Expr, homogeneous: int | None, forms=None):
        self.name = name
        self.expr = expr
        self.text = str(expr)
        self.homogeneous = homogeneous
        value0 = complex(sp.N(expr.subs(x, 0)))
        if value0 != value0 and homogeneous is None:  # 0/0 at x = 0
            coefficients = _taylor_coefficients(expr, MAX_ORDER, name)
            if all(c == 0 for c in coefficients[1:]):
                raise _flat_at_zero(name)
        if not (math.isfinite(value0.real) and value0.imag == 0):
            at0 = expr.subs(x, 0)
            hint = "; write a removable singularity through its limit" if at0 is sp.nan else ""
            raise ValueError(f"activation {name!r} is not finite at 0 (sigma(0) = {at0}){hint}")
        self.sigma0 = value0.real
        if homogeneous is None:
            coefficients = _taylor_coefficients(expr, MAX_ORDER, name)
            nonzero = [j for j in range(1, MAX_ORDER + 1) if coefficients[j] != 0]
            if not nonzero:
                raise _flat_at_zero(name)
            self._taylor = coefficients
            self.multiplicity = nonzero[0]
            self.leading_coefficient = float(coefficients[self.multiplicity])
        else:
            self._taylor = None
            self.multiplicity = homogeneous
            self.leading_coefficient = float(expr.subs(x, 1))
        self.key = sp.srepr(expr)
        try:
            self.source = kernel_source(expr, forms)
        except Exception as exc:  # noqa: BLE001 - printer errors name the function
            raise ValueError(f"activation {name!r} cannot be compiled: {exc}") from None

    def __repr__(self) -> str:
        return f"Activation({self.name!r}, p={self.multiplicity})"

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
        return _codegen.build_module("activation", [self.source])

    def _apply(self, z, order: int) -> np.ndarray:
        z_arr = np.ascontiguousarray(z, dtype=np.float64)
        out = np.empty(z_arr.size)
        self.kernels.apply(z_arr.ravel(), order, out)
        result = out.reshape(z_arr.shape)
        return float(out[0]) if np.ndim(z) == 0 else result

    def __call__(self, z):
        return self._apply(z, 0)

    def derivative(self, z, order: int = 1):
        """``sigma'(z)`` (``order=1``) or ``sigma''(z)`` (``order=2``), elementwise."""
        if order not in (1, 2):
            raise ValueError(f"derivative order must be 1 or 2, got {order}")
        return self._apply(z, order)


def _flat_at_zero(name: str) -> ValueError:
    return ValueError(
        f"activation {name!r}: all derivatives of order 1..{MAX_ORDER} vanish at 0, so its "
        "multiplicity is undefined (flat at 0 or constant)"
    )


def _taylor_coefficients(expr: sp.Expr, order: int, name: str) -> list[sp.Expr]:
    try:
        series = sp.series(expr, x, 0, order + 1).removeO()
        poly = sp.Poly(series, x)
    except Exception as exc:  # noqa: BLE001 - SymPy raises many kinds here
        raise ValueError(
            f"activation {name!r} is not differentiable at 0 up to order {order} "
            f"(no Taylor expansion: {exc})"
        ) from None
    coefficients = [sp.nsimplify(0)] * (order + 1)
    for (power,), coefficient in poly.terms():
        if power <= order:
            coefficients[power] = coefficient
    for j, c in enumerate(coefficients):
        value = complex(c.evalf())
        if not math.isfinite(value.real) or value.imag != 0:
            raise ValueError(f"activation {name!r}: derivative of order {j} at 0 is {c}")
    return coefficients


def _parse(text: str) -> sp.Expr:
    transformations = standard_transformations + (implicit_multiplication_application,)
    local = {"x": x, "relu": lambda z: sp.Max(0, z)}
    try:
        expr = parse_expr(text, local_dict=local, transformations=transformations)
    except Exception as exc:  # noqa: BLE001 - the parser raises many kinds
        raise ValueError(f"cannot parse activation {text!r}: {exc}") from None
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"activation {text!r} is not an expression in x")
    extra = expr.free_symbols - {x}
    if extra:
        names = ", ".join(sorted(str(s) for s in extra))
        raise ValueError(f"activation {text!r} has free symbols other than x: {names}")
    return expr


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


def _check_smooth_away_from_zero(expr: sp.Expr, name: str) -> None:
    """Value and two derivatives must be finite at a few generic points."""
    d1 = sp.diff(expr, x)
    d2 = sp.diff(d1, x)
    for point in (-1.3, -0.4, 0.7, 1.9):
        for label, e in (("value", expr), ("first derivative", d1), ("second derivative", d2)):
            value = complex(e.subs(x, point).evalf())
            if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(
                value.imag
            ) > 1e-12 * (1 + abs(value.real)):
                raise ValueError(
                    f"activation {name!r}: {label} is not a finite real number at x = {point}"
                )


@functools.cache
def _activation_from_text(text: str) -> Activation:
    key = text.strip()
    if key in REGISTRY:
        body, degree = REGISTRY[key]
        forms = KERNEL_FORMS.get(key)
        forms = tuple(_parse(f) for f in forms) if forms else None
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
    _check_smooth_away_from_zero(expr, key)
    degree = _homogeneity(expr)
    if degree is None and expr.has(*_NONSMOOTH):
        raise ValueError(
            f"activation {key!r} is not smooth at 0 and not positively homogeneous: "
            "it has neither a multiplicity nor a homogeneous leading order"
        )
    return Activation(key, expr, degree)


def activation(spec) -> Activation:
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
