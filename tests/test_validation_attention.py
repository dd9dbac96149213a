"""Pieces of the attention validation check and the ``flowsim theory attention`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowsim.cli import main
from flowsim.data import gaussian_sequences
from flowsim.theory.attention import stage1
from flowsim.validation import attention as check


def test_stage2_start_is_first_minimum_after_peak_before_wq_grows():
    g = np.array([1.0, 3.0, 2.0, 1.5, 1.7, 5.0, 0.1])
    norm_q = np.array([0, 0, 0, 0, 0, 1.0, 1.0]) * 1e-2 + 1e-9
    assert check.stage2_start(g, norm_q, 1e-3) == 3  # the later peak (WQ large) is ignored
    assert check.stage2_start(g[:4], norm_q[:4], 1e-3) == 3  # still falling: last point


def test_slopes_on_exact_laws():
    eps = np.array([1e-3, 1e-4, 1e-5])
    assert check.loglog_slope(1 / eps, 7.0 / eps) == pytest.approx(1.0, abs=1e-12)
    t = np.linspace(0.0, 0.99, 200)
    late, largest = check.late_slope(t, (1.0 - t) ** -3.0)  # the extremal solution
    assert late == pytest.approx(-1.0, abs=1e-9)
    assert largest == pytest.approx(-1.0, abs=1e-9)


def test_lo_escape_time_scales_as_one_over_eps_and_precedes_blowup(rng):
    X, y = gaussian_sequences(20, 4, 3, seed=1)
    st1 = stage1(X, y)
    WV, W1, W2 = rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), rng.standard_normal(3)
    WV[:, 0] += 2 * st1.v  # E(0) > 0
    W1[0] = np.abs(W1[0])
    W2 = np.abs(W2)
    assert st1.energy(WV, W1, W2) > 0
    eps = (1e-3, 1e-4)
    times = [check.lo_escape_time(st1, e * WV, e * W1, e * W2, 0.05) for e in eps]
    stars = [st1.blowup(e * WV, e * W1, e * W2).t_star for e in eps]
    assert all(t < T for t, T in zip(times, stars, strict=True))
    # self-similar flow: T_LO = T*/eps - B, B (from delta to the blow-up) -> const as eps -> 0
    assert stars[0] - times[0] == pytest.approx(stars[1] - times[1], rel=1e-2)


def test_cli_theory_attention_prints_predictions(capsys):
    assert main(["theory", "attention", "--n", "20", "--s", "4", "--d", "3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stage1"]["T_star"] > 0
    assert info["stage2"]["rate"] == pytest.approx(
        info["stage2"]["singular_values"][0] - info["stage2"]["singular_values"][1]
    )
    assert main(["theory", "attention", "--n", "20", "--s", "4", "--d", "3"]) == 0
    assert "s1 - s2" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--d", "0"], ["--activation", "relu"], ["--eps", "-1"]])
def test_cli_theory_attention_bad_input_exits_2(capsys, argv):
    assert main(["theory", "attention", "--n", "10", "--s", "3", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowsim theory attention: ") and err.count("\n") == 1
