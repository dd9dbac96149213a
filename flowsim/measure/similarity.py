"""Cosine similarity between neurons' weight vectors, and its heatmap.

The heatmap of ``D(w_j, w_k) = w_j . w_k / (|w_j| |w_k|)`` over all pairs of
neurons is how [ZZJLZX22] shows condensation: after the initial stage the
matrix, with its rows ordered by direction, is made of blocks of +1 (neurons
on the same orientation) and -1 (neurons on opposite orientations).

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686 (cosine-similarity heatmaps of the input weights).
"""

from __future__ import annotations

import numpy as np

from flowsim.measure._checks import as_matrix, directions

ORDERS = ("cluster", "eigenvector")
"""Orderings of the neurons that :func:`block_order` and :func:`plot_similarity` know."""


def cosine_similarity(W) -> np.ndarray:
    """Cosine similarity between every pair of rows of ``W``.

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron (e.g. its input weight ``w_k``, bias included). A 1D
        array of shape (m,) is read as ``D = 1``.

    Returns
    -------
    C : ndarray, shape (m, m)
        ``C[j, k] = w_j . w_k / (|w_j| |w_k|)``, clipped to [-1, 1]. A row of
        near-zero norm (at most ``1e-12`` times the largest row norm) has no
        direction: its row and column of ``C`` are 0, diagonal included, so
        the result never holds NaN.

    Raises
    ------
    ValueError
        If ``W`` is not 1D or 2D or holds NaN or infinity.

    References
    ----------
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686.
    """
    U, _ = directions(as_matrix(W))
    return np.clip(U @ U.T, -1.0, 1.0)


def block_order(W, method: str = "cluster") -> np.ndarray:
    """An ordering of the rows of ``W`` that puts neurons of one orientation together.

    ``method="cluster"`` (default): the rows with a direction are ordered as the
    leaves of an average-linkage dendrogram
    (:func:`scipy.cluster.hierarchy.linkage`) on the angle between them,
    ``arccos(C[j, k])``; so ``u`` and ``-u`` fall in different blocks, and the
    cosine-similarity matrix reordered by the result shows blocks of +1 and -1.

    ``method="eigenvector"``: the rows are sorted by their entry of the leading
    eigenvector of ``C``, as the heatmaps of [ZZJLZX22] are.  Since
    ``C = U U^T`` for the unit rows ``U``, that entry is the projection of each
    direction on the top principal axis of ``U``: rows of one orientation share
    it, ``u`` and ``-u`` have opposite ones.  Orientations with equal
    projections (e.g. orthogonal to that axis) interleave, and a degenerate top
    eigenvalue makes the axis arbitrary; ``"cluster"`` has neither weakness.

    Rows of near-zero norm come last, in their original order.  The result is
    deterministic for a given ``W``.

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron.
    method : {"cluster", "eigenvector"}
        See above.

    Returns
    -------
    order : ndarray of int, shape (m,)
        A permutation of ``range(m)``: ``cosine_similarity(W)[order][:, order]``
        is the block-ordered matrix.

    References
    ----------
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686.
    """
    if method not in ORDERS:
        raise ValueError(f"method: must be one of {list(ORDERS)}, got {method!r}")
    U, has_direction = directions(as_matrix(W))
    active = np.flatnonzero(has_direction)
    rest = np.flatnonzero(~has_direction)
    if active.size <= 2:
        return np.concatenate([active, rest]).astype(np.intp)
    if method == "eigenvector":
        # leading eigenvector of C = U U^T: U e_1, e_1 the top right singular vector of U
        _, _, vt = np.linalg.svd(U[active], full_matrices=False)
        v = U[active] @ vt[0]
        v = v if v[np.argmax(np.abs(v))] > 0 else -v  # a fixed sign: deterministic
        return np.concatenate([active[np.argsort(-v, kind="stable")], rest]).astype(np.intp)
    angles = _pairwise_angles(U[active])
    from scipy.cluster import hierarchy  # lazy: 0.5 s of import flowsim

    tree = hierarchy.linkage(angles, method="average")
    leaves = hierarchy.leaves_list(tree)
    return np.concatenate([active[leaves], rest]).astype(np.intp)


def _pairwise_angles(U: np.ndarray) -> np.ndarray:
    """Condensed angles between unit rows: ``2 arcsin(|u_j - u_k| / 2)``, accurate near 0."""
    from scipy.spatial.distance import pdist

    chord = pdist(U, metric="euclidean")
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def plot_similarity(W, ax=None, order: bool | str = True, *, cmap: str = "RdBu_r",
                    colorbar: bool = True):  # fmt: skip
    """Draw the cosine-similarity heatmap of the rows of ``W``, as in [ZZJLZX22].

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron (e.g. the input weights with the bias column).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made if omitted.
    order : bool or {"cluster", "eigenvector"}, default True
        Reorder the neurons by :func:`block_order` so that the blocks show:
        ``"cluster"`` (or True) by a dendrogram of their angles,
        ``"eigenvector"`` by the leading eigenvector of the similarity matrix, as
        [ZZJLZX22] do.  With False, neurons keep their index order.
    cmap : str, default "RdBu_r"
        Diverging colormap; the colour scale is fixed to [-1, 1].
    colorbar : bool, default True
        Add a colorbar labelled "cosine similarity".

    Returns
    -------
    ax : matplotlib.axes.Axes

    References
    ----------
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686.
    """
    if order is True:
        order = "cluster"
    if order is not False and order not in ORDERS:
        raise ValueError(f"order: must be True, False or one of {list(ORDERS)}, got {order!r}")
    C = cosine_similarity(W)
    if order:
        perm = block_order(W, order)
        C = C[np.ix_(perm, perm)]
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(4.8, 4.0))
    m = C.shape[0]
    image = ax.imshow(
        C,
        cmap=cmap,
        vmin=-1.0,
        vmax=1.0,
        interpolation="nearest",
        origin="upper",
        extent=(-0.5, m - 0.5, m - 0.5, -0.5),
    )
    label = f"neuron index ({order} order)" if order else "neuron index"
    ax.set_xlabel(label)
    ax.set_ylabel(label)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="cosine similarity")
    return ax
