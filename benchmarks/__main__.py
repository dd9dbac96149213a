"""``python -m benchmarks [--quick] [--only ID ...] [--json FILE] [--no-memory]``.

Runs every selected workload with all its implementations in this one process
(timings), measures peak memory in one fresh subprocess per implementation,
prints a table and writes JSON (default ``benchmarks/results/latest.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import WORKLOADS
from benchmarks._common import (
    BUSY,
    RESULTS_DIR,
    OtherLoad,
    Skip,
    Workload,
    apply_collected,
    available,
    best_of,
    compare_rows,
    format_table,
    machine_info,
    now_iso,
    other_load,
    probe_memory,
    run_probe,
    temporary_data_file,
    write_json,
)

# pause between rows so that the previous row's worker threads (OpenMP, BLAS) stop spinning
_SETTLE_SECONDS = 0.2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_workload(
    workload: Workload, *, quick: bool, memory: bool, full: bool = False
) -> list[dict]:
    """Time every implementation of ``workload``; one dict per row."""
    _log(f"{workload.id}: {workload.title}")
    data = workload.make_data(quick)
    data["full"] = full  # long runs: run for real instead of extrapolating (W1, W2)
    reference = workload.reference(data)
    repeat = workload.quick_repeat if quick else workload.repeat
    min_time = workload.quick_min_time if quick else workload.min_time
    data_path = temporary_data_file(data) if memory else None
    rows = []
    try:
        for impl in workload.impls:
            row = {
                "workload": workload.id,
                "impl": impl.name,
                "kind": impl.kind,
                "compare_to": impl.compare_to,
            }
            rows.append(row)
            missing = available(impl.requires)
            if missing:
                row["skipped"] = missing
                _log(f"  {impl.name}: skipped ({missing})")
                continue
            tic = time.perf_counter()
            try:
                call = impl.build(data)
            except Skip as exc:
                row["skipped"] = str(exc)
                _log(f"  {impl.name}: skipped ({exc})")
                continue
            row["setup_time"] = time.perf_counter() - tic
            load = OtherLoad()
            load.start()
            timing = best_of(call, repeat=repeat, min_time=min_time)
            row["other_cpus_busy"] = load.stop()
            collected = impl.collect(timing.pop("value"))
            del call
            vector = collected.get("vector")
            row.update(timing)
            apply_collected(row, collected)
            row["is_reference"] = impl.name == workload.reference_impl
            error = None if vector is None else workload.error(vector, reference)
            if isinstance(error, dict):  # several numbers; "error" is the headline
                row["errors"] = error
                error = error.get("error")
            row["error"] = error
            time.sleep(_SETTLE_SECONDS)
            # a row that hit its wall limit or failed would only repeat that in the probe
            if memory and impl.probe and row.get("status") not in ("timeout", "failed"):
                row.update(probe_memory(workload.id, impl.name, data_path))
            _log(
                f"  {impl.name}: {row.get('status', 'done')}, best {row['best']:.4g} s "
                f"({repeat}x{row['number']}), "
                f"setup {row['setup_time']:.2g} s"
                + (f"; {row['note']}" if row["note"] else "")
                + (f"; memory probe failed: {row['memory_error']}" if "memory_error" in row else "")
            )
    finally:
        if data_path is not None:
            data_path.unlink(missing_ok=True)
    by_name = {row["impl"]: row for row in rows if "best" in row}
    for row in rows:
        if "best" in row and row["compare_to"] in by_name:
            row.update(compare_rows(row, by_name[row["compare_to"]]))
    return rows


def _summaries(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        if row["kind"] == "floor" and row.get("ratio"):
            lines.append(
                f"{row['workload']}: {row['compare_to']} takes {1 / row['ratio']:.1f}x "
                f"the time of {row['impl']}"
            )
        if row.get("note"):
            lines.append(f"{row['workload']}: {row['impl']}: {row['note']}")
    return lines


def _numba_layer_used() -> str | None:
    """The threading layer a parallel Numba kernel actually ran on (None if none ran)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel function has run
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Side-by-side speed comparisons of flowsim with NumPy, SciPy and PyTorch.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument(
        "--only", nargs="+", metavar="ID", help=f"workloads to run, of {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        metavar="FILE",
        help="where to write the results (default: benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory subprocesses"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="run the long competitors for real (PyTorch GD in W1, W2) instead of timing a "
        "fixed number of steps and extrapolating; longer wall limits",
    )
    parser.add_argument("--probe", nargs=3, metavar=("ID", "IMPL", "DATA"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.probe:
        run_probe(WORKLOADS, *args.probe)
        return 0
    ids = args.only or list(WORKLOADS)
    unknown = [i for i in ids if i not in WORKLOADS]
    if unknown:
        _log(f"unknown workload(s) {unknown}; available: {', '.join(WORKLOADS)}")
        return 2

    started = time.perf_counter()
    machine = machine_info()
    cpus = machine["cpus_usable"] or machine["cpu_count"] or 1
    before = other_load()
    machine["other_cpus_busy_before"] = before
    if before is not None and before > BUSY:
        _log(
            f"warning: other processes keep {before:.1f} of {cpus} CPUs busy: "
            "the timings will be unreliable"
        )
    during = OtherLoad()
    during.start()
    rows = []
    for workload_id in ids:
        rows += run_workload(
            WORKLOADS[workload_id], quick=args.quick, memory=not args.no_memory, full=args.full
        )
    machine["other_cpus_busy_during"] = during.stop()
    if machine["other_cpus_busy_during"] is not None and machine["other_cpus_busy_during"] > BUSY:
        machine["warning"] = (
            f"other processes kept {machine['other_cpus_busy_during']:.2f} of {cpus} CPUs busy "
            "on average during the run: the timings are unreliable"
        )
    if hasattr(os, "getloadavg"):
        machine["load_average_end"] = list(os.getloadavg())
    machine["numba_threading_layer_used"] = _numba_layer_used()

    print(format_table(rows))
    print()
    for workload_id in ids:
        workload = WORKLOADS[workload_id]
        print(f"{workload.id}: {workload.title}")
        for note in workload.notes:
            print(f"    {note}")
    for line in _summaries(rows):
        print(line)
    memory = "not measured (--no-memory)" if args.no_memory else (
        "peak RSS: high-water mark (VmHWM) of a fresh process that imports what the row "
        "needs, builds the data, warms up and calls once; call +RSS: growth of that mark "
        "during the one call (reset through /proc/self/clear_refs just before it)"
    )  # fmt: skip
    print(f"memory: {memory}")
    if "warning" in machine:
        print(f"WARNING: {machine['warning']}")
    if any((row.get("other_cpus_busy") or 0) > BUSY for row in rows):
        print(f"* other processes kept more than {BUSY} CPUs busy while this row was timed")

    payload = {
        "date": now_iso(),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "full": args.full,
        "wall_time": time.perf_counter() - started,
        "machine": machine,
        "memory_method": memory,
        "workloads": {
            i: {"title": WORKLOADS[i].title, "notes": list(WORKLOADS[i].notes)} for i in ids
        },
        "rows": rows,
    }
    write_json(args.json, payload)
    _log(f"wrote {args.json} ({payload['wall_time']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
