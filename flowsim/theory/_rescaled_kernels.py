"""The rescaled leading-order flows of :mod:`flowsim.theory.blowup` as a model of the
integrator core (template; see :mod:`flowsim._codegen`).

The state is ``Y = (x, l, t)``: the direction ``x`` (kept on the unit sphere by the field,
which is evaluated at ``x / |x|``, so rounding does not accumulate off it), the log-norm
``l = log N`` and the original time ``t``; the core integrates it in the rescaled time
``sigma`` (blowup's module docstring).  ``dims[0]`` picks the flow:

* :data:`NEURON` (``dims = [NEURON, D]``): one neuron of a two-layer net with
  multiplicity p, ``x = (a, w)``; ``X`` holds the points and ``y`` the weights of
  ``G(w) = sum_i y_i (w . x_i)^p``;
  ``c = [p, sign(c_p)/K, rtol, log_target, watch, dead_rho, tangential tolerance]``;
* :data:`THREE_LAYER` (``dims = [THREE_LAYER, m2, m1]``): the reduced cubic-energy flow
  of a three-layer net, ``x = (a, W, zeta)``; ``X[:, 0]`` holds ``base_j = |V_j|^2 -
  zeta_j^2`` (fixed); ``c = [rtol, log N0, log delta, watch]``.

The value the flow returns (the core's "loss", which its events watch) is the run's
*resolution*: ``tail - rtol t`` once the direction has settled on a blowing-up ray
(``mu = x . F > 0``, remaining time ``tail = (dt/dsigma) / ((q - 1) mu)``) and, with
``watch``, the watched norm has reached ``delta``; -1 where the run is over without a
blow-up (a dying neuron on a stable extremum, or ``l < L_VANISHED``); +1 otherwise.  A
``loss below 0`` event therefore ends the run where its answer is known.  The time at
which the watched norm reaches ``delta`` is the event :func:`reached_delta` (a custom
event of the core: its parameters follow the events' thresholds).
"""

import math

import numpy as np
from numba import carray

from flowsim._jit import jit, jit_inline

# --- template body ---

NEURON = 0
THREE_LAYER = 1

L_VANISHED = -50.0
"""A run whose ``log N`` fell below this is over: the state decays (unresolved)."""


@jit
def _sphere(Y, k):
    """|Y[:k]|."""
    s = 0.0
    for j in range(k):
        s += Y[j] * Y[j]
    return math.sqrt(s)


@jit_inline
def _neuron_g(Y, X, w, p, inv, grad, off):
    """``G(u)`` for ``u = w inv`` (``inv = 1 / |w|``), and ``grad G(u)`` into
    ``grad[off:off + D]``."""
    n, D = X.shape
    G = 0.0
    for d in range(D):
        grad[off + d] = 0.0
    for i in range(n):
        z = 0.0
        for d in range(D):
            z += Y[1 + d] * X[i, d]
        z *= inv
        zp = 1.0
        for _ in range(p - 1):
            zp *= z
        G += w[i] * zp * z
        coef = p * w[i] * zp
        for d in range(D):
            grad[off + d] += coef * X[i, d]
    return G


@jit
def _neuron_flow(Y, X, w, c, out):
    """Rescaled field of one neuron (``out``); returns the run's resolution."""
    D = X.shape[1]
    p = int(c[0])
    scale = c[1]
    s = Y[0] * Y[0]
    r2 = 0.0
    for d in range(D):
        r2 += Y[1 + d] * Y[1 + d]
    s += r2
    inv_n = 1.0 / math.sqrt(s)
    a = Y[0] * inv_n
    rho = math.sqrt(r2) * inv_n  # |w| / |(a, w)|
    inv_w = 1.0 / math.sqrt(r2) if r2 > 0 else 0.0
    G = _neuron_g(Y, X, w, p, inv_w, out, 1)  # grad G(u) in out[1:D + 1] for now
    f0 = scale * rho * rho * G
    mu = a * f0
    sw = scale * a * rho
    for d in range(D):
        out[1 + d] *= sw
        mu += Y[1 + d] * inv_n * out[1 + d]
    out[0] = f0 - mu * a
    for d in range(D):
        out[1 + d] -= mu * Y[1 + d] * inv_n
    out[D + 1] = mu
    if rho > 0:
        inv_omega = 1.0  # rho^(2 - p)
        for _ in range(p - 2):
            inv_omega /= rho
        out[D + 2] = math.exp(-(p - 1) * Y[D + 1]) * inv_omega
    else:
        out[D + 2] = math.inf
    # the resolution
    if mu > 0 and (c[4] == 0.0 or (rho > 0 and Y[D + 1] + math.log(rho) >= c[3])):
        return out[D + 2] / ((p - 1) * mu) - c[2] * Y[D + 2]
    if Y[D + 1] < L_VANISHED:
        return -1.0
    if rho < c[5] and scale * a * G < 0:  # dying: on a stable extremum of G?
        grad = np.empty(D)
        _neuron_g(Y, X, w, p, inv_w, grad, 0)
        gu = 0.0
        for d in range(D):
            gu += grad[d] * Y[1 + d] * inv_w
        tang = 0.0
        for d in range(D):
            r = grad[d] - gu * Y[1 + d] * inv_w
            tang += r * r
        if math.sqrt(tang) <= c[6]:
            return -1.0
    return 1.0


