"""Tests of flowsim.theory.describe and ``flowsim derive``: every number comes with the
conditions it holds under, and the 2p caveat is true (an XOR counterexample, in NumPy)."""

import itertools
import json

import numpy as np
import pytest

import flowsim as fs
from flowsim.cli import main
from flowsim.theory.describe import describe

KEYS = ("multiplicity", "leading_order_ode", "conserved", "max_orientations", "escape_law")


def _xor_G(w):
    """G(w) = (1/n) sum_i y_i (w . x~_i)^3 on XOR data with a bias (c_3 = 1 for x^2 sin x)."""
    Xa = np.array([[s1, s2, 1.0] for s1, s2 in itertools.product((-1.0, 1.0), repeat=2)])
    y = Xa[:, 0] * Xa[:, 1]
    return np.mean(y * (Xa @ w) ** 3)


def test_xor_counterexample_has_more_than_2p_orientations(rng):
    """The caveat is real: at p = 3, D = 3, eight strict extrema of G on the sphere (> 2p = 6)."""
    extrema = 0
    for signs in itertools.product((-1.0, 1.0), repeat=3):
        u = np.array(signs) / np.sqrt(3.0)
        g0 = _xor_G(u)
        assert g0 == pytest.approx(6 * np.prod(u), rel=1e-12)
        moved = []
        for _ in range(200):
            v = rng.standard_normal(3)
            v -= (v @ u) * u  # a tangent direction
            w = u + 1e-3 * v / np.linalg.norm(v)
            moved.append(_xor_G(w / np.linalg.norm(w)) - g0)
        moved = np.array(moved)
        assert np.all(moved < 0) or np.all(moved > 0)  # a strict maximum or minimum
        extrema += 1
    assert extrema == 8 > 2 * 3


def test_derive_text_prints_the_conditions_of_the_bound(capsys):
    assert main(["derive", "x**2*sin(x)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("max orientations"))
    assert lines[k].split() == ["max", "orientations", "6"]
    below = " ".join(line.strip() for line in lines[k + 1 : k + 3])
    assert below.startswith("holds only if the augmented input dimension D <= 2")
    text = " ".join(lines)
    assert "fails for D > 2 at p >= 3" in text and "8 extrema" in text
    for label in ("multiplicity p", "leading order", "conserved", "escape time"):
        k = next(i for i, line in enumerate(lines) if line.startswith(label))
        assert lines[k + 1].lstrip().startswith("holds ")


@pytest.mark.parametrize("spec", ["tanh", "xtanh", "x**2*sin(x)", "relu", "sigmoid"])
def test_derive_json_has_conditions_and_notes(spec, capsys):
    assert main(["derive", spec, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["conditions"]) == set(KEYS)
    assert all(isinstance(info["conditions"][k], str) and info["conditions"][k] for k in KEYS)
    assert info["notes"] and any("eps -> 0" in note for note in info["notes"])


@pytest.mark.parametrize("spec", ["tanh", "xtanh", "x**2*sin(x)", "log(1+x**4)", "relu"])
def test_orientation_condition_agrees_with_max_orientations(spec):
    """The stated condition is the one flowsim.theory.max_orientations applies per D."""
    info = describe(spec)
    bound_2d = fs.theory.max_orientations(spec, D=2)
    bound_3d = fs.theory.max_orientations(spec, D=3)
    condition = info["conditions"]["max_orientations"]
    assert info["max_orientations"] == bound_2d
    if bound_2d is None:
        assert condition.startswith("for any data")
    elif bound_3d is None:
        assert "D <= 2" in condition and "not for D > 2" in condition
        assert any("fails for D > 2" in note for note in info["notes"])
    else:
        assert condition.startswith("for any input dimension")
        assert bound_3d == bound_2d == 2 * info["multiplicity"]


def test_removable_singularity_uses_the_limit():
    """sin(x)/x = 1 - x^2/6 + ...: sigma(0) = 1, p = 2, c_p = -1/6 (not 0/0 = nan)."""
    d = describe("sin(x)/x")
    assert d["sigma0"] == 1.0 and d["multiplicity"] == 2
    assert d["leading_coefficient_exact"] == "-1/6"
    assert any(note.startswith("sigma(0) = 1 != 0") for note in d["notes"])
