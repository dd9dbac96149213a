"""The whitelist expression parser (flowsim._expressions): what it admits, what it refuses,
its size and time bounds, that no input runs code, and agreement with SymPy's own parser
on trusted constant text."""

from __future__ import annotations

import ast
import os
import time
import warnings
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsim import _expressions
from flowsim._expressions import parse

x = sp.Symbol("x", real=True)
X = {"x": x}
X3 = {f"x{k}": sp.Symbol(f"x{k}", real=True) for k in (1, 2, 3)}

# (text, symbols) that SymPy's own parser reads the same way (the test may use sympify:
# these are trusted constant strings)
BENIGN = [
    "x",
    "-x + 3",
    "x**2*sin(x)",
    "log(1+x**4)",
    "x*(1 + erf(x/sqrt(2)))/2",
    "(1 + tanh(x/2))/2",
    "x/100",
    "2**-3*x**-2",
    "x**0.5 + 1.25e-3",
    "pi*E*x",
    "Piecewise((x, x > 0), (0, True))",
    "Piecewise((x, x >= 1), (x**2, x < 1))",
    "Max(x, 0) + log(1 + exp(-Abs(x)))",
    "sign(x)*exp(-Abs(x))*(exp(-Abs(x)) - 1)/(1 + exp(-Abs(x)))**3",
    "Min(x, 1, 2*x)",
    "Heaviside(x)*x + atan(x) - asinh(x) + cosh(x) - sinh(x) + tan(x)",
    "erfc(x) + acos(x/2) + asin(x/3) + atanh(x/4) + acosh(x + 2)",
    "2**x",
    "1/2",
    "sin(3*x) + sin(6*x)/2",
]


@pytest.mark.parametrize("text", BENIGN)
def test_agrees_with_sympys_own_parser_on_benign_text(text):
    assert parse(text, X) == sp.sympify(text, locals={"x": x})


def test_targets_in_several_symbols_and_python_spellings():
    x1, x2, x3 = X3.values()
    assert parse("x1*x2 - x3", X3) == x1 * x2 - x3
    assert parse("abs(x1) + max(x2, x3) + min(x1, 0)", X3) == (
        sp.Abs(x1) + sp.Max(x2, x3) + sp.Min(x1, 0)
    )
    assert parse("relu(x - 1)", X) == sp.Max(0, x - 1)
    assert parse("  x  ", X) == x
    assert parse("3", X) == 3
    assert parse("0.1", X) == sp.Float(0.1)


@pytest.mark.parametrize(
    "text, match",
    [
        ("x*y", r"unknown symbol\(s\) \['y'\]"),
        ("x1 + x4", r"unknown symbol\(s\) \['x4'\]"),
        ("g(x) + f(x)", r"unknown function\(s\) \['f', 'g'\]"),
        ("factorial(10**7)", r"unknown function\(s\) \['factorial'\]"),
        ("__import__('os').system('true')", r"unknown function\(s\) \['__import__'\]"),
        ("eval('1')", r"unknown function\(s\) \['eval'\]"),
        ("x.__class__", "attribute access"),
        ("sin.__globals__", "attribute access"),
        ("(lambda: 1)()", "call of an expression|lambda"),
        ("lambda: x", "lambda"),
        ("[x for x in (1,)]", "comprehension"),
        ("(x for x in (1,))", "comprehension"),
        ("[x][0]", "subscript"),
        ("{'a': x}", "dict"),
        ("'text'", "literal 'text'"),
        ("b'x'", "literal"),
        ("1j*x", "literal 1j"),
        ("x if x else 1", "if ... else"),
        ("x and 1", "'and'/'or'"),
        ("not x", "operator 'not'"),
        ("x % 2", "operator '%'"),
        ("x // 2", "operator '//'"),
        ("x @ x", "operator '@'"),
        ("x < 1", "comparison"),
        ("(x := 1)", "':='"),
        ("f'{x}'", "f-string"),
        ("sin(x=1)", "keyword argument"),
        ("sin(x, x)", r"sin\(\) takes 1 argument"),
        ("Max(x)", r"Max\(\) takes 2 to 16"),
        ("log(x, 2)", r"log\(\) takes 1"),
        ("Piecewise((x, x > 0 and x < 1), (0, True))", "Piecewise condition"),
        ("Piecewise((x, 0 < x < 1), (0, True))", "Piecewise condition"),
        ("Piecewise(x)", "not a pair"),
        ("sin", "name 'sin'"),
        ("True", "literal True"),
        ("2x", "cannot parse"),  # no implicit multiplication
        ("x sin(x)", "cannot parse"),
        ("sin(3*x", "cannot parse"),
        ("x\0", "cannot parse"),
        ("", "cannot parse"),
    ],
)
def test_refused_with_a_message_naming_the_construct(text, match):
    symbols = X3 if "x1" in text else X
    with pytest.raises(ValueError, match=match) as info:
        parse(text, symbols)
    message = str(info.value)
    if "unknown" in message or "not allowed" in message or "cannot parse" in message:
        assert "the functions exp, log" in message  # the allowed table is named


