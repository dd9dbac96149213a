"""Expression text -> SymPy expression, by a whitelist: text is parsed, never evaluated.

Activations (``"x**2*sin(x)"``) and data targets (``"x1*x2 - x3"``) arrive as text
from configs, sweep files, stored records and the command line.  SymPy's own parser
evaluates its input as Python, so :func:`parse` reads the text with :mod:`ast` instead,
admits only the grammar below and builds the SymPy expression node by node:

- numbers: integer and float literals (no complex, no strings), the constants
  ``pi`` and ``E``, and the caller's symbols;
- unary ``+ -`` and binary ``+ - * / **``;
- calls of the functions in :data:`FUNCTIONS` with positional arguments;
- ``Piecewise((value, condition), ...)`` whose conditions are one comparison
  (``< <= > >=``) or ``True``.

Size is bounded before anything is built (:data:`MAX_CHARS`, :data:`MAX_NODES`,
:data:`MAX_DEPTH`), and while building: an integer literal has at most
:data:`MAX_LITERAL_DIGITS` digits, a constant exponent is at most :data:`MAX_EXPONENT`
in magnitude, an exact constant has at most :data:`MAX_CONSTANT_BITS` bits (so
``9**9**9`` is refused without being computed), functions nest at most
:data:`MAX_FUNCTION_DEPTH` deep, and the caller may bound the number of
transcendental calls (:data:`MAX_TRANSCENDENTAL`: activations, whose Taylor series
grows fast with them).
Errors are ValueError naming the offending construct and what is allowed.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Mapping

import sympy as sp

MAX_CHARS = 1000
"""Longest expression text."""

MAX_NODES = 400
"""Most syntax-tree nodes."""

MAX_DEPTH = 60
"""Deepest syntax tree (a sum of k terms is k deep)."""

MAX_FUNCTION_DEPTH = 4
"""Most function calls (and powers with a variable exponent) nested inside each other.

Nesting of transcendental calls is bounded by :data:`MAX_TRANSCENDENTAL` already;
this bounds nesting of the piecewise-linear ones (``Abs(Abs(...))``) too."""

MAX_TRANSCENDENTAL = 3
"""Most calls of functions other than Abs, sign, Heaviside, Max, Min, relu and
Piecewise (and powers with a variable exponent) on a non-constant argument, for
expressions that are expanded in series (activations).

