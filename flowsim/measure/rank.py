"""Effective rank (Roy & Vetterli 2007) and sigma_2/sigma_1 of a matrix or a stack of them.

Used to follow rank collapse: the condensed input-weight matrix of a
two-layer net tends to rank ~ (number of lines), the second-layer matrix of a
three-layer net to rank one ([CL24]), the normalized key-query matrices of a
transformer to rank one in stage 2 ([CL25]).

References
----------
.. [RV07] Roy, Vetterli. The effective rank: a measure of effective
   dimensionality. EUSIPCO 2007.
.. [CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
   condensation. 2024. arXiv:2402.15958.
.. [CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis
   of transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
"""

from __future__ import annotations

import numpy as np

from flowsim.measure._checks import check_finite


def effective_rank(M):
    """Effective rank ``exp(H(p))``, ``p_i = s_i / sum_j s_j`` over the singular values.

    ``H(p) = -sum_i p_i log p_i`` (natural log, ``0 log 0 = 0``). For a
    matrix with ``k`` equal non-zero singular values and the others zero it
    is ``k``; in general ``1 <= erank <= rank``.

    Parameters
    ----------
    M : array_like, shape (r, c) or (..., r, c)
        The matrix, or a stack of them (e.g. a time series).

    Returns
    -------
    float or ndarray of shape (...)
        The effective rank; 0.0 for the zero matrix or an empty one.

    Raises
    ------
    ValueError
        If ``M`` has fewer than 2 dimensions or holds NaN or infinity.

    References
    ----------
    .. [RV07] Roy, Vetterli, EUSIPCO 2007 (definition).
    .. [CL25] Chen, Luo, arXiv:2510.06954 (rank collapse of key-query matrices).
    """
    s = _singular_values(M)
    total = s.sum(axis=-1, keepdims=True)
    p = np.divide(s, total, out=np.zeros_like(s), where=total > 0)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    erank = np.where(total[..., 0] > 0, np.exp(-np.sum(p * logs, axis=-1)), 0.0)
    return float(erank) if erank.ndim == 0 else erank


def singular_value_ratio(M):
    """``sigma_2 / sigma_1``: how far a matrix is from rank one (0 for rank <= 1).

    Parameters
    ----------
    M : array_like, shape (r, c) or (..., r, c)

    Returns
    -------
    float or ndarray of shape (...)
        0.0 for the zero matrix and for matrices with a single row or column.

    Raises
    ------
    ValueError
        If ``M`` has fewer than 2 dimensions or holds NaN or infinity.

    References
    ----------
    .. [CL25] Chen, Luo, arXiv:2510.06954 (sigma_2/sigma_1 of WQ decays like
       ``exp(-(s_1 - s_2) t)`` in stage 2).
    """
    s = _singular_values(M)
    if s.shape[-1] < 2:
        ratio = np.zeros(s.shape[:-1])
    else:
        top = s[..., 0]
        ratio = np.divide(s[..., 1], top, out=np.zeros_like(top), where=top > 0)
    return float(ratio) if ratio.ndim == 0 else ratio


def _singular_values(M) -> np.ndarray:
    """Singular values, descending, of a matrix or a stack of matrices (checked input)."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim < 2:
        raise ValueError(f"M must be a 2D matrix or a stack (..., r, c), got shape {M.shape}")
    check_finite(M, "M")
    if M.shape[-1] == 0 or M.shape[-2] == 0:
        return np.zeros(M.shape[:-2] + (0,))
    return np.linalg.svd(M, compute_uv=False)


def trajectory_pca(states, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of a trajectory: where a parameter group moves over time.

    Parameters
    ----------
    states : array_like, shape (T, ...)
        The group at T times (e.g. the embedding ``W0`` of every saved state,
        ``[net.unpack(th)["W0"] for th in run.theta]``); each is flattened.
    k : int
        Number of components (at most T and the group's size).

    Returns
    -------
    scores : ndarray, shape (T, k)
        The centred states' coordinates on the first k principal axes (each axis's
        sign fixed so that its largest-magnitude entry is positive).
    explained : ndarray, shape (k,)
        Each component's share of the total variance over time (0 for a trajectory
        that does not move).
    """
    X = np.asarray(states, dtype=np.float64)
    if X.ndim < 2 or X.shape[0] < 2:
        raise ValueError(f"states must have shape (T, ...) with T >= 2, got {X.shape}")
    X = X.reshape(X.shape[0], -1)
    if not np.all(np.isfinite(X)):
        raise ValueError("states contain NaN or infinite values")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(X.shape):
        raise ValueError(f"k must be an integer in [1, {min(X.shape)}], got {k!r}")
    X = X - X.mean(axis=0)
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    signs = np.sign(Vt[np.arange(k), np.argmax(np.abs(Vt[:k]), axis=1)])
    signs[signs == 0] = 1.0
    total = float(np.sum(s**2))
    explained = s[:k] ** 2 / total if total > 0 else np.zeros(k)
    return U[:, :k] * s[:k] * signs, explained
