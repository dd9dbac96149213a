"""Sweeps (flowsim.sweep, ``flowsim sweep``): expansion, errors, and reliability with
real processes: a driver killed with SIGKILL, two sweeps on one store, a Dask
LocalCluster (bitwise equal to the local pool) and workers that die mid-run."""

from __future__ import annotations

import contextlib
import copy
import itertools
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


# -- bounded expansion, interrupts, orphans, foreign schedulers ------------------------

HUGE_GRID = {"init.scale": 1e-3, "solver.t_end": 1.0, "solver.rtol": 1e-6}
"""Three fields of 1000 values each: a 1000^3 grid."""


@pytest.mark.parametrize(
    "extra, count, sections",
    [
        ({"seeds": 1_000_000_000}, 10**9, "seeds"),
        ({"grid": {k: [v] * 1000 for k, v in HUGE_GRID.items()}}, 10**9, "grid"),
        ({"seeds": 1000, "zip": {"init.scale": [1e-3] * 101}}, 101_000, "zip, seeds"),
    ],
    ids=["seeds", "grid", "zip_seeds"],
)
def test_huge_sweeps_are_counted_not_built(extra, count, sections):
    """`seeds = 1e9` or a 1000^3 grid ran out of memory even with --dry-run: the count is
    a product of lengths, and a sweep over MAX_RUNS is refused before a run is built."""
    import tracemalloc

    from flowsim.sweep import MAX_RUNS

    tracemalloc.start()
    started = time.monotonic()
    sweep = Sweep.from_dict({"base": BASE, **extra})
    assert len(sweep) == count > MAX_RUNS
    with pytest.raises(SweepError) as exc:
        sweep.runs()
    with pytest.raises(SweepError):
        sweep.points()
    first = list(itertools.islice(sweep.iter_runs(), 3))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exc.value.path == sections
    assert f"{count} runs (" in str(exc.value) and f"maximum {MAX_RUNS}" in str(exc.value)
    assert [r.index for r in first] == [0, 1, 2]
    assert peak < 20 * 2**20 and time.monotonic() - started < 30


def test_huge_sweep_dry_run_prints_the_count_and_the_first_runs(tmp_path, capsys):
    path = tmp_path / "huge.toml"
    path.write_text(TOML.format(t_end=10.0).replace("seeds = 2", "seeds = 1000000000"))
    assert main(["sweep", str(path), "--store", str(tmp_path / "s"), "--dry-run"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("killable: 6000000000 runs, more than the maximum")
    assert len(out) == 11
    assert out[1].split()[0] == "0" and "init.seed=0" in out[1]
    assert "init.seed=9" in out[10]
    assert main(["sweep", str(path), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "grid, seeds: 6000000000 runs (2 model.width x 3 init.scale x 1000000000 seeds)" in err
    assert not (tmp_path / "s").exists() or not Store(tmp_path / "s").keys()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def test_sigint_stops_the_sweep_with_a_message_and_the_rerun_resumes(tmp_path):
    path = tmp_path / "sweep.toml"
    # GD runs of about 1 s (10^6 steps): the sweep is still going when 2 results are in
    path.write_text(TOML.format(t_end=1e3).replace("rtol = 1e-10", 'method = "gd"\ndt = 1e-3'))
    store = Store(tmp_path / "s")
    total = len(Sweep.from_toml(path))
    # the driver starts with SIGINT at its default, as from a terminal: a test run started in
    # the background of a non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler (the sweep went on and ended with status 0)
    proc = subprocess.Popen(_sweep_cmd(path, store.root), env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(store.keys()) < 2:
            assert proc.poll() is None, "the sweep finished before it could be interrupted"
            assert time.monotonic() < deadline, "no results after 120 s"
            time.sleep(0.01)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGINT)  # the driver only, as `kill -INT` does
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    stored = {k: (store.path(k) / "result.json").stat() for k in store.keys()}
    assert err.startswith(f"flowsim sweep: interrupted; {len(stored)} of {total} runs are in")
    assert 2 <= len(stored) < total
    import psutil

    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "workers outlived the interrupted driver"
    rerun = subprocess.run(_sweep_cmd(path, store.root), env=_env(), capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    starts = _check_store(store, total)
    for key, stat in stored.items():
        now = (store.path(key) / "result.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
        assert starts[key] == 1, f"{key} was recomputed"


def test_workers_exit_when_the_driver_is_killed_with_sigkill(tmp_path):
    """Before, the local pool's workers outlived a SIGKILLed driver for good (they were
    re-parented and went on); now prctl(PR_SET_PDEATHSIG) ends them."""
    import psutil

    path = tmp_path / "sweep.toml"
    # runs of minutes (GD, 10^8 steps), so both workers are mid-run when the driver dies: with
    # the flow's auto method a run takes 0.3 s and the sweep could end before the kill
    path.write_text(TOML.format(t_end=1e5).replace("rtol = 1e-10", 'method = "gd"\ndt = 1e-3'))
    store = Store(tmp_path / "s")
    proc = subprocess.Popen(_sweep_cmd(path, store.root), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        workers = []
        while len(workers) < 2 or len(store.running()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            workers = [p for p in _descendants(proc.pid)
                       if "spawn_main" in " ".join(p.cmdline())]  # fmt: skip
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"workers {[p.pid for p in alive]} outlived the killed driver"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@needs_dask
@pytest.mark.parametrize("server", ["talks_http", "silent", "nothing"])
def test_address_that_is_not_a_dask_scheduler(tmp_path, capsys, monkeypatch, server):
    """A plain TCP server (one answering HTTP made Dask try to allocate 3 EiB) or a
    closed port: a one-line message within the connect timeout, no traceback."""
    import socket
    import threading

    from flowsim import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "CONNECT_TIMEOUT", 3.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "nothing":
        listener.close()
    else:
        listener.listen(8)

        def serve():
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    if server == "talks_http":
                        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello\n")

        threading.Thread(target=serve, daemon=True).start()
    path = tmp_path / "sweep.toml"
    path.write_text(TOML.format(t_end=10.0))
    started = time.monotonic()
    try:
        code = main(["sweep", str(path), "--store", str(tmp_path / "s"), "--quiet",
                     "--scheduler", f"tcp://127.0.0.1:{port}"])  # fmt: skip
    finally:
        listener.close()
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 3 s" in err


@needs_dask
def test_a_real_scheduler_passes_the_check():
    from distributed import LocalCluster

    from flowsim.sweep import _check_scheduler

    with LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        _check_scheduler(cluster.scheduler_address, 10.0)


def test_interrupt_before_any_run_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the sweep file is still being read and expanded (before run_sweep)."""

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sweep, "from_toml", staticmethod(interrupted))
    assert main(["sweep", str(tmp_path / "any.toml"), "--store", str(tmp_path / "s")]) == 130
    assert capsys.readouterr().err.strip() == "flowsim sweep: interrupted"
