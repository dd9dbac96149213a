"""What every benchmark shares: workload description, timing, memory, table, JSON.

Timing is timeit-style: warm up (compile, load caches), pick a loop count so
that one measurement lasts at least ``min_time``, repeat, keep the best, with
the garbage collector off while the clock runs.

Peak memory is measured in a fresh subprocess per (workload, implementation)
that imports only what that implementation needs, builds the same data, warms
up and makes one call (``python -m benchmarks --probe ...``).  Two numbers:

* ``peak_rss`` -- the process's resident-set high-water mark over its whole
  life (interpreter, imports, JIT compilation or cache loading, data, warm-up
  and the call): ``VmHWM`` from ``/proc/self/status``.  Not
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's
  high-water mark into a child across fork + exec, so a child of a large
  benchmark process reports the parent's peak; getrusage is only the fallback
  where ``/proc`` does not exist;
* ``call_rss`` -- the growth of the high-water mark during the one measured
  call: the kernel's own working memory.  The mark is reset just before the
  call by writing ``5`` to ``/proc/self/clear_refs`` and read back as
  ``VmHWM``; where that is not possible it is reported as ``None`` ("n/a").
  The probe runs with glibc's ``MALLOC_MMAP_THRESHOLD_=65536``, so that large
  blocks freed after the warm-up are returned to the system, not reused unseen.

``tracemalloc`` is not used: it sees NumPy's allocations but not Numba's,
PyTorch's or BLAS's.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KINDS = ("flowsim", "competitor", "floor")
STATUSES = ("done", "timeout", "extrapolated", "failed")
"""How a row's run ended: finished; stopped by its wall limit (time and ratio are lower
bounds); a fixed number of steps timed and scaled to the full run; raised an error."""
BUSY = 0.1  # CPUs kept busy by other processes above which a timing is flagged


class Skip(Exception):
    """Raised by a builder whose implementation is not available here (the row is skipped)."""


@dataclass(frozen=True)
class Impl:
    """One implementation of a workload.

    Parameters
    ----------
    name : str
        Row label, unique within its workload.
    build : callable
        ``build(data) -> call``: prepares everything (imports, arrays, warm-up)
        and returns the zero-argument callable that is timed.
    kind : str
        ``"flowsim"``, ``"competitor"`` or ``"floor"`` (a lower bound, such as
        one transcendental function over the same number of elements).
    collect : callable
        ``collect(value) -> dict`` from what ``call`` returned, with keys
        ``vector`` (compared with the reference; None: no accuracy), ``nfev``
        (right-hand-side evaluations; None where it does not apply) and
        optionally ``note`` (a status worth reporting), ``status`` (one of
        :data:`STATUSES`), ``time`` (seconds reported instead of the timed
        call's, for extrapolated rows) and ``row`` (more fields for the row,
        such as memory measured by the call itself); see :func:`apply_collected`.
    compare_to : str, optional
        Name of the flowsim row this row's time is divided by.
    requires : tuple of str
        Modules that must be importable; otherwise the row is skipped (as it is
        when ``build`` raises :class:`Skip`).
    probe : bool
        Measure peak memory in a fresh subprocess (False: the call measures its
        own, or the probe would only repeat a very long run).
    """

    name: str
    build: Callable[[dict], Callable[[], Any]]
    kind: str = "competitor"
    collect: Callable[[Any], dict] = lambda value: {"vector": value, "nfev": None}
    compare_to: str | None = None
    requires: tuple[str, ...] = ()
    probe: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Workload:
    """One benchmark problem and the implementations that solve it.

    ``make_data(quick)`` returns a dict of ndarrays and scalars (it is saved to
    an ``.npz`` file for the memory subprocesses); ``reference(data)`` returns
    the vector every implementation is compared with, and ``error(vector,
    reference)`` the accuracy number.  ``reference_impl`` names the row whose
    result is the reference itself, if any.
    """

    id: str
    title: str
    make_data: Callable[[bool], dict]
    reference: Callable[[dict], np.ndarray]
    error: Callable[[np.ndarray, np.ndarray], float]
    impls: tuple[Impl, ...]
    reference_impl: str | None = None
    repeat: int = 7
    quick_repeat: int = 3
    min_time: float = 0.2
    quick_min_time: float = 0.05
    notes: tuple[str, ...] = field(default_factory=tuple)

    def impl(self, name: str) -> Impl:
        for impl in self.impls:
            if impl.name == name:
                return impl
        raise KeyError(f"workload {self.id} has no implementation {name!r}")


ONE_RUN = dict(repeat=1, quick_repeat=1, min_time=0.0, quick_min_time=0.0)
"""Workload timing for complete runs: each row timed once."""


def max_abs_relative(vector: np.ndarray, reference: np.ndarray) -> float:
    """``max |vector - reference| / max |reference|`` (normwise, robust to zero entries)."""
    vector = np.asarray(vector, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    return float(np.max(np.abs(vector - reference)) / np.max(np.abs(reference)))


def available(modules: tuple[str, ...]) -> str | None:
    """None if every module imports, else a message naming the first that does not."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            extra = "bench-jax" if name in ("jax", "diffrax") else "bench"
            return f"{name} is not importable ({exc}); install with pip install -e '.[{extra}]'"
    return None


