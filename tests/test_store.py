"""The result store (flowsim.store): keys, atomic records, failures, locks, tables, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import flowsim
import flowsim.store as fstore
from flowsim.cli import main
from flowsim.config import RunConfig
from flowsim.store import Store, StoreError, store_key

ROOT = Path(flowsim.__file__).absolute().parent.parent

# tiny runs: tanh two-layer nets, kernels shared with the other tests
TINY = {
    "model": {"kind": "two_layer", "activation": "tanh", "width": 8},
    "data": {"kind": "sin1d", "params": {"n": 10}},
    "init": {"seed": 0, "scale": 1e-2},
    "solver": {"t_end": 50.0, "rtol": 1e-6, "n_save": 20},
    "events": [{"kind": "escape_norm", "threshold": 0.05, "terminal": False}],
}


def tiny(**changes) -> RunConfig:
    d = json.loads(json.dumps(TINY))
    for path, value in changes.items():
        section, name = path.split("__")
        d[section][name] = value
    return RunConfig.from_dict(d)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_key_is_content_and_covers_numerics_version(monkeypatch):
    a, b = tiny(), tiny()
    assert store_key(a) == store_key(b)
    assert store_key(RunConfig.from_dict({**TINY, "name": "label"})) == store_key(a)
    assert store_key(tiny(init__seed=1)) != store_key(a)
    before = store_key(a)
    monkeypatch.setattr(fstore, "NUMERICS_VERSION", fstore.NUMERICS_VERSION + 1)
    assert store_key(a) != before


def test_compute_stores_a_readable_result_once(tmp_path):
    store = Store(tmp_path / "s")
    cfg = tiny()
    record, outcome = store.compute(cfg)
    assert outcome == "computed" and record["status"] == "ok" and record["reason"] == "done"
    key = store_key(cfg)
    assert record["key"] == key and record["run_key"] == cfg.key()
    directory = store.path(key)
    assert sorted(p.name for p in directory.iterdir()) == [
        "result.json",
        "trajectory.json",
        "trajectory.npz",
    ]
    # readable without flowsim: plain json and numpy
    plain = json.loads((directory / "result.json").read_text())
    assert plain["config"] == cfg.to_dict()
    with np.load(directory / "trajectory.npz") as arrays:
        loss = arrays["loss"]
    traj = store.load(key)
    np.testing.assert_array_equal(traj.loss, loss)
    assert plain["summary"]["loss_final"] == pytest.approx(float(loss[-1]))
    assert RunConfig.from_dict(plain["config"]) == cfg
    # a second compute finds it: nothing recomputed, files untouched
    inode = (directory / "result.json").stat().st_ino
    record2, outcome2 = store.compute(cfg)
    assert outcome2 == "stored" and record2 == record
    assert (directory / "result.json").stat().st_ino == inode
    starts = [e for e in store.read_log() if e["event"] == "start"]
    assert [e["key"] for e in starts] == [key]
    assert not list((store.root / "tmp").iterdir())


def test_failures_are_recorded_with_reason_and_retried_only_when_asked(tmp_path):
    store = Store(tmp_path / "s")
    cfg = tiny(solver__max_steps=3)  # stops early: status max_steps
    record, outcome = store.compute(cfg)
    assert outcome == "computed"
    assert record["status"] == "failed" and record["reason"] == "max_steps"
    assert "max" in record["message"]
    assert store.compute(cfg) == (record, "stored")
    again, outcome = store.compute(cfg, retry_failed=True)
    assert outcome == "computed" and again["finished"] > record["finished"]
    # a failure older than the retry time is retried, a newer one is not
    assert store.compute(cfg, retry_failed=again["finished"] - 1.0)[1] == "stored"

    def boom(cfg, progress=None):
        raise FloatingPointError("overflow in the test runner")

    cfg2 = tiny(init__seed=5)
    record, outcome = store.compute(cfg2, runner=boom)
    assert outcome == "computed" and record["status"] == "failed"
    assert record["reason"] == "exception"
    assert record["message"] == "FloatingPointError: overflow in the test runner"
    assert "Traceback" in record["traceback"]
    with pytest.raises(StoreError, match="no trajectory"):
        store.load(record["key"])


def test_lock_is_held_across_processes_and_released_when_the_holder_is_killed(tmp_path):
    store = Store(tmp_path / "s")
    cfg = tiny(init__seed=3)
    key = store_key(cfg)
    holder = (
        "import sys, time; from flowsim.store import Store\n"
        "with Store(sys.argv[1]).lock(sys.argv[2]):\n"
        "    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(store.root), key],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert store.running() == [key]
        assert store.compute(cfg, wait=False) == (None, "busy")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert store.running() == []
        record, outcome = store.compute(cfg, wait=False)
        assert outcome == "computed" and record["status"] == "ok"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_commit_is_atomic_and_first_writer_wins(tmp_path):
    """A result directory appears whole; a second put of the same key keeps the first."""
    store = Store(tmp_path / "s")
    cfg = tiny(init__seed=4)
    from flowsim.config import run_config

    traj = run_config(cfg, progress=False)
    first = store.put(cfg, traj, started=time.time())
    second = store.put(cfg, traj, started=time.time())
    assert second == first
    assert len(store.keys()) == 1
    assert not list((store.root / "tmp").iterdir())
    # what a writer killed mid-write leaves: a directory under tmp, never a result
    orphan = store.root / "tmp" / f"{store_key(tiny(init__seed=9))}.host.123.abcd"
    orphan.mkdir()
    (orphan / "trajectory.npz").write_bytes(b"torn")
    assert store.keys() == [first["key"]]
    assert store.gc(dry_run=True) == [orphan] and orphan.exists()
    assert store.gc() == [orphan] and not orphan.exists()


def test_a_terminated_writer_commits_whole_or_not_at_all(tmp_path):
    """SIGTERM between the rename into place and the log line (what a process pool
    sends the surviving workers when one dies) is held until the commit is logged."""
    store = Store(tmp_path / "s")
    cfg = tiny(init__seed=5)
    writer = (
        "import json, os, signal, sys\n"
        "import flowsim.store as fstore\n"
        "from flowsim.config import RunConfig\n"
        "fsync = fstore._fsync_path\n"
        "def fsync_then_terminated(path, directory=False):\n"
        "    fsync(path, directory)\n"
        "    if path.parent.name == 'results':  # the result is in place\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "fstore._fsync_path = fsync_then_terminated\n"
        "cfg = RunConfig.from_dict(json.loads(sys.argv[2]))\n"
        "fstore.Store(sys.argv[1]).put(cfg, error=RuntimeError('stored'))\n"
        "print('not reached')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", writer, str(store.root), json.dumps(cfg.to_dict())],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "not reached" not in proc.stdout
    key = store_key(cfg)
    assert store.record(key)["message"] == "RuntimeError: stored"
    assert [e["event"] for e in store.read_log() if e["key"] == key] == ["commit"]


def test_manifest_is_rebuilt_from_the_files_and_table_is_tidy(tmp_path):
    store = Store(tmp_path / "s")
    cfgs = [tiny(model__width=w, init__seed=s) for w in (6, 8) for s in (0, 1)]
    for cfg in cfgs:
        store.compute(cfg)
    path = store.rebuild_manifest()
    manifest = json.loads(path.read_text())
    assert sorted(e["key"] for e in manifest["results"]) == sorted(map(store_key, cfgs))
    path.unlink()
    assert json.loads(store.rebuild_manifest().read_text())["results"] == manifest["results"]
    rows = store.rows()
    assert len(rows) == 4
    assert {(r["model.width"], r["init.seed"]) for r in rows} == {(6, 0), (6, 1), (8, 0), (8, 1)}
    assert all(r["status"] == "ok" and r["event.escape.t"] > 0 for r in rows)
    assert all(r["data.params.n"] == 10 and r["events[0].kind"] == "escape_norm" for r in rows)
    table = store.table()
    try:
        import pandas  # noqa: F401
    except ImportError:
        assert table == rows
    else:
        assert list(table["model.width"]) == [r["model.width"] for r in rows]


def test_store_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a flowsim store"):
        Store(tmp_path / "other")
    with pytest.raises(StoreError, match="not a flowsim store"):
        Store(tmp_path / "missing", create=False)


def test_cli_store_ls_show_gc(tmp_path, capsys):
    store = Store(tmp_path / "s")
    ok, _ = store.compute(tiny(model__width=6))
    bad, _ = store.compute(tiny(model__width=6, solver__max_steps=3))
    assert main(["store", "ls", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "2 results (1 ok, 1 failed)" in out
    assert ok["key"][:12] in out and bad["key"][:12] in out and "max_steps" in out
    assert main(["store", "ls", str(store.root), "--failed", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in rows] == [bad["key"]]
    assert main(["store", "show", str(store.root), ok["key"][:8]]) == 0
    assert f'"key": "{ok["key"]}"' in capsys.readouterr().out
    assert main(["store", "show", str(store.root), "zzzz"]) == 2
    assert "no result" in capsys.readouterr().err
    assert main(["store", "gc", str(store.root), "--failed"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert store.keys() == [ok["key"]]
    assert main(["store", "ls", str(tmp_path / "nope")]) == 2
    assert "not a flowsim store" in capsys.readouterr().err
