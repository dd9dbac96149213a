"""Measurements for the attention stages of [CL25]: alignment, heatmaps, norm changes, subspaces.

- :func:`cosine_with`: cosine of each column (or row) of a matrix with a direction
  (the columns of WV condense on +-v in stage 1).
- :func:`reordered_similarity`: the cosine-similarity matrix of the rows, reordered
  (by default by the leading eigenvector of the similarity matrix, as in [CL25]).
- :func:`relative_change`: relative change of a parameter group (several blocks).
- :func:`singular_subspace`, :func:`principal_angles`: top singular subspaces and
  the principal angles between subspaces (WQ, WK against F's ``p_1``, ``q_1``).

Focus and dilution ([CLXL26], :class:`flowsim.TokenAttention`):

- :func:`last_query_attention`: the last query's attention weights over the positions;
  :func:`attention_on_tokens`: the same summed per token id.
- :func:`attention_entropy`: their entropy, per sequence or averaged with sample weights.
- :func:`phi_alignment`: cosine of ``Phi = W0 WQ WK^T W0^T`` with a matrix (``pi pi^T``).

Effective rank and sigma_2/sigma_1 are in :mod:`flowsim.measure.rank`.

References
----------
.. [CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis
   of transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
.. [CLXL26] Chen, Lin, Xu et al. Focus and dilution: the multi-stage learning process
   of attention. 2026.
.. [KA02] Knyazev, Argentati. Principal angles between subspaces in an
   A-based scalar product. SIAM J. Sci. Comput. 23(6), 2002.
"""

from __future__ import annotations

import numpy as np

from flowsim.measure._checks import NORM_RTOL, as_matrix, check_finite
from flowsim.measure.distance import relative_distance
from flowsim.measure.similarity import ORDERS, block_order, cosine_similarity

AXES = ("columns", "rows")
MEASURES = ("distance", "norm")
SIDES = ("left", "right")


def _stack(M, name: str) -> np.ndarray:
    arr = np.asarray(M, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., r, c), got an array of shape {arr.shape}")
    check_finite(arr, name)
    return arr


def cosine_with(W, direction, *, axis: str = "columns"):
    """Cosine between each column (or row) of ``W`` and ``direction``.

    Parameters
    ----------
    W : array_like, shape (..., r, c)
        A matrix or a stack (e.g. a time series).
    direction : array_like, shape (r,) for columns, (c,) for rows
        Non-zero.
    axis : {"columns", "rows"}

    Returns
    -------
    ndarray, shape (..., c) or (..., r)
        In [-1, 1]; 0 for a column of near-zero norm (at most ``NORM_RTOL`` times the
        largest in its matrix).
    """
    if axis not in AXES:
        raise ValueError(f"axis: must be one of {list(AXES)}, got {axis!r}")
    W = _stack(W, "W")
    u = np.asarray(direction, dtype=np.float64)
    check_finite(u, "direction")
    if axis == "rows":
        W = np.swapaxes(W, -1, -2)
    if u.shape != (W.shape[-2],):
        raise ValueError(f"direction must have shape ({W.shape[-2]},) for {axis}, got {u.shape}")
    unorm = np.linalg.norm(u)
    if not unorm > 0:
        raise ValueError("direction is zero")
    norms = np.linalg.norm(W, axis=-2)
    largest = norms.max(axis=-1, keepdims=True, initial=0.0)
    ok = (norms > NORM_RTOL * largest) & (norms > 0)
    dots = np.einsum("...rc,r->...c", W, u / unorm)
    return np.clip(np.divide(dots, norms, out=np.zeros_like(dots), where=ok), -1.0, 1.0)


def reordered_similarity(W, order="eigenvector") -> tuple[np.ndarray, np.ndarray]:
    """The cosine-similarity matrix of the rows of ``W``, reordered to show blocks.

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron or token direction (e.g. rows of WV, W1, WQ).
    order : {"eigenvector", "cluster"} or array_like of int, shape (m,)
        ``"eigenvector"`` (default, as [CL25]): by the entries of the leading
        eigenvector of the similarity matrix; ``"cluster"``: dendrogram order
        (see :func:`flowsim.measure.block_order`); or an explicit permutation, e.g.
        the order of a later snapshot to draw every snapshot alike.

    Returns
    -------
    C : ndarray, shape (m, m)
        ``cosine_similarity(W)[perm][:, perm]``.
    perm : ndarray of int, shape (m,)
    """
    W = as_matrix(W)
    m = W.shape[0]
    if isinstance(order, str):
        if order not in ORDERS:
            raise ValueError(
                f"order: must be one of {list(ORDERS)} or a permutation, got {order!r}"
            )
        perm = block_order(W, order)
    else:
        perm = np.asarray(order)
        if perm.shape != (m,) or not np.array_equal(np.sort(perm), np.arange(m)):
            raise ValueError(f"order: must be a permutation of range({m}), got {order!r}")
        perm = perm.astype(np.intp)
    C = cosine_similarity(W)
    return C[np.ix_(perm, perm)], perm