Chosen when the Taylor series came from SymPy's ``series``, which grew fast with such
calls (``tanh`` nested 5 deep 3-9 s, ``erf(erf(x+1)+1)`` over 100 s).  The series
arithmetic of :mod:`flowsim._series` takes milliseconds on these, and the whole
activation analysis (:mod:`flowsim.activations`) is bounded by construction; the
bound stays as a limit on the size of the printed derivatives."""

MAX_EXPONENT = 64
"""Largest magnitude of a constant exponent (``x**64``, ``2**-64``)."""

MAX_LITERAL_DIGITS = 30
"""Most digits of an integer literal."""

MAX_CONSTANT_BITS = 4096
"""Most bits of the numerator or denominator of an exact constant built on the way."""


def _relu(z):
    return sp.Max(0, z)


# name -> (SymPy function, smallest and largest number of arguments)
FUNCTIONS: dict[str, tuple[object, int, int]] = {
    **{
        name: (getattr(sp, name), 1, 1)
        for name in (
            "exp log sqrt sin cos tan sinh cosh tanh asin acos atan asinh acosh atanh erf erfc "
            "sign Heaviside Abs"
        ).split()
    },
    "abs": (sp.Abs, 1, 1),
    "relu": (_relu, 1, 1),
    "Max": (sp.Max, 2, 16),
    "Min": (sp.Min, 2, 16),
    "max": (sp.Max, 2, 16),
    "min": (sp.Min, 2, 16),
}
"""The functions an expression may call (``Piecewise`` besides, with its own syntax)."""

_PIECEWISE_LINEAR = {"Abs", "abs", "sign", "Heaviside", "Max", "Min", "max", "min", "relu"}

CONSTANTS = {"pi": sp.pi, "E": sp.E}

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
_CONSTRUCT = {
    ast.Attribute: "attribute access '.'",
    ast.Subscript: "subscript '[]'",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.Compare: "comparison (only as a Piecewise condition)",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "'if ... else'",
    ast.NamedExpr: "':='",
    ast.Starred: "'*' unpacking",
    ast.JoinedStr: "f-string",
    ast.Tuple: "tuple (only as a Piecewise pair)",
    ast.List: "list",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.Await: "await",
    ast.Yield: "yield",
}


def allowed(symbols) -> str:
    """What an expression in ``symbols`` may contain, for error messages."""
    return (
        f"allowed: numbers, the symbols {', '.join(symbols)}, the constants pi and E, "
        f"+ - * / **, the functions {', '.join(FUNCTIONS)}, and "
        "Piecewise((value, condition), ...) with conditions < <= > >= or True"
    )


def parse(text: str, symbols: Mapping[str, sp.Symbol], *, max_transcendental=math.inf) -> sp.Expr:
    """The SymPy expression that ``text`` denotes, built without evaluating ``text``.

    Parameters
    ----------
    text : str
        Expression in Python syntax (``"x**2*sin(x)"``, ``"x1*x2 - x3"``).
    symbols : mapping of str to sympy.Symbol
        The names the expression may use as variables, and the symbols they denote.
    max_transcendental : int or float
        Bound on the number of transcendental calls: :data:`MAX_TRANSCENDENTAL` for
        expressions that will be expanded in series (activations), else no bound.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ValueError
        Text that is too long or too deep, does not parse, or uses anything outside
        the grammar of the module docstring; the message starts with
        ``cannot parse``, ``unknown symbol(s)``, ``unknown function(s)`` or names
        the construct, and ends with what is allowed.
    """
    tail = allowed(symbols)
    if not isinstance(text, str):
        raise ValueError(f"expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise ValueError(f"expression of {len(text)} characters: at most {MAX_CHARS} allowed")
    try:
        # the compiler warns on some texts it then refuses or that the walk refuses:
        # '2x' (invalid decimal literal), "'\\q'" (invalid escape sequence)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = getattr(exc, "msg", None) or type(exc).__name__
        raise ValueError(f"cannot parse {text!r} ({detail}); {tail}") from None
    nodes = list(ast.walk(tree.body))
    if len(nodes) > MAX_NODES:
        raise ValueError(f"{text!r} has {len(nodes)} syntax nodes: at most {MAX_NODES} allowed")
    _check_names(text, nodes, symbols, tail)
    try:
        builder = _Builder(text, symbols, tail, max_transcendental)
        return builder.build(tree.body, 0, 0)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy refuses some combinations (TypeError)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ValueError(f"cannot build {text!r} ({detail}); {tail}") from None


def _check_names(text, nodes, symbols, tail) -> None:
    """Unknown symbols and functions, all of them in one message."""
    called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    bad_functions, bad_symbols = set(), set()
    for node in nodes:
        if not isinstance(node, ast.Name):
            continue
        if id(node) in called:
            if node.id not in FUNCTIONS and node.id != "Piecewise":
                bad_functions.add(node.id)
        elif not (node.id in symbols or node.id in CONSTANTS or node.id in FUNCTIONS):
            bad_symbols.add(node.id)
    if bad_symbols:
        raise ValueError(f"unknown symbol(s) {sorted(bad_symbols)} in {text!r}; {tail}")
    if bad_functions:
        raise ValueError(f"unknown function(s) {sorted(bad_functions)} in {text!r}; {tail}")


class _Builder:
    def __init__(self, text, symbols, tail, max_transcendental):
        self.text, self.symbols, self.tail = text, symbols, tail
        self.budget = self.max_transcendental = max_transcendental

    def transcendental(self) -> None:
        """Count one transcendental call on a non-constant argument."""
        self.budget -= 1
        if self.budget < 0:
            raise ValueError(
                f"{self.text!r} has more than {self.max_transcendental} calls of functions other "
                "than Abs, sign, Heaviside, Max, Min, relu, Piecewise (or powers with a "
                "variable exponent) on a non-constant argument: the series analysis would "
                "take too long"
            )

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} is not allowed in {self.text!r}; {self.tail}")

    def build(self, node, depth: int, calls: int) -> sp.Expr:
        """SymPy expression of ``node``; ``calls`` is the number of enclosing calls."""
        if depth > MAX_DEPTH:
            raise ValueError(f"{self.text!r} is nested more than {MAX_DEPTH} deep")
        depth += 1
        if isinstance(node, ast.Constant):
            return self.number(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.symbols:
                return self.symbols[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise self.fail(f"name {node.id!r} here")  # True, or a function not called
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            value = self.build(node.operand, depth, calls)
            return self.exact(-value if isinstance(node.op, ast.USub) else value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = self.build(node.left, depth, calls), self.build(node.right, depth, calls)
            return self.exact(_BINARY[type(node.op)](a, b))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self.power(node, depth, calls)
        if isinstance(node, ast.Call):
            return self.call(node, depth, calls)
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            op = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.Not: "not"}.get(
                type(node.op), type(node.op).__name__
            )
            raise self.fail(f"operator {op!r}")
        raise self.fail(_CONSTRUCT.get(type(node), type(node).__name__))

    def number(self, value) -> sp.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"literal {value!r}")
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_LITERAL_DIGITS:
                raise ValueError(
                    f"integer literal of more than {MAX_LITERAL_DIGITS} digits in "
                    f"{self.text!r}: write it as a float"
                )
            return sp.Integer(value)
        if not math.isfinite(value):
            raise self.fail(f"non-finite literal {value!r}")
        return sp.Float(repr(value))

    def exact(self, value: sp.Expr) -> sp.Expr:
        """``value``, refused when it is an exact constant of more than MAX_CONSTANT_BITS."""
        if isinstance(value, sp.Rational) and (
            max(abs(value.p).bit_length(), value.q.bit_length()) > MAX_CONSTANT_BITS
        ):
            raise ValueError(
                f"{self.text!r} builds a constant of more than {MAX_CONSTANT_BITS} bits"
            )
        return value

    def power(self, node, depth, calls) -> sp.Expr:
        exponent = self.build(node.right, depth, calls)
        if exponent.free_symbols:
            calls += 1  # a variable exponent is exp(exponent * log(base))
            if calls > MAX_FUNCTION_DEPTH:
                raise self.too_deep()
            self.transcendental()
            return sp.Pow(self.build(node.left, depth, calls), exponent)
        value = complex(exponent.evalf(20))
        if not abs(value) <= MAX_EXPONENT:
            raise ValueError(
                f"exponent {exponent} in {self.text!r}: constant exponents must be at most "
                f"{MAX_EXPONENT} in magnitude"
            )
        base = self.build(node.left, depth, calls)
        if isinstance(base, sp.Rational) and exponent.is_Rational:
            bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(exponent)
            if bits > MAX_CONSTANT_BITS:
                raise ValueError(
                    f"{self.text!r} builds a constant of more than {MAX_CONSTANT_BITS} bits"
                )
        return self.exact(sp.Pow(base, exponent))

    def too_deep(self) -> ValueError:
        return ValueError(
            f"{self.text!r} nests functions more than {MAX_FUNCTION_DEPTH} deep: the "
            "series and derivative analysis would take too long"
        )

    def call(self, node, depth, calls) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail(_CONSTRUCT.get(type(node.func), "call of an expression"))
        name = node.func.id
        if node.keywords:
            raise self.fail(f"keyword argument in {name}()")
        if name == "Piecewise":
            return self.piecewise(node, depth, calls)
        function, low, high = FUNCTIONS[name]  # names were checked already
        if not low <= len(node.args) <= high:
            count = f"{low}" if low == high else f"{low} to {high}"
            raise ValueError(
                f"{name}() takes {count} argument(s), got {len(node.args)} in {self.text!r}"
            )
        calls += 1
        if calls > MAX_FUNCTION_DEPTH:
            raise self.too_deep()
        args = [self.build(a, depth, calls) for a in node.args]
        if name not in _PIECEWISE_LINEAR and any(a.free_symbols for a in args):
            self.transcendental()
        return function(*args)

    def piecewise(self, node, depth, calls) -> sp.Expr:
        if not node.args:
            raise self.fail("Piecewise()")
        calls += 1
        if calls > MAX_FUNCTION_DEPTH:
            raise self.too_deep()
        pairs = []
        for arg in node.args:
            if not (isinstance(arg, ast.Tuple) and len(arg.elts) == 2):
                raise self.fail("a Piecewise argument that is not a pair (value, condition)")
            value, condition = arg.elts
            pairs.append((self.build(value, depth, calls), self.condition(condition, depth, calls)))
        return sp.Piecewise(*pairs)

    def condition(self, node, depth, calls):
        if isinstance(node, ast.Constant) and node.value is True:
            return sp.true
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left = self.build(node.left, depth, calls)
            right = self.build(node.comparators[0], depth, calls)
            return _COMPARE[type(node.ops[0])](left, right)
        raise self.fail("a Piecewise condition other than one comparison < <= > >= or True")
