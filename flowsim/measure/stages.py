"""Split a loss curve into plateaus and descents on a log-time axis.

At small initialization the training loss goes through stages ([CLW24]): an
initial plateau (loss ~ R(0) while the neurons condense), an initial descent,
a secondary plateau at the critical loss of a narrower network, further
descents. On log-log axes a plateau is where the loss barely changes per
decade of time. :func:`loss_stages` finds them:

1. keep ``t > 0`` and ``loss > 0``; work with ``x = log10 t``, ``y = log10 loss``;
2. average ``y`` into bins of a uniform grid in ``x`` (empty bins are
   interpolated), so that dense and sparse recordings weigh alike;
3. smooth with a Gaussian of standard deviation ``smooth`` decades (the ends
   are extended linearly, so a power law keeps its slope up to the ends) and
   differentiate: ``s(x) = d log10 loss / d log10 t``;
4. plateau where ``|s| < slope_tol``, descent elsewhere;
5. merge tiny segments: a descent whose loss range is below ``min_drop``
   decades becomes plateau (noise blips), then a plateau shorter than
   ``min_plateau`` decades of time becomes descent (a pause inside a drop);
   neighbours of one kind are joined.

References
----------
.. [CLW24] Chen, Luo, Wang. On multi-stage loss dynamics in neural networks:
   mechanisms of plateau and descent stages. 2024. arXiv:2410.20119.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flowsim.measure._checks import check_finite

KINDS = ("plateau", "descent")

MIN_GRID = 128
"""Fewest grid points in log t."""

MAX_GRID = 4096
"""Most grid points in log t (denser records are bin-averaged)."""

EDGE_FIT = 3.0
"""The ends are extended by a straight line fitted over this many ``smooth`` widths."""


@dataclass(frozen=True)
class Stage:
    """One stage of a loss curve.

    Attributes
    ----------
    kind : {"plateau", "descent"}
        "descent" covers every stretch where the loss moves (an increase too).
    start, end : float
        Time interval of the stage, ``0 < start <= end``; consecutive stages
        share their boundary.
    loss : float
        Median of the recorded loss over the stage.
    """

    kind: str
    start: float
    end: float
    loss: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (0.0 < self.start <= self.end < math.inf):
            raise ValueError(
                f"need 0 < start <= end < inf, got start={self.start!r}, end={self.end!r}"
            )
        if not (0.0 < self.loss < math.inf):
            raise ValueError(f"loss must be positive and finite, got {self.loss!r}")

    @property
    def decades(self) -> float:
        """Length of the stage in decades of time, ``log10(end / start)``."""
        return math.log10(self.end / self.start)


def loss_stages(
    t,
    loss,
    *,
    slope_tol: float = 0.1,
    smooth: float = 0.1,
    min_plateau: float = 0.3,
    min_drop: float = 0.05,
) -> list[Stage]:
    """Plateaus and descents of a loss curve, on a log-time axis.

    Parameters
    ----------
    t : array_like, shape (N,)
        Times (any order). Points with ``t <= 0`` (e.g. t = 0) are dropped.
    loss : array_like, shape (N,)
        Loss at those times. Points with ``loss <= 0`` are dropped (log scale).
    slope_tol : float, default 0.1
        A plateau is where ``|d log10 loss / d log10 t| < slope_tol`` after
        smoothing (0.1: less than a 26% change of the loss per decade of time).
    smooth : float, default 0.1
        Standard deviation, in decades of t, of the Gaussian smoothing applied
        to ``log10 loss`` before differentiating; 0 turns smoothing off.
    min_plateau : float, default 0.3
        Plateaus shorter than this many decades of t are merged into the
        neighbouring descent.
    min_drop : float, default 0.05
        Descents over which ``log10 loss`` (smoothed) spans less than this
        are merged into the neighbouring plateau.

    Returns
    -------
    list of Stage
        In time order, alternating in kind, covering ``[t_min, t_max]`` of the
        kept points. A constant loss gives one plateau, a power law
        ``t**(-q)`` with ``q > slope_tol`` one descent. The merge rules apply
        only when there are at least two segments.

    Raises
    ------
    ValueError
        If the arrays are not 1D of one length, hold NaN or infinity, fewer
        than 3 points are kept, the kept times span no range, or a parameter
        is negative.

    Notes
    -----
    Boundaries are resolved to about ``smooth`` decades. For a smooth drop of
    ``Delta`` decades of loss, ``log10 loss = Delta (1 + tanh((x - c) / w)) / 2``,
    the exact slope equals ``slope_tol`` at ``x = c -+ w arccosh(sqrt(|Delta| /
    (2 w slope_tol)))``; the smoothing moves the detected boundaries outward
    by about 0.06 decades. Tested on two such drops (``w = 0.15``, 1 -> 0.3
    at t = 1e3, 0.3 -> 1e-3 at t = 1e5, 2000 points over 8 decades): clean,
    the boundaries are within 0.15 decades of those crossings; with 10%
    multiplicative log-normal noise per point, within 0.3 decades, and the
    stage sequence was right for 300 of 300 noise seeds (98 of 100 at 20%
    noise, where edge effects start adding a short stage at an end).

    References
    ----------
    .. [CLW24] Chen, Luo, Wang, arXiv:2410.20119 (initial plateau, initial
       descent, secondary plateau).
    """
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or loss.shape != t.shape:
        raise ValueError(
            f"t and loss must be 1D arrays of one length, got shapes {t.shape} and {loss.shape}"
        )
    check_finite(t, "t")
    check_finite(loss, "loss")
    for name, value in (
        ("slope_tol", slope_tol),
        ("smooth", smooth),
        ("min_plateau", min_plateau),
        ("min_drop", min_drop),
    ):
        if not (0.0 <= value < math.inf):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    keep = (t > 0) & (loss > 0)
    t, loss = t[keep], loss[keep]
    if t.size < 3:
        raise ValueError(f"need at least 3 points with t > 0 and loss > 0, got {t.size}")
    order = np.argsort(t, kind="stable")
    t, loss = t[order], loss[order]
    x, y = np.log10(t), np.log10(loss)
    if not x[-1] > x[0]:
        raise ValueError("the times with t > 0 must span a positive range")

    xg, h, yg = _grid(x, y)
    ys = _smooth(xg, yg, h, smooth)
    slope = np.gradient(ys, h)
    segments = _segments(np.abs(slope) < slope_tol)
    if len(segments) > 1:
        segments = _merge(segments, ys, h, min_plateau, min_drop)

    stages = []
    n = xg.size
    for kind, i0, i1 in segments:
        start = t[0] if i0 == 0 else 10.0 ** (xg[i0] - h / 2)
        end = t[-1] if i1 == n else 10.0 ** (xg[i1] - h / 2)
        if i1 == n:
            inside = (t >= start) & (t <= end)
        else:
            inside = (t >= start) & (t < end)
        if np.any(inside):
            level = float(np.median(loss[inside]))
        else:
            level = float(10.0 ** np.median(yg[i0:i1]))
        stages.append(Stage(KINDS[0] if kind else KINDS[1], float(start), float(end), level))
    return stages


def _grid(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Bin-average ``y`` onto a uniform grid of ``x``; empty bins are interpolated."""
    n = int(np.clip(x.size, MIN_GRID, MAX_GRID))
    h = (x[-1] - x[0]) / (n - 1)
    xg = x[0] + h * np.arange(n)
    bins = np.clip(np.rint((x - x[0]) / h).astype(np.intp), 0, n - 1)
    counts = np.bincount(bins, minlength=n)
    sums = np.bincount(bins, weights=y, minlength=n)
    full = counts > 0
    yg = np.empty(n)
    yg[full] = sums[full] / counts[full]
    yg[~full] = np.interp(xg[~full], xg[full], yg[full])
    return xg, h, yg


