"""Condensed orientations: the extrema of G on the unit sphere ([ZZJLZX22]).

At small initialization every neuron of a two-layer net follows the
leading-order flow of docs/theory.md §4,

    G(w) = (1/n) sum_i y_i (w . x~_i)^p,
    da/dt = (c_p/alpha) G(w),    dw/dt = (c_p/alpha) a grad G(w),

whose direction ``u = w/|w|`` climbs G on the sphere when ``c_p a > 0`` and
descends when ``c_p a < 0``.  A local maximum ``u*`` of G on the sphere with
``G(u*) > 0`` collects the growing neurons with ``c_p a > 0``; a local minimum
with ``G(u*) < 0`` collects those with ``c_p a < 0``; other extrema collect
nothing (``r`` and ``|a|`` shrink there).  :func:`stable_directions` finds them.

With ``sigma(0) != 0`` the output's constant mode relaxes first and the
residual becomes the centred target, so G uses ``y - mean(y)``.

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowsim.activations import Activation, activation
from flowsim.models._base import check_data

STATIONARY_RTOL = 1e-10
"""A point is stationary when its projected gradient is below this times ``p^2 K``,
``K = mean_i |y_i| |x~_i|^p`` (a bound of ``|G|`` on the sphere)."""

CURVATURE_RTOL = 1e-8
"""A Hessian eigenvalue (or a gap between eigenvalues) below this times ``p^2 K`` counts as 0."""

SAME_CHORD = 1e-7
"""Two smooth-case extrema closer than this (chord length) are the same."""

SAME_CHORD_KINK = 1e-3
"""Two ReLU-case extrema not polished to a region interior are the same below this chord."""

GRADIENT_STEPS = 300
"""Projected gradient steps before the saddle-free Newton refinement (smooth G, D > 2)."""

NEWTON_STEPS = 60
"""Saddle-free Newton steps on the sphere (smooth G, D > 2)."""

SUBGRADIENT_STEPS = 600
"""Projected subgradient steps for piecewise-linear G (ReLU-like activations)."""


@dataclass(frozen=True, eq=False)
class Extrema:
    """Local extrema of G on the unit sphere, whether or not they attract neurons.

    Attributes
    ----------
    vectors : ndarray, shape (k, D)
        Unit vectors.
    value : ndarray, shape (k,)
        ``G`` at each.
    kind : ndarray of str, shape (k,)
        ``"max"`` or ``"min"``.
    """

    vectors: np.ndarray
    value: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.value.size)


@dataclass(frozen=True, eq=False)
class Directions:
    """Orientations that collect growing neurons (see :func:`stable_directions`).

    Attributes
    ----------
    vectors : ndarray, shape (k, D)
        Unit vectors ``u*`` in the augmented input space (bias last).
    sign : ndarray of int, shape (k,)
        The sign of ``c_p a`` that selects each: ``+1`` for a maximum with
        ``G > 0`` (neurons with ``c_p a > 0`` climb to it), ``-1`` for a minimum
        with ``G < 0``.
    value : ndarray, shape (k,)
        ``G(u*)``.
    kind : ndarray of str, shape (k,)
        ``"max"`` or ``"min"``.
    degenerate : bool
        True when the extrema are not isolated or not all resolved (equal
        eigenvalues for p = 2, ``G' = 0`` identically on the circle, a flat
        Hessian, ``v = 0`` for p = 1, starts that did not converge): see ``note``.
    note : str
        What was done and anything degenerate.
    all_extrema : Extrema
        Every local extremum found, including those that collect nothing.
    p : int
        Multiplicity (homogeneity degree for ReLU-like activations).
    leading_coefficient : float
        ``c_p``.
    centred : bool
        Whether G used ``y - mean(y)`` (``sigma(0) != 0``).
    method : str
        ``"linear"`` (p = 1), ``"eigh"`` (p = 2), ``"circle"`` (D = 2),
        ``"sphere"`` (multi-start, smooth G), ``"kinked"`` (multi-start,
        piecewise-linear G) or ``"points"`` (D = 1).
    """

    vectors: np.ndarray
    sign: np.ndarray
    value: np.ndarray
    kind: np.ndarray
    degenerate: bool
    note: str
    all_extrema: Extrema
    p: int
    leading_coefficient: float
    centred: bool
    method: str

    @property
    def count(self) -> int:
        """Number of orientations (``u`` and ``-u`` count as two)."""
        return int(self.value.size)

    def __len__(self) -> int:
        return self.count


# -- the function G ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Problem:
    """Data of G: augmented inputs, effective target, activation summary."""

    Xt: np.ndarray  # (n, D)
    y: np.ndarray  # (n,) target used in G (centred when sigma0 != 0)
    p: int
    c: float
    centred: bool
    kinked: bool
    act: Activation

    @property
    def scale(self) -> float:
        """``K = mean |y_i| |x~_i|^p``: a bound of ``|G|`` on the unit sphere."""
        norms = np.linalg.norm(self.Xt, axis=1)
        K = float(np.mean(np.abs(self.y) * norms**self.p))
        return K if K > 0 else 1.0

    def values(self, U: np.ndarray) -> np.ndarray:
        """``G`` at the rows of ``U`` (k, D)."""
        Z = U @ self.Xt.T
        return self._sigma(Z) @ self.y / self.y.size

    def gradient(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``G`` (k,) and ``grad G`` (k, D) at the rows of ``U``."""
        Z = U @ self.Xt.T
        n = self.y.size
        return self._sigma(Z) @ self.y / n, (self._dsigma(Z) * self.y) @ self.Xt / n

    def hessian(self, U: np.ndarray) -> np.ndarray:
        """``Hess G`` (k, D, D) for the smooth form ``G = mean y (w.x)^p``."""
        p = self.p
        Z = U @ self.Xt.T
        weights = p * (p - 1) * Z ** (p - 2) * self.y if p >= 2 else np.zeros_like(Z)
        return np.einsum("ki,id,ie->kde", weights, self.Xt, self.Xt) / self.y.size

    def _sigma(self, Z):
        if not self.kinked:
            return Z**self.p
        return _kinked_sigma(self.act, Z, 0)

    def _dsigma(self, Z):
        if not self.kinked:
            return self.p * Z ** (self.p - 1)
        return _kinked_sigma(self.act, Z, 1)


