"""The validation cache: npz + JSON (never pickle), keyed by the numerics, recomputed when damaged.

Nothing here simulates: a stand-in check module (``NAME``, ``SIZES``, ``simulate``, a real
source file) goes through :func:`flowsim.validation._runner.simulation_data`.  The end-to-end
test with a real check and a broken simulator is in ``tests/test_predictions.py``.
"""

from __future__ import annotations

import ast
import json
import pathlib
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import flowsim
from flowsim.cli import main
from flowsim.validation import CHECKS
from flowsim.validation import _runner as runner

REPO = Path(__file__).resolve().parent.parent

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def _same(a, b) -> bool:
    """Equal values of the same types, arrays of the same dtype and shape (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return a.shape == b.shape and all(map(_same, a.flat, b.flat))
        nan = np.issubdtype(a.dtype, np.inexact)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=nan)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float | np.floating) and np.isnan(a):
        return bool(np.isnan(b))
    return bool(a == b)


def _all_kinds() -> dict:
    """One value of every kind the checks' ``simulate`` returns (see validation/*.py)."""
    return {
        "t": np.linspace(0.0, 1.0, 7),
        "W": np.arange(12, dtype=np.float32).reshape(2, 3, 2),
        "empty": np.zeros((0, 3)),
        "status_per_run": np.array(["done", "event", "max_steps"]),
        "ints": np.array([1, -2], dtype=np.int64),
        "mask": np.array([True, False]),
        "zero_d": np.array(2.5),
        "np_float": np.float64(0.1),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "float": 1e-300,
        "nan": float("nan"),
        "inf": -float("inf"),
        "int": 2**70,
        "bool": False,
        "none": None,
        "text": "linear limit \u2192 \u03b3",
        "runs": {0.5: {"RD": np.array([0.1, np.nan])}, 1.25: {"RD": np.array([])}},
        "int_keys": {3: "three", -1: "minus one"},
        "tuple_keys": {("two_layer", 0.01): 1.0},
        "stages": [("plateau", 0.0, 1.5, 0.25), ("descent", 1.5, 2.0, 0.1)],
        "method_log": ((0.0, "dopri5"), (3.5, "rodas5")),
        "failures": [("gd", 0.5, "nonfinite", None)],
        "ragged": np.array([None, "x", np.arange(2)], dtype=object),
        "nested": [[{"a": [np.ones(2)]}], ()],
    }


def _check(tmp_path, calls, *, config=None, source="VALUE = 1\n", name="fake"):
    """A stand-in check module: a real source file, a size config, a counting simulate."""
    path = tmp_path / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        path.write_text(source)

    def simulate(size):
        calls.append(size)
        return {"size": size, "x": np.arange(3.0), "n": len(calls)}

    sizes = {"quick": config if config is not None else {"n": 3}}
    return types.SimpleNamespace(NAME=name, SIZES=sizes, simulate=simulate, __file__=str(path))


def _payload(marker: Path):
    """An object whose unpickling creates ``marker`` (what a planted cache file would do)."""

    class Payload:
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    return Payload()


# -- encoding ---------------------------------------------------------------------------------


