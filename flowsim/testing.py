"""Helpers for regression tests of theory predictions (pytest).

A prediction checked by the validation suite becomes a regression test in a
line::

    from flowsim.testing import check_prediction

    def test_escape_times():
        check_prediction("escape_times", quick=True)

and a hand-made comparison in another::

    assert_within(measured=t_esc, theory=t_star, rtol=0.01, what="T_esc / T*")
"""

from __future__ import annotations

import math
from pathlib import Path


class PredictionError(AssertionError):
    """A theory prediction did not hold; the message carries the numbers."""


def assert_within(measured, theory, rtol=None, *, atol=0.0, what="value") -> None:
    """Assert ``|measured - theory| <= atol + rtol * |theory|``, with the numbers in the message."""
    measured, theory = float(measured), float(theory)
    if rtol is None and atol == 0.0:
        raise ValueError("give rtol and/or atol")
    bound = atol + (rtol or 0.0) * abs(theory)
    if not (math.isfinite(measured) and abs(measured - theory) <= bound):
        raise PredictionError(
            f"{what}: measured {measured:.6g}, theory {theory:.6g}, "
            f"|difference| {abs(measured - theory):.3g} > allowed {bound:.3g}"
        )


def check_prediction(name: str, *, quick: bool = True, out_dir=None, cache_dir=None):
    """Run validation check ``name`` and raise :class:`PredictionError` unless every
    record passed; returns the records.

    Parameters
    ----------
    name : str
        A check of ``flowsim validate --list``.
    quick : bool
        The quick size (seconds to minutes) rather than the full one.
    out_dir : str or PathLike, optional
        Where the figure is drawn; by default a temporary directory, removed on return.
    cache_dir : str or PathLike, optional
        Simulation cache, by default ``$FLOWSIM_CACHE_DIR/validation``, else
        ``~/.cache/flowsim/validation``; a full-size check run from sweep files keeps its
        result store in ``<cache_dir>/store``.

    Simulation data are cached under a key of the numerics that made them (every source
    file of flowsim, ``NUMERICS_VERSION``, the numerical libraries' versions) and of the
    check, so a second call only re-evaluates and any change to the simulator simulates
    again.  Each record's ``provenance`` says ``"from cache PATH"`` or ``"simulated, cached
    in PATH"`` (also logged at INFO level by ``flowsim.validation._runner``).
    """
    import tempfile

    from flowsim.validation._runner import default_cache_dir, run

    size = "quick" if quick else "full"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sweep = {"store": cache / "store", "progress": False}
    with tempfile.TemporaryDirectory(prefix="flowsim-check-") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp)
        records, _ = run([name], size, out, cache_dir=cache, progress=False, sweep=sweep)
    failed = [r for r in records if not r.passed]
    if failed:
        lines = [f"{r.name}: theory {r.theory}, measured {r.measured} ({r.tolerance})"
                 f"{'; ' + r.note if r.note else ''}" for r in failed]  # fmt: skip
        head = f"{len(failed)} of {len(records)} checks failed (data {records[0].provenance}):\n"
        raise PredictionError(head + "\n".join(lines))
    return records
