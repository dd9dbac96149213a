"""Process-safe Numba on-disk cache.

Numba's cache index is read, extended and rewritten without a lock
(``IndexDataCacheFile.save``): two processes compiling different signatures
of one function at once can both give their entry the same data-file name, so
that one signature's index entry points at the other's machine code, and the
next process that loads it crashes.  Sweeps start many workers on one cache
directory at once, so flowsim serializes index updates with an advisory lock
(``fcntl.flock``) on a file beside the index: exclusive to save, shared to load.

A cache file that cannot be read back (truncated by a full disk or a killed
writer, or otherwise corrupt) is a cache miss, with a warning naming it:
Numba compiles again and overwrites it, instead of failing on every call.

Installed by :mod:`flowsim._jit` before any kernel is compiled.  Where the
private API differs (another Numba version) or ``fcntl`` is missing, nothing
is patched.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from numba.core import caching

_INSTALLED = False
_WARNED: set[str] = set()


@contextlib.contextmanager
def _locked(index_path: str, mode: int):
    try:
        fh = open(index_path + ".lock", "a")  # noqa: SIM115 - held for the block
    except OSError:
        yield  # read-only cache directory: Numba itself will not write either
        return
    with fh:
        fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unreadable(path: str, exc: BaseException) -> None:
    if path in _WARNED:  # the index is read again by the save that repairs it
        return
    _WARNED.add(path)
    warnings.warn(
        f"flowsim: unreadable Numba cache file {path} ({type(exc).__name__}: {exc}); "
        "compiling again",
        RuntimeWarning,
        stacklevel=3,
    )


def install() -> bool:
    """Wrap the cache's save/load in the lock; True when installed."""
    global _INSTALLED
    if _INSTALLED:
        return True
    cls = getattr(caching, "IndexDataCacheFile", None)
    if fcntl is None or cls is None or not hasattr(cls, "save") or not hasattr(cls, "load"):
        return False
    save, load = cls.save, cls.load
    load_index = getattr(cls, "_load_index", None)
    load_data = getattr(cls, "_load_data", None)
    if load_index is None or load_data is None:
        return False

    @functools.wraps(save)
    def locked_save(self, key, data):
        with _locked(self._index_path, fcntl.LOCK_EX):
            return save(self, key, data)

    @functools.wraps(load)
    def locked_load(self, key):
        with _locked(self._index_path, fcntl.LOCK_SH):
            return load(self, key)

    @functools.wraps(load_index)
    def tolerant_load_index(self):
        try:
            return load_index(self)
        except Exception as exc:  # noqa: BLE001 - whatever unpickling a torn file raises
            _unreadable(self._index_path, exc)
            return {}  # as for a stale index: the next save rewrites it

    @functools.wraps(load_data)
    def tolerant_load_data(self, name):
        try:
            return load_data(self, name)
        except OSError:
            raise  # Numba's load treats a missing data file as a miss itself
        except Exception as exc:  # noqa: BLE001
            _unreadable(self._data_path(name), exc)
            return None  # a miss: compiled again, and saved over the bad file

    locked_save.__flowsim_locked__ = True
    cls.save = locked_save
    cls.load = locked_load
    cls._load_index = tolerant_load_index
    cls._load_data = tolerant_load_data
    _INSTALLED = True
    return True
