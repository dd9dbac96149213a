"""Results on disk: a content-addressed store of runs, safe to share between processes.

A :class:`Store` is a directory.  Every run of a :class:`~flowsim.RunConfig`
is kept under its key (:func:`store_key`: the config's content hash
:meth:`RunConfig.key` together with :data:`NUMERICS_VERSION`), so the same
config is computed once and found again by any process that builds it.

Layout (readable without flowsim: JSON and NumPy ``.npz`` only)::

    DIR/store.json                        {"format": "flowsim-store/1"}
    DIR/results/ab/<key>/result.json      the record: key, status, reason, message,
                                          config, summary numbers, host, pid, times
    DIR/results/ab/<key>/trajectory.npz   arrays of the run   (absent when the run raised)
    DIR/results/ab/<key>/trajectory.json  its metadata        (flowsim.Trajectory format)
    DIR/manifest.json                     index of every record (rebuilt from the files)
    DIR/log.jsonl                         one line per start / commit of a computation
    DIR/locks/<key>.lock                  per-key lock (fcntl.flock)
    DIR/tmp/                              results being written

Writing is atomic: a result's files are written into a fresh directory under
``DIR/tmp`` and that directory is renamed to its final name in one
``os.rename``, so a process killed at any moment leaves the whole result or
nothing (an orphaned directory under ``tmp``, removed by :meth:`Store.gc`).
The records are the truth; ``manifest.json`` is an index rebuilt from them by
:meth:`Store.rebuild_manifest`.

A run that stops early (non-finite state, step underflow, ``max_steps``,
``max_wall``) or raises is stored as a failure with its reason; it is not
recomputed unless asked (``retry_failed``).  Two processes that want the same
key take its lock (``flock`` on ``DIR/locks/<key>.lock``; the kernel releases it
when a holder dies, even by SIGKILL), so a key is computed at most once at a
time and the second process finds the first one's result.  On a network file
system this needs working ``flock`` (Linux NFSv4 maps it to POSIX locks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

NUMERICS_VERSION = 4
"""Version of the numbers a run produces.  Bump it when a change to the kernels,
integrators or initialization changes results, so that stored results computed
by the old numerics are not taken for the new ones (they stay in the store
under their old keys; ``flowsim store ls`` shows their numerics version).

2: small nets' one-pass flow (the output summed in interleaved lanes), auto's
stiffness tests at step counts, the blocked stage combinations of explicit
steps (their error estimate rounds differently).
3: tanh by one formula with a minimax polynomial; auto runs BDF on two-layer nets.
4: two-layer flows in one pass up to (2 D + 4) m doubles of 4 MiB, in chunks of
samples (the output and gradient sums in a new order); the frozen-pattern
output summed in eight lanes."""

FORMAT = "flowsim-store/1"
RECORD_FORMAT = "flowsim-result/1"
OK_STATUSES = ("done", "event")
"""Trajectory statuses stored as ``ok``; every other one is a failure."""

_RESULT = "result.json"
_TRAJECTORY = "trajectory"


class StoreError(RuntimeError):
    """A store directory that is not usable (wrong format, unknown key, ...)."""


def store_key(cfg) -> str:
    """The key of ``cfg`` in a store: SHA-256 of its :meth:`RunConfig.key` and
    :data:`NUMERICS_VERSION` (``name`` is not part of it)."""
    payload = json.dumps({"run_key": cfg.key(), "numerics": NUMERICS_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def flatten(d, prefix: str = "") -> dict:
    """``{"model": {"width": 8}}`` -> ``{"model.width": 8}``; a list of tables
    ``events = [{...}]`` gives ``events[0].kind`` ...; other lists become tuples."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, name))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{name}[{i}]"))
        elif isinstance(v, list):
            out[name] = tuple(v) if v else None
        else:
            out[name] = v
    return out


def _now() -> float:
    return time.time()