def relative_change(group_t, group_0, *, measure: str = "distance"):
    """Relative change of a parameter group (one or several blocks) from its start.

    ``measure="distance"``: ``|theta_g(t) - theta_g(0)| / |theta_g(0)|`` (Frobenius
    over all blocks; :func:`flowsim.measure.relative_distance` on the concatenation).
    ``measure="norm"``: ``|theta_g(t)| / |theta_g(0)| - 1``, the change of the size.

    Parameters
    ----------
    group_t : sequence of array_like
        The blocks at time t, each of shape ``S_k`` or ``(T,) + S_k`` (a time series).
    group_0 : sequence of array_like
        The blocks at t = 0, shapes ``S_k``; not all zero.
    measure : {"distance", "norm"}

    Returns
    -------
    float or ndarray of shape (T,)
    """
    if measure not in MEASURES:
        raise ValueError(f"measure: must be one of {list(MEASURES)}, got {measure!r}")
    if isinstance(group_t, np.ndarray) or isinstance(group_0, np.ndarray):
        raise ValueError("group_t, group_0: pass sequences of blocks, e.g. [WQ, WK]")
    if len(group_t) != len(group_0) or not group_0:
        raise ValueError(
            f"group_t and group_0 must list the same blocks, got {len(group_t)} and {len(group_0)}"
        )
    starts = [np.asarray(b, dtype=np.float64) for b in group_0]
    blocks = [np.asarray(b, dtype=np.float64) for b in group_t]
    series = blocks[0].shape != starts[0].shape
    lead = blocks[0].shape[:1] if series else ()
    for k, (b, b0) in enumerate(zip(blocks, starts, strict=True)):
        if b.shape != lead + b0.shape:
            raise ValueError(f"group_t[{k}] must have shape {lead + b0.shape}, got {b.shape}")
    now = np.concatenate([b.reshape(lead + (-1,)) for b in blocks], axis=-1)
    start = np.concatenate([b0.ravel() for b0 in starts])
    if measure == "distance":
        return relative_distance(now, start)
    check_finite(now, "group_t")
    check_finite(start, "group_0")
    reference = np.linalg.norm(start)
    if not reference > 0:
        raise ValueError("group_0 is zero: the relative change is undefined")
    out = np.linalg.norm(now, axis=-1) / reference - 1.0
    return float(out) if out.ndim == 0 else out


def singular_subspace(M, k: int = 1, *, side: str = "left") -> np.ndarray:
    """Orthonormal basis of the top-``k`` left (column) or right (row) singular subspace.

    Parameters
    ----------
    M : array_like, shape (..., r, c)
    k : int
        1 <= k <= min(r, c).
    side : {"left", "right"}

    Returns
    -------
    ndarray, shape (..., r, k) or (..., c, k)
    """
    if side not in SIDES:
        raise ValueError(f"side: must be one of {list(SIDES)}, got {side!r}")
    M = _stack(M, "M")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= min(M.shape[-2:])):
        raise ValueError(f"k must be an integer in [1, {min(M.shape[-2:])}], got {k!r}")
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U[..., :, :k] if side == "left" else np.swapaxes(Vt[..., :k, :], -1, -2)


