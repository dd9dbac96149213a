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
import pandas as pd
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
    assert isinstance(table, pd.DataFrame) and len(table) == 4
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
    assert "hexadecimal" in capsys.readouterr().err
    absent = next(p for p in ("0000", "1111", "2222") if not ok["key"].startswith(p)
                  and not bad["key"].startswith(p))  # fmt: skip
    assert main(["store", "show", str(store.root), absent]) == 2
    assert "no result" in capsys.readouterr().err
    assert main(["store", "gc", str(store.root), "--failed"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert store.keys() == [ok["key"]]
    assert main(["store", "ls", str(tmp_path / "nope")]) == 2
    assert "not a flowsim store" in capsys.readouterr().err


# -- integrity: checksums, bad records, stale directories, hostile keys --------------------


def _sweep(name="integrity"):
    from flowsim.sweep import Sweep

    return Sweep.from_dict({"name": name, "base": json.loads(json.dumps(TINY)), "seeds": 2})


def _run_sweep(store, sweep):
    from flowsim.sweep import run_sweep

    return run_sweep(sweep, store, workers=1, progress=False)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        i = len(data) // 2  # inside the arrays: the size stays, the bytes differ
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :])
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "deleted"])
def test_damaged_trajectory_found_by_verify_and_load_and_recomputed_by_a_sweep(
    how, tmp_path, capsys
):
    store = Store(tmp_path / "s")
    sweep = _sweep()
    assert _run_sweep(store, sweep).ok == 2
    assert store.verify() == {}
    victim, other = (run.key for run in sweep.runs())
    loss = store.load(victim).loss.copy()
    _damage(store.path(victim) / "trajectory.npz", how)

    assert list(store.verify()) == [victim]
    assert "trajectory.npz" in store.verify()[victim]
    with pytest.raises(StoreError, match=rf"{victim}.*trajectory\.npz"):
        store.load(victim)
    assert main(["store", "verify", str(store.root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(victim[:12]) and "trajectory.npz" in out[0]
    # still listed (the record is readable); the sweep recomputes it, and only it
    assert {r["key"] for r in store.rows()} == {victim, other}
    with pytest.warns(fstore.StoreWarning, match=victim[:12]):
        result = _run_sweep(store, sweep)
    assert (result.stored, result.computed, result.ok) == (1, 1, 2)
    assert store.verify() == {}
    np.testing.assert_array_equal(store.load(victim).loss, loss)  # deterministic rerun
    starts = [e["key"] for e in store.read_log() if e["event"] == "start"]
    assert starts.count(victim) == 2 and starts.count(other) == 1
    assert main(["store", "verify", str(store.root)]) == 0
    assert capsys.readouterr().out == ""


def test_records_carry_checksums_and_the_sweep_name_not_in_the_key(tmp_path):
    import hashlib

    store = Store(tmp_path / "s")
    sweep = _sweep("named")
    _run_sweep(store, sweep)
    assert sorted(store.keys()) == sorted(store_key(run.config) for run in sweep.runs())
    for key in store.keys():
        record = store.record(key)
        assert record["format"] == "flowsim-result/2" and record["sweep"] == "named"
        assert sorted(record["files"]) == ["trajectory.json", "trajectory.npz"]
        for name, entry in record["files"].items():
            data = (store.path(key) / name).read_bytes()
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert set(store.table()["sweep"]) == {"named"}
    # a result computed outside a sweep has no sweep name
    record, _ = store.compute(tiny(init__seed=7))
    assert "sweep" not in record
    assert {r["key"]: r["sweep"] for r in store.rows()}[record["key"]] is None


def test_records_written_before_checksums_are_verified_by_loading(tmp_path, capsys):
    store = Store(tmp_path / "s")
    record, _ = store.compute(tiny())
    key = record["key"]
    old = {k: v for k, v in record.items() if k != "files"}
    old["format"] = "flowsim-result/1"
    (store.path(key) / "result.json").write_text(json.dumps(old))
    assert store.verify() == {} and store.load(key).loss.size == 20
    assert main(["store", "verify", str(store.root), "--all"]) == 0
    captured = capsys.readouterr()
    assert f"{key[:12]}  ok (no checksum" in captured.out and "1 without checksum" in captured.err
    _damage(store.path(key) / "trajectory.npz", "bit-flipped")  # the zip's CRC-32 finds it
    assert "no checksum" in store.verify()[key]
    with pytest.raises(StoreError, match="trajectory.npz"):
        store.load(key)


def test_a_config_that_no_longer_hashes_to_its_key_is_refused(tmp_path):
    store = Store(tmp_path / "s")
    record, _ = store.compute(tiny())
    key = record["key"]
    path = store.path(key) / "result.json"
    edited = json.loads(path.read_text())
    edited["config"]["model"]["width"] = 9  # the files are untouched: only the config lies
    path.write_text(json.dumps(edited))
    for read in (store.config, store.load):
        with pytest.raises(StoreError, match="config does not hash to its key"):
            read(key)
    assert "config does not hash" in store.verify()[key]
    edited["run_key"] = tiny(model__width=9).key()  # consistent config and run_key
    path.write_text(json.dumps(edited))
    with pytest.raises(StoreError, match="run_key and numerics do not hash to the key"):
        store.config(key)
    with pytest.warns(fstore.StoreWarning, match=key[:12]):
        again, outcome = store.compute(tiny())
    assert outcome == "computed" and again["config"]["model"]["width"] == 8
    assert store.verify() == {} and store.config(key) == tiny()


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"key": "x"}', "\xff\xfe"])
def test_unreadable_records_are_reported_and_skipped(text, tmp_path, capsys):
    store = Store(tmp_path / "s")
    sweep = _sweep()
    _run_sweep(store, sweep)
    bad, good = (run.key for run in sweep.runs())
    bad_file = store.path(bad) / "result.json"
    bad_file.write_bytes(text.encode("latin-1"))

    assert store.keys() == sorted([bad, good])
    with pytest.warns(fstore.StoreWarning, match=str(bad_file)):
        assert [r["key"] for r in store.records()] == [good]
    with pytest.warns(fstore.StoreWarning, match=str(bad_file)):
        assert list(store.table()["key"]) == [good]
    assert str(bad_file) in store.verify()[bad]
    assert main(["store", "ls", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert good[:12] in captured.out and bad[:12] not in captured.out
    assert f"warning: skipped: {bad_file}" in captured.err
    assert main(["store", "show", str(store.root), bad[:8]]) == 1
    assert str(bad_file) in capsys.readouterr().err
    assert main(["store", "gc", str(store.root), "--failed"]) == 0
    assert str(bad_file) in capsys.readouterr().err and bad_file.exists()  # reported, kept
    with pytest.warns(fstore.StoreWarning, match=str(bad_file)):
        result = _run_sweep(store, sweep)
    assert (result.computed, result.ok) == (1, 2) and store.verify() == {}


def test_a_directory_without_result_json_is_cleaned_by_gc_and_replaced_by_a_commit(tmp_path):
    store = Store(tmp_path / "s")
    cfg = tiny()
    key = store_key(cfg)
    record, _ = store.compute(cfg)
    (store.path(key) / "result.json").unlink()  # what was stuck: recomputed, never committed
    assert store.keys() == [] and "no result.json" in store.verify()[key]
    with pytest.warns(fstore.StoreWarning, match="no result.json"):
        again, outcome = store.compute(cfg)
    assert outcome == "computed" and again["status"] == "ok"
    assert store.record(key) == again and store.verify() == {}
    assert store.compute(cfg)[1] == "stored"
    (store.path(key) / "result.json").unlink()
    assert store.gc(dry_run=True) == [store.path(key)] and store.path(key).exists()
    assert store.gc() == [store.path(key)] and not store.path(key).exists()
    assert store.verify() == {} and not list((store.root / "tmp").iterdir())


@pytest.mark.parametrize("key", ["../../../../etc/passw", "..", "ab/../..", "a*", "ABCD"])
def test_store_show_accepts_hexadecimal_prefixes_only(key, tmp_path, capsys):
    store = Store(tmp_path / "s")
    store.compute(tiny())
    assert main(["store", "show", str(store.root), key]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "hexadecimal" in captured.err
    with pytest.raises(StoreError, match="not a store key"):
        store.path(key)


def _read_only(monkeypatch):
    """As root, chmod does not stop writes (os.access(W_OK) is True even on mode 0o555):
    make every write to the file system fail the way a read-only mount does."""
    import errno

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    real_open = os.open

    def open_read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse()
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_read_only)
    for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, refuse)


def test_read_only_store_lists_and_gc_says_it_cannot_write(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path / "s")
    record, _ = store.compute(tiny())
    (store.root / "tmp" / f"{record['key']}.host.1.dead").mkdir()  # something for gc
    _read_only(monkeypatch)
    with pytest.raises(OSError, match="Read-only"):
        os.open(store.root / "probe", os.O_WRONLY | os.O_CREAT)
    assert main(["store", "ls", str(store.root)]) == 0
    assert record["key"][:12] in capsys.readouterr().out
    assert main(["store", "verify", str(store.root)]) == 0
    assert main(["store", "gc", str(store.root)]) == 1
    err = capsys.readouterr().err
    assert "cannot write to the store" in err and "Read-only file system" in err
    assert "Traceback" not in err


def test_store_ls_into_a_closed_pipe_prints_no_traceback(tmp_path):
    store = Store(tmp_path / "s")
    store.compute(tiny())
    cmd = [sys.executable, "-m", "flowsim.cli", "store", "ls", str(store.root)]
    # the reader is gone before the first write: every write fails with EPIPE
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    # and as a user types it
    shell = subprocess.run(
        " ".join(cmd) + " | head -1", shell=True, capture_output=True, text=True, env=_env(),
        timeout=120,
    )  # fmt: skip
    assert shell.stdout.startswith(f"{store.root}: 1 results") and shell.stderr == ""
