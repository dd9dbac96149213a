"""Documented findings (the FINDING verdict) and the phase diagram's critical band, on
synthetic records and data (no simulation)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flowsim import cli
from flowsim.validation import _runner, phase_diagram
from flowsim.validation._record import Finding, Record, attach_findings


def _record(name="check.case", measured=5.0, passed=False, finding=None):
    return Record(name, "claim", "source", 2.0, measured, "equal", passed, finding=finding)


# -- the verdict ------------------------------------------------------------------------------


def test_verdict_pass_fail_and_finding():
    documented = Finding("why", expected=5.0, atol=0.0)
    assert _record(passed=True).verdict == "PASS"
    assert _record().verdict == "FAIL"
    assert _record(finding=documented).verdict == "FINDING"
    assert _record(finding=documented).ok and not _record().ok


def test_finding_that_no_longer_reproduces_is_a_fail():
    assert _record(measured=4.0, finding=Finding("why", 5.0)).verdict == "FAIL"
    assert _record(measured=5.3, finding=Finding("why", 5.0, atol=0.5)).verdict == "FINDING"
    assert _record(measured=5.6, finding=Finding("why", 5.0, atol=0.5)).verdict == "FAIL"
    assert _record(measured=math.nan, finding=Finding("why", 5.0, atol=1e9)).verdict == "FAIL"


def test_categorical_finding_matches_exactly():
    assert _record(measured="linear", finding=Finding("why", "linear")).verdict == "FINDING"
    assert _record(measured="condensed", finding=Finding("why", "linear")).verdict == "FAIL"
    assert _record(measured=1.0, finding=Finding("why", "1")).verdict == "FAIL"


def test_a_passing_record_stays_pass_with_a_finding():
    assert _record(passed=True, finding=Finding("why", 7.0)).verdict == "PASS"


def test_attach_findings_by_name():
    records = [_record("a.x"), _record("a.y")]
    out = attach_findings(records, {"a.y": Finding("why", 5.0), "a.z": Finding("gone", 1.0)})
    assert [r.finding is not None for r in out] == [False, True]
    assert [r.verdict for r in out] == ["FAIL", "FINDING"]


def test_json_carries_verdict_and_finding():
    out = _record(finding=Finding("why", 5.0, atol=0.5)).to_json()
    assert out["verdict"] == "FINDING"
    assert out["finding"] == {"reason": "why", "expected": 5.0, "atol": 0.5}
    json.dumps(out)


def test_table_and_report_show_findings(tmp_path):
    records = [_record("a.pass", passed=True), _record("a.found", finding=Finding("the why", 5.0)),
               _record("a.stale", measured=3.0, finding=Finding("old why", 5.0))]  # fmt: skip
    rows = {line.split()[0]: line.split()[-1] for line in _runner.table(records).splitlines()[2:]}
    assert rows == {"a.pass": "PASS", "a.found": "FINDING", "a.stale": "FAIL"}
    text = _runner.write_report(records, {"a": 1.0}, tmp_path, "quick").read_text()
    assert "1 of 3 checks passed, 1 documented findings reproduced." in text
    assert "| FINDING |" in text and "| **FAIL** |" in text
    assert "documented finding (reproduced" in text and "the why" in text
    assert "documented finding (NOT reproduced" in text and "old why" in text


@pytest.mark.parametrize(
    ("measured", "status"), [(5.0, 0), (4.0, 1)], ids=["reproduced", "not-reproduced"]
)
def test_exit_status_counts_reproduced_findings_as_ok(monkeypatch, tmp_path, measured, status):
    records = [_record("a.pass", passed=True),
               _record("a.found", measured=measured, finding=Finding("why", 5.0))]  # fmt: skip
    monkeypatch.setattr(_runner, "run", lambda *args, **kwargs: (records, {"a": 0.1}))
    out = tmp_path / "out"
    assert cli.main(["validate", "--out", str(out), "--cache", str(tmp_path / "c")]) == status


# -- phase diagram: the critical band ---------------------------------------------------------


def test_limit_slopes_and_band():
    assert [phase_diagram.limit_slope(g) for g in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)] == [
        -0.5, -0.25, 0.0, 0.125, 0.25, 0.375]  # fmt: skip
    assert phase_diagram.critical_band() == 0.0625  # half of |0.125| (gamma = 1.25)
    assert phase_diagram.critical_band([0.5, 1.0, 1.5]) == 0.125
    assert phase_diagram.measured_regime(-0.0625, 0.0625) == "critical"
    assert phase_diagram.measured_regime(-0.07, 0.0625) == "linear"
    assert phase_diagram.measured_regime(0.07, 0.0625) == "condensed"


def _gd_runs(rd):
    n = rd.size
    return {"RD": rd, "t": np.ones(n), "loss": np.full(n, 1e-7), "lr": np.full(n, 0.05),
            "lambda0": np.ones(n), "lambda_end": np.ones(n), "rising": np.zeros(n),
            "wall": np.ones(n)}  # fmt: skip


def _flow_runs(rd_of_m, widths, rng, seeds=(0,), gd_widths=None):
    """Runs of one gamma: RD from the flow at ``widths`` x ``seeds``, GD beside it
    (``run["gd"]``); with ``gd_widths`` (full size) GD at those widths too
    (``run["gd_wide"]``)."""
    m = np.repeat(np.asarray(widths, dtype=float), len(seeds))
    rd = rd_of_m(m) * np.exp(0.002 * rng.standard_normal(m.size))
    n = m.size
    run = {"width": m.astype(int), "seed": np.tile(seeds, len(widths)),
           "RD": rd, "t": np.ones(n), "loss": np.full(n, 1e-6), "nfev": np.full(n, 100),
           "switches": np.full(n, 10), "status": np.array(["event"] * n, dtype="<U16"),
           "wall": np.ones(n), "gd": _gd_runs(rd * (1 + 1e-3))}  # fmt: skip
    if gd_widths is not None:
        wide = np.repeat(np.asarray(gd_widths, dtype=float), len(seeds))
        rd_wide = rd_of_m(wide) * np.exp(0.002 * rng.standard_normal(wide.size))
        run["gd_wide"] = {"width": wide.astype(int), **_gd_runs(rd_wide)}
    return run


def test_flow_trained_runs_fail_where_the_flow_stops_short_or_gd_disagrees(rng):
    """Quick size: S_w from the flow; a flow run that did not reach the loss threshold
    fails its gamma (its RD is not a converged RD) and the GD comparison; GD's RD off by
    3% more at one width fails ``gd_vs_flow``, whichever width it is."""
    widths = [32, 100, 316, 1000, 3162]
    data = {"runs": {0.5: _flow_runs(lambda m: 3.0 * m**-0.5, widths, rng),
                     1.5: _flow_runs(lambda m: 1.1 * m**0.25, widths, rng)}}  # fmt: skip
    records = {r.name: r for r in phase_diagram.evaluate(data, "quick")}
    assert records["phase_diagram.gamma_0.5"].passed
    assert records["phase_diagram.gamma_1.5"].measured == "condensed"
    assert records["phase_diagram.gd_vs_flow"].passed
    data["runs"][1.5]["gd"]["RD"][3] *= 1.03
    record = {r.name: r for r in phase_diagram.evaluate(data, "quick")}["phase_diagram.gd_vs_flow"]
    assert not record.passed and "gamma 1.5: 3.1e-02 at m = 1000" in record.note  # 1.001 x 1.03
    data["runs"][1.5]["gd"]["RD"][3] /= 1.03
    data["runs"][1.5]["gd"]["RD"][1] = np.nan  # a GD run that failed
    record = {r.name: r for r in phase_diagram.evaluate(data, "quick")}["phase_diagram.gd_vs_flow"]
    assert not record.passed and "gamma 1.5: inf at m = 100" in record.note
    data["runs"][0.5]["status"][2] = "max_wall"
    records = {r.name: r for r in phase_diagram.evaluate(data, "quick")}
    assert not records["phase_diagram.gamma_0.5"].passed
    assert "max_wall" in records["phase_diagram.gamma_0.5"].note


def _plane_run(rd_of_m, rng):
    m = np.array([100, 316, 1000, 3162, 10000])
    rd = rd_of_m(m.astype(float)) * np.exp(0.002 * rng.standard_normal(m.size))
    return {"width": m, "RD": rd, "loss": np.full(m.size, 1e-6), "wall": np.ones(m.size),
            "status": np.array(["event"] * m.size, dtype="<U16")}  # fmt: skip


def test_points_off_the_axis_get_records_of_their_own(rng):
    """Full size: one record per (gamma, gamma') point of the plane, the regime of its S_w
    against [LXMZ21]'s; a flow that stopped short fails its point."""
    widths, seeds, wide = [32, 100, 316, 1000], np.arange(1), [32, 100, 316, 1000, 3162, 10000]
    data = {"runs": {0.5: _flow_runs(lambda m: 3.0 * m**-0.5, widths, rng, seeds, wide),
                     1.5: _flow_runs(lambda m: 1.1 * m**0.25, widths, rng, seeds, wide)},
            "plane": {(0.5, 0.5): _plane_run(lambda m: 2.0 * m**-1.5, rng),
                      (1.0, -0.5): _plane_run(lambda m: 1.2 * m**0.2, rng),
                      (1.75, -0.5): _plane_run(lambda m: m**0.6, rng)}}  # fmt: skip
    records = {r.name: r for r in phase_diagram.evaluate(data, "full")}
    assert records["phase_diagram.gamma_1.5"].passed
    assert "GD over m = 100 ... 10000: S_w = +0.25" in records["phase_diagram.gamma_1.5"].note
    linear = records["phase_diagram.plane_0.5_0.5"]
    assert linear.passed and linear.theory == linear.measured == "linear"
    critical = records["phase_diagram.plane_1_-0.5"]
    assert not critical.passed and (critical.theory, critical.measured) == ("critical", "condensed")
    assert records["phase_diagram.plane_1.75_-0.5"].measured == "condensed"
    assert records["phase_diagram.plane_1.75_-0.5"].passed
    data["plane"][0.5, 0.5]["status"][4] = "max_wall"
    data["plane"][0.5, 0.5]["RD"][4] = np.nan
    records = {r.name: r for r in phase_diagram.evaluate(data, "full")}
    record = records["phase_diagram.plane_0.5_0.5"]
    assert not record.passed and "max_wall" in record.note


@pytest.mark.parametrize("n_seeds", [1, 3, 30])
def test_critical_verdict_does_not_flip_with_the_number_of_seeds(rng, n_seeds):
    """A critical RD with a finite-size correction, RD = 1.4 (1 + 0.3 m^-1/2): its fitted
    slope over m >= 100 is about -0.004, significantly non-zero once there are enough runs
    (the old 2-stderr rule then said "linear"); the band keeps it critical at any seed count."""
    widths = [32, 100, 316, 1000, 3162, 10000, 31623, 100000]
    seeds = np.arange(n_seeds)
    runs = {1.0: lambda m: 1.4 * (1 + 0.3 / np.sqrt(m)), 0.5: lambda m: 3.0 * m**-0.5,
            1.5: lambda m: 1.1 * m**0.25}  # fmt: skip
    data = {"runs": {g: _flow_runs(rd, widths, rng, seeds) for g, rd in runs.items()}}
    records = {r.name: r for r in phase_diagram.evaluate(data, "full")}
    assert records["phase_diagram.gamma_1"].measured == "critical"
    assert records["phase_diagram.gamma_1"].passed
    assert records["phase_diagram.gamma_0.5"].measured == "linear"
    assert records["phase_diagram.gamma_1.5"].measured == "condensed"
    fit = phase_diagram._fits(data)[1.0]
    if n_seeds == 30:  # the old rule's verdict on the same data
        assert abs(fit.slope) > 2 * fit.stderr
