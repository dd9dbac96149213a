"""Run checks, cache their simulation data, write the report.

The simulation data of a check (what its ``simulate(size)`` returns) is cached in one
``.npz`` file per check, size and cache key, ``<cache_dir>/<NAME>-<size>-<key>.npz``,
and never with pickle: the file holds the arrays (``a0``, ``a1``, ...) and a JSON tree,
``tree``, that says how they nest (see :func:`_encode`).  It is read with
``np.load(..., allow_pickle=False)`` and decoded by a fixed table of node kinds; a file
that does not decode (truncated, tampered, unknown structure) is recomputed, with a
warning, never trusted.  Files of older formats (``*.pkl``) are never opened.

The key (:func:`_cache_key`) is a hash of the numerics that made the data: every ``.py``
file of the flowsim package, :data:`flowsim.store.NUMERICS_VERSION`, the versions of
NumPy, SciPy, Numba and SymPy (:func:`_numerics_hash`), the check's module, the shared
helpers of the suite (``validation/_*.py``), its sweep files and its size config.  Any
change to them recomputes: a broken simulator never passes from cache.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import math
import os
import tempfile
import time
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from flowsim.validation import CHECKS

_log = logging.getLogger(__name__)

CACHE_FORMAT = "flowsim-validation-cache/1"
"""Format tag of a cache file's JSON tree; a file with another tag is recomputed."""

_PACKAGE_DIR = Path(__file__).resolve().parent


def load_check(name: str):
    """The module of check ``name`` (one of :data:`CHECKS`)."""
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r}; available: {', '.join(CHECKS)}")
    return importlib.import_module(f"{__package__}.{name}")


SWEEP_DIR = _PACKAGE_DIR / "sweeps"
"""The sweep files (``flowsim sweep``) of the checks whose full size runs through a store."""


def sweep_files(module, size: str) -> list[Path]:
    """The sweep files whose runs are the check's simulations at ``size`` (none: it simulates
    in process)."""
    return [SWEEP_DIR / name for name in getattr(module, "SWEEPS", {}).get(size, ())]


# -- cache key --------------------------------------------------------------------------------


def _digest(paths, root: Path) -> str:
    """SHA-256 over the names (relative to ``root``) and bytes of ``paths``."""
    sha = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        sha.update(b"%d:%s%d:" % (len(name), name, len(data)) + data)
    return sha.hexdigest()


def _numerics_sources() -> list[Path]:
    """Every ``.py`` file of the flowsim package (kernels, integrators, models, theory, ...),
    except this validation suite, which :func:`_cache_key` hashes per check."""
    import flowsim

    root = Path(flowsim.__file__).resolve().parent
    return [path for path in root.rglob("*.py") if _PACKAGE_DIR not in path.resolve().parents]


