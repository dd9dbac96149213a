"""Progress lines: redrawn in place on a terminal, a plain line every LOG_INTERVAL s elsewhere.

One small reporter serves :func:`flowsim.simulate` (simulated time, steps and the
method running; no ETA, since the cost of the time still ahead is unknown),
:func:`flowsim.sweep.run_sweep` (runs done of the total, with an ETA from the
rate of the runs finished in this call) and ``flowsim validate`` (checks done,
the one running).  A log file or a pipe gets whole lines, never carriage
returns.
"""

from __future__ import annotations

import math
import sys
import time

LOG_INTERVAL = 30.0
"""Seconds between two lines when the stream is not a terminal (a log file, a pipe)."""
TTY_INTERVAL = 0.1
"""Least seconds between two redraws of the line on a terminal."""


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def clock_text(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of one task, written to ``stream``.

    On a terminal the line is redrawn in place (``\\r``) at most every
    :data:`TTY_INTERVAL` seconds; on anything else a whole line is written at
    most every :data:`LOG_INTERVAL` seconds, and one more at :meth:`close` if
    any was written.

    Parameters
    ----------
    desc : str
        Label that starts every line.
    total : int, optional
        Number of items; with it the line shows ``done/total unit``.
    initial : int
        Items done before this task started (not counted in the rate).
    unit : str
        Name of the items (plural).
    eta : bool
        With ``total``: show the time left, estimated from the rate of the items
        finished since the start.  Only where that rate means something.
    leave : bool
        On a terminal, keep the last line at :meth:`close` (else erase it).
    enabled : bool
        False: write nothing.
    stream : file, optional
        Default: ``sys.stderr`` when the reporter is made.
    interval : float, optional
        Seconds between lines; default by the kind of stream (above).
    start : float, optional
        Start time on ``clock``; default: now.
    clock : callable
        Seconds, monotonic (``time.perf_counter``).
    """

    def __init__(self, desc: str, *, total: int | None = None, initial: int = 0, unit: str = "",
                 eta: bool = False, leave: bool = True, enabled: bool = True, stream=None,
                 interval: float | None = None, start: float | None = None,
                 clock=time.perf_counter):  # fmt: skip
        self.desc = desc
        self.total = total
        self.initial = self.n = int(initial)
        self.unit = unit
        self.eta = eta
        self.leave = leave
        self.status = ""
        self.stream = sys.stderr if stream is None else stream
        self.tty = _is_tty(self.stream)
        if interval is None:
            interval = TTY_INTERVAL if self.tty else LOG_INTERVAL
        self.interval = interval if enabled else math.inf
        self._clock = clock
        self._start = clock() if start is None else start
        # a terminal shows the first update at once; a log waits one interval
        self._last = -math.inf if self.tty and enabled else self._start
        self._width = 0
        self._written = False
        self._closed = False

    def update(self, advance: int = 0, status: str | None = None) -> None:
        """Count ``advance`` more items, set the status text, write if it is time."""
        self.n += advance
        if status is not None:
            self.status = status
        now = self._clock()
        if now - self._last >= self.interval:
            self._write(now)

    def line(self, now: float | None = None) -> str:
        """The text of the progress line at time ``now``."""
        elapsed = (self._clock() if now is None else now) - self._start
        parts = []
        if self.total is not None:
            parts.append(f"{self.n}/{self.total} {self.unit}".rstrip())
            done = self.n - self.initial
            if self.eta and 0 < done and self.n < self.total:
                parts.append(f"ETA {clock_text(elapsed / done * (self.total - self.n))}")
        if self.status:
            parts.append(self.status)
        parts.append(f"elapsed {clock_text(elapsed)}")
        return f"{self.desc}: " + ", ".join(parts)

    def _write(self, now: float) -> None:
        text = self.line(now)
        if self.tty:
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last = now
        self._written = True

    def close(self) -> None:
        """Finish the line (terminal) or write the last state (log, if a line was written)."""
        if self._closed:
            return
        self._closed = True
        if not self._written:
            return
        if not self.tty:
            self._write(self._clock())
        elif self.leave:
            self._write(self._clock())
            self.stream.write("\n")
        else:
            self.stream.write("\r" + " " * self._width + "\r")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