def _kinked_sigma(act: Activation, Z: np.ndarray, order: int) -> np.ndarray:
    """``sigma(z)/c_p`` (order 0) or its derivative (order 1) for a homogeneous activation.

    ``sigma(z) = sigma(1) z^k`` for ``z > 0`` and ``sigma(-1) |z|^k`` for
    ``z < 0``; divided by ``c_p = sigma(1)`` so that the flow keeps the form
    ``da/dt = (c_p/alpha) G`` of the smooth case.
    """
    k = act.homogeneous
    plus = 1.0
    minus = float(act(-1.0)) / act.leading_coefficient
    positive = Z > 0
    A = np.abs(Z)
    if order == 0:
        return np.where(positive, plus * A**k, minus * A**k)
    return np.where(positive, plus * k * A ** (k - 1), -minus * k * A ** (k - 1))


def _is_kinked(act: Activation) -> bool:
    """Homogeneous and not a monomial ``c z^k`` (ReLU, leaky ReLU; not ``linear``)."""
    k = act.homogeneous
    if k is None:
        return False
    return not np.isclose(float(act(-1.0)), (-1.0) ** k * float(act(1.0)), rtol=1e-14, atol=0)


def _problem(net, X, y) -> _Problem:
    if not (hasattr(net, "activation") and hasattr(net, "augment")):
        raise ValueError(f"net must be a flowsim model (TwoLayer or ThreeLayer), got {net!r}")
    act = net.activation
    X, y = check_data(X, y, net.input_dim)
    Xt = np.ascontiguousarray(net.augment(X))
    p = int(act.multiplicity)
    c = float(act.leading_coefficient)
    if c == 0:
        raise ValueError(f"activation {act.name!r} has c_p = 0: no leading-order flow")
    kinked = _is_kinked(act)
    if getattr(net, "kind", "two_layer") == "three_layer" and (p != 1 or kinked):
        raise ValueError(
            "three-layer nets: only smooth activations with p = 1 are covered (docs/theory.md "
            f"§8, [CL24]); got {act.name!r} with p = {p}"
        )
    centred = act.sigma0 != 0
    y_eff = y - y.mean() if centred else y.copy()
    return _Problem(Xt, y_eff, p, c, centred, kinked, act)


# -- public ------------------------------------------------------------------


