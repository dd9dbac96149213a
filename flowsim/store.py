"""Results on disk: a content-addressed store of runs, safe to share between processes.

A :class:`Store` is a directory.  Every run of a :class:`~flowsim.RunConfig`
is kept under its key (:func:`store_key`: the config's content hash
:meth:`RunConfig.key` together with :data:`NUMERICS_VERSION`), so the same
config is computed once and found again by any process that builds it.

Layout (readable without flowsim: JSON and NumPy ``.npz`` only)::

    DIR/store.json                        {"format": "flowsim-store/1"}
    DIR/results/ab/<key>/result.json      the record: key, status, reason, message,
                                          config, summary numbers, host, pid, times,
                                          the sweep that computed it, and the SHA-256
                                          and size of every other file of the result
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

Integrity: :meth:`Store.check` (and :meth:`Store.verify`, ``flowsim store
verify``) finds a result whose files no longer match the checksums of its
record, whose record is not valid JSON, or whose config no longer hashes to its
key.  :meth:`Store.load` and :meth:`Store.config` refuse such a result, a sweep
recomputes it (with a :class:`StoreWarning` naming it), and the listings
(:meth:`Store.records`, ``flowsim store ls``) report an unreadable record by
path and go on.  Records written before checksums (format
``flowsim-result/1``) are checked by loading their trajectory (NumPy's zip
CRC-32 finds damaged arrays); ``flowsim store verify --all`` says "no checksum"
for them.

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
import re
import secrets
import shutil
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

from flowsim._digest import file_sha256

NUMERICS_VERSION = 8
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
output summed in eight lanes.
5: ReLU / leaky ReLU kinks decided jointly per neuron (least-norm Filippov slopes in
their bounds, leaving a kink without an event, repelling kinks left).
6: a dead ReLU neuron is held (every sample on its kink at slope 0).
7: a kink crossed and crossed back inside one step is located (the first crossing ends
the step); a pair on its kink to rounding is followed from where it leaves it.
8: ``auto`` runs BDF from the start on three-layer nets with smoothed kinks (their
approximate Jacobian factor), where it ran dopri5 and RKC."""

FORMAT = "flowsim-store/1"
RECORD_FORMAT = "flowsim-result/2"
"""Format of ``result.json``: 2 adds ``files`` (checksums) and ``sweep``; 1 is read too."""
OK_STATUSES = ("done", "event")
"""Trajectory statuses stored as ``ok``; every other one is a failure."""

_RESULT = "result.json"
_TRAJECTORY = "trajectory"
_KEY = re.compile(r"[0-9a-f]{64}")
_KEY_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a file name in a result directory
_RECORD_FIELDS = {"key": str, "run_key": str, "numerics": int, "status": str, "reason": str,
                  "config": dict}  # fmt: skip
_held = threading.local()  # lock files this thread holds (Store.lock is reentrant)


class StoreError(RuntimeError):
    """A store directory that is not usable (wrong format, unknown key, bad result, ...)."""


class StoreWarning(UserWarning):
    """A stored result that is skipped (unreadable record) or recomputed (failed its check)."""


def store_key(cfg) -> str:
    """The key of ``cfg`` in a store: SHA-256 of its :meth:`RunConfig.key` and
    :data:`NUMERICS_VERSION` (``name`` is not part of it)."""
    return _store_key(cfg.key(), NUMERICS_VERSION)