@jit
def _three_layer_field(Y, X, c, dims, out):
    """Rescaled reduced field of a three-layer net (``out``); returns ``mu``."""
    m2 = dims[1]
    m1 = dims[2]
    iz = m2 + m2 * m1
    k = iz + m1
    N = _sphere(Y, k)
    for i in range(m2):
        s = 0.0
        for j in range(m1):
            s += Y[m2 + i * m1 + j] * Y[iz + j]
        out[i] = s / (N * N)
    for i in range(m2):
        for j in range(m1):
            out[m2 + i * m1 + j] = Y[i] * Y[iz + j] / (N * N)
    for j in range(m1):
        s = 0.0
        for i in range(m2):
            s += Y[m2 + i * m1 + j] * Y[i]
        out[iz + j] = s / (N * N)
    mu = 0.0
    for q in range(k):
        mu += Y[q] * out[q] / N
    for q in range(k):
        out[q] -= mu * Y[q] / N
    out[k] = mu
    out[k + 1] = math.exp(-Y[k])
    return mu


@jit
def _three_layer_log_norm(Y, base, off, log_n0, m2, m1):
    """``log max_j |V_j|`` in original units (the watched norm; ``base_j = base[off + j]``)."""
    iz = m2 + m2 * m1
    k = iz + m1
    N = _sphere(Y, k)
    big = 0.0
    for j in range(m1):
        zeta = math.exp(log_n0 + Y[k]) * Y[iz + j] / N
        big = max(big, base[off + j] + zeta * zeta)
    return 0.5 * math.log(big) if big > 0 else -math.inf


@jit
def _three_layer_resolution(Y, X, c, dims, mu):
    k = Y.size - 2
    watched = _three_layer_log_norm(Y, X[:, 0], 0, c[1], dims[1], dims[2])
    reached = c[3] == 0.0 or watched >= c[2]
    if mu > 0 and Y[k + 1] > 0 and reached:
        return math.exp(-Y[k]) / mu - c[0] * Y[k + 1]
    if Y[k] < L_VANISHED:
        return -1.0
    return 1.0


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """The rescaled field (``out``); returns the run's resolution (module docstring)."""
    if dims[0] == NEURON:
        return _neuron_flow(theta, X, y, c, out)
    mu = _three_layer_field(theta, X, c, dims, out)
    return _three_layer_resolution(theta, X, c, dims, mu)


@jit
def loss(theta, X, y, c, dims):
    out = np.empty(theta.size)
    mode = np.zeros((0, 0), dtype=np.int8)
    return flow(theta, X, y, c, dims, mode, np.zeros((0, 0)), out)


@jit
def layer_norms(theta, dims, out):
    out[0] = _sphere(theta, theta.size - 2)


@jit
def max_neuron_norm(theta, dims):
    return _sphere(theta, theta.size - 2)


@jit
def reached_delta(t, Y, thr, n_events, loss_value):
    """Custom event of the core: the watched norm reaches ``delta``.  After the events'
    thresholds, ``thr`` holds ``[kind, log_target]`` (a neuron: ``log |w| - log N0``
    against ``log_target``) or ``[kind, log N0, log delta, m2, m1, base...]``."""
    n = Y.size - 2
    if thr[n_events] == NEURON:
        N = _sphere(Y, n)
        rho2 = 0.0
        for d in range(1, n):
            rho2 += Y[d] * Y[d]
        if rho2 <= 0:
            return -math.inf
        return Y[n] + 0.5 * math.log(rho2 / (N * N)) - thr[n_events + 1]
    m2 = int(thr[n_events + 3])
    m1 = int(thr[n_events + 4])
    watched = _three_layer_log_norm(Y, thr, n_events + 5, thr[n_events + 1], m2, m1)
    return watched - thr[n_events + 2]


def _c_reached_delta(t, y, n_y, thr, n_thr, n_events, loss_value):
    return reached_delta(t, carray(y, (n_y,)), carray(thr, (n_thr,)), n_events, loss_value)
