"""Sweeps (flowsim.sweep, ``flowsim sweep``): expansion, errors, and reliability with
real processes: a driver killed with SIGKILL, two sweeps on one store, a Dask
LocalCluster (bitwise equal to the local pool) and workers that die mid-run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import flowsim
from flowsim.cli import main
from flowsim.store import Store
from flowsim.sweep import Sweep, SweepError, run_sweep

ROOT = Path(flowsim.__file__).absolute().parent.parent
EXAMPLES = ROOT / "validation" / "sweeps"

BASE = {
    "model": {"kind": "two_layer", "activation": "tanh", "width": 8},
    "data": {"kind": "sin1d", "params": {"n": 10}},
    "init": {"seed": 0, "scale": 1e-2},
    "solver": {"t_end": 50.0, "rtol": 1e-6, "n_save": 20},
}
SWEEP = {"name": "tiny", "base": BASE, "seeds": 2,
         "grid": {"model.width": [6, 8], "init": {"scale": [1e-2, 1e-3]}}}  # fmt: skip
"""8 runs of a few milliseconds each."""

TOML = """\
name = "killable"
seeds = 2
[base.model]
kind = "two_layer"
activation = "tanh"
width = 20
[base.data]
kind = "sin1d"
params = {{ n = 20 }}
[base.init]
seed = 0
scale = 1e-3
[base.solver]
t_end = {t_end}
rtol = 1e-10
n_save = 20
[grid]
"model.width" = [16, 20]
"init.scale" = [1e-3, 1e-4, 1e-5]
"""
"""12 runs of about 0.2 s each (t_end = 1e3)."""

try:
    import distributed  # noqa: F401

    HAVE_DASK = True
except ImportError:  # pragma: no cover - dask is in the test extra
    HAVE_DASK = False
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="needs dask[distributed] (test extra)")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _sweep_cmd(path, store, *extra) -> list[str]:
    return [sys.executable, "-m", "flowsim.cli", "sweep", str(path), "--store", str(store),
            "--workers", "2", "--quiet", *extra]  # fmt: skip


def _check_store(store: Store, n: int) -> Counter:
    """Every result complete and loadable, each committed once; returns starts per key."""
    keys = store.keys()
    assert len(keys) == n
    for key in keys:
        record = store.record(key)
        assert record["status"] == "ok", record
        traj = store.load(key)
        assert traj.loss.size == 20 and np.all(np.isfinite(traj.loss))
    log = store.read_log()
    commits = Counter(e["key"] for e in log if e["event"] == "commit")
    assert set(commits) == set(keys) and set(commits.values()) == {1}, commits
    store.gc()
    assert not list((store.root / "tmp").iterdir())
    return Counter(e["key"] for e in log if e["event"] == "start")


def _arrays(store: Store) -> dict:
    out = {}
    for key in store.keys():
        with np.load(store.path(key) / "trajectory.npz") as data:
            out[key] = {name: data[name] for name in data.files}
    return out


# -- the sweep file ---------------------------------------------------------------


def test_expansion_order_grid_zip_seeds():
    d = {**SWEEP, "zip": {"solver.t_end": [10.0, 20.0], "solver.rtol": [1e-6, 1e-7]}}
    sweep = Sweep.from_dict(d)
    points = sweep.points()
    assert len(sweep) == len(points) == 2 * 2 * 2 * 2
    assert points[0] == {"model.width": 6, "init.scale": 1e-2, "solver.t_end": 10.0,
                         "solver.rtol": 1e-6, "init.seed": 0}  # fmt: skip
    assert points[1]["init.seed"] == 1 and points[2]["solver.t_end"] == 20.0
    assert points[-1] == {"model.width": 8, "init.scale": 1e-3, "solver.t_end": 20.0,
                          "solver.rtol": 1e-7, "init.seed": 1}  # fmt: skip
    runs = sweep.runs()
    assert [r.config.model.width for r in runs[:4]] == [6, 6, 6, 6]
    assert runs[5].config.init.scale == 1e-3 and runs[5].config.solver.rtol == 1e-6
    assert len({r.key for r in runs}) == 16


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"grid": {"model.widht": [1, 2]}}, "grid.model.widht", "unknown field"),
        ({"grid": {"init.scale": [1e-2, -1.0]}}, "grid.init.scale", "positive"),
        ({"grid": {"init.scale": 0.1}}, "grid.init.scale", "list of values"),
        (
            {"zip": {"solver.t_end": [1.0], "solver.rtol": [1e-6, 1e-7]}},
            "zip.solver.t_end, zip.solver.rtol",
            "one length",
        ),
        ({"seeds": [0, 0]}, "seeds", "repeat"),
        ({"seeds": -1}, "seeds", "count >= 1"),
        ({"gird": {}}, "gird", "unknown field"),
        ({"base": {**BASE, "solver": {"t_end": 1.0, "rtol": 2.0}}}, "base.solver.rtol", "[1e-14"),
        ({"grid": {"model.width.x": [1]}}, "grid.model.width.x", "not a table"),
        ({"grid": {"init.seed": [1, 2]}}, "grid.init.seed", "cannot be combined with seeds"),
    ],
)
def test_bad_sweeps_name_the_field(change, path, message):
    d = {**copy.deepcopy(SWEEP), **change}
    with pytest.raises(SweepError) as info:
        Sweep.from_dict(d).runs()
    assert info.value.path == path
    assert message in info.value.message


def test_cli_rejects_a_bad_sweep_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TOML.format(t_end=1e3).replace('"init.scale"', '"init.scael"'))
    assert main(["sweep", str(path), "--store", str(tmp_path / "s"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "grid.init.scael: unknown field" in err


@pytest.mark.parametrize("name", ["phase_diagram", "escape_scaling"])
def test_example_sweeps_expand_and_dry_run(name, tmp_path, capsys):
    path = EXAMPLES / f"{name}.toml"
    sweep = Sweep.from_toml(path)
    runs = sweep.runs()
    assert len(runs) == len(sweep) == {"phase_diagram": 144, "escape_scaling": 27}[name]
    assert len({r.key for r in runs}) == len(runs)
    store = Store(tmp_path / "s")
    result = run_sweep(sweep, store, dry_run=True, progress=False)
    assert result.total == len(runs) and len(result.planned) == len(runs)
    assert store.keys() == []
    assert main(["sweep", str(path), "--store", str(store.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(runs)} would run" in out and runs[-1].key[:12] in out


def test_local_sweep_runs_what_is_missing_and_records_failures(tmp_path):
    store = Store(tmp_path / "s")
    d = copy.deepcopy(SWEEP)
    d["grid"]["solver.max_steps"] = [3, 10**6]  # the first value makes every run fail early
    sweep = Sweep.from_dict(d)
    result = run_sweep(sweep, store, workers=2, progress=False)
    assert (result.total, result.computed, result.ok, result.failed) == (16, 16, 8, 8)
    assert {reason for _, reason, _ in result.failures} == {"max_steps"}
    assert {store.record(r.key)["versions"]["numba_threads"] for r in sweep.runs()} == {"1"}
    again = run_sweep(sweep, store, workers=2, progress=False)
    assert (again.stored, again.computed, again.failed) == (16, 0, 8)
    retried = run_sweep(sweep, store, workers=2, retry_failed=True, progress=False)
    assert (retried.stored, retried.computed, retried.failed) == (8, 8, 8)
    starts = Counter(e["key"] for e in store.read_log() if e["event"] == "start")
    failed = {k for k, _, _ in retried.failures}
    assert all(starts[k] == (2 if k in failed else 1) for k in store.keys())


# -- reliability: real processes ---------------------------------------------------------


def test_sweep_killed_with_sigkill_then_rerun_recomputes_nothing(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(TOML.format(t_end=1e3))
    store = Store(tmp_path / "s")
    total = len(Sweep.from_toml(path))
    proc = subprocess.Popen(_sweep_cmd(path, store.root), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(store.keys()) < 3:
            assert proc.poll() is None, "the sweep finished before it could be killed"
            assert time.monotonic() < deadline, "no results after 120 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(1.0)  # workers of the dead driver finish (or drop) their current run
        # what was stored when the rerun starts
        before = {k: (store.path(k) / "result.json").stat() for k in store.keys()}
        assert 3 <= len(before) < total
        rerun = subprocess.run(_sweep_cmd(path, store.root), env=_env(), capture_output=True,
                               text=True, timeout=300)  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned workers of the killed driver
        except ProcessLookupError:
            pass
    starts = _check_store(store, total)
    for key, stat in before.items():
        now = (store.path(key) / "result.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
        assert starts[key] == 1, f"{key} was recomputed"


def test_two_sweeps_on_one_store_compute_each_run_once(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(TOML.format(t_end=300.0))
    store = Store(tmp_path / "s")
    total = len(Sweep.from_toml(path))
    procs = [subprocess.Popen(_sweep_cmd(path, store.root), env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    starts = _check_store(store, total)
    assert set(starts.values()) == {1}, "a run was computed twice"


@needs_dask
def test_local_and_dask_store_bitwise_identical_results(tmp_path):
    sweep = Sweep.from_dict(SWEEP)
    local, dask = Store(tmp_path / "local"), Store(tmp_path / "dask")
    assert run_sweep(sweep, local, workers=2, progress=False).ok == 8
    result = run_sweep(sweep, dask, scheduler="dask", workers=2, progress=False)
    assert (result.computed, result.ok) == (8, 8)
    a, b = _arrays(local), _arrays(dask)
    assert a.keys() == b.keys() and len(a) == 8
    for key in a:
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert a[key][name].dtype == b[key][name].dtype
            assert a[key][name].tobytes() == b[key][name].tobytes(), (key, name)
    for store in (local, dask):
        assert {r["versions"]["numba_threads"] for r in store.records()} == {"1"}
    pids_local = {r["pid"] for r in local.records()}
    pids_dask = {r["pid"] for r in dask.records()}
    assert os.getpid() not in pids_local | pids_dask and len(pids_dask) <= 2


@pytest.mark.parametrize(
    "scheduler", [pytest.param("dask", marks=needs_dask), pytest.param("local")]
)
def test_worker_dying_mid_run_does_not_stop_the_sweep(scheduler, tmp_path, monkeypatch):
    sweep = Sweep.from_dict(SWEEP)
    victim = sweep.runs()[3].key
    marker = tmp_path / "died"
    # test hook of flowsim.sweep: the worker running `victim` calls os._exit once
    monkeypatch.setenv("FLOWSIM_TEST_EXIT_ONCE", f"{victim}:{marker}")
    store = Store(tmp_path / "s")
    result = run_sweep(sweep, store, scheduler=scheduler, workers=2, progress=False)
    dead_pid = int(marker.read_text())
    assert dead_pid != os.getpid()
    assert (result.ok, result.failed) == (8, 0)
    starts = _check_store(store, 8)
    assert starts[victim] == 2  # started by the worker that died, then again
    assert store.record(victim)["pid"] != dead_pid
    assert json.loads((store.root / "manifest.json").read_text())["results"][0]["status"] == "ok"