def _smooth(xg: np.ndarray, yg: np.ndarray, h: float, smooth: float) -> np.ndarray:
    """Gaussian smoothing in x, with the ends extended by local straight-line fits."""
    if smooth == 0:
        return yg
    sigma = smooth / h
    n = yg.size
    pad = int(math.ceil(4.0 * sigma)) + 1
    window = int(min(n, max(3, math.ceil(EDGE_FIT * sigma))))
    offsets = h * np.arange(1, pad + 1)
    left = np.polyfit(xg[:window], yg[:window], 1)
    right = np.polyfit(xg[-window:], yg[-window:], 1)
    extended = np.concatenate(
        [
            np.polyval(left, xg[0] - offsets[::-1]),
            yg,
            np.polyval(right, xg[-1] + offsets),
        ]
    )
    from scipy.ndimage import gaussian_filter1d  # lazy: 0.3 s of import flowsim

    return gaussian_filter1d(extended, sigma, mode="nearest")[pad : pad + n]


def _segments(flat: np.ndarray) -> list[list]:
    """Runs of equal values: ``[is_plateau, i0, i1)`` on the grid."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return [[bool(flat[i0]), int(i0), int(i1)] for i0, i1 in pairs]


def _join(segments: list[list]) -> list[list]:
    """Join neighbouring segments of one kind."""
    joined = [list(segments[0])]
    for kind, i0, i1 in segments[1:]:
        if kind == joined[-1][0]:
            joined[-1][2] = i1
        else:
            joined.append([kind, i0, i1])
    return joined


def _merge(segments, ys, h, min_plateau, min_drop) -> list[list]:
    n = ys.size
    for segment in segments:
        kind, i0, i1 = segment
        if not kind:
            part = ys[max(i0 - 1, 0) : min(i1 + 1, n)]
            if part.max() - part.min() < min_drop:
                segment[0] = True
    segments = _join(segments)
    if len(segments) > 1:
        for segment in segments:
            kind, i0, i1 = segment
            if kind and (i1 - i0) * h < min_plateau:
                segment[0] = False
        segments = _join(segments)
    return segments


def plot_stages(t, loss, stages, ax=None):
    """Loss curve on log-log axes with its stages shaded (plateaus grey, descents blue).

    Parameters
    ----------
    t, loss : array_like, shape (N,)
        The curve; non-positive values are not drawn.
    stages : list of Stage
        From :func:`loss_stages`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made if omitted.

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.0, 3.5))
    keep = (t > 0) & (loss > 0)
    ax.loglog(t[keep], loss[keep], color="black", lw=1.2, label="loss")
    for stage in stages:
        colour = "0.85" if stage.kind == "plateau" else "tab:blue"
        ax.axvspan(stage.start, stage.end, color=colour, alpha=0.35, lw=0)
        ax.hlines(stage.loss, stage.start, stage.end, colors="tab:red", lw=1.0)
    ax.set_xlabel("time t")
    ax.set_ylabel("loss")
    return ax