# -- timing -----------------------------------------------------------------------------------


def best_of(call: Callable[[], Any], *, repeat: int, min_time: float) -> dict:
    """Best time per call of ``call`` (seconds), timeit-style.

    ``repeat`` measurements of ``number`` calls each, ``number`` chosen so that
    one measurement lasts at least ``min_time``; the builder has already warmed
    up.  The first call gives the loop count; when it alone lasts ``min_time``
    (long runs: ``number = 1``) it is the first of the ``repeat`` measurements.

    Returns
    -------
    dict
        ``best``, ``median`` (seconds per call), ``repeat``, ``number``,
        ``value`` (what the last call returned).
    """
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        tic = time.perf_counter()
        value = call()
        first = time.perf_counter() - tic
        if first >= min_time:
            number, times = 1, [first]
        else:
            number, times = max(1, math.ceil(min_time / max(first, 1e-9))), []
        while len(times) < repeat:
            tic = time.perf_counter()
            for _ in range(number):
                value = call()
            times.append((time.perf_counter() - tic) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "best": min(times),
        "median": float(np.median(times)),
        "repeat": repeat,
        "number": number,
        "value": value,
    }


def apply_collected(row: dict, collected: dict) -> None:
    """Put what ``Impl.collect`` returned into ``row`` (after the timing fields).

    ``time`` (extrapolated rows) replaces ``best``/``median``; the timed call's
    own best is kept as ``timed_best``.
    """
    row["nfev"] = collected.get("nfev")
    row["note"] = collected.get("note")
    status = collected.get("status")
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        row["status"] = status
    if collected.get("time") is not None:
        row["timed_best"] = row["best"]
        row["best"] = row["median"] = float(collected["time"])
    row.update(collected.get("row") or {})