def stable_directions(net, X, y, *, method="auto", n_starts=64, seed=0) -> Directions:
    """Orientations on which the growing neurons of a small-init two-layer net condense.

    Finds the local extrema of ``G(w) = (1/n) sum_i y_i (w . x~_i)^p`` on the
    unit sphere (``x~ = net.augment(X)``; ``y - mean(y)`` when ``sigma(0) != 0``,
    docs/theory.md §6) and keeps those that collect neurons: maxima with
    ``G > 0`` (``sign = +1``: selected by ``c_p a > 0``) and minima with
    ``G < 0`` (``sign = -1``).  Every extremum is kept in ``all_extrema``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
        Only its activation, ``input_dim``, bias and ``augment`` are used (a
        three-layer net: p = 1 only, the orientations of its first layer).
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    method : str
        ``"auto"`` (default), or force one of ``"linear"`` (p = 1 only),
        ``"eigh"`` (p = 2 only), ``"circle"`` (D = 2 only), ``"sphere"``
        (smooth G, any D >= 2: a cross-check of the others).
    n_starts : int
        Random starts of the multi-start searches (each searched uphill and downhill).
    seed : int
        Seed of those starts.

    Returns
    -------
    Directions

    Notes
    -----
    Methods chosen by ``"auto"``:

    * p = 1 (smooth): ``G(w) = w . v``, ``v = (1/n) sum_i y_i x~_i``: ``+v/|v|``
      (max, sign +1) and ``-v/|v|`` (min, sign -1), any D.
    * p = 2: ``G(w) = w^T M w``, ``M = (1/n) sum_i y_i x~_i x~_i^T``: ``+-`` the
      top eigenvector (if its eigenvalue is > 0) and ``+-`` the bottom one
      (if < 0); near-equal eigenvalues are reported as degenerate.
    * D = 2, any p: the critical slopes ``s = u1/u2`` are the real roots of the
      degree-p polynomial ``P(s) = (p/n) sum_i y_i (x_i2 + s x_i1)^(p-1)
      (x_i1 - s x_i2)`` (``dG/dphi = -u2^p P(s)``), plus ``s = inf`` when its
      leading coefficient vanishes; each root is refined by Newton on the
      angle and classified by ``d^2 G/dphi^2``.
    * D > 2, p >= 3: multi-start projected gradient ascent and descent on the
      sphere, then saddle-free Newton steps in the tangent space (exact Hessian
      of G), deduplicated by angle, antipodes added (``G(-u) = (-1)^p G(u)``).
      Extrema whose basin no start reaches are missed: raise ``n_starts`` for
      large D.
    * ReLU-like activations (positively homogeneous, not a monomial):
      ``G(w) = (1/n) sum_i y_i sigma(w . x~_i) / c_p`` is only piecewise
      smooth.  Multi-start projected subgradient ascent and descent, then a
      polish: on the activation region of the end point G is linear,
      ``G = l . w``, and if ``+-l/|l|`` lies in the same region it is the exact
      extremum.  The result depends on the data's activation regions, and an
      extremum on a kink (a region boundary) is only located to about
      ``SAME_CHORD_KINK``; ``note`` says how many.

    References
    ----------
    .. [ZZJLZX22] Zhou et al. NeurIPS 2022, arXiv:2105.11686.
    """
    prob = _problem(net, X, y)
    if isinstance(n_starts, bool) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ValueError(f"n_starts must be a positive integer, got {n_starts!r}")
    D = prob.Xt.shape[1]
    p = prob.p
    allowed = ("auto", "linear", "eigh", "circle", "sphere")
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")
    if method == "auto":
        if prob.kinked:
            method = "kinked"
        elif D == 1:
            method = "points"
        elif p == 1:
            method = "linear"
        elif p == 2:
            method = "eigh"
        elif D == 2:
            method = "circle"
        else:
            method = "sphere"
    else:
        if prob.kinked:
            raise ValueError(f"activation {prob.act.name!r} is piecewise linear: use method='auto'")
        needs = {"linear": p == 1, "eigh": p == 2, "circle": D == 2, "sphere": D >= 2}
        if not needs[method]:
            raise ValueError(f"method {method!r} does not apply to p = {p}, D = {D}")

    if method == "points":
        U, kinds, degenerate, note = _points(prob)
    elif method == "linear":
        U, kinds, degenerate, note = _linear(prob)
    elif method == "eigh":
        U, kinds, degenerate, note = _eigh(prob)
    elif method == "circle":
        U, kinds, degenerate, note = _circle(prob)
    elif method == "sphere":
        U, kinds, degenerate, note = _sphere(prob, int(n_starts), seed)
    else:
        U, kinds, degenerate, note = _kinked(prob, int(n_starts), seed)
    return _select(prob, U, kinds, degenerate, note, method)


