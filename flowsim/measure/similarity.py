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


def block_order(W) -> np.ndarray:
    """An ordering of the rows of ``W`` that puts neurons of one orientation together.

    The rows with a direction are ordered as the leaves of an average-linkage
    dendrogram (:func:`scipy.cluster.hierarchy.linkage`) on the angle between
    them, ``arccos(C[j, k])``; so ``u`` and ``-u`` fall in different blocks, and
    the cosine-similarity matrix reordered by the result shows blocks of +1
    and -1. Rows of near-zero norm come last, in their original order. The
    result is deterministic for a given ``W``.

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron.

    Returns
    -------
    order : ndarray of int, shape (m,)
        A permutation of ``range(m)``: ``cosine_similarity(W)[order][:, order]``
        is the block-ordered matrix.

    References
    ----------
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686.
    """
    U, has_direction = directions(as_matrix(W))
    active = np.flatnonzero(has_direction)
    rest = np.flatnonzero(~has_direction)
    if active.size <= 2:
        return np.concatenate([active, rest]).astype(np.intp)
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


def plot_similarity(W, ax=None, order: bool = True, *, cmap: str = "RdBu_r", colorbar=True):
    """Draw the cosine-similarity heatmap of the rows of ``W``, as in [ZZJLZX22].

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron (e.g. the input weights with the bias column).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made if omitted.
    order : bool, default True
        Reorder the neurons by :func:`block_order` so that the blocks show.
        With False, neurons keep their index order.
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
    C = cosine_similarity(W)
    if order:
        perm = block_order(W)
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
    label = "neuron index (block order)" if order else "neuron index"
    ax.set_xlabel(label)
    ax.set_ylabel(label)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="cosine similarity")
    return ax
