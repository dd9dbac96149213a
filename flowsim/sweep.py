"""Sweeps: many run configs from one file, run where the store lacks them.

A sweep file is TOML::

    name = "phase_diagram"        # [none] label of the sweep (progress bar, reports)
    seeds = [0, 1, 2]             # [base's init.seed] list of seeds, or a count n (0 ... n-1)

    [base]                        # * a run config (schema: flowsim/config.py) without name;
    ...                           #   or base = "run.toml" (a path relative to this file)

    [grid]                        # [none] cartesian product over dotted config fields
    "init.gamma" = [0.5, 1.0, 1.5]
    model.width = [100, 1000]     #   (a dotted TOML key means the same)

    [zip]                         # [none] lists of one length, taken together
    "init.scale" = [1e-2, 1e-4]
    "solver.t_end" = [1e3, 1e5]

The runs are every combination of the grid, times every row of the zip
tables, times every seed (in that nesting order, grid fields in file order).
They are counted before any is built, and a sweep of more than
:data:`MAX_RUNS` runs is refused.
Each run is a :class:`~flowsim.RunConfig`, checked as it is built; an error
names the sweep field (``grid.model.widht: unknown field; allowed: [...]``)
or the base field (``base.solver.rtol: ...``) and the point.

:func:`run_sweep` runs the configs that a :class:`~flowsim.store.Store`
lacks on a scheduler: ``"local"`` (a spawn-context process pool on this
machine), ``"dask"`` (a :class:`dask.distributed.LocalCluster`) or the address
of a running Dask scheduler (``"tcp://host:8786"``).  Workers compute and
write results to the store themselves (atomically; a killed driver or
worker loses at most the runs in progress), so the store directory must be
reachable by every worker under the same path.  Every worker runs Numba and
BLAS on ``threads`` threads (default 1): ``NUMBA_NUM_THREADS``,
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` are set in
the environment the worker process starts with (Dask: the nanny's ``env``),
and, on workers started elsewhere, ``numba.set_num_threads`` caps the count.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowsim._progress import Progress
from flowsim.config import ConfigError, RunConfig
from flowsim.store import Store, store_key

SCHEDULERS = ("local", "dask")
"""Named schedulers; a ``tcp://`` (or ``tls://``) address is a running Dask scheduler."""

MAX_WORKER_DEATHS = 3
"""A run whose worker died this many times is stored as a failure."""

MAX_RUNS = 100_000
"""Largest sweep expanded: the count (grid sizes x zip length x seeds) is checked
before any run is built.  Each run costs ~2.7 KB and ~1.2 ms to build and check
(measured on validation/sweeps/phase_diagram.toml), so the maximum is ~0.3 GB and
~2 min of expansion; a larger study is split into several sweeps."""

CONNECT_TIMEOUT = 20.0
"""Seconds to wait for a Dask scheduler at a ``tcp://`` address to answer."""

_TOP_LEVEL = ("name", "description", "base", "seeds", "grid", "zip")
_TEST_EXIT_ENV = "FLOWSIM_TEST_EXIT_ONCE"


class SweepError(ConfigError):
    """A bad sweep file; ``path`` names the sweep field (``grid.init.gamma``, ``base.model``)."""


# -- the sweep file -------------------------------------------------------------------


def _leaves(d, prefix: str, section: str) -> dict:
    """``{"init": {"gamma": [..]}, "model.width": [..]}`` -> ``{"init.gamma": [..], ...}``."""
    out = {}
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(_leaves(v, path, section))
        elif isinstance(v, list):
            if not v:
                raise SweepError(f"{section}.{path}", "must be a non-empty list of values")
            out[path] = list(v)
        else:
            raise SweepError(f"{section}.{path}", f"must be a list of values, got {v!r}")
    return out


def _assign(d: dict, path: str, value, section: str) -> None:
    parts = path.split(".")
    node = d
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SweepError(f"{section}.{path}", f"{where} is not a table in the base config")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


@dataclass(frozen=True)
class Run:
    """One point of a sweep: its index, the swept values, the config and its store key."""

    index: int
    point: dict
    config: RunConfig
    key: str


