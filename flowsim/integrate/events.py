"""Events: threshold crossings located on the dense output (template).

Each event is a kind and a threshold; its function ``g`` is negative before
the event and crosses zero upwards at it:

* ``EV_NORM_ABOVE``: ``g = max_k |w_k| - threshold`` (normalized units; the
  driver converts thresholds given in original units), the escape of the
  largest neuron;
* ``EV_LOSS_BELOW``: ``g = threshold - loss``;
* ``EV_LOSS_ABOVE``: ``g = loss - threshold``;
* a kind at or above ``EV_BUILTIN`` is the address of a compiled user event
  (:func:`flowsim.event`): ``g`` is its value at (t, theta, loss) in original
  units.  The thresholds array then continues past the events' thresholds with
  the time scale and the per-parameter scale ``[T, S...]`` that the callback
  needs to convert, and the callback is called as ``g(t, y, thresholds,
  n_events, loss)`` (:mod:`flowsim._abi` conventions).

The crossing inside an accepted step is found by the Illinois variant of
regula falsi on the step's dense output, to a relative time tolerance of a
few ulp (or ``MAX_ITER`` iterations).  An event with ``g >= 0`` already at the
start has no crossing: :func:`flowsim.simulate` fires it at t = 0 before the
loop starts (each event fires once).
"""

import numpy as np  # noqa: F401 - used in the generated module

from flowsim import _abi
from flowsim._dense import dense_eval
from flowsim._jit import jit
from flowsim.integrate._model import loss, max_neuron_norm

# --- template body ---

EV_NORM_ABOVE = 0
EV_LOSS_BELOW = 1
EV_LOSS_ABOVE = 2
EV_BUILTIN = 16
MAX_ITER = 100


@jit
def event_value(kinds, thresholds, q, t, y, loss_value, dims):
    kind = kinds[q]
    if kind == EV_NORM_ABOVE:
        return max_neuron_norm(y, dims) - thresholds[q]
    if kind == EV_LOSS_BELOW:
        return thresholds[q] - loss_value
    if kind == EV_LOSS_ABOVE:
        return loss_value - thresholds[q]
    return _abi.call(kind, (t, y, thresholds, kinds.size, loss_value))


@jit
def event_values(kinds, thresholds, t, y, loss_value, dims, out):
    for q in range(kinds.size):
        out[q] = event_value(kinds, thresholds, q, t, y, loss_value, dims)


@jit
def _g_at(kinds, thresholds, q, t0, y0, K, P, h, theta, dims, X, Y, c, yd):
    dense_eval(y0, K, P, h, theta, yd)
    loss_value = 0.0
    if kinds[q] != EV_NORM_ABOVE:
        loss_value = loss(yd, X, Y, c, dims)
    return event_value(kinds, thresholds, q, t0 + theta * h, yd, loss_value, dims)


@jit
def locate_event(kinds, thresholds, q, t0, y0, K, P, h, dims, X, Y, c, g0, g1, yd):
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
        gm = _g_at(kinds, thresholds, q, t0, y0, K, P, h, mid, dims, X, Y, c, yd)
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
