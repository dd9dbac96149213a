"""Wasserstein-1 distance between the amplitude distributions of the two layers.

[CLW24] follow the fine-scale evolution across loss stages of the
distributions of output-weight amplitudes ``|a_k|`` and input-weight
amplitudes ``|w_k|`` through their Wasserstein distance. For ReLU,
``a_k^2 - |w_k|^2`` is conserved [DHL18], so from a balanced start the
distance stays 0; at small initialization the two distributions start apart
and are pulled together as neurons grow (docs/theory.md §9).

References
----------
.. [CLW24] Chen, Luo, Wang. On multi-stage loss dynamics in neural networks:
   mechanisms of plateau and descent stages. 2024. arXiv:2410.20119.
.. [DHL18] Du, Hu, Lee. Algorithmic regularization in learning deep
   homogeneous models. NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flowsim.measure._checks import as_matrix, check_finite


def amplitude_wasserstein(a, W=None) -> float:
    """W1 distance between the empirical distributions of ``|a_k|`` and ``|w_k|``.

    Parameters
    ----------
    a : array_like, shape (m,), or mapping
        Output weights ``a_k``; or a mapping with keys ``"a"`` and ``"W"``
        (the output of ``net.unpack(theta)``), in which case ``W`` is omitted.
    W : array_like, shape (m, D), optional
        Input weights, one row per neuron (bias component included when the
        net has one: ``|w_k|`` is the full row norm). A 1D array is read as
        ``D = 1``.

    Returns
    -------
    float
        ``W1 = int |F_a(s) - F_w(s)| ds`` between the empirical CDFs of
        ``{|a_k|}`` and ``{|w_k|}`` (:func:`scipy.stats.wasserstein_distance`).
        It has the units of the weights: pass normalized or raw parameters
        consistently.

    Raises
    ------
    ValueError
        If ``W`` is missing, ``m = 0``, the numbers of neurons differ, or an
        input holds NaN or infinity.

    References
    ----------
    .. [CLW24] Chen, Luo, Wang, arXiv:2410.20119 (Wasserstein distance of the
       amplitude distributions across stages).
    """
    if isinstance(a, Mapping):
        if W is not None:
            raise ValueError("pass either a mapping with 'a' and 'W', or the arrays a and W")
        try:
            a, W = a["a"], a["W"]
        except KeyError:
            raise ValueError("the parameter mapping must have keys 'a' and 'W'") from None
    if W is None:
        raise ValueError("W is missing: call amplitude_wasserstein(a, W) or (params)")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"a must have shape (m,), got {a.shape}")
    check_finite(a, "a")
    W = as_matrix(W)
    if W.shape[0] != a.size:
        raise ValueError(f"a has {a.size} neurons but W has {W.shape[0]} rows")
    if a.size == 0:
        raise ValueError("no neurons (m = 0): the distance is undefined")
    from scipy import stats  # lazy: 0.5 s of import flowsim

    return float(stats.wasserstein_distance(np.abs(a), np.linalg.norm(W, axis=1)))