def _store_key(run_key: str, numerics) -> str:
    payload = json.dumps({"run_key": run_key, "numerics": numerics}, sort_keys=True)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def _file_sum(path: Path) -> dict:
    """``{"sha256": hex digest, "size": bytes}`` of a file."""
    with open(path, "rb") as fh:
        digest, size = file_sha256(fh)
    return {"sha256": digest, "size": size}


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
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise StoreError(f"{key!r} is not a store key (64 hexadecimal digits)")
        return self.root / "results" / key[:2] / key

    def record(self, key: str) -> dict | None:
        """The record (``result.json``) of ``key``, or None if not stored.

        Raises :class:`StoreError` (naming the file) for a record that is not
        JSON, lacks a field, or belongs to another key."""
        path = self.path(key) / _RESULT
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path}: not a valid record ({_one_line(exc)})") from None
        if not isinstance(record, dict):
            raise StoreError(f"{path}: not a valid record (not a JSON object)")
        for name, kind in _RECORD_FIELDS.items():
            if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
                raise StoreError(f"{path}: not a valid record (field {name!r} missing or not "
                                 f"a {kind.__name__})")  # fmt: skip
        if record["key"] != key:
            raise StoreError(f"{path}: the record of another key ({record['key'][:70]!r})")
        return record

    def status(self, key: str) -> str | None:
        """``"ok"``, ``"failed"``, ``"bad"`` (an unreadable record) or None (not stored)."""
        try:
            record = self.record(key)
        except StoreError:
            return "bad"
        return None if record is None else record["status"]

    def __contains__(self, key: str) -> bool:
        return (self.path(key) / _RESULT).exists()

    def keys(self) -> list[str]:
        """Keys of every stored result (a directory with a ``result.json``), sorted."""
        return [p.name for p in self._directories() if (p / _RESULT).exists()]

    def _directories(self) -> list[Path]:
        """Every result directory, complete or not, in key order."""
        out = []
        for shard in sorted((self.root / "results").iterdir()):
            if shard.is_dir():
                out.extend(p for p in sorted(shard.iterdir()) if _KEY.fullmatch(p.name))
        return out

    def resolve(self, prefix: str) -> str:
        """The full key starting with ``prefix`` (4 to 64 hexadecimal digits, unique)."""
        if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
            raise StoreError(
                f"key prefix {prefix!r}: give 4 to 64 hexadecimal digits (0-9, a-f) of a key"
            )
        shard = self.root / "results" / prefix[:2]
        matches = sorted(p.name for p in shard.glob(prefix + "*")) if shard.is_dir() else []
        if not matches:
            raise StoreError(f"no result with key {prefix!r}... in {self.root}")
        if len(matches) > 1:
            raise StoreError(f"key prefix {prefix!r} is ambiguous: {matches[:5]}")
        return matches[0]

    def records(self) -> Iterator[dict]:
        """Every record, in key order (read from the files, not the manifest); an
        unreadable one is skipped with a :class:`StoreWarning` naming its file."""
        for key in self.keys():
            try:
                record = self.record(key)
            except StoreError as exc:
                warnings.warn(f"skipped: {exc}", StoreWarning, stacklevel=2)
                continue
            if record is not None:
                yield record

    def load(self, key: str):
        """The :class:`~flowsim.Trajectory` of ``key`` (a failure that raised has none),
        after :meth:`check`: a :class:`StoreError` names the file that fails it."""
        from flowsim.integrate.trajectory import Trajectory

        record = self._checked_record(key)
        path = self.path(key) / (_TRAJECTORY + ".json")
        if not path.exists() and "trajectory.json" not in (record.get("files") or {}):
            raise StoreError(f"{key}: no trajectory ({record['reason']}: {record['message']})")
        try:
            return Trajectory.load(path)
        except (ValueError, OSError) as exc:
            raise StoreError(f"result {key}: {_one_line(exc)}") from None

    def config(self, key: str):
        """The :class:`~flowsim.RunConfig` of a stored result (refused, with a
        :class:`StoreError`, when the record's config does not hash to ``key``)."""
        from flowsim.config import RunConfig

        record = self._checked_record(key, files=False)
        return RunConfig.from_dict(record["config"])

    def _checked_record(self, key: str, *, files: bool = True) -> dict:
        record = self.record(key)
        if record is None:
            raise StoreError(f"no result with key {key!r} in {self.root}")
        problem = self._config_problem(record) or (files and self._files_problem(record))
        if problem:
            raise StoreError(f"result {key}: {problem}")
        return record

    # -- integrity -----------------------------------------------------------
    def check(self, key: str) -> str | None:
        """What is wrong with the stored result ``key``, or None when it is sound
        (or not stored).

        Wrong: a directory without ``result.json`` (removed by hand or left by an
        older flowsim; :meth:`gc` cleans it, a commit replaces it), a record that
        is not valid JSON or lacks a field, a config that does not hash to the key,
        a file missing or whose size or SHA-256 differs from the record's.  A
        record without checksums (written before ``flowsim-result/2``) is checked
        by loading its trajectory."""
        try:
            record = self.record(key)
        except StoreError as exc:
            return str(exc)
        if record is None:
            directory = self.path(key)
            return (
                f"{directory}: no {_RESULT} (an incomplete result)" if directory.exists() else None
            )
        return self._config_problem(record) or self._files_problem(record)

    def verify(self, *, every: bool = False) -> dict[str, str | None]:
        """``{key: problem}`` of every result that fails :meth:`check` (with
        ``every``, of every result, None for the sound ones), in key order."""
        out = {}
        for directory in self._directories():
            problem = self.check(directory.name)
            if problem or every:
                out[directory.name] = problem
        return out

    def sound_record(self, key: str) -> dict | None:
        """The record of ``key`` if it is stored and passes :meth:`check`; else None.
        A result that fails is named in a :class:`StoreWarning` (the next
        computation of the key replaces it)."""
        problem = self.check(key)
        if problem:
            warnings.warn(f"result {key[:12]} fails its check, recomputing it: {problem}",
                          StoreWarning, stacklevel=2)  # fmt: skip
            return None
        return self.record(key)

    def _config_problem(self, record: dict) -> str | None:
        """The record's config must hash to its key: through ``run_key`` always, and
        from the config itself where this flowsim can redo :meth:`RunConfig.key`
        (the same flowsim version; not a data file, whose path may be relative)."""
        from flowsim import __version__
        from flowsim.config import RunConfig

        where = self.path(record["key"]) / _RESULT
        if _store_key(record["run_key"], record["numerics"]) != record["key"]:
            return f"{where}: run_key and numerics do not hash to the key (record edited?)"
        version = (record.get("versions") or {}).get("flowsim")
        data = record["config"].get("data")
        if version != __version__ or not isinstance(data, dict) or data.get("kind") == "file":
            return None
        try:
            run_key = RunConfig.from_dict(record["config"]).key()
        except (ValueError, TypeError, LookupError, AttributeError) as exc:
            return f"{where}: config unreadable ({_one_line(exc)})"
        if run_key != record["run_key"]:
            return f"{where}: its config does not hash to its key (record edited?)"
        return None

    def _files_problem(self, record: dict) -> str | None:
        directory = self.path(record["key"])
        files = record.get("files")
        if files is None:  # written before checksums: the trajectory must load
            if record["reason"] == "exception":
                return None
            from flowsim.integrate.trajectory import Trajectory

            try:
                Trajectory.load(directory / _TRAJECTORY)
            except (ValueError, OSError) as exc:
                return f"{_one_line(exc)} (no checksum: a record older than checksums)"
            return None
        if not isinstance(files, dict):
            return f"{directory / _RESULT}: field 'files' is not a JSON object"
        for name, expected in sorted(files.items()):
            if not _KEY_FILE.fullmatch(name) or not isinstance(expected, dict):
                return f"{directory / _RESULT}: bad entry {name!r:.70} in field 'files'"
            try:
                actual = _file_sum(directory / name)
            except FileNotFoundError:
                return f"{directory / name}: missing"
            except OSError as exc:
                return f"{directory / name}: unreadable ({_one_line(exc)})"
            if actual != expected:
                return (f"{directory / name}: damaged ({actual['size']} bytes, SHA-256 "
                        f"{actual['sha256'][:12]}...; recorded: {expected.get('size')} bytes, "
                        f"{str(expected.get('sha256'))[:12]}...)")  # fmt: skip
        return None

    # -- locking -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, *, blocking: bool = True):
        """Hold the lock of ``key``; yields True, or False when ``blocking`` is
        False and another process holds it."""
        path = self.root / "locks" / f"{key}.lock"
        held = _held.__dict__.setdefault("paths", set())
        if path in held:  # this thread holds it already (put inside compute)
            yield True
            return
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
            held.add(path)
            try:
                yield True
            finally:
                held.discard(path)
        finally:
            os.close(fd)  # releases the flock

    def running(self) -> list[str]:
        """Keys whose lock some live process holds now (being computed); reads only."""
        out = []
        for path in sorted((self.root / "locks").glob("*.lock")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                if path.stem != "store":
                    out.append(path.stem)
            finally:
                os.close(fd)
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
            replace: bool = False, sweep: str | None = None) -> dict:  # fmt: skip
        """Store the outcome of ``cfg``: its trajectory, or the exception it raised.

        The result directory is written under ``tmp`` and renamed into place.
        Returns the record.  When the key is already stored the existing
        record is kept and returned, unless ``replace`` (the caller must then
        hold the key's lock); a directory without a readable record at the
        destination is replaced.  ``sweep``: the name of the sweep computing it
        (a label in the record, not part of the key).
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
        if sweep is not None:
            record["sweep"] = sweep
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
            record["files"] = {p.name: _file_sum(p) for p in sorted(tmp.iterdir())}
            _write_json(tmp / _RESULT, record)
            _fsync_path(tmp, directory=True)
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            stale = not replace and final.exists() and self.status(key) in (None, "bad")
            with contextlib.ExitStack() as stack:
                if stale:  # a directory without a readable record: replaced under the lock
                    stack.enter_context(self.lock(key))
                    replace = self.status(key) in (None, "bad")
                stack.enter_context(_signals_deferred())  # the result and its log line, or neither
                if replace and final.exists():
                    self._discard(final, key)
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

    def _discard(self, path: Path, key: str) -> None:
        """Remove a result directory in one step (renamed under ``tmp``, then deleted):
        a reader finds the whole result or none."""
        trash = self.root / "tmp" / f"trash-{key}.{secrets.token_hex(4)}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def compute(self, cfg, *, retry_failed: bool | float = False, wait: bool = True,
                progress=False, runner=None, sweep: str | None = None,
                ) -> tuple[dict | None, str]:  # fmt: skip
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
        sweep : str, optional
            Name of the sweep computing it, recorded in the result (not in the key).

        Returns
        -------
        (record, outcome)
            ``outcome``: ``"computed"`` (this call ran it), ``"stored"``
            (it was in the store, possibly written by another process while
            this one waited) or ``"busy"`` (``record`` None).  A run stopped by
            KeyboardInterrupt is not stored: ``(None, "interrupted")``.  A stored
            result that fails :meth:`check` is recomputed (with a
            :class:`StoreWarning`).
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

        record = self.sound_record(key)
        if not wanted(record):
            return record, "stored"
        with self.lock(key, blocking=wait) as mine:
            if not mine:
                return None, "busy"
            record = self.sound_record(key)  # someone may have finished it while we waited
            if not wanted(record):
                return record, "stored"
            replace = self.path(key).exists()  # a failure, or a result that fails its check
            self.log("start", key)
            started = _now()
            try:
                traj = runner(cfg, progress=progress)
            except Exception as exc:  # stored as a failure with its reason
                record = self.put(cfg, error=exc, started=started, replace=replace, sweep=sweep)
                return record, "computed"
            if traj.status == "interrupted":
                self.log("interrupted", key)
                return None, "interrupted"
            return self.put(cfg, traj, started=started, replace=replace, sweep=sweep), "computed"

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
        that fired ``event.<name>.t`` and ``event.<name>.loss``, and ``sweep`` (the
        name of the sweep that computed it, or None)."""
        rows = []
        for record in self.records():
            row = {"key": record["key"], "status": record["status"],
                   "reason": record["reason"], "message": record.get("message")}  # fmt: skip
            row.update(flatten(record["config"]))
            summary = record.get("summary")
            summary = dict(summary) if isinstance(summary, dict) else {}
            events = summary.pop("events", {})
            row.update(summary)
            for name, event in events.items() if isinstance(events, dict) else ():
                if isinstance(event, dict):
                    row[f"event.{name}.t"] = event.get("t")
                    row[f"event.{name}.loss"] = event.get("loss")
            row["wall_time"] = record.get("wall_time")
            row["host"] = record.get("host")
            row["sweep"] = record.get("sweep")
            rows.append(row)
        return rows

    def table(self):
        """:meth:`rows` as a pandas DataFrame (pandas is in the ``sweep`` extra)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Store.table needs pandas: pip install 'flowsim[sweep]' (or use Store.rows, "
                "a list of dicts)"
            ) from None
        return pd.DataFrame(self.rows())

    # -- cleaning ------------------------------------------------------------
    def gc(self, *, failed: bool = False, dry_run: bool = False) -> list[Path]:
        """Remove what no live process is writing: orphaned temporary
        directories (a process killed while writing), result directories without
        ``result.json``, and with ``failed`` the failure records (so that they
        run again).  An unreadable record is reported (:class:`StoreWarning`) and
        kept.  Rebuilds the manifest.  Returns the removed (or, with ``dry_run``,
        removable) paths."""
        removable = []  # (path, the key's status that allows removing it)
        for tmp in sorted((self.root / "tmp").iterdir()):
            key = tmp.name.removeprefix("trash-").split(".")[0]
            with self.lock(key, blocking=False) as mine:
                if mine:
                    removable.append((tmp, None))
        for directory in self._directories():
            if not (directory / _RESULT).exists():
                removable.append((directory, None))
        if failed:
            for record in self.records():
                if record["status"] == "failed":
                    removable.append((self.path(record["key"]), "failed"))
        if not dry_run:
            for path, status in removable:
                key = path.name.removeprefix("trash-").split(".")[0]
                with self.lock(key):
                    if path.parent.parent == self.root / "results":
                        if self.status(key) == status:  # not committed / retried meanwhile
                            self._discard(path, key)
                    elif path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            self.rebuild_manifest()
        return [path for path, _ in removable]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
