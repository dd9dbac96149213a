"""Smoke tests of examples/: each example's main() at a tiny size, checked for what it prints
and for results that can be checked without the example's own numbers."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_relu_condensation(capsys):
    results = _load("relu_condensation").main(["--width", "20", "--epochs", "2000"])
    out = capsys.readouterr().out
    assert "gd" in out and "flow" in out and "orientations" in out
    for name in ("gd", "flow"):
        r = results[name]
        assert r["status"] == "done" and r["RD"] > 0 and r["orientations"] >= 1
    # GD at dt = 2 lr = 0.1 follows the flow it discretizes: same orientations
    assert results["gd"]["orientations"] == results["flow"]["orientations"]
    assert results["gap"] < 0.05


def test_tanh_condensation(capsys):
    results = _load("tanh_condensation").main(["--width", "10", "--n", "20", "--epochs", "20"])
    assert "pairs with |cos| > 0.9" in capsys.readouterr().out
    adam, flow = results["adam"], results["flow"]
    assert flow["status"] == "event" and flow["t"] > 0
    assert flow["max_norm"] == pytest.approx(adam["max_norm"], rel=1e-6)  # the escape event
    assert 0.0 <= adam["aligned_pairs"] <= 1.0 and adam["orientations"] >= 1


def test_phase_diagram_1d(capsys):
    results = _load("phase_diagram_1d").main(
        ["--widths", "10", "20", "40", "--gammas", "0.85", "--max-steps", "3000"]
    )
    assert "S_w adam" in capsys.readouterr().out
    entry = results[0.85]
    for name in ("adam", "flow"):
        rd = np.array(entry["RD"][name])
        assert rd.shape == (3,) and np.all(rd > 0)
        slope = np.polyfit(np.log([10, 20, 40]), np.log(rd), 1)[0]  # independent of slope_S_w
        assert entry["S_w"][name] == pytest.approx(slope, rel=1e-9, abs=1e-12)
