"""Concurrent processes compiling into one Numba cache (flowsim._numba_cache)."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from numba.core import caching

import flowsim  # noqa: F401 - installs the lock

MODULE = textwrap.dedent(
    """
    import numba

    @numba.njit(cache=True)
    def total(x):
        s = x[0] * 0
        for v in x:
            s += v * v
        return s
    """
)

WORKER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import flowsim._jit  # the lock, as in every flowsim process
    sys.path.insert(0, sys.argv[1])
    import cachedmod
    while not os.path.exists(os.path.join(sys.argv[1], "go")):
        time.sleep(0.001)
    dtype = sys.argv[2]
    x = np.arange(1, 6).astype(dtype)
    assert cachedmod.total(x) == (x * x).sum()
    """
)

CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np
    import flowsim._jit
    sys.path.insert(0, sys.argv[1])
    import cachedmod
    for dtype in sys.argv[2:]:
        x = np.arange(1, 6).astype(dtype)
        assert cachedmod.total(x) == (x * x).sum(), dtype
    stats = cachedmod.total.stats
    print(len(stats.cache_hits), sum(stats.cache_misses.values()))
    """
)

DTYPES = ["int64", "float64", "float32", "int32", "complex128", "int16"]


def test_lock_is_installed():
    assert getattr(caching.IndexDataCacheFile.save, "__flowsim_locked__", False)


def _racing_saves(tmp_path, monkeypatch):
    """Two threads save different keys while reading the index is slowed down."""
    original = caching.IndexDataCacheFile._load_index

    def slow_load(self):
        overloads = original(self)
        time.sleep(0.2)  # widen the read-modify-write window
        return overloads

    monkeypatch.setattr(caching.IndexDataCacheFile, "_load_index", slow_load)
    cache = caching.IndexDataCacheFile(str(tmp_path), "f-1", ("stamp", 1))
    threads = [threading.Thread(target=cache.save, args=(key, key)) for key in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(caching.IndexDataCacheFile, "_load_index", original)
    return {key: cache.load(key) for key in ("a", "b")}


def test_index_read_modify_write_is_serialized(tmp_path, monkeypatch):
    """With the lock both entries survive and each loads its own data."""
    assert _racing_saves(tmp_path, monkeypatch) == {"a": "a", "b": "b"}


def test_without_the_lock_the_same_race_loses_an_entry(tmp_path, monkeypatch):
    """The race the lock exists for (Numba's own save/load, unwrapped)."""
    locked = caching.IndexDataCacheFile.save, caching.IndexDataCacheFile.load
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", locked[0].__wrapped__)
    monkeypatch.setattr(caching.IndexDataCacheFile, "load", locked[1].__wrapped__)
    loaded = _racing_saves(tmp_path, monkeypatch)
    assert loaded != {"a": "a", "b": "b"}  # one entry lost or pointing at the other's data


def test_concurrent_compiles_of_different_signatures_all_land_in_the_index(tmp_path):
    """Six processes compile six signatures of one cached function at the same moment;
    a seventh then finds every one in the cache (unlocked, entries get lost or point at
    another signature's code)."""
    (tmp_path / "cachedmod.py").write_text(MODULE)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), dtype]) for dtype in DTYPES
    ]
    time.sleep(3.0)  # let every worker import numba and reach the barrier
    (tmp_path / "go").write_text("")
    assert [p.wait(timeout=300) for p in procs] == [0] * len(DTYPES)
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path), *DTYPES],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    hits, misses = map(int, out.stdout.split())
    assert (hits, misses) == (len(DTYPES), 0)


KERNEL_RUN = textwrap.dedent(
    """
    import warnings
    import numpy as np
    from flowsim import _codegen

    source = "@jit\\ndef triple_sum(x):\\n    return 3.0 * np.sum(x)\\n"
    module = _codegen.build_module("cachetest", [source], parallel=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = module.triple_sum(np.arange(5.0))
    stats = module.triple_sum.stats
    print(value, len(stats.cache_hits), sum(stats.cache_misses.values()), len(caught))
    for w in caught:
        print(w.message)
    """
)


def _kernel_run(cache_dir):
    env = {**os.environ, "FLOWSIM_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", KERNEL_RUN], capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    first, *warned = out.stdout.splitlines()
    value, hits, misses, n_warnings = first.split()
    return float(value), int(hits), int(misses), int(n_warnings), warned


@pytest.mark.parametrize(("suffix", "keep"), [(".nbc", 0.5), (".nbi", 0.0)])
def test_truncated_cache_file_is_recompiled_not_a_crash(tmp_path, suffix, keep):
    """A cache file cut short (disk full, killed writer) is a miss with a warning naming it;
    the kernel compiles again, gives the right value, and the next process loads the
    repaired cache (in a private FLOWSIM_CACHE_DIR, not the shared one)."""
    assert _kernel_run(tmp_path) == (30.0, 0, 1, 0, [])  # cold: compiled and saved
    assert _kernel_run(tmp_path) == (30.0, 1, 0, 0, [])  # warm: loaded
    files = sorted((tmp_path / "kernels").rglob(f"*triple_sum*{suffix}"))
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[: int(keep * len(data))])
    value, hits, misses, n_warnings, warned = _kernel_run(tmp_path)
    assert (value, hits, misses, n_warnings) == (30.0, 0, 1, 1)
    assert "unreadable Numba cache file" in warned[0] and files[0].name in warned[0]
    assert _kernel_run(tmp_path) == (30.0, 1, 0, 0, [])  # the recompile repaired the cache