def test_round_trip_keeps_values_types_and_dtypes(tmp_path):
    data = _all_kinds()
    path = tmp_path / "c.npz"
    runner._write_cache(path, "k1", data)
    back = runner._read_cache(path, "k1")
    assert _same(back, data)
    assert [type(back[k]) for k in ("np_float", "np_int", "np_bool")] == [
        np.float64,
        np.int64,
        np.bool_,
    ]
    # the file is a plain npz: a JSON tree and arrays, every member readable without pickle
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    with np.load(path, allow_pickle=False) as npz:
        tree = json.loads(str(npz["tree"]))
        assert all(npz[name].dtype != object for name in npz.files)
    assert tree["format"] == runner.CACHE_FORMAT and tree["key"] == "k1"
    t_node = dict((json.dumps(k), v) for k, v in tree["data"]["dict"])['"t"']
    with np.load(path, allow_pickle=False) as npz:
        assert np.array_equal(npz[t_node["array"]], np.linspace(0.0, 1.0, 7))
    assert not [p.name for p in tmp_path.iterdir() if p.name != "c.npz"]  # no temp file left


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"runs": {0.5: {"traj": object()}}}, r"data\['runs'\]\[0.5\]\['traj'\]: object"),
        ({"x": [1, {2, 3}]}, r"data\['x'\]\[1\]: set"),
        ({"x": np.array([1, 2]).view([("a", "i8")]).astype([("a", "O")])}, r"data\['x'\]"),
    ],
)
def test_values_that_cannot_be_cached_are_named(tmp_path, value, where):
    with pytest.raises(TypeError, match=where):
        runner._write_cache(tmp_path / "c.npz", "k", value)
    assert list(tmp_path.iterdir()) == []


# -- simulation_data: hits, misses, damage ----------------------------------------------------


def test_second_call_reads_the_cache_and_says_so(tmp_path):
    calls = []
    module = _check(tmp_path, calls)
    cache = tmp_path / "new" / "cache"  # created on demand; a str is accepted
    data, how = runner.simulation_data(module, "quick", str(cache))
    (path,) = cache.glob("fake-quick-*.npz")
    assert how == f"simulated, cached in {path}"
    again, how = runner.simulation_data(module, "quick", cache)
    assert how == f"from cache {path}"
    assert calls == ["quick"] and _same(again, data)
    _, how = runner.simulation_data(module, "quick", cache, refresh=True)
    assert how.startswith("simulated") and calls == ["quick", "quick"]


@pytest.mark.parametrize("change", ["numerics", "check source", "size config"])
def test_a_change_of_the_numerics_or_the_check_simulates_again(tmp_path, monkeypatch, change):
    calls = []
    runner.simulation_data(_check(tmp_path, calls), "quick", tmp_path / "c")
    if change == "numerics":
        monkeypatch.setattr(runner, "_numerics_hash", lambda: "another simulator")
        module = _check(tmp_path, calls)
    elif change == "check source":
        module = _check(tmp_path, calls, source="VALUE = 2\n")
    else:
        module = _check(tmp_path, calls, config={"n": 4})
    _, how = runner.simulation_data(module, "quick", tmp_path / "c")
    assert how.startswith("simulated") and len(calls) == 2
    assert len(list((tmp_path / "c").glob("fake-quick-*.npz"))) == 2


def test_numerics_hash_covers_every_flowsim_source_file(tmp_path, monkeypatch):
    root = Path(flowsim.__file__).resolve().parent
    expected = {p for p in root.rglob("*.py") if "validation" not in p.relative_to(root).parts}
    assert set(runner._numerics_sources()) == expected
    assert {root / "integrate" / "explicit.py", root / "models" / "two_layer.py"} <= expected
    # a one-byte change of any of them changes the hash
    copies = []
    for path in sorted(expected)[:3]:
        copy = tmp_path / path.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(runner, "_numerics_sources", lambda: copies)
    monkeypatch.setattr(flowsim, "__file__", str(tmp_path / "__init__.py"))
    before = runner._numerics_hash()
    copies[-1].write_bytes(copies[-1].read_bytes() + b" ")
    assert runner._numerics_hash() != before


def _damage_truncate(path, key):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage_unknown_node(path, key):
    np.savez(path, tree=np.array(json.dumps({"format": runner.CACHE_FORMAT, "key": key,
                                             "data": {"eval": "__import__('os')"}})))  # fmt: skip


def _damage_missing_array(path, key):
    np.savez(path, tree=np.array(json.dumps({"format": runner.CACHE_FORMAT, "key": key,
                                             "data": {"array": "a7"}})))  # fmt: skip


def _damage_other_key(path, key):
    runner._write_cache(path, "0" * 16, {"x": 1})


def _damage_not_a_zip(path, key):
    path.write_text("not an npz")