@pytest.mark.parametrize(
    "text, match",
    [
        ("x*9**9**9", "exponent 387420489"),
        ("x**65", "exponent 65"),
        ("x**-65", "exponent -65"),
        ("x**(10**100)", "more than 30 digits|exponent"),
        ("x**1e10", "exponent"),
        ("(2**64)**64", "constant of more than 4096 bits"),
        ("((2**60)**60)**60", "constant of more than 4096 bits"),
        ("(2**64*2**64*2**64*2**64)**17", "constant of more than 4096 bits"),
        ("2**-64*" * 30 + "(2**64*2**64*2**64*2**64)**16", "constant of more than 4096 bits"),
        ("1" * 31, "more than 30 digits"),
        ("x*1e999", "non-finite literal"),
        ("x+" * 600 + "x", "characters"),
        ("-" * 500 + "x", "syntax nodes|nested|cannot parse"),
        ("(" * 300 + "x" + ")" * 300, "cannot parse|nested"),
        ("+".join(["x"] * 70), "nested more than 60 deep"),
        ("sin(" * 5 + "x" + ")" * 5, "more than 3 calls|more than 4 deep"),
        ("Abs(Abs(Abs(Abs(Abs(x)))))", "nests functions more than 4 deep"),
        ("tanh(x)*tanh(2*x)*tanh(3*x)*tanh(4*x)", "more than 3 calls"),
        ("x**x*x**x*x**x*x**x", "more than 3 calls"),
    ],
)
def test_size_bounds_refuse_at_once(text, match):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        parse(text, X, max_transcendental=_expressions.MAX_TRANSCENDENTAL)
    assert time.perf_counter() - start < 2.0


def test_bounds_allow_what_the_registry_and_users_write():
    assert parse("x**64 + 2**-64 + x**-64", X).has(x**64)
    assert parse("tanh(tanh(tanh(x)))", X) == sp.tanh(sp.tanh(sp.tanh(x)))
    # constant arguments and piecewise-linear functions cost no series terms
    limit = _expressions.MAX_TRANSCENDENTAL
    parse(
        "exp(1)*sin(2)*erf(3)*log(5)*Abs(x)*Max(x, 0)*sign(x)*tanh(x)", X, max_transcendental=limit
    )
    # the bound is the caller's: data targets are never expanded in series
    parse("+".join(f"sin({k}*x)" for k in range(1, 20)), X)


# ------------------------------------------------------------------ no side effect, fast