@dataclass(frozen=True)
class Sweep:
    """A base config, a grid, zipped lists and seeds (module docstring)."""

    base: dict
    grid: dict = field(default_factory=dict)
    zipped: dict = field(default_factory=dict)
    seeds: tuple | range | None = None
    name: str | None = None
    base_dir: Path | None = None

    @classmethod
    def from_toml(cls, path) -> Sweep:
        """Read a sweep file; a relative ``base`` or data path is relative to its directory."""
        path = Path(path)
        try:
            d = _toml_loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SweepError("", f"{path}: invalid TOML: {exc}") from None
        return cls.from_dict(d, base_dir=path.resolve().parent)

    @classmethod
    def from_dict(cls, d, base_dir=None) -> Sweep:
        """A sweep from a dict shaped like the file (module docstring)."""
        if not isinstance(d, Mapping):
            raise SweepError("", f"a sweep must be a table, got {d!r}")
        unknown = sorted(k for k in d if k not in _TOP_LEVEL)
        if unknown:
            raise SweepError(", ".join(unknown), f"unknown field; allowed: {list(_TOP_LEVEL)}")
        if "base" not in d:
            raise SweepError("base", 'missing; give a [base] run config or base = "run.toml"')
        base = d["base"]
        base_dir = Path(base_dir) if base_dir is not None else None
        if isinstance(base, str):
            file = Path(base).expanduser()
            file = file if file.is_absolute() else Path(base_dir or ".") / file
            try:
                base = _toml_loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SweepError("base", f"cannot read run config {str(file)!r}: {exc}") from None
            base_dir = file.resolve().parent
        if not isinstance(base, Mapping):
            raise SweepError("base", f"must be a run config table or a file name, got {base!r}")
        base = copy.deepcopy(dict(base))
        base.pop("name", None)
        grid = _leaves(d.get("grid", {}), "", "grid") if "grid" in d else {}
        zipped = _leaves(d.get("zip", {}), "", "zip") if "zip" in d else {}
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise SweepError(
                ", ".join(f"zip.{k}" for k in zipped), f"lists must have one length, got {lengths}"
            )
        both = sorted(set(grid) & set(zipped))
        if both:
            raise SweepError(", ".join(f"zip.{k}" for k in both), "is also in [grid]")
        seeds = d.get("seeds")
        if seeds is not None:
            if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
                seeds = range(seeds)  # a count stays lazy, however large
            else:
                ok = (
                    isinstance(seeds, list)
                    and seeds
                    and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                            for s in seeds)
                )  # fmt: skip
                if not ok:
                    raise SweepError(
                        "seeds", f"must be a count >= 1 or a list of integers >= 0, got {seeds!r}"
                    )
                if len(set(seeds)) != len(seeds):
                    raise SweepError("seeds", f"must not repeat a seed, got {seeds!r}")
                seeds = tuple(seeds)
            for section, table in (("grid", grid), ("zip", zipped)):
                if "init.seed" in table:
                    raise SweepError(f"{section}.init.seed", "cannot be combined with seeds")
        name = d.get("name")
        if name is not None and not isinstance(name, str):
            raise SweepError("name", f"must be a string, got {name!r}")
        return cls(base=base, grid=grid, zipped=zipped, seeds=seeds, name=name,
                   base_dir=base_dir)  # fmt: skip

    def __len__(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        if self.zipped:
            n *= len(next(iter(self.zipped.values())))
        return n * (len(self.seeds) if self.seeds else 1)

    def check_size(self) -> None:
        """SweepError when the sweep has more than :data:`MAX_RUNS` runs (counted, not built)."""
        n = len(self)
        if n <= MAX_RUNS:
            return
        factors = [f"{len(v)} {k}" for k, v in self.grid.items()]
        if self.zipped:
            factors.append(f"{len(next(iter(self.zipped.values())))} zip rows")
        if self.seeds:
            factors.append(f"{len(self.seeds)} seeds")
        sections = [s for s, on in (("grid", self.grid), ("zip", self.zipped),
                                    ("seeds", self.seeds)) if on]  # fmt: skip
        raise SweepError(
            ", ".join(sections),
            f"{n} runs ({' x '.join(factors)}), more than the maximum {MAX_RUNS} "
            "(flowsim.sweep.MAX_RUNS); split the sweep",
        )

    def iter_points(self):
        """The swept values of every run, ``{dotted path: value}``, in sweep order, one at a
        time (nothing is built ahead)."""
        n_zip = len(next(iter(self.zipped.values()))) if self.zipped else 1
        for values in itertools.product(*self.grid.values()):
            g = dict(zip(self.grid, values, strict=True))
            for i in range(n_zip):
                z = {k: v[i] for k, v in self.zipped.items()}
                for s in self.seeds if self.seeds else [None]:
                    yield {**g, **z, **({} if s is None else {"init.seed": s})}

    def points(self) -> list[dict]:
        """:meth:`iter_points` as a list (at most :data:`MAX_RUNS`)."""
        self.check_size()
        return list(self.iter_points())

    def iter_runs(self):
        """Every run, built and checked one at a time (a :class:`SweepError` names the
        field); ``itertools.islice`` takes the first few of any sweep."""
        for index, point in enumerate(self.iter_points()):
            d = copy.deepcopy(self.base)
            for path, value in point.items():
                _assign(d, path, value, self._section(path))
            try:
                cfg = RunConfig.from_dict(d, base_dir=self.base_dir)
            except ConfigError as exc:
                raise self._error(exc, index, point) from None
            yield Run(index, point, cfg, store_key(cfg))

    def runs(self) -> list[Run]:
        """Every run (at most :data:`MAX_RUNS`, counted before any is built)."""
        self.check_size()
        return list(self.iter_runs())

    def _section(self, path: str) -> str:
        if path in self.grid:
            return "grid"
        if path in self.zipped:
            return "zip"
        return "seeds"

    def _error(self, exc: ConfigError, index: int, point: dict) -> SweepError:
        paths = []
        for p in exc.path.split(", "):
            swept = [s for s in point if p == s or p.startswith(s + ".")]
            if swept:
                section = self._section(swept[0])
                paths.append("seeds" if section == "seeds" else f"{section}.{p}")
            else:
                paths.append(f"base.{p}" if p else "base")
        values = ", ".join(f"{k} = {v!r}" for k, v in point.items())
        return SweepError(", ".join(paths), f"{exc.message} (run {index}: {values})")


def _toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


# -- the worker side --------------------------------------------------------------------


def _thread_env(threads: int) -> dict:
    n = str(int(threads))
    env = {"NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
           "MKL_NUM_THREADS": n}  # fmt: skip
    from flowsim._codegen import cache_dir

    # the generated kernels and Numba's cache of them: the driver's directory
    env["FLOWSIM_CACHE_DIR"] = str(cache_dir().parent)
    return env


def _test_runner(key: str):
    """For the reliability tests only: with ``FLOWSIM_TEST_EXIT_ONCE=PREFIX:MARKER``
    the worker running a key that starts with PREFIX exits (``os._exit``) in the
    middle of the run, once: the first process to create the file MARKER."""
    spec = os.environ.get(_TEST_EXIT_ENV)
    if not spec:
        return None
    prefix, _, marker = spec.partition(":")
    if not key.startswith(prefix):
        return None

    def runner(cfg, *, progress=None):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            from flowsim.config import run_config

            return run_config(cfg, progress=progress)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        os._exit(17)

    return runner


def _run_task(root: str, cfg_dict: dict, base_dir, retry_before, wait: bool, threads: int,
              sweep_name: str | None = None):  # fmt: skip
    """Compute one run into the store (in a worker process); returns a small summary."""
    import numba

    if numba.get_num_threads() > threads:
        numba.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict, base_dir=base_dir)
    key = store_key(cfg)
    store = Store(root, create=False)
    record, outcome = store.compute(
        cfg, retry_failed=retry_before if retry_before is not None else False, wait=wait,
        runner=_test_runner(key), sweep=sweep_name,
    )  # fmt: skip
    out = {"key": key, "outcome": outcome, "status": None, "reason": None, "message": None,
           "numba_threads": numba.get_num_threads(), "pid": os.getpid()}  # fmt: skip
    if record is not None:
        out.update(status=record["status"], reason=record["reason"], message=record["message"])
    return out


