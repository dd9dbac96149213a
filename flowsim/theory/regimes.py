"""Phase diagram of two-layer networks: scaling exponents and regimes ([LXMZ21]).

Initialization ``a_k(0) ~ N(0, beta1^2)``, ``w_k(0) ~ N(0, beta2^2 I_D)`` and
output scale ``alpha`` define (docs/theory.md §2)

    kappa  = beta1 beta2 / alpha,          kappa' = beta1 / beta2,
    gamma  = lim -log(kappa) / log(m),     gamma' = lim -log(kappa') / log(m).

Theorems 6 and 8 of [LXMZ21] split the (gamma, gamma') plane into a *linear*
regime (``gamma < 1`` or ``gamma' > gamma - 1``: the input weights barely move,
``sup_t RD -> 0`` as ``m -> inf``), a *condensed* regime (``gamma > 1`` and
``gamma' < gamma - 1``: ``sup_t RD -> inf``) and the *critical* boundary between
them (``gamma = 1`` with ``gamma' <= 0``, or ``gamma' = gamma - 1`` with
``gamma >= 1``).

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural
   networks at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497
   (Theorems 6 and 8; Table 1 for the named schemes).
"""

from __future__ import annotations

import math

ATOL = 1e-12
"""Default distance to a boundary line below which a point counts as on it."""

SCHEMES: dict[str, tuple[float, float]] = {
    "LeCun": (0.5, 0.5),
    "He": (0.5, 0.5),
    "Xavier": (1.0, 0.0),
    "NTK": (0.5, 0.0),
    "mean-field": (1.0, 0.0),
}
"""Named initialization schemes -> ``(gamma, gamma')`` ([LXMZ21] Table 1, the seed slides).

LeCun: ``alpha = 1, beta1 = m^-1/2, beta2 = d^-1/2``; He: the same up to
factors 2; Xavier: ``beta1 = sqrt(2/(m+1))``, ``beta2 = sqrt(2/(m+d))``; NTK:
``alpha = sqrt(m)``, ``beta1 = beta2 = 1``; mean-field: ``alpha = m``,
``beta1 = beta2 = 1``.  E et al. (2020) is not a point but a line: see
:func:`e_et_al` and :func:`scheme`.
"""

E_ET_AL = "E et al."
"""Name of the one-parameter scheme of E et al. (2020), accepted by :func:`scheme`."""


def _finite(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _positive(name: str, value) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def regime(gamma, gamma_prime, *, atol: float = ATOL) -> str:
    """Regime of the scaling exponents ``(gamma, gamma')`` ([LXMZ21] Theorems 6, 8).

    Parameters
    ----------
    gamma, gamma_prime : float
        The exponents of ``kappa`` and ``kappa'`` (docs/theory.md §2).
    atol : float
        A point within ``atol`` of a boundary line counts as on it.

    Returns
    -------
    str
        ``"critical"`` on the boundary (``gamma = 1`` and ``gamma' <= 0``, or
        ``gamma' = gamma - 1`` and ``gamma >= 1``, each within ``atol``);
        otherwise ``"linear"`` (``gamma < 1`` or ``gamma' > gamma - 1``) or
        ``"condensed"`` (``gamma > 1`` and ``gamma' < gamma - 1``).

    Raises
    ------
    ValueError
        If an argument is not a finite number or ``atol < 0``.
    """
    gamma = _finite("gamma", gamma)
    gamma_prime = _finite("gamma_prime", gamma_prime)
    atol = _finite("atol", atol)
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol!r}")
    on_vertical = abs(gamma - 1.0) <= atol and gamma_prime <= atol
    on_diagonal = abs(gamma_prime - (gamma - 1.0)) <= atol and gamma >= 1.0 - atol
    if on_vertical or on_diagonal:
        return "critical"
    if gamma < 1.0 or gamma_prime > gamma - 1.0:
        return "linear"
    return "condensed"


