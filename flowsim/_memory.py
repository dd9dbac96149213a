"""The memory limit that sizes are checked against before anything is allocated.

A config, a data set or a ``simulate`` call whose estimated memory exceeds
:func:`memory_limit` is refused with a message that names the field, its
value, the estimate and the limit, instead of dying in NumPy (or in the
kernel's out-of-memory killer) after the allocation started.  The limit is
``$FLOWSIM_MAX_MEMORY`` (bytes, or a number with a K, M, G or T suffix in
binary units: ``16G``), by default half the physical memory (12 GiB on a
24 GiB machine), or 8 GiB where the physical memory is not known.
"""

from __future__ import annotations

import os
import re

MEMORY_ENV = "FLOWSIM_MAX_MEMORY"
DEFAULT_FRACTION = 0.5
"""Default limit: this fraction of the physical memory."""
FALLBACK_LIMIT = 8 * 2**30
"""Default limit where the physical memory is not known."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_limit() -> int:
    """Bytes a single run, data set or sweep expansion may be estimated to need."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        match = _SIZE.match(text)
        if not match:
            raise ValueError(
                f"{MEMORY_ENV}: must be a number of bytes, optionally with a K, M, G or T "
                f"suffix (16G), got {text!r}"
            )
        return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return FALLBACK_LIMIT
    return int(DEFAULT_FRACTION * physical) if physical > 0 else FALLBACK_LIMIT


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``12 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def over_limit(nbytes: float, what: str) -> str | None:
    """None when ``nbytes`` fits the limit, else the reason (``what`` says what needs it)."""
    limit = memory_limit()
    if nbytes <= limit:
        return None
    return (
        f"{what} need an estimated {format_bytes(nbytes)}, above the memory limit "
        f"{format_bytes(limit)} (default half the physical memory; set {MEMORY_ENV} to change it)"
    )