def _numerics_hash() -> str:
    """Hash of what decides the numbers a simulation gives: the flowsim sources
    (:func:`_numerics_sources`), ``NUMERICS_VERSION`` and the numerical libraries' versions."""
    import numba
    import scipy
    import sympy

    import flowsim
    from flowsim.store import NUMERICS_VERSION

    root = Path(flowsim.__file__).resolve().parent
    versions = {"NUMERICS_VERSION": NUMERICS_VERSION, "numpy": np.__version__,
                "scipy": scipy.__version__, "numba": numba.__version__,
                "sympy": sympy.__version__}  # fmt: skip
    text = json.dumps({"sources": _digest(_numerics_sources(), root), **versions}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_hash(module, size: str) -> str:
    """Hash of the check itself: its module, the suite's shared helpers (``validation/_*.py``),
    its sweep files at ``size`` and its size config."""
    check = Path(module.__file__).resolve()
    helpers = [path for path in _PACKAGE_DIR.glob("_*.py") if path.name != "__init__.py"]
    payload = {"check": _digest([check], check.parent), "helpers": _digest(helpers, _PACKAGE_DIR),
               "sweeps": [_digest([p], p.parent) for p in sweep_files(module, size)],
               "config": module.SIZES[size]}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cache_key(module, size: str) -> str:
    """Cache key of ``module``'s data at ``size``: the numerics (:func:`_numerics_hash`) and
    the check (:func:`_check_hash`)."""
    payload = [CACHE_FORMAT, _numerics_hash(), _check_hash(module, size)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


# -- cache file: a JSON tree and its arrays in one npz ----------------------------------------


class CacheError(ValueError):
    """A cache file that does not decode to simulation data."""


_JSON_SCALARS = (bool, int, float, str)


def _encode(value, arrays: dict, where: str = "data"):
    """JSON node of ``value``; its arrays are added to ``arrays`` (name -> ndarray).

    Nodes: ``null``, booleans, integers, floats (NaN and infinities as JSON's ``NaN``,
    ``Infinity``) and strings stand for themselves; every other value is an object with one
    kind::

        {"list": [node, ...]}                 list
        {"tuple": [node, ...]}                tuple
        {"dict": [[key node, node], ...]}     dict, keys of any kind above, in order
        {"array": "a3"}                       ndarray (not of dtype object): npz member a3
        {"scalar": "a4"}                      NumPy scalar (np.float64, np.bool_, ...)
        {"objects": [node, ...], "shape": [2, 3]}   ndarray of dtype object, flat, C order

    Anything else (a dataclass, a Trajectory) raises TypeError naming ``where``: the check's
    ``simulate`` should return its arrays and numbers.
    """
    if value is None or type(value) in _JSON_SCALARS:
        return value
    if type(value) in (list, tuple):
        items = [_encode(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]
        return {type(value).__name__: items}
    if type(value) is dict:
        return {"dict": [[_encode(key, arrays, f"{where} key {key!r}"),
                          _encode(item, arrays, f"{where}[{key!r}]")]
                         for key, item in value.items()]}  # fmt: skip
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = [_encode(item, arrays, f"{where}.flat[{i}]") for i, item in enumerate(value.flat)]
        return {"objects": items, "shape": list(value.shape)}
    if isinstance(value, np.ndarray | np.generic) and not value.dtype.hasobject:
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"array" if isinstance(value, np.ndarray) else "scalar": name}
    raise TypeError(f"cannot cache {where}: {type(value).__qualname__} is not a dict, list, "
                    "tuple, str, number, None or ndarray")  # fmt: skip


def _decode(node, npz):
    """Inverse of :func:`_encode`; raises CacheError on any node it does not know."""
    if node is None or type(node) in _JSON_SCALARS:
        return node
    keys = sorted(_checked(node, dict))
    kind = keys[0] if keys else None
    if keys == ["list"] or keys == ["tuple"]:
        items = [_decode(item, npz) for item in _checked(node[kind], list)]
        return items if kind == "list" else tuple(items)
    if keys == ["dict"]:
        pairs = [_checked(pair, list) for pair in _checked(node["dict"], list)]
        if any(len(pair) != 2 for pair in pairs):
            raise CacheError("a dict entry is not a [key, value] pair")
        try:
            return {_decode(key, npz): _decode(item, npz) for key, item in pairs}
        except TypeError as exc:  # an unhashable key
            raise CacheError(f"bad dict key: {exc}") from None
    if keys == ["array"] or keys == ["scalar"]:
        name = _checked(node[kind], str)
        if not (name.startswith("a") and name[1:].isdigit() and name in npz.files):
            raise CacheError(f"no array {name!r} in the file")
        array = npz[name]
        if kind == "array":
            return array
        if array.ndim != 0:
            raise CacheError(f"scalar {name!r} has shape {array.shape}")
        return array[()]
    if keys == ["objects", "shape"]:
        shape = [_checked(n, int) for n in _checked(node["shape"], list)]
        items = [_decode(item, npz) for item in _checked(node["objects"], list)]
        if any(n < 0 for n in shape) or math.prod(shape) != len(items):
            raise CacheError(f"{len(items)} objects do not fill shape {shape}")
        out = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            out[i] = item
        return out.reshape(shape)
    raise CacheError(f"unknown node {keys} in the tree")


def _checked(value, kind):
    if type(value) is not kind:
        raise CacheError(f"expected a JSON {kind.__name__}, found {type(value).__name__}")
    return value


def _write_cache(path: Path, key: str, data) -> None:
    """Write ``data`` to ``path`` atomically (a uniquely named temporary file, then rename)."""
    arrays: dict = {}
    tree = json.dumps({"format": CACHE_FORMAT, "key": key, "data": _encode(data, arrays)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, tree=np.array(tree), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, key: str):
    """The data in ``path``; raises CacheError (or OSError, zipfile.BadZipFile, ...) when it
    does not decode, with the arrays read without pickle."""
    with np.load(path, allow_pickle=False) as npz:
        if "tree" not in npz.files:
            raise CacheError("no tree in the file")
        tree = json.loads(str(_checked(npz["tree"][()], np.str_)))
        if type(tree) is not dict or sorted(tree) != ["data", "format", "key"]:
            raise CacheError("the tree is not {format, key, data}")
        if tree["format"] != CACHE_FORMAT or tree["key"] != key:
            raise CacheError(f"format {tree['format']!r}, key {tree['key']!r}: not this cache")
        return _decode(tree["data"], npz)


_UNREADABLE = (CacheError, OSError, EOFError, ValueError, KeyError, RecursionError,
               zipfile.BadZipFile)  # fmt: skip
"""What reading a damaged or tampered cache file can raise (a cache miss)."""


def default_cache_dir() -> Path:
    """Simulation cache of the validation checks: ``$FLOWSIM_CACHE_DIR/validation``, by
    default ``~/.cache/flowsim/validation`` (beside flowsim's compiled kernels)."""
    root = os.environ.get("FLOWSIM_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "flowsim") / "validation"


def simulation_data(module, size: str, cache_dir, *, refresh=False, sweep=None):
    """The check's simulation data, from ``cache_dir`` when the numerics and the check are
    unchanged (the key of :func:`_cache_key`); returns ``(data, provenance)``.

    ``provenance`` says where the data came from: ``"from cache PATH"`` or
    ``"simulated, cached in PATH"``.  A cache file that does not decode is recomputed with a
    RuntimeWarning; one that cannot be written is a warning too (the data are returned).
    ``sweep``: options of :func:`sweep_records` (store, scheduler, workers) for the checks
    whose runs at ``size`` are sweep files; any other check gets those of them its
    ``simulate`` takes as keywords (:func:`_accepted`).
    """
    key = _cache_key(module, size)
    path = Path(cache_dir) / f"{module.NAME}-{size}-{key}.npz"
    if path.exists() and not refresh:
        try:
            data = _read_cache(path, key)
        except _UNREADABLE as exc:
            warnings.warn(f"flowsim: unreadable validation cache {path} ({type(exc).__name__}: "
                          f"{exc}); simulating again", RuntimeWarning, stacklevel=2)  # fmt: skip
        else:
            _log.info("%s (%s): from cache %s", module.NAME, size, path)
            return data, f"from cache {path}"
    if sweep_files(module, size):
        data = module.simulate(size, **(sweep or {}))
    else:
        data = module.simulate(size, **_accepted(module.simulate, sweep))
    try:
        _write_cache(path, key, data)
    except OSError as exc:
        warnings.warn(f"flowsim: could not write validation cache {path} ({exc})",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return data, "simulated (not cached)"
    _log.info("%s (%s): simulated, cached in %s", module.NAME, size, path)
    return data, f"simulated, cached in {path}"


def _accepted(function, options) -> dict:
    """The entries of ``options`` (the sweep options: store, scheduler, workers) that are not
    None and that ``function`` takes as keywords: a check without sweep files that runs
    through a store itself (e.g. a loss spectrum) gets ``--store`` too."""
    parameters = inspect.signature(function).parameters
    return {key: value for key, value in (options or {}).items()
            if value is not None and key in parameters}  # fmt: skip


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


def draw_figure(name: str, size: str, out_dir: Path, cache_dir=None, *, refresh=False,
                sweep=None) -> tuple[str, str]:  # fmt: skip
    """Draw one check's figure from cached data (simulating first if not cached); returns
    ``(figure path, provenance of the data)`` (see :func:`simulation_data`)."""
    module = load_check(name)
    data, provenance = simulation_data(module, size, cache_dir or default_cache_dir(),
                                       refresh=refresh, sweep=sweep)  # fmt: skip
    return module.draw(data, Path(out_dir) / name), provenance


def run(names, size: str, out_dir: Path, *, cache_dir=None, refresh=False, progress=True,
        sweep=None):  # fmt: skip
    """Run the named checks; returns (records, seconds per check).

    Each record's ``provenance`` says whether its data were simulated or read from the cache
    (``cache_dir``, default :func:`default_cache_dir`).  ``sweep``: options of
    :func:`sweep_records` (``store``, ``scheduler``, ``workers``) for the checks whose runs at
    ``size`` are sweep files (``SWEEPS``).
    """
    from flowsim._progress import Progress

    out_dir = Path(out_dir)
    records, timings = [], {}
    with Progress("validate", total=len(names), unit="checks", enabled=progress) as bar:
        for name in names:
            bar.update(status=name)
            module = load_check(name)
            tic = time.perf_counter()
            data, provenance = simulation_data(module, size, cache_dir or default_cache_dir(),
                                               refresh=refresh, sweep=sweep)  # fmt: skip
            figure = module.draw(data, out_dir / "figures" / name)
            checked = module.evaluate(data, size, str(Path(figure).relative_to(out_dir)))
            records.extend(replace(r, provenance=provenance) for r in checked)
            timings[name] = time.perf_counter() - tic
            bar.update(1, status="")
    return records, timings


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(records) -> str:
    """Plain-text table: prediction | theory | measured | tolerance | verdict."""
    rows = [("prediction", "theory", "measured", "tolerance", "verdict")]
    rows += [(r.name, _fmt(r.theory), _fmt(r.measured), r.tolerance, r.verdict)
             for r in records]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def provenances(records) -> dict[str, str]:
    """Where each check's simulation data came from: ``{check: provenance}``."""
    return {r.name.split(".")[0]: r.provenance for r in records}


def write_report(records, timings, out_dir: Path, size: str) -> Path:
    lines = [f"# flowsim validation report ({size})", ""]
    passed = sum(r.verdict == "PASS" for r in records)
    findings = sum(r.verdict == "FINDING" for r in records)
    tail = f", {findings} documented findings reproduced." if findings else "."
    lines.append(f"{passed} of {len(records)} checks passed{tail}")
    lines.append("")
    lines.append("| prediction | claim | theory | measured | tolerance | verdict |")
    lines.append("|---|---|---|---|---|---|")
    for r in records:
        verdict = {"FAIL": "**FAIL**"}.get(r.verdict, r.verdict)
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
        if r.finding is not None and not r.passed:
            state = "reproduced" if r.verdict == "FINDING" else "NOT reproduced"
            lines += [f"- `{r.name}`, documented finding ({state}: measured {_fmt(r.measured)}, "
                      f"documented {_fmt(r.finding.expected)} +- {r.finding.atol:g}): "
                      f"{r.finding.reason}", ""]  # fmt: skip
    sources = provenances(records)
    lines += ["Simulation data: " + "; ".join(f"{k} {v}" for k, v in sources.items()), ""]
    lines.append("Time per check (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def describe(name: str) -> tuple[str, list[str]]:
    """One-line description (the first line of the check's docstring) and sizes of check
    ``name``; a size run from sweep files through a result store is marked ``(sweeps)``."""
    module = load_check(name)
    summary = (module.__doc__ or module.CLAIM).strip().splitlines()[0]
    sizes = [f"{s} (sweeps)" if sweep_files(module, s) else s for s in module.SIZES]
    return summary, sizes