@contextlib.contextmanager
def _environ(env: dict):
    """Set ``env`` in this process's environment (inherited by processes started
    inside the block), restoring the old values afterwards."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the driver ----------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    total: int
    """Distinct runs in the sweep."""
    stored: int
    """Already in the store at the start (and not retried)."""
    planned: list = field(default_factory=list)
    """The runs that were to be computed (:class:`Run`)."""
    computed: int = 0
    """Computed by this sweep's workers."""
    elsewhere: int = 0
    """Found in the store after waiting for another process computing them."""
    ok: int = 0
    failed: int = 0
    """Runs of this sweep stored as failures (including earlier ones not retried)."""
    failures: list = field(default_factory=list)
    """``(key, reason, message)`` of every failure of this sweep."""
    worker_deaths: int = 0
    elapsed: float = 0.0
    duplicates: int = 0
    """Sweep points whose config equals an earlier point's (run once)."""


def run_sweep(sweep: Sweep, store, *, scheduler: str = "local", workers: int | None = None,
              threads: int = 1, retry_failed: bool = False, dry_run: bool = False,
              progress: bool = True) -> SweepResult:  # fmt: skip
    """Run every config of ``sweep`` that ``store`` lacks.

    Parameters
    ----------
    sweep : Sweep
    store : Store or path
    scheduler : str
        ``"local"``, ``"dask"`` or a Dask scheduler address ``"tcp://host:port"``.
    workers : int, optional
        Worker processes (local, dask); default: the CPU count.
    threads : int
        Numba / BLAS threads per worker (1 unless a run is alone on its machine).
    retry_failed : bool
        Recompute stored failures (those finished before this call).
    dry_run : bool
        Only plan: the result's ``planned`` lists what would run.
    progress : bool
        Runs done of the total, ETA and failures: a line redrawn on a terminal, else a
        line every 30 s (:mod:`flowsim._progress`).
    """
    if scheduler not in SCHEDULERS and "://" not in scheduler:
        raise ValueError(
            f"scheduler: must be one of {list(SCHEDULERS)} or a Dask address tcp://host:port, "
            f"got {scheduler!r}"
        )
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads: must be an integer >= 1, got {threads!r}")
    store = store if isinstance(store, Store) else Store(store)
    started = time.time()
    runs, seen, duplicates = [], set(), 0
    for run in sweep.runs():
        if run.key in seen:
            duplicates += 1
            continue
        seen.add(run.key)
        runs.append(run)
    result = SweepResult(total=len(runs), stored=0, duplicates=duplicates)
    todo = []
    for run in runs:
        record = store.sound_record(run.key)  # a result failing its check is recomputed
        if record is None or (retry_failed and record["status"] == "failed"):
            todo.append(run)
            continue
        result.stored += 1
        if record["status"] == "failed":
            result.failed += 1
            result.failures.append((run.key, record["reason"], record["message"]))
        else:
            result.ok += 1
    result.planned = todo
    if dry_run or not todo:
        result.elapsed = time.time() - started
        return result

    retry_before = started if retry_failed else None
    base_dir = str(sweep.base_dir) if sweep.base_dir is not None else None

    def args(run: Run, wait: bool) -> tuple:
        return (str(store.root), run.config.to_dict(), base_dir, retry_before, wait, threads,
                sweep.name)  # fmt: skip

    bar = Progress(sweep.name or "sweep", total=result.total, initial=result.stored, unit="runs",
                   eta=True, enabled=bool(progress))  # fmt: skip
    bar.update(status=f"{result.failed} failed")

    def finished(run: Run, out: dict | None, error: str | None = None) -> Run | None:
        """Account for one finished task; returns a run to resubmit (waiting), if any."""
        if out is not None and out["outcome"] == "busy":
            return run
        if out is not None and out["outcome"] == "interrupted":
            out = {**out, "outcome": "computed", "status": "failed", "reason": "interrupted",
                   "message": "interrupted (not stored)"}  # fmt: skip
        elif out is None:  # the worker died: store the failure here
            record = _record_failure(store, run, error, sweep.name)
            out = {"outcome": "computed", "status": "failed",
                   "reason": record["reason"] if record else "worker_died",
                   "message": record["message"] if record else error}  # fmt: skip
        if out["outcome"] == "computed":
            result.computed += 1
        else:
            result.elsewhere += 1
        if out["status"] == "ok":
            result.ok += 1
        else:
            result.failed += 1
            result.failures.append((run.key, out["reason"], out["message"]))
        bar.update(1, f"{result.failed} failed")
        return None

    env = _thread_env(threads)
    try:
        if scheduler == "local":
            _run_local(todo, args, finished, workers or os.cpu_count() or 1, env, result)
        else:
            _run_dask(todo, args, finished, scheduler, workers, env, threads, result)
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            store.rebuild_manifest()
    result.elapsed = time.time() - started
    return result