def max_orientations(act, D=None) -> int | None:
    """Bound ``2p`` on the number of condensed orientations ([ZZJLZX22]), where it holds.

    Parameters
    ----------
    act : str, Activation or a model
        The activation (or a net, whose activation is used).
    D : int, optional
        Dimension of the augmented input (``net.D``).

    Returns
    -------
    int or None
        ``2p`` for a smooth activation of multiplicity p: every orientation is
        an extremum of a degree-p form, and at most 2p of them collect neurons
        for p = 1 (``+-v``, any D), p = 2 (``+-`` top and bottom eigenvectors,
        any D) and D <= 2 (any p: ``dG/dphi`` is a binary form of degree p).
        None when no such bound holds:

        * ReLU-like activations (positively homogeneous, not a monomial): G is
          piecewise linear and its extrema are set by the data's activation
          regions, not by a multiplicity ([ZZJLZX22] does not bound them);
        * ``D > 2`` and ``p >= 3`` (only when ``D`` is given): a degree-p form on
          a higher-dimensional sphere can have more local extrema.  Example:
          XOR data ``x in {+-1}^2`` with a bias, ``y = x_1 x_2`` and ``p = 3``
          give ``G(w) = 6 w_1 w_2 w_3``, whose 8 extrema
          ``(+-1, +-1, +-1)/sqrt(3)`` all collect neurons (``6 > 2p`` fails:
          8 > 6).
    """
    if hasattr(act, "activation") and not isinstance(act, (str, Activation)):
        act = act.activation
    act = activation(act)
    if _is_kinked(act):
        return None
    p = int(act.multiplicity)
    if D is not None:
        if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 1:
            raise ValueError(f"D must be a positive integer, got {D!r}")
        if D > 2 and p >= 3:
            return None
    return 2 * p


# -- selection ---------------------------------------------------------------


def _select(prob, U, kinds, degenerate, note, method) -> Directions:
    D = prob.Xt.shape[1]
    U = np.asarray(U, dtype=float).reshape(-1, D)
    kinds = np.asarray(kinds, dtype="<U3").reshape(-1)
    values = prob.values(U) if U.shape[0] else np.zeros(0)
    threshold = 1e-12 * prob.scale
    keep_max = (kinds == "max") & (values > threshold)
    keep_min = (kinds == "min") & (values < -threshold)
    keep = keep_max | keep_min
    sign = np.where(keep_max, 1, -1)[keep].astype(int)
    dropped = int(np.sum(~keep))
    if dropped:
        note = f"{note}; {dropped} extrema collect nothing (c_p a G(u) <= 0 there)"
    return Directions(
        vectors=U[keep].copy(),
        sign=sign,
        value=values[keep].copy(),
        kind=kinds[keep].copy(),
        degenerate=bool(degenerate),
        note=note.lstrip("; "),
        all_extrema=Extrema(U.copy(), values.copy(), kinds.copy()),
        p=prob.p,
        leading_coefficient=prob.c,
        centred=prob.centred,
        method=method,
    )


# -- D = 1: the sphere is two points ------------------------------------------


def _points(prob):
    U = np.array([[1.0], [-1.0]])
    values = prob.values(U)
    kinds = np.where(values >= 0, "max", "min")
    if np.all(np.abs(values) <= 1e-12 * prob.scale):
        return U[:0], kinds[:0], True, "D = 1: G = 0 at both points"
    return U, kinds, False, "D = 1: the sphere is {+1, -1}"


# -- p = 1 -------------------------------------------------------------------


def _linear(prob):
    v = prob.y @ prob.Xt / prob.y.size
    norm = float(np.linalg.norm(v))
    D = v.size
    if norm <= 1e-12 * prob.scale:
        return np.zeros((0, D)), np.zeros(0, "<U3"), True, "p = 1 with v = 0: no orientation"
    u = v / norm
    return np.vstack([u, -u]), np.array(["max", "min"]), False, f"p = 1: +-v/|v|, |v| = {norm:.6g}"


# -- p = 2 -------------------------------------------------------------------