@pytest.mark.parametrize(
    "damage",
    [
        _damage_truncate,
        _damage_unknown_node,
        _damage_missing_array,
        _damage_other_key,
        _damage_not_a_zip,
    ],  # fmt: skip
)
def test_a_cache_file_that_does_not_decode_is_recomputed_with_a_warning(tmp_path, damage):
    calls = []
    module = _check(tmp_path, calls)
    runner.simulation_data(module, "quick", tmp_path / "c")
    (path,) = (tmp_path / "c").glob("*.npz")
    damage(path, runner._cache_key(module, "quick"))
    with pytest.warns(RuntimeWarning, match=f"unreadable validation cache {path}"):
        data, how = runner.simulation_data(module, "quick", tmp_path / "c")
    assert how.startswith("simulated") and calls == ["quick", "quick"]
    assert data["n"] == 2 and _same(runner._read_cache(path, runner._cache_key(module, "quick")),
                                    data)  # fmt: skip


def test_planted_pickles_never_run(tmp_path):
    marker = tmp_path / "pwned"
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_payload(live)))
    assert live.exists(), "the payload would run if unpickled"
    calls = []
    module = _check(tmp_path, calls)
    cache = tmp_path / "c"
    cache.mkdir()
    key = runner._cache_key(module, "quick")
    # the old format, under its old name: never opened
    (cache / f"fake-quick-{key}.pkl").write_bytes(pickle.dumps({"x": _payload(marker)}))
    runner.simulation_data(module, "quick", cache)
    assert calls == ["quick"] and not marker.exists()
    # the new name, a valid tree pointing at an object array (pickled by np.savez)
    path = cache / f"fake-quick-{key}.npz"
    tree = {"format": runner.CACHE_FORMAT, "key": key, "data": {"array": "a0"}}
    np.savez(path, tree=np.array(json.dumps(tree)), a0=np.array([_payload(marker)], dtype=object))
    with pytest.warns(RuntimeWarning, match="unreadable validation cache"):
        runner.simulation_data(module, "quick", cache)
    assert calls == ["quick", "quick"] and not marker.exists()


def test_an_unwritable_cache_warns_and_returns_the_data(tmp_path):
    calls = []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="could not write validation cache"):
        data, how = runner.simulation_data(_check(tmp_path, calls), "quick", blocker / "c")
    assert how == "simulated (not cached)" and data["n"] == 1


def test_default_cache_dir_is_the_users(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSIM_CACHE_DIR", str(tmp_path))
    assert runner.default_cache_dir() == tmp_path / "validation"
    monkeypatch.delenv("FLOWSIM_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runner.default_cache_dir() == tmp_path / "home" / ".cache" / "flowsim" / "validation"


# -- packaging and the command line -----------------------------------------------------------


def test_installed_packages_are_flowsim_and_its_subpackages_only():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "flowsim").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert set(config["packages"]) == subpackages | {"flowsim.validation"}
    assert config["package-dir"] == {"flowsim.validation": "validation"}
    assert "sweeps/*.toml" in config["package-data"]["flowsim.validation"]


def test_no_top_level_validation_package_outside_the_repo(tmp_path):
    code = (
        "import importlib.util, flowsim.validation as v\n"
        "print(v.__name__, [n for n in ('validation', 'derivations', 'benchmarks')"
        " if importlib.util.find_spec(n)])"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.split() == ["flowsim.validation", "[]"]


def test_validate_list_names_every_check_with_sizes_and_summary(capsys):
    assert main(["validate", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(CHECKS)
    for name, line in zip(CHECKS, lines, strict=True):
        source = (REPO / "validation" / f"{name}.py").read_text()
        summary = ast.get_docstring(ast.parse(source)).splitlines()[0]
        assert line.endswith(summary) and "quick" in line and "full" in line
    assert "(sweeps)" in lines[list(CHECKS).index("escape_times")]


def test_validate_help_names_the_checks(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in CHECKS) and "--list" in text
