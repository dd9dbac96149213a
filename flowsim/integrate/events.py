"""Events: threshold crossings located on the dense output (template).

Each event is a kind and a threshold; its function ``g`` is negative before
the event and crosses zero upwards at it:

* ``EV_NORM_ABOVE``: ``g = max_k |w_k| - threshold`` (normalized units; the
  driver converts thresholds given in original units), the escape of the
  largest neuron;
* ``EV_LOSS_BELOW``: ``g = threshold - loss``;
* ``EV_LOSS_ABOVE``: ``g = loss - threshold``.

The crossing inside an accepted step is found by the Illinois variant of
regula falsi on the step's dense output, to a relative time tolerance of a
few ulp (or ``MAX_ITER`` iterations).  An event with ``g >= 0`` already at the
start has no crossing: :func:`flowsim.simulate` fires it at t = 0 before the
loop starts (each event fires once).
"""

import numpy as np  # noqa: F401 - used in the generated module

from flowsim._dense import dense_eval
from flowsim._jit import jit
from flowsim.integrate._model import loss, max_neuron_norm

# --- template body ---

EV_NORM_ABOVE = 0
EV_LOSS_BELOW = 1
EV_LOSS_ABOVE = 2
MAX_ITER = 100


@jit
def event_value(kind, threshold, y, loss_value, dims):
    if kind == EV_NORM_ABOVE:
        return max_neuron_norm(y, dims) - threshold
    if kind == EV_LOSS_BELOW:
        return threshold - loss_value
    return loss_value - threshold


@jit
def event_values(kinds, thresholds, y, loss_value, dims, out):
    for q in range(kinds.size):
        out[q] = event_value(kinds[q], thresholds[q], y, loss_value, dims)


@jit
def _g_at(kind, threshold, y0, K, P, h, theta, dims, X, Y, c, yd):
    dense_eval(y0, K, P, h, theta, yd)
    loss_value = 0.0
    if kind != EV_NORM_ABOVE:
        loss_value = loss(yd, X, Y, c, dims)
    return event_value(kind, threshold, yd, loss_value, dims)


@jit
def locate_event(kind, threshold, y0, K, P, h, dims, X, Y, c, g0, g1, yd):
    """theta in (0, 1] with g(y(t0 + theta h)) = 0, given g0 < 0 <= g1."""
    lo = 0.0
    hi = 1.0
    glo = g0
    ghi = g1
    side = 0
    for _ in range(MAX_ITER):
        if hi - lo <= 4e-16 * max(1.0, hi):
            break
        mid = (lo * ghi - hi * glo) / (ghi - glo)
        if not (lo < mid < hi):
            mid = 0.5 * (lo + hi)
        gm = _g_at(kind, threshold, y0, K, P, h, mid, dims, X, Y, c, yd)
        if gm >= 0.0:
            hi = mid
            ghi = gm
            if side == 1:
                glo *= 0.5
            side = 1
        else:
            lo = mid
            glo = gm
            if side == -1:
                ghi *= 0.5
            side = -1
        if gm == 0.0:
            break
    return hi
