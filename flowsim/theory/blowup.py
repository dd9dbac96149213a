"""Blow-up and escape times of the leading-order flow (docs/theory.md §7, §8).

For a two-layer net with multiplicity ``p >= 2`` and ``sigma(0) = 0`` each
neuron follows, while ``f`` is negligible (docs/theory.md §4),

    da/dt = (c_p/alpha) G(w),    dw/dt = (c_p/alpha) a grad G(w),

a vector field homogeneous of degree p, which blows up in finite time ``T*``.
The network escapes (its largest ``|w_k|`` reaches a fixed ``delta``) at about
``min_k T*_k``, and ``T_esc ~ eps^-(p-1)`` for ``theta0 = O(eps)``.  For p = 1
the flow is linear: no blow-up, exponential growth at the rate
``lambda = |c_1| |v| / alpha`` and ``T_esc = (1/lambda) log(1/eps) + O(1)``.  A
three-layer net with p = 1 follows a flow homogeneous of degree 2 ([CL24]):
``T* ~ 1/eps``.

Finite-time blow-up is integrated in rescaled variables: for ``dx/dt = F(x)``
with ``F(l x) = l^q F(x)``, write ``x = N xi`` with ``|xi| = 1``, ``l = log N``,
and change time by ``dt = dsigma / (omega(xi) N^(q-1))``:

    dxi/dsigma = Fs(xi) - (xi . Fs(xi)) xi,    dl/dsigma = xi . Fs(xi),
    dt/dsigma  = exp(-(q-1) l) / omega(xi),    Fs = F / omega,

which exists for all ``sigma``; ``T* = int_0^inf dt/dsigma dsigma``.  For a
neuron ``omega = rho^(p-2)``, ``rho = |w|/|(a, w)|``, keeps the direction
dynamics O(1) when ``w`` shrinks, so neurons that never blow up (``w -> 0``
with ``a`` kept, where ``c_p a G(u) < 0`` on the extremum their direction
reaches) are recognized in finite ``sigma`` (``T* = inf``).  Once ``xi``
settles on a blowing-up ray (``mu = xi . Fs > 0``), the rest of the integral is
``(dt/dsigma)/((q-1) mu)``, added where it falls to ``rtol`` times the time so
far.  The rescaled flows are a model of the integrator core
(:mod:`flowsim.theory._rescaled_kernels`): its DOP853, with a step size per
neuron (each neuron one system of a batch, in parallel over neurons) and its
event location for the time to reach ``delta`` and for the end of a run, so a
fix or a speed-up of the core reaches them.  ``G`` is first rewritten as a sum
over at most ``2 C(D+p-1, p)`` points when that is shorter than the data
(:func:`compress_form`).  Three layers: one coupled flow, the same way.
Accuracy (against the same computation at ``rtol = 1e-12``): relative error of
``T*`` 1.2e-10 at the default ``rtol = 1e-9`` for the two-layer neurons of
benchmark P1 (xtanh, m = 10^4), 1e-13 to 4e-12 for three-layer nets of widths
5 to 50.

For p = 1 and ``sigma(0) != 0`` the output's constant mode
``(sigma0/alpha) sum_k a_k`` relaxes fast (docs/theory.md §6), shifting every
``a_k`` by ``Delta = alpha (mean(y) - mean f0)/(m sigma0)``; afterwards it keeps
``sum_k a_k`` fixed, so the slow flow is ``da_k/dt = kappa (q_k - mean_j q_j)``,
``dq_k/dt = kappa a_k`` (``q = w . v_c/|v_c|``, ``kappa = c_1 |v_c|/alpha``): the
common part of ``q`` drifts linearly at ``kappa mean(a)``, only the deviations
from the mean grow like ``exp(lambda t)``.  Growing every ``(a_k + Delta, q_k)``
as a free p = 1 mode instead underestimates the escape time badly (sigmoid,
eps = 1e-6, delta = 0.2: 20.1 predicted against 48.6 simulated; the pinned
flow gives 51.5, and 12.93 against 12.92 at delta = 0.05).

References
----------
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686.
.. [CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
   condensation. 2024. arXiv:2402.15958.
.. [HNW93] Hairer, Norsett, Wanner. Solving Ordinary Differential Equations I,
   2nd ed., Springer 1993 (II.10: DOP853).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flowsim.models._base import check_data
from flowsim.theory import _rescaled
from flowsim.theory.directions import STATIONARY_RTOL, _is_kinked, _problem

RTOL = 1e-9
"""Default relative tolerance of the rescaled integration."""

BALANCE_RTOL = 1e-12
"""``|p a0^2 - r0^2| <= BALANCE_RTOL (p a0^2 + r0^2)`` counts as balanced (closed form)."""

ATOL_FACTOR = 10.0
"""Absolute tolerance of the two-layer rescaled integration, relative to its ``rtol``
(the direction is a unit vector).  Measured on P1's data (xtanh, m = 2000, against
rtol = 1e-12): relative error of T* 2.1e-10 in 49 steps per neuron (1: 2.2e-11 in 60
steps; the earlier private DOP853 loop: 4.1e-10 in 45)."""

MAX_STEPS = 200_000
"""Most steps of the rescaled integration (any neuron)."""

S_MAX = 1e5
"""Rescaled time after which a neuron that has not blown up is declared never to."""

DEAD_RHO = 1e-8
"""A neuron whose ``|w|/|(a, w)|`` fell below this, on a stable extremum where
``c_p a G(u) < 0``, is declared not to blow up."""

MEAN_Y_RTOL = 1e-12
"""Three-layer nets with a second-layer bias need ``|mean(y)| <= MEAN_Y_RTOL max|y|``."""


@dataclass(frozen=True, eq=False)
class BlowupPrediction:
    """Leading-order prediction of blow-up and escape times (see :func:`blowup_time`).

    Attributes
    ----------
    per_neuron : ndarray, shape (m,)
        Blow-up time ``T*_k`` of each neuron (two layers: input-weight rows;
        three layers: the first-layer neurons, which all blow up together in
        the coupled reduced flow).  ``inf`` for p = 1 or a neuron that does not
        blow up.
    network : float
        ``min_k T*_k`` for p >= 2 and three layers; for p = 1 (no blow-up) the
        time for the largest neuron to reach ``delta`` (= ``network_to_delta``).
    law : str
        ``"power"`` (``T ~ eps^-exponent``) or ``"log"`` (``T ~ (1/lambda) log(1/eps)``).
    exponent : float
        ``p - 1`` (two layers, p >= 2), 1 (three layers), 0 (p = 1).
    network_to_delta : float or None
        Leading-order time for the largest neuron's norm (``|w_k|``, or ``|V_j|``
        for three layers; original units) to reach ``delta``, as
        ``fs.escape(norm=delta)`` measures it; None without ``delta``.
    per_neuron_to_delta : ndarray or None
        The same per neuron (two-layer nets); None otherwise.
    delta : float or None
    p : int
    model : str
        ``"two_layer"`` or ``"three_layer"``.
    closed_form : ndarray of bool, shape (m,)
        Neurons whose ``T*`` came from the balanced-extremum formula.
    growth_rate : float
        ``lambda = |c_1| |v| / alpha`` for p = 1, else NaN.
    r0_eff : float
        p = 1: the largest initial amplitude of the growing mode,
        ``|(w . v_hat + sign(c_1) a)/2|`` (with ``sigma(0) != 0``: of the
        deviations from the neurons' mean); NaN otherwise.
    rtol : float
        Tolerance of the rescaled integration.
    note : str
    """

    per_neuron: np.ndarray
    network: float
    law: str
    exponent: float
    network_to_delta: float | None
    per_neuron_to_delta: np.ndarray | None
    delta: float | None
    p: int
    model: str
    closed_form: np.ndarray
    growth_rate: float
    r0_eff: float
    rtol: float
    note: str

    @property
    def fastest(self) -> int:
        """Index of the neuron that blows up (or reaches ``delta``) first."""
        times = self.per_neuron
        if self.per_neuron_to_delta is not None and not np.any(np.isfinite(times)):
            times = self.per_neuron_to_delta
        return int(np.argmin(times))


# -- public ------------------------------------------------------------------


def blowup_time(net, theta0, X, y, *, delta=None, rtol=RTOL) -> BlowupPrediction:
    """Leading-order blow-up times, and the time to reach ``delta``, from ``theta0``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta0 : ndarray, shape (P,)
        Initial parameters (original units), small.
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    delta : float, optional
        Escape threshold on the largest neuron's norm, original units (the
        ``norm`` of ``fs.escape``).  Required for p = 1.
    rtol : float
        Relative tolerance of the rescaled integration (p >= 2, three layers).

    Returns
    -------
    BlowupPrediction

    Notes
    -----
    Two layers, p >= 2, ``sigma(0) = 0``: a neuron with balanced start
    ``p a0^2 = |w0|^2`` on an extremum ``u*`` of G with ``c_p a0 G(u*) > 0`` blows
    up at ``T* = alpha / ((p-1) sqrt(p) |c_p G(u*)| r0^(p-1))`` and reaches
    ``delta`` at ``T*[1 - (r0/delta)^(p-1)]``; every other neuron is integrated
    (module docstring).

    Two layers, p = 1 (smooth): the flow of ``(a, q = w . v_hat)`` is linear,
    ``q(t) = A e^(lambda t) + B e^(-lambda t)`` with ``A = (q0 + s a0)/2``,
    ``B = (q0 - s a0)/2``, ``s = sign(c_1)``, ``lambda = |c_1||v|/alpha``, and
    the part of w orthogonal to v is constant; the time for ``|w_k|`` to reach
    ``delta`` is solved exactly (``~ (1/lambda) log(delta/|A|)``).  With
    ``sigma(0) != 0``, v uses the centred target and ``(a, w)`` are first moved
    by the fast transient of the output's constant mode (derivations/bias_shift.py):
    ``a += Delta``, ``w += (c_1/sigma0) Delta (a + Delta/2) x_mean`` with
    ``Delta = alpha (mean(y) - mean f(theta0)) / (m sigma0)``; that mode then
    keeps ``sum_k a_k`` fixed, so ``q_k(t) = mean(q0) + kappa mean(a) t +
    A_k e^(lambda t) + B_k e^(-lambda t)`` with ``A_k, B_k`` from the deviations
    from the neurons' mean (module docstring); the hitting time is found by a
    grid scan and bisection.

    Three layers, p = 1, ``sigma(0) = 0`` ([CL24]): the reduced flow of
    ``(a, W, zeta = V v_hat)``, ``da/dt = c|v| W zeta``, ``dW/dt = c|v| a zeta^T``,
    ``dzeta/dt = c|v| W^T a`` (``c = c_1^2/alpha``), homogeneous of degree 2,
    is integrated; the first-layer rows move only along ``v``, so
    ``|V_j(t)|^2 = |V_j(0)|^2 - zeta_j(0)^2 + zeta_j(t)^2``.

    Raises
    ------
    ValueError
        ReLU-like activations (no finite-time blow-up, piecewise leading
        order); p >= 2 with ``sigma(0) != 0`` or on a three-layer net (not
        derived); p = 1 without ``delta``; a three-layer net with a
        second-layer bias and ``mean(y) != 0`` (the ``O(eps^2)`` bias term
        ``(c_1/alpha) mean(y) a^T b`` then leads and drives an exponential
        mode instead of the blow-up: centre y or use ``bias=False``).
    """
    act = net.activation
    if _is_kinked(act):
        raise ValueError(
            f"activation {act.name!r} is piecewise linear (positively homogeneous of degree "
            f"{act.homogeneous}): its leading-order flow has no finite-time blow-up and no "
            "closed form here"
        )
    if delta is not None:
        delta = _positive("delta", delta)
    rtol = _positive("rtol", rtol)
    if not 1e-14 <= rtol <= 1e-2:
        raise ValueError(f"rtol must be in [1e-14, 1e-2], got {rtol!r}")
    theta0 = net.check_theta(theta0)
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0 contains NaN or infinite values")
    X, y = check_data(X, y, net.input_dim)
    p = int(act.multiplicity)
    if getattr(net, "kind", None) == "three_layer":
        return _three_layer(net, theta0, X, y, delta, rtol)
    if p == 1:
        if delta is None:
            raise ValueError(
                "p = 1: the leading-order flow grows exponentially and never blows up; "
                "give delta=... to predict the time to reach it"
            )
        return _two_layer_linear(net, theta0, X, y, delta)
    if act.sigma0 != 0:
        raise ValueError(
            f"activation {act.name!r} has p = {p} and sigma(0) = {act.sigma0:g} != 0: the "
            "blow-up prediction is derived for sigma(0) = 0 only (docs/theory.md §6)"
        )
    return _two_layer_power(net, theta0, X, y, delta, rtol)


# -- helpers -----------------------------------------------------------------


def _positive(name, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


# -- two layers, p >= 2 -------------------------------------------------------


def _two_layer_power(net, theta0, X, y, delta, rtol) -> BlowupPrediction:
    prob = _problem(net, X, y)
    p, c, alpha = prob.p, prob.c, net.alpha
    parts = net.unpack(theta0)
    a0 = np.array(parts["a"], dtype=float)
    W0 = np.array(parts["W"], dtype=float)
    m, D = W0.shape
    r0 = np.linalg.norm(W0, axis=1)
    K = prob.scale
    per_neuron = np.full(m, np.inf)
    to_delta = np.full(m, np.inf) if delta is not None else None

    # closed form: balanced start on an extremum that the neuron climbs to
    closed = np.zeros(m, dtype=bool)
    has_w = r0 > 0
    if np.any(has_w):
        U = W0[has_w] / r0[has_w, None]
        G, g = prob.gradient(U)
        tangential = np.linalg.norm(g - np.sum(g * U, axis=1, keepdims=True) * U, axis=1)
        balanced = np.abs(p * a0[has_w] ** 2 - r0[has_w] ** 2) <= BALANCE_RTOL * (
            p * a0[has_w] ** 2 + r0[has_w] ** 2
        )
        on_extremum = tangential <= STATIONARY_RTOL * p * p * K
        growing = c * a0[has_w] * G > 0
        ok = balanced & on_extremum & growing
        idx = np.flatnonzero(has_w)[ok]
        closed[idx] = True
        T_star = alpha / ((p - 1) * math.sqrt(p) * np.abs(c * G[ok]) * r0[idx] ** (p - 1))
        per_neuron[idx] = T_star
        if delta is not None:
            to_delta[idx] = np.where(
                r0[idx] >= delta, 0.0, T_star * (1.0 - (r0[idx] / delta) ** (p - 1))
            )

    # the others: rescaled integration of the per-neuron leading-order ODE
    rest = np.flatnonzero(~closed)
    start = np.column_stack([a0[rest], W0[rest]])
    N0 = np.linalg.norm(start, axis=1)
    live = r0[rest] > 0  # w0 = 0 stays 0: no growth
    rest, start, N0 = rest[live], start[live], N0[live]
    notes = [f"two-layer, p = {p}: {int(closed.sum())} neurons in closed form"]
    if rest.size:
        log_target = None if delta is None else math.log(delta) - np.log(N0)
        points, weights = compress_form(prob.Xt, prob.y / prob.y.size, p)
        tau, tau_event, status, steps = _neuron_blowup(
            start / N0[:, None], points, weights, p, math.copysign(1.0, c) / K, rtol, log_target
        )
        unit = alpha / (abs(c) * K) * N0 ** (-(p - 1))
        per_neuron[rest] = tau * unit
        if delta is not None:
            to_delta[rest] = tau_event * unit
        notes.append(
            f"{rest.size} integrated (rescaled DOP853, rtol = {rtol:g}, G from "
            f"{weights.size} points, "
            f"{int(steps.sum())} steps, at most {int(steps.max())} for one neuron)"
        )
        dead = int(np.sum(status == 1))
        if dead:
            notes.append(
                f"{dead} neurons do not blow up (T* = inf): w -> 0 with a kept, "
                "c_p a G(u) < 0 at the extremum their direction reaches"
            )
        unresolved = int(np.sum(status == 2))
        if unresolved:
            notes.append(f"{unresolved} neurons unresolved after s = {S_MAX:g} (T* = inf)")
    network = float(np.min(per_neuron)) if m else math.inf
    return BlowupPrediction(
        per_neuron=per_neuron,
        network=network,
        law="power",
        exponent=float(p - 1),
        network_to_delta=None if delta is None else float(np.min(to_delta)),
        per_neuron_to_delta=to_delta,
        delta=delta,
        p=p,
        model="two_layer",
        closed_form=closed,
        growth_rate=math.nan,
        r0_eff=math.nan,
        rtol=rtol,
        note="; ".join(notes),
    )


# -- two layers, p = 1 --------------------------------------------------------


def _two_layer_linear(net, theta0, X, y, delta) -> BlowupPrediction:
    prob = _problem(net, X, y)
    c, alpha = prob.c, net.alpha
    act = net.activation
    parts = net.unpack(theta0)
    a = np.array(parts["a"], dtype=float)
    W = np.array(parts["W"], dtype=float)
    m = a.size
    notes = ["two-layer, p = 1: linear leading-order flow"]
    v = prob.y @ prob.Xt / prob.y.size
    vnorm = float(np.linalg.norm(v))
    lam = abs(c) * vnorm / alpha
    to_delta = np.full(m, np.inf)
    r0_eff = math.nan
    if vnorm == 0 or lam == 0:
        notes.append("v = 0: no growing mode")
    elif act.sigma0 == 0:
        v_hat = v / vnorm
        s = math.copysign(1.0, c)
        q0 = W @ v_hat
        perp2 = np.maximum(np.sum(W**2, axis=1) - q0**2, 0.0)
        A = (q0 + s * a) / 2
        B = (q0 - s * a) / 2
        r0_eff = float(np.max(np.abs(A)))
        to_delta = _linear_hitting_time(A, B, perp2, delta) / lam
        notes.append("time to reach delta in closed form")
    else:
        # fast transient of the constant mode (derivations/bias_shift.py) ...
        sigma0 = act.sigma0
        f0 = (act(prob.Xt @ W.T) @ a) / alpha
        shift = alpha * (y.mean() - f0.mean()) / (m * sigma0)
        x_mean = prob.Xt.mean(axis=0)
        W = W + (c / sigma0) * shift * (a + shift / 2)[:, None] * x_mean[None, :]
        a = a + shift
        # ... then the mode keeps sum_k a_k fixed: da_k/dt = kappa (q_k - mean q),
        # dq_k/dt = kappa a_k, kappa = c_1 |v_c| / alpha
        v_hat = v / vnorm
        s = math.copysign(1.0, c)
        q0 = W @ v_hat
        perp2 = np.maximum(np.sum(W**2, axis=1) - q0**2, 0.0)
        a_bar, q_bar = float(a.mean()), float(q0.mean())
        A = ((q0 - q_bar) + s * (a - a_bar)) / 2
        B = ((q0 - q_bar) - s * (a - a_bar)) / 2
        drift = c * vnorm / alpha * a_bar
        r0_eff = float(np.max(np.abs(A)))
        to_delta = _drift_hitting_time(q_bar, drift, A, B, lam, perp2, delta)
        ratio = m * sigma0**2 / (alpha * abs(c) * vnorm)
        notes.append(
            f"sigma(0) = {sigma0:g}: centred target; the fast constant mode shifts every a_k "
            f"by {shift:.4g}, then pins sum_k a_k: the common part of w . v_hat drifts "
            f"linearly at {drift:.4g}, the deviations grow like exp(lambda t) "
            f"(rate ratio m sigma0^2/(alpha |c_1||v_c|) = {ratio:.3g}"
            + (", time scales NOT separated)" if ratio < 10 else ")")
        )
    return BlowupPrediction(
        per_neuron=np.full(m, np.inf),
        network=float(np.min(to_delta)),
        law="log",
        exponent=0.0,
        network_to_delta=float(np.min(to_delta)),
        per_neuron_to_delta=to_delta,
        delta=delta,
        p=1,
        model="two_layer",
        closed_form=np.zeros(m, dtype=bool),
        growth_rate=lam,
        r0_eff=r0_eff,
        rtol=0.0,
        note="; ".join(notes),
    )


def _drift_hitting_time(q_bar, drift, A, B, lam, perp2, delta, grid=64, horizon=64.0):
    """First ``t >= 0`` with ``perp2 + q(t)^2 >= delta^2`` per neuron, where
    ``q(t) = q_bar + drift t + A e^(lam t) + B e^(-lam t)``.

    Scans windows ``[T/2, T]`` (``T`` doubling from ``1/lam``) on a grid, then
    bisects the first bracketing interval.  Neurons that have not crossed by
    ``horizon`` times the first crossing get ``inf``.
    """
    Q2 = delta**2 - perp2

    def q_at(t, rows):
        return (
            q_bar + drift * t + A[rows, None] * np.exp(lam * t) + B[rows, None] * np.exp(-lam * t)
        )

    m = A.size
    out = np.full(m, np.inf)
    out[Q2 <= (q_bar + A + B) ** 2] = 0.0
    lo = np.zeros(m)
    hi = np.full(m, np.nan)
    T_prev, T = 0.0, 1.0 / lam
    first = math.inf
    while T <= horizon * first and T < 1e300:
        todo = np.flatnonzero(~np.isfinite(out) & np.isnan(hi))
        if todo.size == 0:
            break
        ts = np.linspace(T_prev, T, grid + 1)[1:]
        with np.errstate(over="ignore", invalid="ignore"):
            hit = q_at(ts[None, :], todo) ** 2 >= Q2[todo, None]
        has = hit.any(axis=1)
        j = np.argmax(hit, axis=1)[has]
        rows = todo[has]
        hi[rows] = ts[j]
        lo[rows] = np.where(j > 0, ts[np.maximum(j - 1, 0)], T_prev)
        if rows.size:
            first = min(first, float(np.min(hi[rows])))
        T_prev, T = T, 2 * T
    rows = np.flatnonzero(np.isfinite(hi))
    t_lo, t_hi = lo[rows], hi[rows]
    for _ in range(80):
        mid = 0.5 * (t_lo + t_hi)
        up = q_at(mid[:, None], rows)[:, 0] ** 2 >= Q2[rows]
        t_hi = np.where(up, mid, t_hi)
        t_lo = np.where(up, t_lo, mid)
    out[rows] = t_hi
    return out


def _linear_hitting_time(A, B, perp2, delta):
    """First ``x >= 0`` with ``perp2 + (A e^x + B e^-x)^2 = delta^2`` (inf if none)."""
    out = np.full(A.shape, np.inf)
    start = perp2 + (A + B) ** 2
    out[start >= delta**2] = 0.0
    Q2 = delta**2 - perp2
    can = (start < delta**2) & (Q2 > 0)
    Q = np.sqrt(np.where(can, Q2, 0.0))
    for target in (Q, -Q):
        # A E^2 - target E + B = 0 with E = e^x >= 1
        with np.errstate(divide="ignore", invalid="ignore"):
            disc = target**2 - 4 * A * B
            root = np.sqrt(np.where(disc >= 0, disc, np.nan))
            for sign in (1.0, -1.0):
                E = np.where(A != 0, (target + sign * root) / (2 * A), B / target)
                x = np.where(np.isfinite(E) & (E >= 1.0), np.log(np.where(E > 0, E, 1.0)), np.inf)
                out = np.where(can, np.minimum(out, x), out)
    return out


# -- three layers, p = 1 -------------------------------------------------------


def _three_layer(net, theta0, X, y, delta, rtol) -> BlowupPrediction:
    act = net.activation
    p = int(act.multiplicity)
    if p != 1 or act.sigma0 != 0:
        raise ValueError(
            "three-layer nets: the blow-up prediction covers p = 1 and sigma(0) = 0 only "
            f"(docs/theory.md §8, [CL24]); activation {act.name!r} has p = {p}, "
            f"sigma(0) = {act.sigma0:g}"
        )
    if net.bias and abs(y.mean()) > MEAN_Y_RTOL * max(float(np.max(np.abs(y))), 1e-300):
        raise ValueError(
            f"three-layer net with a second-layer bias and mean(y) = {y.mean():.3g} != 0: the "
            "O(eps^2) term (c_1/alpha) mean(y) a^T b then leads and drives an exponential "
            "(two-layer-like) mode, not the cubic blow-up (docs/theory.md §8, "
            "derivations/three_layer.py); centre y or use bias=False"
        )
    m1, m2 = net.widths
    parts = net.unpack(theta0)
    a0 = np.array(parts["a"], dtype=float)
    W0 = np.array(parts["W"], dtype=float)[:, :m1]
    V0 = np.array(parts["V"], dtype=float)
    Xt = net.augment(X)
    v = y @ Xt / y.size
    vnorm = float(np.linalg.norm(v))
    c = act.leading_coefficient**2 / net.alpha
    rate = c * vnorm
    if rate == 0:
        raise ValueError("v = (1/n) sum_i y_i x~_i is 0: the cubic energy vanishes")
    zeta0 = V0 @ (v / vnorm)
    x0 = np.concatenate([a0, W0.ravel(), zeta0])
    N0 = float(np.linalg.norm(x0))
    if N0 == 0:
        raise ValueError("theta0 is zero on (a, W, V v): nothing grows")

    base = np.sum(V0**2, axis=1) - zeta0**2  # |V_j(t)|^2 = base_j + zeta_j(t)^2
    log_delta = 0.0 if delta is None else math.log(delta)
    params = None
    if delta is not None:
        params = np.concatenate([[_rescaled.THREE_LAYER, math.log(N0), log_delta, m2, m1], base])
    runs = _rescaled.solve(
        np.array([_rescaled.THREE_LAYER, m2, m1]), np.concatenate([x0 / N0, [0.0, 0.0]])[None],
        base[:, None], np.zeros(1),
        np.array([[rtol, math.log(N0), log_delta, 0.0 if delta is None else 1.0]]),
        rtol=rtol, atol=rtol, s_max=S_MAX, max_steps=MAX_STEPS,
        delta_params=None if params is None else params[None],
    )  # fmt: skip
    unit = 1.0 / (rate * N0)
    lost = runs.outcome[0] != _rescaled.BLEW_UP
    T_star = math.inf if lost else float(runs.t_star[0] * unit)
    to_delta = None
    if delta is not None:
        if 0.5 * math.log(np.max(base + zeta0**2)) >= log_delta:
            to_delta = 0.0
        else:
            to_delta = float(runs.t_delta[0] * unit)
    note = (
        f"three-layer, p = 1: reduced cubic-energy flow of (a, W, V v), {x0.size} variables, "
        f"rescaled DOP853, rtol = {rtol:g}"
    )
    if lost:
        note += "; the reduced flow does not blow up"
    return BlowupPrediction(
        per_neuron=np.full(m1, T_star),
        network=T_star,
        law="power",
        exponent=1.0,
        network_to_delta=to_delta,
        per_neuron_to_delta=None,
        delta=delta,
        p=1,
        model="three_layer",
        closed_form=np.zeros(m1, dtype=bool),
        growth_rate=math.nan,
        r0_eff=math.nan,
        rtol=rtol,
        note=note,
    )


def _monomials(D: int, degree: int) -> np.ndarray:
    """Exponents (M, D) of all monomials of the given degree in D variables."""
    if D == 1:
        return np.array([[degree]])
    rows = []
    for first in range(degree, -1, -1):
        for rest in _monomials(D - 1, degree - first):
            rows.append([first, *rest])
    return np.array(rows)


def compress_form(points, weights, p, *, seed=0, rtol=1e-12):
    """A shorter sum with the same degree-p form ``G(w) = sum_i weights_i (w . points_i)^p``.

    ``G`` is fixed by its symmetric tensor (``M = C(D+p-1, p)`` numbers), so
    ``2M`` random unit points with least-squares weights represent it exactly
    when ``2M < n``.  The result is checked on random directions (``G`` and
    ``grad G`` within ``rtol`` of the bound ``sum |weights_i| |points_i|^p``);
    if the check fails, or there is nothing to gain, the input is returned.

    Returns
    -------
    points : ndarray, shape (k, D)
    weights : ndarray, shape (k,)
    """
    points = np.ascontiguousarray(points, dtype=float)
    weights = np.ascontiguousarray(weights, dtype=float)
    n, D = points.shape
    E = _monomials(D, p)
    k = 2 * E.shape[0]
    if k >= n:
        return points, weights
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((k, D))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Phi = np.prod(Z[None, :, :] ** E[:, None, :], axis=2)  # (M, k)
    target = np.prod(points[None, :, :] ** E[:, None, :], axis=2) @ weights  # (M,)
    lam, *_ = np.linalg.lstsq(Phi, target, rcond=None)
    bound = float(np.sum(np.abs(weights) * np.linalg.norm(points, axis=1) ** p))
    U = rng.standard_normal((32, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    for P, w in ((points, weights), (Z, lam)):
        ZP = U @ P.T
        G = (ZP**p) @ w
        grad = p * (ZP ** (p - 1) * w) @ P
        if P is points:
            G_ref, grad_ref = G, grad
    if (
        np.max(np.abs(G - G_ref)) <= rtol * bound
        and np.max(np.abs(grad - grad_ref)) <= p * rtol * bound
    ):
        return Z, lam
    return points, weights


# -- the rescaled integration: two-layer neurons -------------------------------


def _neuron_blowup(start, Xt, y, p, scale, rtol, log_target=None):
    """Rescaled blow-up and event times of neurons ``start = (a0, w0)`` rows (unit norm).

    Returns ``(tau, tau_event, status, steps)``: times in units where the start has norm
    1 and the field is divided by ``K = |scale|^-1`` (see the caller); status 0: blew up,
    1: decays, 2: unresolved.
    """
    m, k = start.shape
    K = 1.0 / abs(scale)
    Y0 = np.column_stack([start, np.zeros((m, 2))])
    targets = np.zeros(m) if log_target is None else np.asarray(log_target, dtype=float)
    watch = 0.0 if log_target is None else 1.0
    tangential = 1e-6 * p * p * K
    constants = [p, scale, rtol, 0.0, watch, DEAD_RHO, tangential]
    C = np.tile(np.array(constants, dtype=float), (m, 1))
    C[:, 3] = targets
    params = None if log_target is None else np.column_stack([np.zeros(m), targets])
    runs = _rescaled.solve(
        np.array([_rescaled.NEURON, k - 1]), Y0, Xt, y, C, rtol=rtol, atol=rtol * ATOL_FACTOR,
        s_max=S_MAX, max_steps=MAX_STEPS, delta_params=params,
    )  # fmt: skip
    tau_event = runs.t_delta
    if log_target is not None:
        rho0 = np.linalg.norm(start[:, 1:], axis=1)
        with np.errstate(divide="ignore"):
            tau_event = np.where(np.log(rho0) >= targets, 0.0, tau_event)
    return runs.t_star, tau_event, runs.outcome, runs.steps