def compare_rows(row: dict, flowsim_row: dict) -> dict:
    """The ratio ``row time / flowsim time`` and whether flowsim was as accurate.

    ``ratio_bound`` is ``">="`` when only this row timed out (its time is a lower
    bound), ``"<="`` when only the flowsim row did, and the ratio is None when
    both did or either failed.  For rows with detailed errors (``errors``, the
    W workloads), ``accuracy`` compares the two rows' errors at the
    same check time where both give per-check-time errors (``errors["theta_t"]``),
    else their headline errors, and, when both reached the same check times,
    their loss errors: a ratio counts only when none of flowsim's is larger.
    """
    out: dict = {}
    status, flowsim_status = row.get("status", "done"), flowsim_row.get("status", "done")
    if "failed" in (status, flowsim_status) or status == flowsim_status == "timeout":
        out["ratio"] = None
    else:
        out["ratio"] = row["best"] / flowsim_row["best"]
        if status == "timeout":
            out["ratio_bound"] = ">="
        elif flowsim_status == "timeout":
            out["ratio_bound"] = "<="
    if row is flowsim_row:
        return out
    mine, theirs = row.get("errors") or {}, flowsim_row.get("errors") or {}
    if not (mine and theirs):  # only whole runs (W workloads) report detailed errors
        return out
    where = ""
    if mine.get("theta_t") and theirs.get("theta_t"):
        k = min(len(mine["theta_t"]), len(theirs["theta_t"]))
        error, flowsim_error = mine["theta_t"][k - 1], theirs["theta_t"][k - 1]
        if k < max(len(mine["theta_t"]), len(theirs["theta_t"])):
            where = f" (check time {k})"
    else:
        error, flowsim_error = row.get("error"), flowsim_row.get("error")
    if error is not None and flowsim_error is not None:
        as_accurate = flowsim_error <= error
        text = f"flowsim {flowsim_error:.1e} vs {error:.1e}{where}"
        if not where and mine.get("loss") is not None and theirs.get("loss") is not None:
            # the same check times reached: the loss errors must not be larger either
            as_accurate = as_accurate and theirs["loss"] <= mine["loss"]
            text += f", loss {theirs['loss']:.1e} vs {mine['loss']:.1e}"
        verdict = "as accurate" if as_accurate else "LESS accurate (does not count)"
        out["accuracy"] = f"{text}: {verdict}"
        out["flowsim_as_accurate"] = bool(as_accurate)
    return out


# -- memory -----------------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def measure_call_memory(call: Callable[[], Any]) -> dict:
    """In the current (fresh) process: whole-life peak RSS and the peak growth during one call.

    Values in KiB; ``call_rss_kib`` is None where the high-water mark cannot be reset.
    """
    gc.collect()
    life_peak = _status_kib("VmHWM")
    before = _status_kib("VmRSS")
    reset = before is not None and _reset_high_water_mark()
    call()
    call_peak = _status_kib("VmHWM") if reset else None
    if life_peak is None:
        # no /proc: getrusage, which also counts the parent's pages copied at fork
        life_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            life_peak //= 1024  # bytes there
    elif call_peak is not None:
        life_peak = max(life_peak, call_peak)
    return {
        "peak_rss_kib": int(life_peak),
        "call_rss_kib": None if call_peak is None else max(0, int(call_peak - before)),
    }


def save_data(data: dict, path: Path) -> None:
    np.savez(path, **{key: np.asarray(value) for key, value in data.items()})


def load_data(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key].item() if npz[key].ndim == 0 else npz[key] for key in npz.files}


# glibc: serve every block above 64 KiB from fresh pages and return it when freed, so that
# memory kept in the allocator's free lists since the warm-up cannot hide a call's working
# memory (without this, PyTorch's K1 call shows 0 or 30 MiB from one probe to the next)
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def probe_memory(workload_id: str, impl_name: str, data_path: Path, timeout: float = 600) -> dict:
    """Run the memory probe of one implementation in a fresh interpreter."""
    probe = ["--probe", workload_id, impl_name, str(data_path)]
    command = [sys.executable, "-m", "benchmarks", *probe]
    # same working directory and PYTHONPATH as this process, so the same flowsim is imported;
    # the folder holding this package last, so that ``-m benchmarks`` resolves
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), root]))
    env.update(_MALLOC_ENV)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        error = f"exit code {done.returncode}: {tail[0]}"
        return {"peak_rss_kib": None, "call_rss_kib": None, "memory_error": error}
    return json.loads(lines[-1])


def run_probe(workloads: dict[str, Workload], workload_id: str, impl_name: str, path: str) -> None:
    """Entry point of the probe subprocess: build, warm up, measure one call, print JSON."""
    impl = workloads[workload_id].impl(impl_name)
    call = impl.build(load_data(Path(path)))
    call()  # warm-up beyond what build did: caches, thread pools, first-touch pages
    print(json.dumps(measure_call_memory(call)))


def temporary_data_file(data: dict) -> Path:
    fd, name = tempfile.mkstemp(prefix="flowsim-bench-", suffix=".npz")
    os.close(fd)
    path = Path(name)
    save_data(data, path)
    return path