def _eigh(prob):
    Xt, y = prob.Xt, prob.y
    M = (Xt * y[:, None]).T @ Xt / y.size
    evals, evecs = np.linalg.eigh(M)
    D = evals.size
    tol = CURVATURE_RTOL * prob.scale
    vectors, kinds, notes = [], [], []
    degenerate = False
    top, bottom = evals[-1], evals[0]
    if D > 1 and np.all(np.abs(evals - top) <= tol):
        degenerate = True
        notes.append("M is a multiple of I: every direction is stationary")
        return np.zeros((0, D)), np.zeros(0, "<U3"), degenerate, "p = 2; " + "; ".join(notes)
    if D > 1 and top - evals[-2] <= tol:
        degenerate = True
        notes.append(f"top eigenvalue {top:.6g} is not simple (gap {top - evals[-2]:.3g})")
    if D > 1 and evals[1] - bottom <= tol:
        degenerate = True
        notes.append(f"bottom eigenvalue {bottom:.6g} is not simple (gap {evals[1] - bottom:.3g})")
    for column, kind in ((D - 1, "max"), (0, "min")):
        u = evecs[:, column]
        vectors += [u, -u]
        kinds += [kind, kind]
    note = f"p = 2: eigenvalues of M from {bottom:.6g} to {top:.6g}"
    return np.array(vectors), np.array(kinds), degenerate, "; ".join([note, *notes])


# -- D = 2: the slope polynomial ----------------------------------------------


