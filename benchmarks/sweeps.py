"""``python -m benchmarks.sweeps [--runs 200] [--workers 2] [--json FILE] [--no-relu]``.

Sweep throughput (a measurement, not a test):

* ``--runs`` small runs (two-layer tanh, m = 100, n = 40, t_end = --t-end, seeds
  0 ... runs-1) as a plain serial loop of :func:`flowsim.run_config` in this
  process, the same loop through :meth:`Store.compute` (adds the atomic
  write), through ``run_sweep(scheduler="local")`` with ``--workers``
  processes, through ``run_sweep(scheduler="dask")`` (a fresh LocalCluster:
  start-up included) and through a Dask LocalCluster started beforehand
  (``tcp://`` address: per-task overhead without the start-up).  Reported:
  wall time, speedup over the serial loop, and overhead per task
  ``(wall * workers - serial) / runs``.
* Cost per run of the phase-diagram configuration
  (``validation/sweeps/phase_diagram.toml``: ReLU, n = 4, GD) at
  m = 10^3 ... 10^6 on one Numba thread, measured over a short ``t_end`` and
  given per GD step (the cost of a GD run is its number of steps times the
  cost of a step).

Numbers on this machine: ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # as in every sweep worker

SMALL = {
    "model": {"kind": "two_layer", "activation": "tanh", "width": 100},
    "data": {"kind": "sin1d", "params": {"n": 40}},
    "init": {"seed": 0, "scale": 1e-4},
    "solver": {"t_end": 100.0, "rtol": 1e-8, "n_save": 200},
}
PHASE_DIAGRAM = (
    Path(__file__).resolve().parent.parent / "validation" / "sweeps" / "phase_diagram.toml"
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _other_load():
    try:
        from benchmarks._common import OtherLoad
    except ImportError:  # pragma: no cover
        return None
    probe = OtherLoad()
    probe.start()
    return probe


def small_sweep(runs: int):
    from flowsim.sweep import Sweep

    return Sweep.from_dict({"name": "bench", "base": SMALL, "seeds": runs})


def bench_small(runs: int, workers: int, scratch: Path) -> list[dict]:
    from flowsim.config import run_config
    from flowsim.store import Store
    from flowsim.sweep import run_sweep

    sweep = small_sweep(runs)
    configs = [r.config for r in sweep.runs()]
    run_config(configs[0], progress=False)  # warm-up: kernels from the disk cache
    rows = []

    tic = time.perf_counter()
    for cfg in configs:
        run_config(cfg, progress=False)
    serial = time.perf_counter() - tic
    rows.append({"how": "serial loop (run_config)", "workers": 1, "wall": serial})
    _log(f"serial loop: {serial:.2f} s")

    store = Store(scratch / "serial-store")
    tic = time.perf_counter()
    for cfg in configs:
        store.compute(cfg)
    wall = time.perf_counter() - tic
    rows.append({"how": "serial loop + store", "workers": 1, "wall": wall})
    _log(f"serial loop + store: {wall:.2f} s")

    tic = time.perf_counter()
    result = run_sweep(sweep, Store(scratch / "local"), workers=workers, progress=False)
    wall = time.perf_counter() - tic
    assert result.ok == runs, result
    rows.append({"how": f"local, {workers} workers", "workers": workers, "wall": wall})
    _log(f"local: {wall:.2f} s")

    try:
        from distributed import LocalCluster
    except ImportError:
        _log("dask[distributed] not installed: no Dask rows")
        return _finish(rows, serial, runs)
    tic = time.perf_counter()
    result = run_sweep(
        sweep, Store(scratch / "dask"), scheduler="dask", workers=workers, progress=False
    )
    wall = time.perf_counter() - tic
    assert result.ok == runs, result
    rows.append({"how": f"dask LocalCluster, {workers} workers (incl. start-up)",
                 "workers": workers, "wall": wall})  # fmt: skip
    _log(f"dask: {wall:.2f} s")

    from flowsim.sweep import _thread_env

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      env=_thread_env(1)) as cluster:  # fmt: skip
        # warm the workers (imports, kernel cache) with a throw-away sweep
        address = cluster.scheduler_address
        run_sweep(small_sweep(workers), Store(scratch / "warm"), scheduler=address,
                  progress=False)  # fmt: skip
        tic = time.perf_counter()
        result = run_sweep(sweep, Store(scratch / "dask-warm"),
                           scheduler=cluster.scheduler_address, progress=False)  # fmt: skip
        wall = time.perf_counter() - tic
    assert result.ok == runs, result
    rows.append({"how": f"dask, running cluster, {workers} workers", "workers": workers,
                 "wall": wall})  # fmt: skip
    _log(f"dask, warm: {wall:.2f} s")
    return _finish(rows, serial, runs)


def _finish(rows, serial, runs):
    for row in rows:
        row["speedup"] = serial / row["wall"]
        row["overhead_per_task_ms"] = 1e3 * (row["wall"] * row["workers"] - serial) / runs
    return rows


def bench_relu(widths, steps: int) -> list[dict]:
    """Seconds per GD step of the phase-diagram config at each width (one thread)."""
    import copy

    from flowsim.config import run_config
    from flowsim.sweep import Sweep

    base = Sweep.from_toml(PHASE_DIAGRAM).base
    rows = []
    for m in widths:
        d = copy.deepcopy(base)
        d["model"]["width"] = int(m)
        d["solver"]["t_end"] = steps * d["solver"]["dt"]
        d["solver"].pop("max_wall", None)
        from flowsim.config import RunConfig

        cfg = RunConfig.from_dict(d)
        short = copy.deepcopy(d)
        short["solver"]["t_end"] = 2 * d["solver"]["dt"]
        run_config(RunConfig.from_dict(short), progress=False)  # warm-up
        tic = time.perf_counter()
        traj = run_config(cfg, progress=False)
        wall = time.perf_counter() - tic
        per_step = 1e6 * wall / traj.n_accepted
        rows.append({"width": int(m), "steps": traj.n_accepted, "wall": wall,
                     "per_step_us": per_step, "status": traj.status})  # fmt: skip
        _log(f"relu m={m}: {wall:.2f} s for {traj.n_accepted} steps "
             f"({1e6 * wall / traj.n_accepted:.1f} us/step)")  # fmt: skip
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweeps", description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--t-end", type=float, default=1000.0, help="length of each small run (1000: ~0.25 s each)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-relu", action="store_true", help="skip the ReLU cost per run")
    parser.add_argument("--relu-steps", type=int, default=1000)
    args = parser.parse_args(argv)
    import numba

    SMALL["solver"]["t_end"] = args.t_end
    load = _other_load()
    scratch = Path(tempfile.mkdtemp(prefix="flowsim-bench-sweeps-"))
    try:
        small = bench_small(args.runs, args.workers, scratch)
        relu = [] if args.no_relu else bench_relu([1000, 10_000, 100_000, 1_000_000],
                                                  args.relu_steps)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    busy = load.stop() if load is not None else None
    print(f"\n{args.runs} runs: tanh, m = 100, n = 40, t_end = {args.t_end:g} (numba threads per "
          f"process: "
          f"{numba.get_num_threads()}; CPUs: {os.cpu_count()}; other load: "
          f"{'n/a' if busy is None else f'{busy:.2f} CPUs'})")  # fmt: skip
    print(f"{'how':50s} {'wall (s)':>9s} {'speedup':>8s} {'overhead/task (ms)':>19s}")
    for r in small:
        print(f"{r['how']:50s} {r['wall']:9.2f} {r['speedup']:8.2f} "
              f"{r['overhead_per_task_ms']:19.1f}")  # fmt: skip
    if relu:
        print("\nphase-diagram config (ReLU, n = 4, GD), one Numba thread:")
        print(f"{'m':>9s} {'steps':>7s} {'wall (s)':>9s} {'us/step':>9s}")
        for r in relu:
            print(f"{r['width']:9d} {r['steps']:7d} {r['wall']:9.2f} {r['per_step_us']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps({"small": small, "relu": relu, "other_load": busy},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
