"""Embedding principle ([ZZLX21]): critical points of narrow nets inside wide ones.

- :func:`embed`: the one-step splitting embedding (a neuron split into two copies with
  output weights ``lam a_k`` and ``(1 - lam) a_k``), two- and three-layer (either
  hidden layer); compose it to reach any wider width.
- :func:`hessian_spectrum`: eigenvalues of the exact Hessian (:meth:`Model.hessian
  <flowsim.models._base.Model.hessian>`) with the numbers of negative, zero and
  positive ones.
- :func:`critical_point`: a critical point near a start (Levenberg-Marquardt on the
  gradient, Jacobian = the exact Hessian), with its index.

docs/theory.md §16 states the results and how they are checked.

References
----------
.. [ZZLX21] Zhang, Zhang, Luo, Xu. Embedding principle of loss landscape of deep neural
   networks. NeurIPS 2021. arXiv:2105.14573.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

from flowsim.models.three_layer import ThreeLayer
from flowsim.models.two_layer import TwoLayer

ZERO_RTOL = 1e-9
"""An eigenvalue counts as zero when ``|lambda| <= ZERO_RTOL * max |lambda|``.  Rounding
puts ~1e-16 * max |lambda| on every eigenvalue, and at a critical point met to
``|grad| <= 1e-12`` (relative) a zero eigenvalue of the exact point moves by ~1e-12 of the
scale; 1e-9 sits between those and the smallest non-zero eigenvalues of the small nets
checked (each result reports the gap, :attr:`Spectrum.gap`)."""

GTOL = 1e-12
"""Default relative gradient tolerance of :func:`critical_point` (see :func:`gradient_scale`)."""

NEWTON_POLISH = 8
"""Least-squares Newton steps after Levenberg-Marquardt, each kept only if it lowers |grad|."""


@dataclass(frozen=True)
class Spectrum:
    """Hessian eigenvalues (ascending) and their signs.

    ``threshold``: the absolute zero threshold used (``ZERO_RTOL`` times the largest
    ``|lambda|``); ``gap``: smallest ``|lambda|`` counted non-zero over the largest counted
    zero (``inf`` without zeros): how clearly the count is decided.
    """

    eigenvalues: np.ndarray
    n_negative: int
    n_zero: int
    n_positive: int
    threshold: float
    gap: float

    @property
    def counts(self) -> tuple[int, int, int]:
        """``(negative, zero, positive)``."""
        return self.n_negative, self.n_zero, self.n_positive


@dataclass(frozen=True)
class CriticalPoint:
    """Result of :func:`critical_point`.

    ``grad_norm``: ``|grad R|``; ``grad_relative``: the same over :func:`gradient_scale`;
    ``index``: the number of negative Hessian eigenvalues; ``converged``:
    ``grad_relative <= gtol``; ``evaluations``: gradient evaluations used.
    """

    theta: np.ndarray
    grad_norm: float
    grad_relative: float
    loss: float
    spectrum: Spectrum
    converged: bool
    evaluations: int

    @property
    def index(self) -> int:
        return self.spectrum.n_negative


def _spectrum(H: np.ndarray, zero_rtol: float) -> Spectrum:
    lam = np.linalg.eigvalsh((H + H.T) / 2)
    size = float(np.max(np.abs(lam))) if lam.size else 0.0
    threshold = zero_rtol * size
    zero = np.abs(lam) <= threshold
    small = np.abs(lam[zero]).max() if zero.any() else 0.0
    large = np.abs(lam[~zero]).min() if (~zero).any() else np.inf
    gap = float(large / small) if small > 0 else np.inf
    return Spectrum(lam, int(np.sum(lam < -threshold)), int(zero.sum()),
                    int(np.sum(lam > threshold)), threshold, gap)  # fmt: skip


def hessian_spectrum(net, theta: ArrayLike, X: ArrayLike, y: ArrayLike, *,
                     zero_rtol: float = ZERO_RTOL) -> Spectrum:  # fmt: skip
    """Eigenvalues of the exact Hessian of ``R`` at ``theta`` and their signs.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,)
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    zero_rtol : float
        An eigenvalue is zero when ``|lambda| <= zero_rtol * max |lambda|``
        (default :data:`ZERO_RTOL`).

    Returns
    -------
    Spectrum
    """
    if not (np.isfinite(zero_rtol) and 0 <= zero_rtol < 1):
        raise ValueError(f"zero_rtol must be in [0, 1), got {zero_rtol!r}")
    return _spectrum(net.hessian(theta, X, y), zero_rtol)


def gradient_scale(loss: float, hessian: np.ndarray) -> float:
    """The size ``sqrt(2 R ||H||_2)`` that :func:`critical_point` measures ``|grad R|`` by.

    ``grad R = J^T e / n`` with ``|e|^2 / n = 2R``, so Cauchy-Schwarz bounds it by
    ``sqrt(2R ||J^T J / n||)``: the size of the gradient's terms, which its rounding error
    is a small multiple of eps times.  The Hessian's norm stands in for the Gauss-Newton
    matrix's (they differ by the residual term, small near a good fit).
    """
    size = float(np.sqrt(2.0 * loss * np.linalg.norm(hessian, 2)))
    return size if size > 0 else 1.0


def critical_point(net, theta0: ArrayLike, X: ArrayLike, y: ArrayLike, *, gtol: float = GTOL,
                   max_evaluations: int = 300,
                   zero_rtol: float = ZERO_RTOL) -> CriticalPoint:  # fmt: skip
    """A critical point of ``R`` near ``theta0``.

    Levenberg-Marquardt (MINPACK, :func:`scipy.optimize.least_squares`, ``method="lm"``)
    on the residual ``grad R(theta)`` with the exact Hessian as its Jacobian, then up to
    :data:`NEWTON_POLISH` least-squares Newton steps ``H delta = -grad R`` (pseudo-inverse:
    an embedded critical point has zero eigenvalues), each kept only if it lowers
    ``|grad R|``.  A minimum, saddle or maximum is found alike; an iterate that runs off
    (a critical point at infinity) is returned with ``converged=False``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta0 : ndarray, shape (P,)
    X, y : ndarray
        The data.
    gtol : float
        Converged when ``|grad R| <= gtol * gradient_scale(R, H)`` (:func:`gradient_scale`).
    max_evaluations : int
        Gradient evaluations allowed to Levenberg-Marquardt.
    zero_rtol : float
        Zero threshold of the returned spectrum (:func:`hessian_spectrum`).

    Returns
    -------
    CriticalPoint
        Its ``index`` is the number of negative Hessian eigenvalues (docs/theory.md §16).
    """
    theta0 = net.check_theta(theta0)
    if not (np.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be a positive number, got {gtol!r}")
    if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int | np.integer) \
            or max_evaluations < 1:  # fmt: skip
        raise ValueError(f"max_evaluations must be a positive integer, got {max_evaluations!r}")
    fit = optimize.least_squares(lambda z: net.gradient(z, X, y), theta0,
                                 jac=lambda z: net.hessian(z, X, y), method="lm", xtol=1e-15,
                                 ftol=1e-15, gtol=1e-15, max_nfev=int(max_evaluations))  # fmt: skip
    theta = fit.x
    grad = net.gradient(theta, X, y)
    evaluations = int(fit.nfev)
    for _ in range(NEWTON_POLISH):
        step = np.linalg.lstsq(net.hessian(theta, X, y), -grad, rcond=None)[0]
        trial = theta + step
        trial_grad = net.gradient(trial, X, y)
        evaluations += 1
        if not np.linalg.norm(trial_grad) < np.linalg.norm(grad):
            break
        theta, grad = trial, trial_grad
    H = net.hessian(theta, X, y)
    loss = net.loss(theta, X, y)
    norm = float(np.linalg.norm(grad))
    relative = norm / gradient_scale(loss, H)
    spectrum = _spectrum(H, zero_rtol)
    return CriticalPoint(theta, norm, relative, loss, spectrum, bool(relative <= gtol), evaluations)


def _check_lam(lam) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be a real number, got {lam!r}") from None
    if not np.isfinite(lam):
        raise ValueError(f"lam must be finite, got {lam!r}")
    return lam


def _check_neuron(neuron, width: int, what: str) -> int:
    if isinstance(neuron, bool) or not isinstance(neuron, int | np.integer) \
            or not 0 <= neuron < width:  # fmt: skip
        raise ValueError(f"neuron must be an integer in [0, {width - 1}] ({what}), got {neuron!r}")
    return int(neuron)


def embed(net, theta: ArrayLike, *, neuron: int, lam: float = 0.5, layer: int | None = None):
    """One-step splitting embedding of ``net`` at ``theta`` into a net one neuron wider.

    Hidden neuron ``k = neuron`` is split in two with the same input weights: neuron
    ``k`` keeps ``lam`` times its output weights and a new last neuron of the layer gets
    ``1 - lam`` times them.  For every ``lam`` (inside or outside [0, 1]) the output
    function is unchanged, a critical point maps to a critical point, and the map is
    linear in theta (docs/theory.md §16; [ZZLX21]).  Apply it repeatedly for wider nets.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,)
    neuron : int
        The neuron to split (0-based, in the chosen hidden layer).
    lam : float
        Share of the output weights kept by neuron ``k``.
    layer : {None, 1, 2}
        Hidden layer: TwoLayer has one (None or 1); ThreeLayer needs 1 (``V``, width m1:
        its output weights are a column of ``W``) or 2 (``W``, width m2: output ``a``).

    Returns
    -------
    (wider net, theta') : (TwoLayer or ThreeLayer, ndarray)
    """
    theta = net.check_theta(theta)
    lam = _check_lam(lam)
    p = {name: np.array(value) for name, value in net.unpack(theta).items()}
    options = net.options()
    if isinstance(net, TwoLayer):
        if layer not in (None, 1):
            raise ValueError(f"layer must be None or 1 for TwoLayer (one hidden layer), "
                             f"got {layer!r}")  # fmt: skip
        k = _check_neuron(neuron, net.width, f"width {net.width}")
        a = np.append(p["a"], (1 - lam) * p["a"][k])
        a[k] = lam * p["a"][k]
        wider = TwoLayer(net.activation, net.width + 1, net.input_dim, **options)
        return wider, wider.pack(a=a, W=np.vstack([p["W"], p["W"][k]]))
    if isinstance(net, ThreeLayer):
        m1, m2 = net.widths
        if layer == 2:
            k = _check_neuron(neuron, m2, f"layer 2 has width {m2}")
            a = np.append(p["a"], (1 - lam) * p["a"][k])
            a[k] = lam * p["a"][k]
            wider = ThreeLayer(net.activation, (m1, m2 + 1), net.input_dim, **options)
            return wider, wider.pack(a=a, W=np.vstack([p["W"], p["W"][k]]), V=p["V"])
        if layer == 1:
            net.check_regrouping("splitting")
            k = _check_neuron(neuron, m1, f"layer 1 has width {m1}")
            W = p["W"]
            column = (1 - lam) * W[:, k]
            W[:, k] *= lam
            W = np.insert(W, m1, column, axis=1)  # before the bias column, if any
            wider = ThreeLayer(net.activation, (m1 + 1, m2), net.input_dim, **options)
            return wider, wider.pack(a=p["a"], W=W, V=np.vstack([p["V"], p["V"][k]]))
        raise ValueError(f"layer must be 1 (V, width m1) or 2 (W, width m2) for ThreeLayer, "
                         f"got {layer!r}")  # fmt: skip
    raise TypeError(f"embed takes a TwoLayer or ThreeLayer, got {type(net).__name__}")