def slope_polynomial(Xt: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """Coefficients (ascending) of ``P(s) = (p/n) sum_i y_i (x_i2 + s x_i1)^(p-1) (x_i1 - s x_i2)``.

    For ``u = u2 (s, 1)``, ``dG/dphi = -u2^p P(s)`` (``u = (cos phi, sin phi)``;
    derivations/slope_polynomial.py): the critical directions of G on the circle.
    """
    x1, x2 = Xt[:, 0], Xt[:, 1]
    j = np.arange(p)
    from scipy.special import comb  # lazy: import flowsim without SciPy

    A = comb(p - 1, j) * x1[:, None] ** j * x2[:, None] ** (p - 1 - j)  # (n, p)
    coef = np.zeros(p + 1)
    coef[:p] += (y * x1) @ A
    coef[1:] -= (y * x2) @ A
    return coef * p / y.size


def _circle_derivatives(prob, phi):
    """``G``, ``dG/dphi`` and ``d^2G/dphi^2`` at angles ``phi``."""
    U = np.column_stack([np.cos(phi), np.sin(phi)])
    T = np.column_stack([-np.sin(phi), np.cos(phi)])
    G, g = prob.gradient(U)
    H = prob.hessian(U)
    d1 = np.sum(g * T, axis=1)
    d2 = np.einsum("kd,kde,ke->k", T, H, T) - prob.p * G
    return G, d1, d2


def _circle(prob):
    p = prob.p
    coef = slope_polynomial(prob.Xt, prob.y, p)
    big = float(np.max(np.abs(coef)))
    if big <= STATIONARY_RTOL * p * p * prob.scale:
        return np.zeros((0, 2)), np.zeros(0, "<U3"), True, "D = 2: G' = 0 identically"
    phis = []
    trimmed = coef.copy()
    while abs(trimmed[-1]) <= 1e-12 * big:
        trimmed = trimmed[:-1]
    if trimmed.size < coef.size:
        phis.append(0.0)  # s = infinity: u = (1, 0)
    if trimmed.size > 1:
        roots = np.polynomial.polynomial.polyroots(trimmed)
        real = roots[np.abs(roots.imag) <= 1e-6 * np.maximum(1.0, np.abs(roots))].real
        phis += list(np.arctan2(1.0, real))  # u = (s, 1)/sqrt(1 + s^2)
    phi = np.array(phis, dtype=float)
    phi = np.concatenate([phi, phi + np.pi])
    # Newton on the angle: polishes roots lost to the polynomial's conditioning
    scale = p * p * prob.scale
    for _ in range(8):
        _, d1, d2 = _circle_derivatives(prob, phi)
        ok = np.abs(d2) > CURVATURE_RTOL * scale
        step = np.where(ok, d1 / np.where(ok, d2, 1.0), 0.0)
        phi = phi - np.clip(step, -0.1, 0.1)
    G, d1, d2 = _circle_derivatives(prob, phi)
    kinds = np.full(phi.size, "max", dtype="<U3")
    kinds[d2 > 0] = "min"
    flat = np.abs(d2) <= CURVATURE_RTOL * scale
    degenerate = False
    notes = [f"D = 2: slope polynomial of degree {trimmed.size - 1}"]
    if np.any(flat):
        h = 1e-3
        left = prob.values(np.column_stack([np.cos(phi - h), np.sin(phi - h)]))
        right = prob.values(np.column_stack([np.cos(phi + h), np.sin(phi + h)]))
        is_max = (left < G) & (right < G)
        is_min = (left > G) & (right > G)
        kinds[flat & is_max] = "max"
        kinds[flat & is_min] = "min"
        kinds[flat & ~is_max & ~is_min] = "inf"  # inflection: not an extremum
        degenerate = True
        notes.append(f"{int(flat.sum())} critical points with G'' = 0 (multiple roots)")
    stationary = np.abs(d1) <= STATIONARY_RTOL * scale
    if np.any(~stationary):
        degenerate = True
        notes.append(f"{int(np.sum(~stationary))} roots did not refine to stationary points")
    keep = stationary & (kinds != "inf")
    U = np.column_stack([np.cos(phi), np.sin(phi)])[keep]
    U, kinds = _dedupe(U, kinds[keep], np.abs(d1[keep]), SAME_CHORD)
    return U, kinds, degenerate, "; ".join(notes)


# -- D > 2: multi-start on the sphere -----------------------------------------


def _normalize(U):
    return U / np.linalg.norm(U, axis=1, keepdims=True)


def _tangent_basis(U):
    """Orthonormal bases ``Q`` (k, D, D-1) of the tangent spaces ``u^perp``."""
    k, D = U.shape
    M = np.concatenate([U[:, :, None], np.broadcast_to(np.eye(D), (k, D, D))], axis=2)
    Q, _ = np.linalg.qr(M)
    return Q[:, :, 1:D]


def _tangent_hessian(prob, U):
    """Projected gradient coordinates (k, D-1) and Riemannian Hessian (k, D-1, D-1)."""
    G, g = prob.gradient(U)
    H = prob.hessian(U) - prob.p * G[:, None, None] * np.eye(U.shape[1])
    Q = _tangent_basis(U)
    gt = np.einsum("kdj,kd->kj", Q, g)
    Ht = np.einsum("kdi,kde,kej->kij", Q, H, Q)
    return gt, Ht, Q


def _sphere(prob, n_starts, seed):
    rng = np.random.default_rng(seed)
    D = prob.Xt.shape[1]
    p = prob.p
    L = p * p * prob.scale
    start = _normalize(rng.standard_normal((n_starts, D)))
    U = np.vstack([start, start])
    direction = np.concatenate([np.ones(n_starts), -np.ones(n_starts)])[:, None]
    eta = 0.5 / L
    for _ in range(GRADIENT_STEPS):
        _, g = prob.gradient(U)
        gr = g - np.sum(g * U, axis=1, keepdims=True) * U
        U = _normalize(U + eta * direction * gr)
    floor = CURVATURE_RTOL * L
    for _ in range(NEWTON_STEPS):
        gt, Ht, Q = _tangent_hessian(prob, U)
        lam, V = np.linalg.eigh(Ht)
        coords = np.einsum("kji,kj->ki", V, gt) / np.maximum(np.abs(lam), floor)
        step = direction * np.einsum("kdj,kji,ki->kd", Q, V, coords)
        size = np.linalg.norm(step, axis=1, keepdims=True)
        step *= np.minimum(1.0, 0.3 / np.maximum(size, 1e-300))
        U = _normalize(U + step)
        if np.max(np.linalg.norm(gt, axis=1)) <= 1e-3 * STATIONARY_RTOL * L:
            break
    U = np.vstack([U, -U])  # G(-u) = (-1)^p G(u): antipodes are critical too
    gt, Ht, _ = _tangent_hessian(prob, U)
    grad_norm = np.linalg.norm(gt, axis=1)
    lam = np.linalg.eigvalsh(Ht)
    converged = grad_norm <= STATIONARY_RTOL * L
    tol = CURVATURE_RTOL * L
    is_max = np.all(lam < -tol, axis=1)
    is_min = np.all(lam > tol, axis=1)
    flat = np.any(np.abs(lam) <= tol, axis=1)
    kinds = np.where(is_max, "max", np.where(is_min, "min", "sad"))
    keep = converged & (is_max | is_min)
    U_keep, kinds_keep = _dedupe(U[keep], kinds[keep], grad_norm[keep], SAME_CHORD)
    notes = [f"multi-start on the sphere: {n_starts} starts uphill and downhill"]
    degenerate = False
    lost = int(np.sum(~converged[: 2 * n_starts]))
    if lost:
        notes.append(f"{lost} of {2 * n_starts} searches did not reach a stationary point")
    if np.any(converged & flat):
        degenerate = True
        notes.append("flat Hessian at some stationary points (extrema not isolated)")
    return U_keep, kinds_keep, degenerate, "; ".join(notes)


def _dedupe(U, kinds, quality, chord):
    """Greedy deduplication by chord length, best (smallest ``quality``) first."""
    order = np.argsort(quality, kind="stable")
    kept: list[int] = []
    for i in order:
        if all(np.linalg.norm(U[i] - U[j]) > chord for j in kept):
            kept.append(int(i))
    kept.sort()
    return U[kept].reshape(-1, U.shape[1]), kinds[kept]


# -- ReLU-like: piecewise-linear G --------------------------------------------


def _face_candidates(prob, U, direction, rho):
    """Exact extrema on the faces near ``U`` (degree-1 kinked G), or NaN rows.

    Near the end point ``u`` of a search, the pre-activations with
    ``|u . x~_i| <= rho |x~_i|`` define a face ``{w : w . x~_i = 0, i in A}``
    (``A`` empty: the open region itself).  On the face every term ``i in A``
    vanishes and the others keep their side, so ``G = l . w`` there, with
    ``l = (1/n) sum_{i not in A} y_i sigma'(side_i) x~_i / c_p``; the extremum of
    ``l . w`` on the sphere within the face is ``+-P l / |P l|`` (``P``: the
    projector onto the face).  It is kept if every other pre-activation
    stays on its side.
    """
    Xt, y = prob.Xt, prob.y
    n, D = Xt.shape
    norms_x = np.linalg.norm(Xt, axis=1)
    Z = U @ Xt.T
    active = np.abs(Z) <= rho * norms_x
    side = np.sign(Z)
    slope = _kinked_sigma(prob.act, side, 1)  # sigma'(side)/c_p (degree 1: constant per side)
    out = np.full_like(U, np.nan)
    for k in range(U.shape[0]):
        A = active[k]
        l = ((~A) * slope[k] * y) @ Xt / n
        if np.any(A):
            basis, sv, _ = np.linalg.svd(Xt[A].T, full_matrices=False)
            basis = basis[:, sv > 1e-12 * sv.max()]
            l = l - basis @ (basis.T @ l)
        size = np.linalg.norm(l)
        if size <= 1e-14 * prob.scale:
            continue
        cand = direction[k] * l / size
        zc = Xt[~A] @ cand
        if np.all(np.sign(zc) == side[k, ~A]) and np.all(np.abs(zc) > 1e-12 * norms_x[~A]):
            out[k] = cand
    return out


def _kinked(prob, n_starts, seed):
    rng = np.random.default_rng(seed)
    Xt = prob.Xt
    n, D = Xt.shape
    start = _normalize(rng.standard_normal((n_starts, D)))
    U = np.vstack([start, start])
    direction = np.concatenate([np.ones(n_starts), -np.ones(n_starts)])
    K = prob.scale
    eta0 = 0.2 / K
    for step in range(SUBGRADIENT_STEPS):
        _, g = prob.gradient(U)
        gr = g - np.sum(g * U, axis=1, keepdims=True) * U
        U = _normalize(U + eta0 / np.sqrt(1.0 + step) * direction[:, None] * gr)
    G_end, g_end = prob.gradient(U)
    dead = (np.abs(G_end) <= 1e-14 * K) & (np.linalg.norm(g_end, axis=1) <= 1e-14 * K)
    exact = np.zeros(U.shape[0], dtype=bool)
    if prob.act.homogeneous == 1:
        G0 = prob.values(U)
        for rho in (0.0, 1e-3, 1e-2, 3e-2, 1e-1):
            todo = ~exact
            if not np.any(todo):
                break
            cand = _face_candidates(prob, U[todo], direction[todo], rho)
            found = np.all(np.isfinite(cand), axis=1)
            Gc = prob.values(np.where(found[:, None], cand, U[todo]))
            found &= direction[todo] * (Gc - G0[todo]) >= -1e-9 * K
            idx = np.flatnonzero(todo)[found]
            U[idx] = cand[found]
            exact[idx] = True
    # classify: exact directional derivatives (degree 1), else sampled perturbations
    ascent = direction > 0
    if prob.act.homogeneous == 1:
        ok = np.array(
            [
                _no_improving_direction(prob, u, sense, 1e-9 if ex else 1e-3)
                for u, sense, ex in zip(U, direction, exact, strict=True)
            ],
            dtype=bool,
        )
    else:
        radius = np.where(exact, 1e-6, 1e-3)
        G0 = prob.values(U)
        n_probe = 64 * D
        probes = rng.standard_normal((U.shape[0], n_probe, D))
        probes -= np.einsum("kjd,kd->kj", probes, U)[:, :, None] * U[:, None, :]
        probes /= np.linalg.norm(probes, axis=2, keepdims=True)
        moved = U[:, None, :] + radius[:, None, None] * probes
        moved /= np.linalg.norm(moved, axis=2, keepdims=True)
        Gm = prob.values(moved.reshape(-1, D)).reshape(U.shape[0], n_probe)
        slack = 1e-12 * K
        is_max = np.all(Gm <= G0[:, None] + slack, axis=1)
        is_min = np.all(Gm >= G0[:, None] - slack, axis=1)
        ok = np.where(ascent, is_max, is_min)
    keep = ok & ~dead
    kinds = np.where(ascent, "max", "min")
    sel = keep & exact
    U_ex, k_ex = _dedupe(U[sel], kinds[sel], np.zeros(sel.sum()), SAME_CHORD)
    sel = keep & ~exact
    U_ap, k_ap = _dedupe(U[sel], kinds[sel], np.zeros(sel.sum()), SAME_CHORD_KINK)
    if U_ap.shape[0] and U_ex.shape[0]:  # an unpolished point near an exact one is the same
        far = np.min(np.linalg.norm(U_ap[:, None] - U_ex[None], axis=2), axis=1) > SAME_CHORD_KINK
        U_ap, k_ap = U_ap[far], k_ap[far]
    notes = [
        f"piecewise-linear G ({prob.act.name}): {n_starts} starts uphill and downhill; "
        f"{U_ex.shape[0]} extrema exact (in a region or on a face of kinks), "
        f"{U_ap.shape[0]} only located to ~{SAME_CHORD_KINK:g}; "
        "the result depends on the data's activation regions"
    ]
    if np.any(dead):
        notes.append(f"{int(dead.sum())} searches ended where G = 0 on a whole region (dead)")
    degenerate = bool(U_ap.shape[0])
    return np.vstack([U_ex, U_ap]), np.concatenate([k_ex, k_ap]), degenerate, "; ".join(notes)


MAX_ACTIVE = 8
"""Most kinks through a point for the exact directional-derivative test (3^k cases)."""


def _no_improving_direction(prob, u, sense, rho) -> bool:
    """No tangent direction at ``u`` along which ``sense * G`` grows (degree-1 kinked G).

    With ``A`` the kinks through ``u`` (``|u . x~_i| <= rho |x~_i|``), the
    directional derivative is ``G'(u; t) = l . t + sum_{i in A} y_i
    sigma(x~_i . t) / (n c_p)``: linear on each cone of tangent directions with
    fixed signs of ``x~_i . t``.  A linear function grows somewhere on a
    polyhedral cone iff its projection onto the span of some face of the cone
    lies strictly inside that face (Moreau), so every assignment of the
    ``i in A`` to the sides ``+``, ``-`` or the kink itself is tried.  With more
    than :data:`MAX_ACTIVE` kinks, random directions are sampled instead.
    """
    Xt, y = prob.Xt, prob.y
    n, D = Xt.shape
    norms_x = np.linalg.norm(Xt, axis=1)
    z = Xt @ u
    A = np.flatnonzero(np.abs(z) <= rho * norms_x)
    rest = np.setdiff1d(np.arange(n), A)
    side = np.sign(z[rest])
    l = (y[rest] * _kinked_sigma(prob.act, side, 1)) @ Xt[rest] / n
    tol = 1e-12 * prob.scale
    if A.size > MAX_ACTIVE:
        rng = np.random.default_rng(0)
        T = rng.standard_normal((4096, D))
        T -= np.outer(T @ u, u)
        T /= np.linalg.norm(T, axis=1, keepdims=True)
        S = T @ Xt[A].T
        slope = T @ l + (_kinked_sigma(prob.act, S, 0) @ y[A]) / n
        return bool(np.all(sense * slope <= tol))
    for code in range(3**A.size):
        signs = np.array([(code // 3**j) % 3 - 1 for j in range(A.size)])  # -1, 0, +1
        on = A[signs != 0]
        g = l + (y[on] * _kinked_sigma(prob.act, signs[signs != 0].astype(float), 1)) @ Xt[on] / n
        g = sense * g
        span = np.vstack([u[None, :], Xt[A[signs == 0]]])
        basis, sv, _ = np.linalg.svd(span.T, full_matrices=False)
        basis = basis[:, sv > 1e-12 * sv.max()]
        h = g - basis @ (basis.T @ g)
        size = np.linalg.norm(h)
        if size <= tol:
            continue
        inside = signs[signs != 0] * (Xt[on] @ h) > 1e-12 * norms_x[on] * size
        if np.all(inside):
            return False
    return True