def _record_failure(store: Store, run: Run, message: str, sweep_name=None) -> dict | None:
    """Store a failure the worker could not store itself (it died); None if impossible."""
    try:
        with store.lock(run.key):
            record = store.sound_record(run.key)
            if record is not None and record["status"] == "ok":
                return record
            return store.put(run.config, error=RuntimeError(message), sweep=sweep_name,
                             replace=store.path(run.key).exists())  # fmt: skip
    except OSError:
        return None


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(parent: int) -> None:
    """Pool worker initializer: end this worker when the driver ``parent`` dies, even by
    SIGKILL (which runs no cleanup in the driver).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel signals the worker when
    its parent goes.  Elsewhere (or if prctl fails): a daemon thread that polls
    ``os.getppid()`` every second and exits when the worker has been re-parented.
    Results are written atomically, so a worker ended this way loses only its run.
    """
    import signal

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the driver died before the prctl
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="flowsim-exit-with-parent", daemon=True).start()


def _run_local(todo, args, finished, workers, env, result) -> None:
    """A spawn-context process pool, restarted (with the unfinished runs) when a worker dies."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    deaths: dict[str, int] = {}
    queue = [(run, False) for run in todo]
    context = multiprocessing.get_context("spawn")
    with _environ(env):  # processes spawned in here inherit it
        while queue:
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(queue)), mp_context=context,
                initializer=_exit_with_parent, initargs=(os.getpid(),),
            )  # fmt: skip
            futures = {pool.submit(_run_task, *args(run, w)): run for run, w in queue}
            queue = []
            broken = False
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        run = futures.pop(future)
                        try:
                            out = future.result()
                        except BrokenProcessPool:
                            broken = True
                            deaths[run.key] = deaths.get(run.key, 0) + 1
                            if deaths[run.key] < MAX_WORKER_DEATHS:
                                queue.append((run, True))
                            else:
                                result.worker_deaths += 1
                                finished(run, None, f"worker process died {deaths[run.key]} times")
                            continue
                        again = finished(run, out)
                        if again is not None:
                            futures[pool.submit(_run_task, *args(again, True))] = again
            except BaseException:  # KeyboardInterrupt: end the workers, drop their runs
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
                broken = True
                raise
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)
            if broken:
                result.worker_deaths += 1


def _check_scheduler(address: str, timeout: float) -> None:
    """RuntimeError unless a Dask scheduler at ``address`` answers an ``identity`` request
    within ``timeout`` seconds.

    ``Client(address)`` waits for ever on a server that accepts and stays silent, and
    tries to allocate exabytes for one that talks another protocol (an HTTP server).
    The request runs on its own thread and event loop (the caller may have one).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():
        return asyncio.run(asyncio.wait_for(identity(), timeout))

    try:
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(ask).result()
        ok = isinstance(reply, dict) and reply.get("type") == "Scheduler"
        detail = f"it answered {str(reply)[:80]!r}"
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, a foreign protocol
        ok, detail = False, " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    if not ok:
        raise RuntimeError(
            f"scheduler: no Dask scheduler answered at {address} within {timeout:g} s ({detail})"
        )


