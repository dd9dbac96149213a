"""Run checks, cache their simulation data, write the report."""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
import time
from pathlib import Path

from validation import CHECKS


def load_check(name: str):
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; available: {', '.join(CHECKS)}")
    return importlib.import_module(f"validation.{name}")


SWEEP_DIR = Path(__file__).resolve().parent / "sweeps"
"""The sweep files (``flowsim sweep``) of the checks whose full size runs through a store."""


def sweep_files(module, size: str) -> list[Path]:
    """The sweep files whose runs are the check's simulations at ``size`` (none: it simulates
    in process)."""
    return [SWEEP_DIR / name for name in getattr(module, "SWEEPS", {}).get(size, ())]


def _cache_key(module, size: str) -> str:
    import flowsim

    payload = {"config": module.SIZES[size], "version": flowsim.__version__,
               "source": Path(module.__file__).read_text()}  # fmt: skip
    files = sweep_files(module, size)
    if files:
        payload["sweeps"] = [path.read_text() for path in files]
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_store_dir() -> Path:
    """Result store of the sweep-backed checks, ``./flowsim-results/store``."""
    return Path.cwd() / "flowsim-results" / "store"


def sweep_records(files, *, store=None, scheduler="local", workers=None, progress=True):
    """Run what ``store`` lacks of the sweeps in ``files``; returns ``(Store, {key: record})``
    over every run of the sweeps (``store``: a Store or directory, default
    :func:`default_store_dir`).

    A run stored as a failure stays one (rerun it with ``flowsim sweep --retry-failed``); the
    check decides what a failure means for its verdict.
    """
    from flowsim.store import Store
    from flowsim.sweep import Sweep, run_sweep

    store = store if isinstance(store, Store) else Store(store or default_store_dir())
    records = {}
    for path in files:
        sweep = Sweep.from_toml(path)
        run_sweep(sweep, store, scheduler=scheduler, workers=workers, progress=progress)
        for run in sweep.runs():
            records[run.key] = store.record(run.key)
    return store, records


def simulation_data(module, size: str, cache_dir: Path, *, refresh=False, sweep=None) -> dict:
    """The check's simulation data, from ``cache_dir`` when its config is unchanged.

    ``sweep``: options of :func:`sweep_records` (store, scheduler, workers) for the checks
    whose runs at ``size`` are sweep files.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{module.NAME}-{size}-{_cache_key(module, size)}.pkl"
    if path.exists() and not refresh:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    if sweep_files(module, size):
        data = module.simulate(size, **(sweep or {}))
    else:
        data = module.simulate(size)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(data, fh)
    tmp.replace(path)
    return data


def default_cache_dir() -> Path:
    """Simulation cache shared by every report under ``./flowsim-results``."""
    return Path.cwd() / "flowsim-results" / "cache"


def draw_figure(name: str, size: str, out_dir: Path, cache_dir: Path, *, refresh=False,
                sweep=None) -> str:  # fmt: skip
    """Draw one check's figure from cached data (simulating first if not cached)."""
    module = load_check(name)
    data = simulation_data(module, size, cache_dir, refresh=refresh, sweep=sweep)
    return module.draw(data, out_dir / name)


def run(names, size: str, out_dir: Path, *, cache_dir=None, refresh=False, progress=True,
        sweep=None):  # fmt: skip
    """Run the named checks; returns (records, seconds per check).

    ``sweep``: options of :func:`sweep_records` (``store``, ``scheduler``, ``workers``) for
    the checks whose runs at ``size`` are sweep files (``SWEEPS``).
    """
    from tqdm.auto import tqdm

    records, timings = [], {}
    bar = tqdm(names, desc="validate", unit="check", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        module = load_check(name)
        tic = time.perf_counter()
        data = simulation_data(module, size, cache_dir or default_cache_dir(), refresh=refresh,
                               sweep=sweep)  # fmt: skip
        figure = module.draw(data, out_dir / "figures" / name)
        records.extend(module.evaluate(data, size, str(Path(figure).relative_to(out_dir))))
        timings[name] = time.perf_counter() - tic
    return records, timings


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(records) -> str:
    """Plain-text table: prediction | theory | measured | tolerance | verdict."""
    rows = [("prediction", "theory", "measured", "tolerance", "verdict")]
    rows += [(r.name, _fmt(r.theory), _fmt(r.measured), r.tolerance,
              "PASS" if r.passed else "FAIL") for r in records]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(records, timings, out_dir: Path, size: str) -> Path:
    lines = [f"# flowsim validation report ({size})", ""]
    passed = sum(r.passed for r in records)
    lines.append(f"{passed} of {len(records)} checks passed.")
    lines.append("")
    lines.append("| prediction | claim | theory | measured | tolerance | verdict |")
    lines.append("|---|---|---|---|---|---|")
    for r in records:
        verdict = "PASS" if r.passed else "**FAIL**"
        lines.append(f"| `{r.name}` | {r.claim} | {_fmt(r.theory)} | {_fmt(r.measured)} | "
                     f"{r.tolerance} | {verdict} |")  # fmt: skip
    lines.append("")
    seen = set()
    for r in records:
        if r.figure and r.figure not in seen:
            seen.add(r.figure)
            lines += [f"## {r.name.split('.')[0]}", "", f"![{r.name}]({r.figure})", ""]
        if r.note:
            lines += [f"- `{r.name}`: {r.note} (source: {r.source})", ""]
    lines.append("Time per check (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
