"""Condensed orientations: group the neurons' directions on the sphere.

Condensation ([ZZJLZX22], [LXMZ21]) means that the input weights of the
neurons that matter point along a few isolated orientations. :func:`clusters`
counts them: it takes the directions ``u_k = w_k / |w_k|`` of the neurons with
non-negligible weight (by default ``|w_k|``; typically ``|a_k| |w_k|``, the
amplitude ``A_k`` of the seed slides) and groups them by angle (mean shift on
the sphere, then agglomerative clustering of the end points). ``u`` and ``-u``
are distinct orientations; the number of *lines* merges antipodal
orientations, which is what the embedding principle counts for an odd
activation ([CLW24], docs/theory.md §9).

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686.
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural
   networks at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497.
.. [CLW24] Chen, Luo, Wang. On multi-stage loss dynamics in neural networks:
   mechanisms of plateau and descent stages. 2024. arXiv:2410.20119.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowsim.measure._checks import as_matrix, check_finite, directions, row_norms
from flowsim.measure.similarity import _pairwise_angles

MAX_DIRECT_POINTS = 3000
"""Above this many counted neurons, near-identical directions are pre-grouped first."""

PREGROUP_FRACTION = 0.1
"""Pre-grouping radius as a fraction of the angle tolerance (doubled, up to 1/2, while
more than ``MAX_DIRECT_POINTS`` groups remain)."""

MEAN_SHIFT_MAX_ITER = 500
"""Most mean-shift sweeps (flat kernels stop after a few; 2-10 in the tests)."""

MEAN_SHIFT_XTOL = 1e-12
"""Mean shift stops when no direction moves by more than this (chord length)."""

_CHUNK = 1024


@dataclass(frozen=True, eq=False)
class Clusters:
    """Orientations found among the neurons' directions (see :func:`clusters`).

    Attributes
    ----------
    count : int
        Number of orientations (``u`` and ``-u`` count as two).
    lines : int
        Number of lines: orientations whose centers are antipodal within the
        tolerance are merged (``lines <= count``).
    labels : ndarray of int, shape (m,)
        Orientation of each neuron, ``0 .. count-1`` in order of decreasing
        mass; ``-1`` for ignored neurons (negligible weight or zero row).
    centers : ndarray, shape (count, D)
        Unit vectors: the weight-averaged direction of each orientation.
    mass : ndarray, shape (count,)
        Total weight of each orientation, in decreasing order.
    line_labels : ndarray of int, shape (count,)
        Line of each orientation, ``0 .. lines-1`` in order of first appearance.
    tolerance : float
        The angle tolerance used, in degrees.
    """

    count: int
    lines: int
    labels: np.ndarray
    centers: np.ndarray
    mass: np.ndarray
    line_labels: np.ndarray
    tolerance: float

    def __post_init__(self):
        if self.count < 0 or self.lines < 0 or self.lines > self.count:
            raise ValueError(
                f"need 0 <= lines <= count, got count={self.count}, lines={self.lines}"
            )
        if self.centers.ndim != 2 or self.centers.shape[0] != self.count:
            raise ValueError(
                f"centers must have shape (count, D) = ({self.count}, D), got {self.centers.shape}"
            )
        for name in ("mass", "line_labels"):
            if getattr(self, name).shape != (self.count,):
                raise ValueError(
                    f"{name} must have shape (count,) = ({self.count},), "
                    f"got {getattr(self, name).shape}"
                )
        if self.labels.ndim != 1 or (self.labels.size and self.labels.max() >= self.count):
            raise ValueError(f"labels must be a 1D array with values < count = {self.count}")
        for name in ("labels", "centers", "mass", "line_labels"):
            getattr(self, name).flags.writeable = False

    @property
    def fractions(self) -> np.ndarray:
        """Share of the total counted weight on each orientation, shape (count,)."""
        total = self.mass.sum()
        return self.mass / total if total > 0 else self.mass.copy()

    def __repr__(self) -> str:
        return (
            f"Clusters(count={self.count}, lines={self.lines}, "
            f"mass={np.array2string(self.mass, precision=3)}, tolerance={self.tolerance:g})"
        )


def clusters(
    W,
    *,
    weights=None,
    angle_tol_deg: float = 10.0,
    min_mass: float = 0.01,
) -> Clusters:
    """Group the directions of the non-negligible neurons into orientations.

    Algorithm (deterministic):

    1. Neuron ``k`` counts if its weight is positive, at least
       ``min_mass * max(weights)``, and its row of ``W`` is not (near-)zero;
       the others get label -1.
    2. The counted directions ``u_k = W[k] / |W[k]|`` are put in a canonical
       (lexicographic) order, so that the result does not depend on the order
       of the rows.
    3. Mean shift on the sphere with a flat kernel of radius ``angle_tol_deg``:
       every direction moves to the weighted mean direction of the counted
       neurons within the tolerance of it, until nothing moves. Neurons of one
       orientation, stragglers on its rim included, end on one point.
    4. The end points are clustered by average linkage
       (:func:`scipy.cluster.hierarchy.linkage`, ``method="average"``) on the
       angle between them, cut at ``angle_tol_deg``.
    5. Orientations are sorted by mass (sum of weights), ties by position;
       centers are the weight-averaged unit vectors of their neurons.
    6. Two orientations lie on one line when the angle between one center and
       the opposite of the other is at most the tolerance (connected
       components of that relation).

    With more than ``MAX_DIRECT_POINTS`` counted neurons, directions within
    ``PREGROUP_FRACTION * angle_tol_deg`` of a heavier neuron are first
    pre-grouped (greedy, in order of decreasing weight; the radius doubles,
    up to half the tolerance, while too many groups remain) and steps 3-4 run
    on the weighted group centers; memory is O(n^2) in the number of groups.

    Robustness (tested): with every neuron within 6 degrees of its
    orientation's center (rotation angles drawn from N(0, (2 deg)^2),
    truncated at 3 sigma) and orientations more than 40 degrees apart, the
    count is the same for **every angle_tol_deg in [5, 25] degrees** (200 of
    200 random sets of 3 orientations in D = 3, 100 neurons each). In general
    the count is stable for tolerances between the largest gap inside an
    orientation and the smallest angle between orientations. A lone neuron
    further than the tolerance from every other neuron is an orientation of
    its own (untruncated Gaussian noise made such an outlier at tolerance 5
    in 3 of 200 sets); neurons spread between orientations (in transit) add
    orientations, about one per tolerance of arc: raise ``min_mass`` to count
    only the condensed, heavy neurons.

    Parameters
    ----------
    W : array_like, shape (m, D)
        One row per neuron: its input weight ``w_k`` (with the bias component
        when the net has a bias). A 1D array is read as ``D = 1``, where the
        only orientations are +1 and -1.
    weights : array_like, shape (m,), optional
        Non-negative importance of each neuron. Default: the row norms
        ``|w_k|``; the usual choice is ``|a_k| |w_k|``.
    angle_tol_deg : float, default 10.0
        Radius of the mean-shift kernel and cut of the dendrogram, in
        degrees; must be in (0, 90).
    min_mass : float, default 0.01
        Neurons whose weight is below ``min_mass * max(weights)`` are
        ignored; in [0, 1].

    Returns
    -------
    Clusters
        ``count``, ``lines``, ``labels`` (m,), ``centers`` (count, D), ``mass``
        (count,), ``line_labels`` (count,), ``tolerance``. With no counted
        neuron (m = 0, all-zero ``W`` or weights) ``count = lines = 0``.

    Raises
    ------
    ValueError
        If ``W`` or ``weights`` holds NaN or infinity, ``weights`` has the
        wrong shape or a negative entry, or a parameter is out of range.

    References
    ----------
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686 (condensation
       onto isolated orientations at small initialization).
    .. [LXMZ21] Luo et al., JMLR 2021, arXiv:2007.07497 (the condensed regime).
    .. [CLW24] Chen, Luo, Wang, arXiv:2410.20119 (embedding principle: the
       condensed net acts as a net of width ``lines`` for odd activations).
    """
    W = as_matrix(W)
    m, D = W.shape
    tol_deg = float(angle_tol_deg)
    if not (0.0 < tol_deg < 90.0):
        raise ValueError(f"angle_tol_deg must be in (0, 90) degrees, got {angle_tol_deg!r}")
    min_mass = float(min_mass)
    if not (0.0 <= min_mass <= 1.0):
        raise ValueError(f"min_mass must be in [0, 1], got {min_mass!r}")
    if weights is None:
        weights = row_norms(W)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (m,):
            raise ValueError(f"weights must have shape (m,) = ({m},), got {weights.shape}")
        check_finite(weights, "weights")
        if np.any(weights < 0):
            raise ValueError("weights must be non-negative")

    U, has_direction = directions(W)
    labels = np.full(m, -1, dtype=np.intp)
    if m == 0 or not np.any(weights > 0):
        return _empty(labels, D, tol_deg)
    active = has_direction & (weights > 0) & (weights >= min_mass * weights.max())
    index = np.flatnonzero(active)
    if index.size == 0:
        return _empty(labels, D, tol_deg)

    # canonical order: lexicographic in (u_1, ..., u_D, weight)
    keys = np.column_stack([U[index], weights[index]])
    index = index[np.lexsort(keys.T[::-1])]
    u, w = U[index], weights[index]
    tol = np.deg2rad(tol_deg)

    raw = _cluster_directions(u, w / w.max(), tol)  # relative weights: no overflow
    n_clusters = int(raw.max()) + 1
    mass = np.bincount(raw, weights=w, minlength=n_clusters)
    sums = np.zeros((n_clusters, D))
    np.add.at(sums, raw, w[:, None] * u)
    # decreasing mass; ties by the canonical position of the first member
    first = np.full(n_clusters, u.shape[0])
    np.minimum.at(first, raw, np.arange(u.shape[0]))
    rank = np.lexsort((first, -mass))
    relabel = np.empty(n_clusters, dtype=np.intp)
    relabel[rank] = np.arange(n_clusters)
    labels[index] = relabel[raw]
    mass = mass[rank]
    centers = _normalize_centers(sums[rank], u, w, relabel[raw])
    line_labels = _line_labels(centers, tol)
    return Clusters(
        count=n_clusters,
        lines=int(line_labels.max()) + 1,
        labels=labels,
        centers=centers,
        mass=mass,
        line_labels=line_labels,
        tolerance=tol_deg,
    )


def _empty(labels: np.ndarray, D: int, tol_deg: float) -> Clusters:
    return Clusters(
        count=0,
        lines=0,
        labels=labels,
        centers=np.zeros((0, D)),
        mass=np.zeros(0),
        line_labels=np.zeros(0, dtype=np.intp),
        tolerance=tol_deg,
    )


def _cluster_directions(u: np.ndarray, w: np.ndarray, tol: float) -> np.ndarray:
    """Labels ``0..K-1`` of unit rows ``u`` (n, D): mean shift, then average linkage at ``tol``."""
    n = u.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.intp)
    if n > MAX_DIRECT_POINTS:
        radius = PREGROUP_FRACTION * tol
        while True:
            group = _pregroup(u, w, radius)
            n_groups = int(group.max()) + 1
            if n_groups <= MAX_DIRECT_POINTS or radius >= tol / 2:
                break
            radius = min(2.0 * radius, tol / 2)
        if n_groups < n:
            sums = np.zeros((n_groups, u.shape[1]))
            np.add.at(sums, group, w[:, None] * u)
            group_weights = np.bincount(group, weights=w, minlength=n_groups)
            group_u = _normalize_centers(sums, u, w, group)
            return _cluster_directions(group_u, group_weights, tol)[group]
    modes = _mean_shift(u, w, tol)
    from scipy.cluster import hierarchy  # lazy: 0.5 s of import flowsim

    tree = hierarchy.linkage(_pairwise_angles(modes), method="average")
    flat = hierarchy.fcluster(tree, t=tol, criterion="distance")
    _, raw = np.unique(flat, return_inverse=True)
    return raw.astype(np.intp)


def _mean_shift(u: np.ndarray, w: np.ndarray, tol: float) -> np.ndarray:
    """Move every direction to the weighted mean direction of the ``u`` within ``tol`` of it.

    Flat-kernel mean shift on the sphere, started at the data, until no point
    moves by more than ``MEAN_SHIFT_XTOL`` (or ``MEAN_SHIFT_MAX_ITER`` sweeps).
    The cap has radius < 90 degrees, so the mean never vanishes, and the new
    point ``c/|c|`` keeps a data point in its cap: with ``c = sum_s l_s u_s``
    over the cap, ``sum_s l_s (c . u_s) = |c|^2``, so some ``u_s`` has
    ``(c/|c|) . u_s >= |c| >= y . c >= cos(tol)``.
    """
    y = u.copy()
    cos_tol = np.cos(tol)
    for _ in range(MEAN_SHIFT_MAX_ITER):
        new = np.empty_like(y)
        for s in range(0, y.shape[0], _CHUNK):
            kernel = np.where(y[s : s + _CHUNK] @ u.T >= cos_tol, w[None, :], 0.0)
            new[s : s + _CHUNK] = kernel @ u
        norms = np.linalg.norm(new, axis=1)
        empty = norms == 0  # cannot happen in exact arithmetic (see above); keep the point
        new[empty], norms[empty] = y[empty], 1.0
        new /= norms[:, None]
        moved = np.max(np.linalg.norm(new - y, axis=1))
        y = new
        if moved <= MEAN_SHIFT_XTOL:
            break
    return y


def _pregroup(u: np.ndarray, w: np.ndarray, radius: float) -> np.ndarray:
    """Greedy leader grouping: the heaviest unassigned neuron takes all within ``radius``."""
    n = u.shape[0]
    group = np.full(n, -1, dtype=np.intp)
    order = np.argsort(-w, kind="stable")
    cos_radius = np.cos(radius)
    g = 0
    for leader in order:
        if group[leader] >= 0:
            continue
        free = np.flatnonzero(group < 0)
        close = free[u[free] @ u[leader] >= cos_radius]
        group[close] = g
        group[leader] = g
        g += 1
    return group


def _normalize_centers(sums, u, w, labels) -> np.ndarray:
    """Unit weighted-mean directions; a cancelling mean falls back to the heaviest member."""
    totals = np.bincount(labels, weights=w, minlength=sums.shape[0])
    means = sums / totals[:, None]  # weighted mean of unit vectors: norm <= 1, no overflow
    norms = np.linalg.norm(means, axis=1)
    centers = np.empty_like(sums)
    for k in range(sums.shape[0]):
        if norms[k] > 1e-9:
            centers[k] = means[k] / norms[k]
        else:
            members = np.flatnonzero(labels == k)
            centers[k] = u[members[np.argmax(w[members])]]
    return centers


def _line_labels(centers: np.ndarray, tol: float) -> np.ndarray:
    """Connected components of "center i is within ``tol`` of -center j"."""
    K = centers.shape[0]
    if K == 1:
        return np.zeros(1, dtype=np.intp)
    cos_anti = -(centers @ centers.T)
    i, j = np.nonzero(cos_anti >= np.cos(tol))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(i.size), (i, j)), shape=(K, K))
    _, comp = connected_components(graph, directed=False)
    # relabel in order of first appearance (orientation 0 is on line 0)
    _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse].astype(np.intp)