def principal_angles(A, B) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of ``A`` and ``B``.

    Cosines from the SVD of ``Q_A^T Q_B`` and, for angles below pi/4, sines from the
    SVD of ``(I - Q_A Q_A^T) Q_B`` ([KA02]), so small angles are accurate.

    Parameters
    ----------
    A : array_like, shape (..., n, p)
    B : array_like, shape (..., n, q)
        Columns spanning each subspace (full column rank); leading axes broadcast.

    Returns
    -------
    ndarray, shape (..., min(p, q))
    """
    A, B = _stack(A, "A"), _stack(B, "B")
    if A.shape[-2] != B.shape[-2]:
        raise ValueError(f"A and B must have the same number of rows, got {A.shape} and {B.shape}")
    QA, _ = np.linalg.qr(A)
    QB, _ = np.linalg.qr(B)
    if QA.shape[-1] < QB.shape[-1]:
        QA, QB = QB, QA
    cosines = np.linalg.svd(np.swapaxes(QA, -1, -2) @ QB, compute_uv=False)  # descending
    angles = np.arccos(np.clip(cosines, -1.0, 1.0))
    residual = QB - QA @ (np.swapaxes(QA, -1, -2) @ QB)
    sines = np.linalg.svd(residual, compute_uv=False)[..., ::-1]  # ascending: pairs with cosines
    small = np.arcsin(np.clip(sines, 0.0, 1.0))
    return np.where(cosines**2 > 0.5, small, angles)


# -- focus and dilution ([CLXL26]) -------------------------------------------------------------


def last_query_attention(net, theta, ids) -> np.ndarray:
    """Attention weights of the last query of each sequence over its s positions.

    Parameters
    ----------
    net : flowsim.TokenAttention
    theta : array_like, shape (P,) or (k, P)
        Parameters in original units (one state or a time series of them).
    ids : array_like of int, shape (n, s)
        Token ids.

    Returns
    -------
    ndarray, shape (n, s) or (k, n, s)
        ``softmax_j(e_s WQ WK^T e_j^T [/ sqrt(m)])``, rows summing to 1.
    """
    ids = net._ids(ids).astype(np.int64)
    theta = np.asarray(theta, dtype=np.float64)
    single = theta.ndim == 1
    p = net.unpack(np.atleast_2d(theta))
    check_finite(theta, "theta")
    E = np.take(p["W0"], ids, axis=1)  # (k, n, s, m)
    M = p["WQ"] @ np.swapaxes(p["WK"], 1, 2)  # (k, m, m)
    r = np.einsum("knm,kml->knl", E[:, :, -1, :], M)  # the last query row e_s M
    z = np.einsum("knl,knsl->kns", r, E)
    if net.scaled:
        z = z / np.sqrt(net.m)
    z = z - z.max(axis=-1, keepdims=True)
    a = np.exp(z)
    a /= a.sum(axis=-1, keepdims=True)
    return a[0] if single else a


def attention_on_tokens(weights, ids, vocabulary: int) -> np.ndarray:
    """Attention mass on each token id: ``out[..., i, v] = sum_j weights[..., i, j] [x_ij = v]``.

    Parameters
    ----------
    weights : array_like, shape (..., n, s)
        Attention weights (:func:`last_query_attention`).
    ids : array_like of int, shape (n, s)
    vocabulary : int

    Returns
    -------
    ndarray, shape (..., n, V)
    """
    weights = np.asarray(weights, dtype=np.float64)
    ids = np.asarray(ids)
    if ids.ndim != 2 or weights.shape[-2:] != ids.shape:
        raise ValueError(f"weights (..., n, s) must match ids (n, s): {weights.shape} and "
                         f"{ids.shape}")  # fmt: skip
    onehot = np.eye(int(vocabulary))[ids.astype(np.int64)]  # (n, s, V)
    return np.einsum("...ns,nsv->...nv", weights, onehot)


def attention_entropy(weights, sample_weights=None):
    """Entropy ``-sum_j a_j log a_j`` (natural log) of each attention row, or their
    weighted mean.

    Parameters
    ----------
    weights : array_like, shape (..., n, s)
    sample_weights : array_like, shape (n,), optional
        Nonnegative; the result is then ``sum_i w_i H_i / sum_i w_i`` (shape (...)).

    Returns
    -------
    ndarray, shape (..., n), or float / ndarray of shape (...) with ``sample_weights``
        Between 0 (one position) and ``log s`` (uniform).
    """
    a = np.asarray(weights, dtype=np.float64)
    check_finite(a, "weights")
    logs = np.log(a, out=np.zeros_like(a), where=a > 0)
    H = -np.sum(a * logs, axis=-1)
    if sample_weights is None:
        return H
    w = np.asarray(sample_weights, dtype=np.float64)
    if w.shape != H.shape[-1:] or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"sample_weights must be ({H.shape[-1]},), >= 0, with a positive sum")
    out = H @ (w / w.sum())
    return float(out) if out.ndim == 0 else out


def phi_alignment(W0, WQ, WK, target) -> np.ndarray:
    """Cosine (Frobenius) of ``Phi = W0 WQ WK^T W0^T`` with ``target`` (e.g. ``pi pi^T``).

    Parameters
    ----------
    W0 : array_like, shape (..., V, m)
    WQ, WK : array_like, shape (..., m, m)
    target : array_like, shape (V, V)

    Returns
    -------
    float or ndarray of shape (...)
        In [-1, 1], signed (+1: ``Phi`` a positive multiple of ``target``); 0 where
        ``Phi`` is zero.
    """
    W0 = _stack(W0, "W0")
    WQ = _stack(WQ, "WQ")
    WK = _stack(WK, "WK")
    target = as_matrix(target, "target")
    Phi = W0 @ WQ @ np.swapaxes(WK, -1, -2) @ np.swapaxes(W0, -1, -2)
    if Phi.shape[-2:] != target.shape:
        raise ValueError(f"target must have shape {Phi.shape[-2:]}, got {target.shape}")
    dots = np.sum(Phi * target, axis=(-2, -1))
    norms = np.linalg.norm(Phi, axis=(-2, -1)) * np.linalg.norm(target)
    out = np.clip(np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0), -1.0, 1.0)
    return float(out) if out.ndim == 0 else out