def _fsync_path(path: Path, directory=False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signals_deferred(signums=(signal.SIGTERM, signal.SIGINT)):
    """Hold SIGTERM and SIGINT until the block ends, then deliver them.

    A commit (rename into place, then its log line) must not be cut in two: a
    process pool whose worker dies terminates the other workers, which may be
    between the two.  Only the main thread can install handlers; elsewhere
    (a dask worker thread) the block runs unprotected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(received):
            signal.raise_signal(s)


def _write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` (not atomically: used inside a temp directory)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write_json(tmp, obj)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(traj) -> dict:
    """Numbers of a trajectory worth a column in the table."""
    loss = traj.loss
    out = {
        "t_final": _finite_or_none(traj.t_final),
        "loss_initial": _finite_or_none(loss[0]) if loss.size else None,
        "loss_final": _finite_or_none(loss[-1]) if loss.size else None,
        "method": traj.method,
        "nfev": int(traj.nfev),
        "n_accepted": int(traj.n_accepted),
        "n_rejected": int(traj.n_rejected),
        "run_wall_time": float(traj.wall_time),
        "events": {e.name: {"t": float(e.t), "loss": float(e.loss)} for e in traj.events},
    }
    return out


class Store:
    """A directory of results keyed by :func:`store_key` (module docstring).

    Parameters
    ----------
    root : path
        The store directory; created when ``create`` (and missing).
    create : bool
        Create the directory if it does not exist; otherwise a missing or
        foreign directory is a :class:`StoreError`.
    """

    def __init__(self, root, *, create: bool = True):
        self.root = Path(root).expanduser().absolute()
        marker = self.root / "store.json"
        if not marker.exists():
            if not create:
                raise StoreError(f"{self.root} is not a flowsim store (no store.json)")
            if self.root.exists() and any(
                p.name not in ("results", "tmp", "locks") for p in self.root.iterdir()
            ):
                raise StoreError(
                    f"{self.root} exists and is not a flowsim store; choose an empty or new "
                    "directory"
                )
            for sub in ("results", "tmp", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                _atomic_write_json(marker, {"format": FORMAT, "numerics": NUMERICS_VERSION})
        else:
            info = json.loads(marker.read_text())
            if info.get("format") != FORMAT:
                raise StoreError(f"{marker}: format {info.get('format')!r}, expected {FORMAT!r}")
            for sub in ("results", "tmp", "locks"):
                (self.root / sub).mkdir(exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- paths and lookups ---------------------------------------------------
    def path(self, key: str) -> Path:
        """Directory of the result ``key`` (whether or not it exists)."""
        return self.root / "results" / key[:2] / key

    def record(self, key: str) -> dict | None:
        """The record (``result.json``) of ``key``, or None if not stored."""
        try:
            return json.loads((self.path(key) / _RESULT).read_text())
        except FileNotFoundError:
            return None

    def status(self, key: str) -> str | None:
        """``"ok"``, ``"failed"`` or None (not stored)."""
        record = self.record(key)
        return None if record is None else record["status"]

    def __contains__(self, key: str) -> bool:
        return (self.path(key) / _RESULT).exists()

    def keys(self) -> list[str]:
        """Keys of every stored result, sorted."""
        out = []
        for shard in sorted((self.root / "results").iterdir()):
            if shard.is_dir():
                out.extend(p.name for p in sorted(shard.iterdir()) if (p / _RESULT).exists())
        return out

    def resolve(self, prefix: str) -> str:
        """The full key starting with ``prefix`` (at least 4 characters, unique)."""
        if len(prefix) < 4:
            raise StoreError(f"key prefix {prefix!r}: give at least 4 characters")
        shard = self.root / "results" / prefix[:2]
        matches = sorted(p.name for p in shard.glob(prefix + "*")) if shard.is_dir() else []
        if not matches:
            raise StoreError(f"no result with key {prefix!r}... in {self.root}")
        if len(matches) > 1:
            raise StoreError(f"key prefix {prefix!r} is ambiguous: {matches[:5]}")
        return matches[0]

    def records(self) -> Iterator[dict]:
        """Every record, in key order (read from the files, not the manifest)."""
        for key in self.keys():
            record = self.record(key)
            if record is not None:
                yield record

    def load(self, key: str):
        """The :class:`~flowsim.Trajectory` of ``key`` (a failure that raised has none)."""
        from flowsim.integrate.trajectory import Trajectory

        path = self.path(key) / (_TRAJECTORY + ".json")
        if not path.exists():
            record = self.record(key)
            if record is None:
                raise StoreError(f"no result with key {key!r} in {self.root}")
            raise StoreError(f"{key}: no trajectory ({record['reason']}: {record['message']})")
        return Trajectory.load(path)

    def config(self, key: str):
        """The :class:`~flowsim.RunConfig` of a stored result."""
        from flowsim.config import RunConfig

        record = self.record(key)
        if record is None:
            raise StoreError(f"no result with key {key!r} in {self.root}")
        return RunConfig.from_dict(record["config"])

    # -- locking -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, *, blocking: bool = True):
        """Hold the lock of ``key``; yields True, or False when ``blocking`` is
        False and another process holds it."""
        path = self.root / "locks" / f"{key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    yield False
                    return
                raise
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            except OSError:
                pass
            yield True
        finally:
            os.close(fd)  # releases the flock

    def running(self) -> list[str]:
        """Keys whose lock some live process holds now (being computed)."""
        out = []
        for path in sorted((self.root / "locks").glob("*.lock")):
            key = path.name[: -len(".lock")]
            with self.lock(key, blocking=False) as mine:
                if not mine:
                    out.append(key)
        return out

    # -- writing -------------------------------------------------------------
    def log(self, event: str, key: str, **info) -> None:
        """Append one line to ``log.jsonl`` (a single ``write`` with O_APPEND)."""
        line = {"event": event, "key": key, "time": _now(), "host": socket.gethostname(),
                "pid": os.getpid(), **info}  # fmt: skip
        data = (json.dumps(line, sort_keys=True, default=_json_default) + "\n").encode()
        fd = os.open(self.root / "log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def read_log(self) -> list[dict]:
        """The lines of ``log.jsonl`` (a torn last line is skipped)."""
        path = self.root / "log.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def put(self, cfg, traj=None, *, error: BaseException | None = None, started=None,
            replace: bool = False) -> dict:  # fmt: skip
        """Store the outcome of ``cfg``: its trajectory, or the exception it raised.

        The result directory is written under ``tmp`` and renamed into place.
        Returns the record.  When the key is already stored the existing
        record is kept and returned, unless ``replace`` (the caller must then
        hold the key's lock).
        """
        from flowsim.integrate.trajectory import package_versions

        if (traj is None) == (error is None):
            raise ValueError("give exactly one of traj and error")
        key = store_key(cfg)
        finished = _now()
        record = {
            "format": RECORD_FORMAT,
            "key": key,
            "run_key": cfg.key(),
            "numerics": NUMERICS_VERSION,
            "config": cfg.to_dict(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": started if started is not None else finished,
            "finished": finished,
            "wall_time": finished - started if started is not None else 0.0,
        }
        if traj is not None:
            ok = traj.status in OK_STATUSES
            record.update(status="ok" if ok else "failed", reason=traj.status,
                          message=traj.message, versions=traj.versions,
                          summary=_summary(traj))  # fmt: skip
        else:
            record.update(status="failed", reason="exception",
                          message=f"{type(error).__name__}: {error}",
                          traceback="".join(traceback.format_exception(error)),
                          versions=package_versions(), summary={})  # fmt: skip
        owner = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp = self.root / "tmp" / f"{key}.{owner}"
        tmp.mkdir(parents=True)
        try:
            if traj is not None:
                npz, meta = traj.save(tmp / _TRAJECTORY)
                _fsync_path(npz)
                _fsync_path(meta)
            _write_json(tmp / _RESULT, record)
            _fsync_path(tmp, directory=True)
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            with _signals_deferred():  # the result in place and its log line, or neither
                if replace and final.exists():
                    trash = self.root / "tmp" / f"trash-{key}.{secrets.token_hex(4)}"
                    os.rename(final, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                try:
                    os.rename(tmp, final)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    return self.record(key)  # another process stored it first: keep theirs
                _fsync_path(final.parent, directory=True)
                self.log("commit", key, status=record["status"], reason=record["reason"])
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return record

    def compute(self, cfg, *, retry_failed: bool | float = False, wait: bool = True,
                progress=False, runner=None) -> tuple[dict | None, str]:  # fmt: skip
        """The record of ``cfg``, computing and storing it if the store lacks it.

        Parameters
        ----------
        cfg : RunConfig
        retry_failed : bool or float
            Recompute a stored failure: True, or a time (``time.time()``):
            recompute failures that finished before it (so that two retrying
            processes do not both recompute one failure).
        wait : bool
            When another process is computing the key, wait for it (True) or
            return ``(None, "busy")`` at once (False).
        progress : bool or None
            Passed to :func:`flowsim.simulate`.
        runner : callable, optional
            ``runner(cfg, progress=...) -> Trajectory``; default
            :func:`flowsim.run_config`.

        Returns
        -------
        (record, outcome)
            ``outcome``: ``"computed"`` (this call ran it), ``"stored"``
            (it was in the store, possibly written by another process while
            this one waited) or ``"busy"`` (``record`` None).  A run stopped by
            KeyboardInterrupt is not stored: ``(None, "interrupted")``.
        """
        if runner is None:
            from flowsim.config import run_config as runner

        key = store_key(cfg)

        def wanted(record) -> bool:
            if record is None:
                return True
            if record["status"] == "ok" or not retry_failed:
                return False
            if retry_failed is True:
                return True
            return record["finished"] < float(retry_failed)

        record = self.record(key)
        if not wanted(record):
            return record, "stored"
        with self.lock(key, blocking=wait) as mine:
            if not mine:
                return None, "busy"
            record = self.record(key)  # someone may have finished it while we waited
            if not wanted(record):
                return record, "stored"
            replace = record is not None
            self.log("start", key)
            started = _now()
            try:
                traj = runner(cfg, progress=progress)
            except Exception as exc:  # stored as a failure with its reason
                return self.put(cfg, error=exc, started=started, replace=replace), "computed"
            if traj.status == "interrupted":
                self.log("interrupted", key)
                return None, "interrupted"
            return self.put(cfg, traj, started=started, replace=replace), "computed"

    # -- reading many --------------------------------------------------------
    def rebuild_manifest(self) -> Path:
        """Write ``manifest.json`` (one entry per record, without tracebacks)
        from the result files alone; returns its path."""
        entries = []
        for record in self.records():
            entry = {k: v for k, v in record.items() if k not in ("traceback",)}
            entry["path"] = str(self.path(record["key"]).relative_to(self.root))
            entries.append(entry)
        manifest = {"format": FORMAT, "numerics": NUMERICS_VERSION, "updated": _now(),
                    "results": entries}  # fmt: skip
        path = self.root / "manifest.json"
        with self._store_lock():
            _atomic_write_json(path, manifest)
        return path

    @contextlib.contextmanager
    def _store_lock(self):
        fd = os.open(self.root / "locks" / "store.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def rows(self) -> list[dict]:
        """One flat dict per result: ``key``, ``status``, ``reason``, ``message``,
        the config fields (``model.width``, ``init.seed``, ...), the summary
        numbers (``t_final``, ``loss_final``, ``nfev``, ...), and for every event
        that fired ``event.<name>.t`` and ``event.<name>.loss``."""
        rows = []
        for record in self.records():
            row = {"key": record["key"], "status": record["status"],
                   "reason": record["reason"], "message": record["message"]}  # fmt: skip
            row.update(flatten(record["config"]))
            summary = dict(record.get("summary", {}))
            events = summary.pop("events", {})
            row.update(summary)
            for name, event in events.items():
                row[f"event.{name}.t"] = event["t"]
                row[f"event.{name}.loss"] = event["loss"]
            row["wall_time"] = record["wall_time"]
            row["host"] = record["host"]
            rows.append(row)
        return rows

    def table(self):
        """:meth:`rows` as a pandas DataFrame when pandas is importable, else the list."""
        rows = self.rows()
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    # -- cleaning ------------------------------------------------------------
    def gc(self, *, failed: bool = False, dry_run: bool = False) -> list[Path]:
        """Remove what no live process is writing: orphaned temporary
        directories (a process killed while writing), and with ``failed`` the
        failure records (so that they run again).  Rebuilds the manifest.
        Returns the removed (or, with ``dry_run``, removable) paths."""
        removable = []
        for tmp in sorted((self.root / "tmp").iterdir()):
            key = tmp.name.removeprefix("trash-").split(".")[0]
            with self.lock(key, blocking=False) as mine:
                if mine:
                    removable.append(tmp)
        if failed:
            for record in self.records():
                if record["status"] == "failed":
                    removable.append(self.path(record["key"]))
        if not dry_run:
            for path in removable:
                key = path.name.removeprefix("trash-").split(".")[0]
                with self.lock(key):
                    is_result = path == self.path(key)
                    if is_result and (self.record(key) or {}).get("status") != "failed":
                        continue  # retried into a success meanwhile
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            self.rebuild_manifest()
        return removable