def e_et_al(beta_exponent) -> tuple[float, float]:
    """``(gamma, gamma')`` of the scheme of E et al. (2020) with ``beta = m^-s``.

    E et al. take ``alpha = 1``, ``beta2 = 1`` and ``beta1 = beta``, so
    ``kappa = kappa' = beta`` and ``gamma = gamma' = s`` where ``s =
    lim -log(beta)/log(m)`` (``beta_exponent``).  The scheme is the line
    ``gamma' = gamma`` of the phase diagram, not a point: it lies entirely in
    the linear regime (``gamma' = gamma > gamma - 1`` for every ``s``).

    Parameters
    ----------
    beta_exponent : float
        ``s`` with ``beta = m^-s`` (``s = 0``: ``beta`` independent of ``m``).
    """
    s = _finite("beta_exponent", beta_exponent)
    return (s, s)


def scheme(name: str, beta_exponent=None) -> tuple[float, float]:
    """``(gamma, gamma')`` of a named scheme: a key of :data:`SCHEMES` or ``"E et al."``.

    ``"E et al."`` needs ``beta_exponent`` (see :func:`e_et_al`); the fixed
    schemes take none.
    """
    if name == E_ET_AL:
        if beta_exponent is None:
            raise ValueError(
                "scheme 'E et al.' is the line gamma = gamma' = s: give beta_exponent=s "
                "(beta1 = beta = m^-s, beta2 = alpha = 1)"
            )
        return e_et_al(beta_exponent)
    if name not in SCHEMES:
        known = ", ".join([*SCHEMES, E_ET_AL])
        raise ValueError(f"name must be one of {known}; got {name!r}")
    if beta_exponent is not None:
        raise ValueError(f"scheme {name!r} is a fixed point: beta_exponent must be None")
    return SCHEMES[name]


def scales_for(gamma, gamma_prime, m, alpha=1.0) -> tuple[float, float]:
    """Initialization scales ``(beta1, beta2)`` with ``kappa = m^-gamma``, ``kappa' = m^-gamma'``.

    The choice is ``beta1 = sqrt(alpha) m^(-(gamma+gamma')/2)`` and
    ``beta2 = sqrt(alpha) m^(-(gamma-gamma')/2)``: with ``alpha = 1`` it is the
    choice of docs/theory.md §2, and it is the one
    ``TwoLayer.init(gamma=..., gamma_prime=...)`` makes for a net of output
    scale ``alpha``.  Any ``(alpha, beta1, beta2)`` with the same ``kappa`` and
    ``kappa'`` gives the same normalized flow for ReLU.

    Parameters
    ----------
    gamma, gamma_prime : float
    m : int or float
        Width, > 0.
    alpha : float
        Output scale, > 0.

    Returns
    -------
    beta1, beta2 : float
    """
    gamma = _finite("gamma", gamma)
    gamma_prime = _finite("gamma_prime", gamma_prime)
    m = _positive("m", m)
    alpha = _positive("alpha", alpha)
    root = math.sqrt(alpha)
    return (
        root * m ** (-(gamma + gamma_prime) / 2.0),
        root * m ** (-(gamma - gamma_prime) / 2.0),
    )


def kappa(beta1, beta2, alpha) -> float:
    """``kappa = beta1 beta2 / alpha`` ([LXMZ21])."""
    return _positive("beta1", beta1) * _positive("beta2", beta2) / _positive("alpha", alpha)


def kappa_prime(beta1, beta2) -> float:
    """``kappa' = beta1 / beta2`` ([LXMZ21])."""
    return _positive("beta1", beta1) / _positive("beta2", beta2)


def exponents(beta1, beta2, alpha, m) -> tuple[float, float]:
    """Finite-width estimate ``(-log kappa / log m, -log kappa' / log m)`` of ``(gamma, gamma')``.

    Exact for scales that are pure powers of ``m`` (as :func:`scales_for` makes);
    for schemes with constant factors (He: ``sqrt(2/m)``) it converges to the
    limit like ``1/log m``.
    """
    m = _positive("m", m)
    if m <= 1:
        raise ValueError(f"m must be > 1 (log m is the denominator), got {m!r}")
    log_m = math.log(m)
    return (
        -math.log(kappa(beta1, beta2, alpha)) / log_m,
        -math.log(kappa_prime(beta1, beta2)) / log_m,
    )