# -- machine ----------------------------------------------------------------------------------


def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (all CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """How many CPUs other processes kept busy between ``start()`` and ``stop()``.

    The machine's busy time (``/proc/stat``) minus this process's and its
    children's CPU time, divided by the wall time: 0 on an idle machine, ~1
    when another process kept one CPU busy throughout.  None without /proc.
    """

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._busy = _busy_cpu_seconds()
        self._own = _own_cpu_seconds()

    def stop(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self._busy is None:
            return None
        wall = time.perf_counter() - self._wall
        other = (busy - self._busy) - (_own_cpu_seconds() - self._own)
        return max(0.0, other / wall)


def other_load(seconds: float = 1.0) -> float | None:
    """CPUs kept busy by other processes over the next ``seconds`` (this one sleeps)."""
    probe = OtherLoad()
    probe.start()
    time.sleep(seconds)
    return probe.stop()


def _version(module: str) -> str | None:
    import importlib

    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except ImportError:
        return None


def _git_commit() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def _blas() -> str | None:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - numpy's config layout differs across versions
        return None


def machine_info() -> dict:
    """CPU, thread settings and package versions (imports numba and torch if present)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {
            key: os.environ.get(key)
            for key in (
                "NUMBA_NUM_THREADS",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
                "NUMBA_THREADING_LAYER",
            )
        },  # fmt: skip
        "versions": {
            name: _version(name) for name in ("flowsim", "numpy", "scipy", "numba", "torch")
        },
        "blas": _blas(),
        "git": _git_commit(),
    }
    try:
        import numba

        info["numba_num_threads"] = numba.config.NUMBA_NUM_THREADS
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    except ImportError:
        pass
    try:
        import torch

        info["torch_num_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            names = {line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")}
        info["cpu_model"] = sorted(names)
    except OSError:
        pass
    return info


# -- output -----------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """A Markdown table (it reads as plain text too) of the measured rows.

    A ``*`` after a time marks a row during whose timing other processes kept
    more than :data:`BUSY` CPUs busy.
    """
    header = [
        "workload",
        "implementation",
        "best time",
        "repeats",
        "nfev",
        "peak RSS (MiB)",
        "call +RSS (MiB)",
        "rel. error",
        "time / flowsim",
    ]
    with_accuracy = any("accuracy" in row for row in rows)
    if with_accuracy:
        header.append("accuracy (flowsim vs this row)")
    lines = [header]
    for row in rows:
        if row.get("skipped"):
            lines.append(
                [row["workload"], row["impl"], "skipped: " + row["skipped"]]
                + [""] * (len(header) - 3)
            )
            continue
        ratio = row.get("ratio")
        busy = row.get("other_cpus_busy")
        status = row.get("status", "done")
        time_cell = _seconds(row["best"])
        if status == "timeout":
            time_cell = f"> {time_cell} (timeout)"
        elif status == "extrapolated":
            time_cell = f"{time_cell} (extrapolated)"
        elif status == "failed":
            time_cell = f"failed after {time_cell}"
        errors = row.get("errors") or {}
        error_cell = errors.get("text") or _number(row.get("error"), ".1e")
        ratio_cell = "-"
        if ratio is not None:
            qualifier = " extrapolated" if status == "extrapolated" else ""
            bound = row.get("ratio_bound", "")
            ratio_cell = f"{bound}{ratio:.2f}{qualifier} (vs {row['compare_to']})"
        line = [
            row["workload"],
            row["impl"],
            time_cell + (" *" if busy is not None and busy > BUSY else ""),
            f"{row['repeat']}x{row['number']}",
            _number(row.get("nfev"), "d"),
            _mib(row.get("peak_rss_kib")),
            _mib(row.get("call_rss_kib")),
            "ref" if row.get("is_reference") else error_cell,
            ratio_cell,
        ]
        if with_accuracy:
            line.append(row.get("accuracy", "-"))
        lines.append(line)
    widths = [max(len(str(line[j])) for line in lines) for j in range(len(header))]

    def fmt(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines[1:]]
    return "\n".join(out)


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