def _run_dask(todo, args, finished, scheduler, workers, env, threads, result) -> None:
    try:
        from distributed import Client, LocalCluster, wait
    except ImportError:
        raise RuntimeError(
            "the dask schedulers need dask.distributed: pip install 'flowsim[sweep]'"
        ) from None
    with contextlib.ExitStack() as stack:
        if scheduler == "dask":
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                dashboard_address=None, env=env,
            ))  # fmt: skip
            client = stack.enter_context(Client(cluster))
        else:
            _check_scheduler(scheduler, CONNECT_TIMEOUT)
            client = stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
        attempts: dict[str, int] = {}

        def submit(run: Run, wait_: bool):
            attempts[run.key] = attempts.get(run.key, 0) + 1
            return client.submit(_run_task, *args(run, wait_), pure=False,
                                 key=f"flowsim-{run.key[:16]}-{attempts[run.key]}")  # fmt: skip

        futures = {submit(run, False): run for run in todo}
        while futures:
            done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
            for future in done:
                run = futures.pop(future)
                if future.status == "error":
                    exc = future.exception()
                    result.worker_deaths += 1
                    finished(run, None, f"{type(exc).__name__}: {exc}")
                    continue
                again = finished(run, future.result())
                if again is not None:
                    futures[submit(again, True)] = again
                future.release()
