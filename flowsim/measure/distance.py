"""Relative distance of the input weights from their start, and its slope in log m.

[LXMZ21] separate the linear and condensed regimes of wide two-layer nets by
how far the input weights travel, relative to where they started:

    RD(theta_w(t)) = |theta_w(t) - theta_w(0)| / |theta_w(0)|      (Frobenius)

and measure ``S_w``, the slope of ``log RD(theta_w*)`` against ``log m`` over
several widths ``m`` at the end of training: ``S_w < 0`` linear regime,
``S_w ~ 0`` critical, ``S_w > 0`` condensed (docs/theory.md §3).

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural
   networks at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowsim.measure._checks import check_finite


def relative_distance(theta_w_t, theta_w_0):
    """Relative Frobenius distance ``|theta_w(t) - theta_w(0)| / |theta_w(0)|``.

    Parameters
    ----------
    theta_w_t : array_like, shape S or (T,) + S
        Input weights at time t (any shape ``S``, e.g. (m, D)), or a time
        series of them with a leading time axis. When the shape equals that
        of ``theta_w_0`` it is read as one time.
    theta_w_0 : array_like, shape S
        Input weights at t = 0; must not be all zero.

    Returns
    -------
    RD : float or ndarray of shape (T,)
        A float for one time, one value per time for a time series.

    Raises
    ------
    ValueError
        If the shapes do not match, ``theta_w_0`` is zero, or an input holds
        NaN or infinity.

    References
    ----------
    .. [LXMZ21] Luo et al., JMLR 2021, arXiv:2007.07497 (RD).
    """
    current = np.asarray(theta_w_t, dtype=np.float64)
    start = np.asarray(theta_w_0, dtype=np.float64)
    check_finite(current, "theta_w_t")
    check_finite(start, "theta_w_0")
    reference = np.linalg.norm(start.ravel())
    if not reference > 0:
        raise ValueError("theta_w_0 is zero: the relative distance is undefined")
    if current.shape == start.shape:
        return float(np.linalg.norm((current - start).ravel()) / reference)
    if current.ndim == start.ndim + 1 and current.shape[1:] == start.shape:
        diff = (current - start).reshape(current.shape[0], -1)
        return np.linalg.norm(diff, axis=1) / reference
    raise ValueError(
        f"theta_w_t must have shape {start.shape} or (T,) + {start.shape}, got {current.shape}"
    )


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares fit ``log RD = intercept + slope * log m`` (natural logs).

    Attributes
    ----------
    slope : float
        ``S_w``.
    stderr : float
        Standard error of the slope.
    intercept : float
        Intercept in natural log: ``RD ~ exp(intercept) * m**slope``.
    intercept_stderr : float
        Standard error of the intercept.
    rvalue : float
        Pearson correlation of log RD and log m (0 when RD is constant).
    n : int
        Number of (m, RD) points used.
    """

    slope: float
    stderr: float
    intercept: float
    intercept_stderr: float
    rvalue: float
    n: int

    def __post_init__(self):
        if self.n < 3:
            raise ValueError(f"a slope fit needs n >= 3 points, got n={self.n}")


def slope_S_w(widths, RD) -> SlopeFit:
    """Slope ``S_w`` of ``log RD`` against ``log m``, by least squares.

    Parameters
    ----------
    widths : array_like, shape (n,)
        Widths ``m``; positive, at least 3 distinct values (repeated widths,
        e.g. one point per seed, are allowed).
    RD : array_like, shape (n,)
        Relative distances at the end of training, positive.

    Returns
    -------
    SlopeFit
        ``slope`` (= S_w), ``stderr``, ``intercept``, ``intercept_stderr``,
        ``rvalue``, ``n`` from :func:`scipy.stats.linregress` on
        ``(log m, log RD)``. A constant RD gives slope 0 with zero errors.

    Raises
    ------
    ValueError
        If the arrays are not 1D of one length, have fewer than 3 distinct
        widths, or hold non-positive or non-finite values.

    References
    ----------
    .. [LXMZ21] Luo et al., JMLR 2021, arXiv:2007.07497 (S_w and the phase
       diagram).
    """
    m = np.asarray(widths, dtype=np.float64)
    rd = np.asarray(RD, dtype=np.float64)
    if m.ndim != 1 or rd.shape != m.shape:
        raise ValueError(
            f"widths and RD must be 1D arrays of one length, got shapes {m.shape} and {rd.shape}"
        )
    check_finite(m, "widths")
    check_finite(rd, "RD")
    if np.any(m <= 0):
        raise ValueError("widths must be positive")
    if np.any(rd <= 0):
        raise ValueError("RD must be positive (log RD is fitted)")
    if np.unique(m).size < 3:
        raise ValueError(f"need at least 3 distinct widths, got {np.unique(m).size}")
    log_m, log_rd = np.log(m), np.log(rd)
    if np.all(log_rd == log_rd[0]):
        # constant RD (exactly critical): an exact fit, which linregress reports as NaN
        return SlopeFit(0.0, 0.0, float(log_rd[0]), 0.0, 0.0, int(m.size))
    from scipy import stats  # lazy: 0.5 s of import flowsim

    fit = stats.linregress(log_m, log_rd)
    return SlopeFit(
        slope=float(fit.slope),
        stderr=float(fit.stderr),
        intercept=float(fit.intercept),
        intercept_stderr=float(fit.intercept_stderr),
        rvalue=float(fit.rvalue),
        n=int(m.size),
    )
