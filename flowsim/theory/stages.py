"""Loss stages: the initial plateau and how its length scales with the init ([CLW24]).

At small initialization the loss stays near ``R(0)`` while the neurons
condense, and leaves the plateau when the largest neuron reaches an O(1)
norm.  For p = 1 this takes ``(1/lambda) log(1/eps) + O(1)``
(``lambda = |c_1| |v| / alpha``): linear in ``log(1/eps)`` with slope
``1/lambda``; for p >= 2 it takes ``~ eps^-(p-1)`` (docs/theory.md §7, §9).
The prediction itself is :func:`flowsim.theory.blowup.blowup_time`; this
module names it for the plateau and gives the scaling laws.

References
----------
.. [CLW24] Chen, Luo, Wang. On multi-stage loss dynamics in neural networks:
   mechanisms of plateau and descent stages. 2024. arXiv:2410.20119.
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686.
"""

from __future__ import annotations

import math

import numpy as np

from flowsim.theory.blowup import blowup_time
from flowsim.theory.directions import _problem


def plateau_exit_time(net, theta0, X, y, *, delta) -> float:
    """Leading-order time at which the largest neuron's norm reaches ``delta``: the plateau exit.

    For p = 1 (two layers) this is ``(1/lambda) log(delta / r0_eff) + O(eps)``
    (exactly the linear leading-order flow's hitting time; see
    :func:`~flowsim.theory.blowup.blowup_time`), and the full flow leaves the
    plateau ``O(1)`` later.  For p >= 2 and three-layer nets it is the
    blow-up prediction's ``network_to_delta``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta0 : ndarray, shape (P,)
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    delta : float
        Norm of ``|w_k|`` (original units) that ends the plateau, as in
        ``fs.escape(norm=delta)``.

    Returns
    -------
    float
    """
    return float(blowup_time(net, theta0, X, y, delta=delta).network_to_delta)


def plateau_slope(net, X, y) -> float:
    """``1/lambda = alpha / (|c_1| |v|)``: slope of the p = 1 plateau length against ``log(1/eps)``.

    ``v = (1/n) sum_i (y_i [- mean(y)]) x~_i`` (centred when ``sigma(0) != 0``).
    """
    prob = _problem(net, X, y)
    if prob.p != 1 or prob.kinked:
        raise ValueError(
            f"plateau_slope is the p = 1 law; activation {net.activation.name!r} has p = {prob.p}"
        )
    v = prob.y @ prob.Xt / prob.y.size
    lam = abs(prob.c) * float(np.linalg.norm(v)) / net.alpha
    return math.inf if lam == 0 else 1.0 / lam


def escape_time_law(eps, p, *, prefactor=1.0, rate=None, offset=0.0):
    """Scaling law of the escape time with the init scale ``eps``.

    ``p >= 2``: ``prefactor * eps^-(p-1)``; ``p = 1``:
    ``offset + log(1/eps) / rate`` (``rate = lambda`` required).

    Parameters
    ----------
    eps : float or ndarray
        Initialization scales, > 0.
    p : int
        Multiplicity (use ``p = 2`` for the three-layer law ``~ 1/eps``).
    """
    eps = np.asarray(eps, dtype=float)
    if np.any(~np.isfinite(eps)) or np.any(eps <= 0):
        raise ValueError("eps must be positive finite numbers")
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
        raise ValueError(f"p must be a positive integer, got {p!r}")
    if p == 1:
        if rate is None or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"p = 1 needs rate=lambda > 0, got {rate!r}")
        out = offset + np.log(1.0 / eps) / rate
    else:
        out = prefactor * eps ** (-(p - 1.0))
    return float(out) if out.ndim == 0 else out


def fit_escape_exponent(eps, times) -> float:
    """Least-squares slope of ``log T`` against ``log(1/eps)`` (``p - 1`` for a power law)."""
    eps = np.asarray(eps, dtype=float)
    times = np.asarray(times, dtype=float)
    if eps.shape != times.shape or eps.ndim != 1 or eps.size < 2:
        raise ValueError("eps and times must be 1D arrays of the same length >= 2")
    if np.any(eps <= 0) or np.any(times <= 0) or not np.all(np.isfinite(times)):
        raise ValueError("eps and times must be positive and finite")
    return float(np.polyfit(np.log(1.0 / eps), np.log(times), 1)[0])


def fit_plateau_slope(eps, times) -> float:
    """Least-squares slope of ``T`` against ``log(1/eps)`` (``1/lambda`` for p = 1)."""
    eps = np.asarray(eps, dtype=float)
    times = np.asarray(times, dtype=float)
    if eps.shape != times.shape or eps.ndim != 1 or eps.size < 2:
        raise ValueError("eps and times must be 1D arrays of the same length >= 2")
    if np.any(eps <= 0) or not np.all(np.isfinite(times)):
        raise ValueError("eps must be positive and times finite")
    return float(np.polyfit(np.log(1.0 / eps), times, 1)[0])
