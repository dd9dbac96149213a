"""Pieces of the attention validation check and the ``flowsim theory attention`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flowsim.measure as fm
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


def test_stage_times_on_planted_series():
    t = np.arange(6.0)
    outer = np.array([6.0, 5.0, 3.0, 2.0, 2.0, 2.0])
    qk = np.array([6.0, 6.0, 6.0, 3.0, 1.5, 2.0])
    change = np.array([0.0, 1e-5, 1e-3, 0.5, 2.0, 3.0])
    a = check.stage_times(t, outer, qk, change, fall=0.6)
    assert (a["i1"], a["i2"], a["t1"], a["t2"]) == (2, 3, 2.0, 3.0)
    assert a["qk_change_t1"] == 1e-3 and a["qk_rank_t1"] == 1.0
    assert a["qk_rank_min"] == pytest.approx(0.25)
    # WQ, WK collapsing first is seen (t2 < t1), not hidden by a search after t1
    b = check.stage_times(t, outer, np.array([6.0, 3.0, 2.0, 2.0, 2.0, 2.0]), change)
    assert b["t2"] < b["t1"]
    # no stage 1: nan, index -1
    c = check.stage_times(t, np.full(6, 6.0), qk, change)
    assert c["i1"] == -1 and np.isnan(c["t1"]) and np.isnan(c["qk_change_t1"])


def test_group_series_ranks_and_changes(rng):
    T, d = 3, 4
    blocks = {
        k: np.repeat(rng.standard_normal((1, d, d)), T, axis=0) for k in check.OUTER + check.QK
    }
    u = rng.standard_normal(d)
    blocks["WQ"][2] = blocks["WK"][2] = np.outer(u, u)  # rank one at the last time
    s = check.group_series(blocks)
    assert s["change_outer"] == pytest.approx(np.zeros(T), abs=1e-15)
    assert s["change_qk"][:2] == pytest.approx([0.0, 0.0], abs=1e-15)
    assert s["rank_qk"][2] == pytest.approx(1.0)
    assert s["rank_outer"][0] == pytest.approx(
        np.mean([fm.effective_rank(blocks[k][0]) for k in check.OUTER])
    )


def test_anchor_records_name_every_run_and_stage():
    net, ids, y = check.anchor_task()
    assert net.loss_name == "cross_entropy" and ids.shape == (check.ANCHOR["n"], check.ANCHOR["s"])
    assert net.vocabulary == check.ANCHOR["keys"][1] + 2 and y.max() < net.vocabulary
    P, T = net.n_params, 4
    theta = np.repeat(net.init(0, scale=1e-3)[None], T, axis=0)
    theta[1:] *= np.linspace(1.0, 2.0, T - 1)[:, None]  # sizes change, ranks do not
    runs = {name: {"t": np.arange(T, dtype=float), "loss": np.ones(T), "theta": theta,
                   "nfev": T} for name in check.ANCHOR_RUNS}  # fmt: skip
    assert theta.shape == (T, P)
    records = check.anchor_records(runs)
    names = {r.name for r in records}
    assert names == {f"attention.anchor/{n}/{k}" for n in check.ANCHOR_RUNS
                     for k in ("stage1", "stage2", "order")}  # fmt: skip
    assert not any(r.passed for r in records)  # no rank falls: every stage row fails
