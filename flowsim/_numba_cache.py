"""Process-safe Numba on-disk cache.

Numba's cache index is read, extended and rewritten without a lock
(``IndexDataCacheFile.save``): two processes compiling different signatures
of one function at once can both give their entry the same data-file name, so
that one signature's index entry points at the other's machine code, and the
next process that loads it crashes.  Sweeps start many workers on one cache
directory at once, so flowsim serializes index updates with an advisory lock
(``fcntl.flock``) on a file beside the index: exclusive to save, shared to load.

Installed by :mod:`flowsim._jit` before any kernel is compiled.  Where the
private API differs (another Numba version) or ``fcntl`` is missing, nothing
is patched.
"""

from __future__ import annotations

import contextlib
import functools

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from numba.core import caching

_INSTALLED = False


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


def install() -> bool:
    """Wrap the cache's save/load in the lock; True when installed."""
    global _INSTALLED
    if _INSTALLED:
        return True
    cls = getattr(caching, "IndexDataCacheFile", None)
    if fcntl is None or cls is None or not hasattr(cls, "save") or not hasattr(cls, "load"):
        return False
    save, load = cls.save, cls.load

    @functools.wraps(save)
    def locked_save(self, key, data):
        with _locked(self._index_path, fcntl.LOCK_EX):
            return save(self, key, data)

    @functools.wraps(load)
    def locked_load(self, key):
        with _locked(self._index_path, fcntl.LOCK_SH):
            return load(self, key)

    locked_save.__flowsim_locked__ = True
    cls.save = locked_save
    cls.load = locked_load
    _INSTALLED = True
    return True
