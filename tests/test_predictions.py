"""Regression tests of theory predictions, through flowsim.testing."""

import pytest

from flowsim.testing import PredictionError, assert_within, check_prediction


def test_assert_within_reports_the_numbers():
    assert_within(1.004, 1.0, rtol=0.01, what="ratio")
    with pytest.raises(PredictionError, match=r"ratio: measured 1\.02, theory 1"):
        assert_within(1.02, 1.0, rtol=0.01, what="ratio")
    with pytest.raises(PredictionError):
        assert_within(float("nan"), 1.0, rtol=0.5)
    with pytest.raises(ValueError):
        assert_within(1.0, 1.0)


def test_invariants_prediction_caches_by_numerics(tmp_path, monkeypatch, capsys):
    """The cheapest check, simulated once: a broken simulator passes only from a cache made by
    the same numerics, never from one made by other numerics; cwd and tmp stay clean."""
    import tempfile

    import flowsim
    from flowsim.cli import main
    from flowsim.validation import _runner

    cwd, tmp, home = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "cache-home"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("FLOWSIM_CACHE_DIR", str(home))
    # the numerics as one fixed hash, the check's hash as first computed (the sources may be
    # edited while this runs; the hashes of the real sources are tested in
    # test_validation_cache.py)
    monkeypatch.setattr(_runner, "_numerics_hash", lambda: "numerics A")
    first, check_hash = {}, _runner._check_hash

    def frozen_check_hash(module, size):
        return first.setdefault((module.NAME, size), check_hash(module, size))

    monkeypatch.setattr(_runner, "_check_hash", frozen_check_hash)

    records = check_prediction("invariants", quick=True)
    assert {r.name for r in records} == {"invariants.relu", "invariants.saxe"}
    (cached,) = (home / "validation").glob("invariants-quick-*.npz")
    assert {r.provenance for r in records} == {f"simulated, cached in {cached}"}

    def broken(*args, **kwargs):
        raise RuntimeError("the simulator is broken")

    monkeypatch.setattr(flowsim, "simulate", broken)
    out = tmp_path / "figures"
    again = check_prediction("invariants", cache_dir=str(home / "validation"), out_dir=str(out))
    assert {r.provenance for r in again} == {f"from cache {cached}"}
    assert [(r.name, r.measured) for r in again] == [(r.name, r.measured) for r in records]
    assert (out / again[0].figure).is_file()
    # the command line reads the same cache (the default one) and says so
    assert main(["figure", "invariants", "--out", str(out / "cli")]) == 0
    assert f"simulation data: from cache {cached}" in capsys.readouterr().err
    assert main(["validate", "invariants", "--out", str(out / "report")]) == 0
    assert f"invariants from cache {cached}" in (out / "report" / "report.md").read_text()

    monkeypatch.setattr(_runner, "_numerics_hash", lambda: "numerics B")
    with pytest.raises(RuntimeError, match="the simulator is broken"):
        check_prediction("invariants", quick=True)
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