_MARKER = "flowsim_expr_marker"
_PAYLOADS = [
    f"__import__('os').system('touch {_MARKER}')",
    f"__import__('pathlib').Path('{_MARKER}').touch()",
    f"open('{_MARKER}', 'w')",
    f"exec(\"open('{_MARKER}','w')\")",
    f"eval(\"open('{_MARKER}','w')\")",
    "x.__class__.__mro__[-1].__subclasses__()",
    f"[c for c in ().__class__.__base__.__subclasses__()]('{_MARKER}')",
    f"(lambda: open('{_MARKER}', 'w'))()",
    f"sin.__globals__['__builtins__']['open']('{_MARKER}', 'w')",
    f"Symbol('{_MARKER}')",
    f"Function('{_MARKER}')(x)",
    f"sympify(\"open('{_MARKER}','w')\")",
    f"S(\"open('{_MARKER}','w')\")",
    "__builtins__",
    "globals()",
]

# tokens that (in SymPy's evaluating parser) could run code or build giant numbers
_TOKENS = st.sampled_from(
    [
        *"x ( ) + - * / . , 0 1 9 [ ] { } : ; ' \" = < > % @ ~ & | ^ !".split(),
        " ", "**", "sin", "exp", "tanh", "Piecewise", "Max", "True", "pi", "E", "lambda",
        "__import__", "'os'", ".system", "open", f"'{_MARKER}'", "'w'", "eval", "exec",
        "__class__", "__subclasses__", "__globals__", "factorial", "9**9**9", "for", "in",
        "if", "else", "not", "and", "yield", "await", ":=", "1e999", "10**100",
    ]
)  # fmt: skip


def _random_tree(draw, depth=0):
    """A random Python expression tree, grammatical or not for the parser."""
    leaves = [ast.Name("x"), ast.Name("__import__"), ast.Constant(9), ast.Constant("os")]
    if depth > 4 or draw(st.booleans()):
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["binop", "call", "attr", "sub", "unary", "lambda", "cmp"]))
    a = _random_tree(draw, depth + 1)
    b = _random_tree(draw, depth + 1)
    if kind == "binop":
        op = draw(st.sampled_from([ast.Add(), ast.Pow(), ast.Mod(), ast.Div(), ast.BitXor()]))
        return ast.BinOp(a, op, b)
    if kind == "call":
        name = draw(st.sampled_from(["sin", "open", "eval", "exp", "Max"]))
        return ast.Call(ast.Name(name), [a, b][: draw(st.integers(1, 2))], [])
    if kind == "attr":
        return ast.Attribute(a, draw(st.sampled_from(["system", "__class__", "real"])))
    if kind == "sub":
        return ast.Subscript(a, b)
    if kind == "unary":
        return ast.UnaryOp(draw(st.sampled_from([ast.USub(), ast.Not(), ast.Invert()])), a)
    if kind == "lambda":
        args = ast.arguments([], [], None, [], [], None, [])
        return ast.Lambda(args, a)
    return ast.Compare(a, [ast.Lt()], [b])


@st.composite
def _texts(draw):
    if draw(st.booleans()):
        return "".join(draw(st.lists(_TOKENS, max_size=12)))
    if draw(st.booleans()):
        return draw(st.sampled_from(_PAYLOADS))
    tree = ast.fix_missing_locations(ast.Expression(_random_tree(draw)))
    return ast.unparse(tree)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_texts())
def test_fuzz_no_side_effect_bounded_time_only_value_error(tmp_path_factory, text):
    directory = tmp_path_factory.mktemp("fuzz")
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        start = time.perf_counter()
        try:
            expr = parse(text, X)
        except ValueError:
            pass
        else:
            assert isinstance(expr, sp.Expr) and expr.free_symbols <= {x}
        assert time.perf_counter() - start < 2.0
        assert not Path(_MARKER).exists() and list(directory.iterdir()) == []
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("text", _PAYLOADS)
def test_payloads_are_refused_without_side_effect(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not allowed|unknown|cannot parse"):
        parse(text, X)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["2x", "'\\q'", "'\\t\\q' + x"])
def test_refused_texts_raise_no_compiler_warnings(text):
    """Python's compiler warns on these before the parser refuses them: the caller sees
    the ValueError only."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            parse(text, X)
    assert [str(w.message) for w in caught] == []
