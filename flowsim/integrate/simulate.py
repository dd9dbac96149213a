"""``simulate``: the one entry point for integrating a network's gradient flow.

The state is integrated in normalized variables (``theta = S * theta_bar``,
``t = T * t_bar``; see the models) so that tolerances mean the same at any
initialization scale.  The stepping loop is compiled
(:mod:`flowsim.integrate.explicit`, :mod:`flowsim.integrate.discrete`) and runs
in chunks; between chunks this driver updates the progress bar and enforces
``max_steps`` and ``max_wall``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numba
import numpy as np
from numpy.typing import ArrayLike

from flowsim import _abi
from flowsim._memory import over_limit
from flowsim._progress import Progress
from flowsim.integrate.core import core
from flowsim.integrate.explicit import N_FST, N_IST
from flowsim.integrate.tableaus import TABLEAUS
from flowsim.integrate.training import check as check_training
from flowsim.integrate.trajectory import EventRecord, Trajectory, package_versions
from flowsim.models._base import Model, kink_slopes, no_switching, real_array

# Method table: name -> (family, tableau name or discrete rule, adaptive)
METHODS: dict[str, tuple[str, str | int, bool]] = {
    "dopri5": ("rk", "dopri5", True),
    "dop853": ("rk", "dop853", True),
    "tsit5": ("rk", "tsit5", True),
    "rk4": ("rk", "rk4", False),
    "rkc": ("rkc", "rkc", True),
    "rodas": ("rodas", "rodas", True),
    "bdf": ("bdf", "bdf", True),
    "auto": ("auto", "auto", True),
    "gd": ("discrete", 0, False),
    "adam": ("discrete", 1, False),
}

# status codes of the compiled loops (mirrors flowsim.integrate.explicit.S_*)
_STATUS = {1: "done", 2: "event", 3: "nonfinite", 4: "step_too_small"}
_EV_CODES = {"norm": 0, "loss_below": 1, "loss_above": 2}
_CHUNK_SECONDS = 0.25


@dataclass(frozen=True)
class Event:
    """A threshold event located on the dense output.

    Use :func:`escape`, :func:`loss_below`, :func:`loss_above` or :func:`event`
    to make one.  ``quantity`` is ``"norm"`` (largest neuron input-weight norm),
    ``"loss_below"``, ``"loss_above"`` or ``"custom"`` (``function``, see
    :func:`event`); ``units`` applies to norms (``"original"`` or ``"normalized"``).
    """

    name: str
    quantity: str
    threshold: float
    units: str = "original"
    terminal: bool = True
    function: object = field(default=None, compare=False)
    direction: int = 1

    def __post_init__(self):
        if self.quantity == "custom":
            if not isinstance(self.function, numba.core.registry.CPUDispatcher):
                raise TypeError(
                    "a custom event's function must be a @numba.njit function "
                    f"g(t, theta, loss) -> float, got {type(self.function).__name__}"
                )
            if isinstance(self.direction, bool) or self.direction not in (1, -1, 0):
                raise ValueError(f"event direction must be 1, -1 or 0, got {self.direction!r}")
            return
        try:
            threshold = float(self.threshold)
        except (TypeError, ValueError):
            raise ValueError(
                f"event threshold must be a number > 0, got {self.threshold!r}"
            ) from None
        object.__setattr__(self, "threshold", threshold)
        if self.quantity not in _EV_CODES:
            raise ValueError(
                f"event quantity must be one of {sorted(_EV_CODES)}, got {self.quantity!r}"
            )
        if self.units not in ("original", "normalized"):
            raise ValueError(f"event units must be 'original' or 'normalized', got {self.units!r}")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"event threshold must be > 0, got {self.threshold!r}")


def escape(norm: float | None = None, *, loss: float | None = None, units="original",
           terminal=True) -> Event:  # fmt: skip
    """Escape event: the largest neuron's norm reaches ``norm``, or the loss falls to ``loss``."""
    if (norm is None) == (loss is None):
        raise ValueError("escape needs exactly one of norm=... or loss=...")
    if norm is not None:
        return Event("escape", "norm", norm, units, terminal)
    return Event("escape", "loss_below", loss, units, terminal)


def event(function, *, name: str | None = None, terminal: bool = True,
          direction: int = 1) -> Event:  # fmt: skip
    """Event given by a compiled function: it fires where ``g`` crosses 0.

    Parameters
    ----------
    function : numba dispatcher
        ``g(t, theta, loss) -> float``, an ``@numba.njit`` function of the time,
        the parameters and the loss, all in original units (``theta`` float64,
        shape (P,); do not modify it).  The crossing is located on the dense
        output like the built-in events' (at the iterate for ``gd`` and ``adam``).
    direction : {1, -1, 0}
        1: ``g`` rises through 0 (negative before the event; ``g >= 0`` at the
        start fires there); -1: ``g`` falls through 0 (``g <= 0`` at the start
        fires there); 0: either, i.e. ``g`` leaves the sign it has at the start
        (an event fires once, so its first crossing is the one that counts).
    name : str, optional
        Name of the event in the trajectory (default: the function's name).
    terminal : bool
        Stop the run at the event.

    Notes
    -----
    The function is called from the compiled stepping loop through a C callback
    (:mod:`flowsim._abi`), compiled once per process (about a second), so a run
    with it stays compiled end to end.  A trajectory records it by name.
    """
    label = name if name is not None else getattr(function, "__name__", "event")
    return Event(str(label), "custom", float("nan"), "original", bool(terminal), function,
                 direction)  # fmt: skip


def loss_below(threshold: float, *, terminal=True) -> Event:
    """Event: the loss falls to ``threshold``."""
    return Event("loss_below", "loss_below", threshold, "original", terminal)


def loss_above(threshold: float, *, terminal=True) -> Event:
    """Event: the loss rises to ``threshold``."""
    return Event("loss_above", "loss_above", threshold, "original", terminal)


def _event_kind(event: Event, start) -> int:
    """The compiled loop's code of a built-in event, or the address of a custom
    event's callback (:mod:`flowsim.integrate.events`).  ``start``: a function
    giving ``(t0, theta0, loss0)``, for a custom event of direction 0."""
    if event.quantity != "custom":
        return _EV_CODES[event.quantity]
    sign = event.direction
    if sign == 0:  # leave the starting sign: watch for the crossing away from it
        sign = 1 if float(event.function(*start())) < 0.0 else -1
    return _event_callback(event.function, float(sign))


@functools.lru_cache(maxsize=64)
def _event_callback(fn, sign: float) -> int:
    """Address of ``g(t_bar, y_bar, thresholds, n_events, loss)`` around ``sign * fn``
    (the compiled loops watch upward crossings)."""

    @numba.njit
    def g(t_bar, y_bar, thresholds, n_events, loss_value):
        theta = np.empty(y_bar.size)
        for p in range(y_bar.size):
            theta[p] = thresholds[n_events + 1 + p] * y_bar[p]
        return sign * float(fn(t_bar * thresholds[n_events], theta, loss_value))

    def c_g(t_bar, y, n_y, thr, n_thr, n_events, loss_value):
        return g(t_bar, numba.carray(y, (n_y,)), numba.carray(thr, (n_thr,)), n_events,
                 loss_value)  # fmt: skip

    return numba.cfunc(_abi.EVENT_SIGNATURE, nogil=True)(c_g).address


def _threshold_unit(event: Event, neuron_scale: float) -> float:
    """Original-unit norms are divided by the neuron layer's scale; losses are unitless."""
    return neuron_scale if event.quantity == "norm" and event.units == "original" else 1.0


def default_save_times(t_end: float, n_save: int) -> np.ndarray:
    """``0`` and ``n_save - 1`` log-spaced times from ``t_end * 1e-6`` to ``t_end``."""
    times = np.logspace(math.log10(t_end) - 6, math.log10(t_end), n_save - 1)
    times[-1] = t_end  # logspace may overshoot t_end by an ulp
    return np.concatenate([[0.0], np.minimum(times, t_end)])


def _check_options(method, t_end, rtol, atol, n_save, dt, max_steps, max_wall):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    family, rule, adaptive = METHODS[method]
    if family == "rk" and rule not in TABLEAUS:
        raise ValueError(f"method {method!r} is not available in this build")
    try:
        t_end = float(t_end)
    except (TypeError, ValueError):
        raise ValueError(f"t_end must be a positive number, got {t_end!r}") from None
    if not (math.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end must be a positive finite number, got {t_end!r}")
    if adaptive:
        if not (isinstance(rtol, (int, float)) and 1e-14 <= rtol <= 0.1):
            raise ValueError(f"rtol must be in [1e-14, 0.1], got {rtol!r}")
        if not (isinstance(atol, (int, float)) and 0 < atol <= 1 and math.isfinite(atol)):
            raise ValueError(
                f"atol must be in (0, 1], got {atol!r} (it acts on the normalized state, "
                "so 1e-12 is already near pure relative control)"
            )
    else:
        if dt is None:
            raise ValueError(f"method {method!r} takes a fixed step: give dt=... (original units)")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and 0 < dt <= t_end):
            raise ValueError(f"dt must be in (0, t_end], got {dt!r}")
    if isinstance(n_save, bool) or not isinstance(n_save, (int, np.integer)) or n_save < 2:
        raise ValueError(f"n_save must be an integer >= 2, got {n_save!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if max_wall is not None and not (isinstance(max_wall, (int, float)) and max_wall > 0):
        raise ValueError(f"max_wall must be a positive number of seconds or None, got {max_wall!r}")
    return family, rule, adaptive, t_end


def _fire_at_start(kernels, y_bar, Xa, y, c, dims, ev_kind, ev_thr, ev_terminal, ev_g, ev_t,
                   ev_states, ev_loss, t_start=0.0) -> int:  # fmt: skip
    """Fire, at the start ``t_start`` (the kernel's time units), the events whose
    condition already holds there (``g >= 0``).

    The compiled loops fire an event where its ``g`` crosses zero upwards; one
    that starts at or above zero has no crossing and would never fire.  It is
    recorded here at t = 0 with the initial state and loss instead (and, like
    every event, fires once).  Returns the index of the first terminal one,
    which ends the run at t = 0, or -1.
    """
    if ev_kind.size == 0:
        return -1
    loss0 = float(kernels.loss(y_bar, Xa, y, c, dims))
    kernels.event_values(ev_kind, ev_thr, t_start, y_bar, loss0, dims, ev_g)
    stop = -1
    for q in np.flatnonzero(ev_g >= 0.0):
        ev_t[q] = t_start
        ev_states[q] = y_bar
        ev_loss[q] = loss0
        if ev_terminal[q] and stop < 0:
            stop = int(q)
    return stop


def _event_config(event: Event) -> dict:
    """What a result records of an event (a custom one's function by name)."""
    out = {k: v for k, v in vars(event).items() if k != "function"}
    if event.quantity == "custom":
        fn = event.function
        out["threshold"] = None
        out["function"] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    return out


def _check_events(events) -> tuple:
    """``events`` as a tuple of Event; None means none, a single Event is a list of one."""
    if events is None:
        return ()
    if isinstance(events, Event):
        return (events,)
    if isinstance(events, str) or not hasattr(events, "__iter__"):
        raise ValueError(
            f"events must be a list of Event objects (see flowsim.escape) or None, got {events!r}"
        )
    events = tuple(events)
    for event in events:
        if not isinstance(event, Event):
            raise ValueError(f"events must be Event objects (see flowsim.escape), got {event!r}")
    return events


def _check_scales(scales) -> dict:
    try:
        return {str(k): float(v) for k, v in dict(scales).items()}
    except (TypeError, ValueError):
        raise ValueError(f"scales must map layer names to numbers, got {scales!r}") from None


ADAM_EPS_FORMS = {"torch": 0, "tf1": 1}
"""Adam's epsilon: ``"torch"`` adds it to sqrt(v_hat), ``"tf1"`` (TensorFlow 1's
epsilon-hat) to sqrt(v) with the bias corrections folded into the step size
(:mod:`flowsim.integrate.discrete`)."""
_ADAM_KEYS = ("beta1", "beta2", "eps", "eps_form", "weight_decay")


def _check_adam(adam) -> dict:
    """``adam`` as {beta1, beta2, eps, eps_form, weight_decay}: from a dict with
    those keys (eps_form and weight_decay optional) or a tuple (beta1, beta2,
    eps[, eps_form]), which has no weight decay."""
    usage = (
        "adam must be (beta1, beta2, eps), (beta1, beta2, eps, eps_form) or "
        "dict(beta1=..., beta2=..., eps=..., eps_form='torch' | 'tf1', weight_decay=0.0)"
    )
    if isinstance(adam, dict):
        unknown = sorted(set(map(str, adam)) - set(_ADAM_KEYS))
        missing = [k for k in _ADAM_KEYS[:3] if k not in adam]
        if unknown or missing:
            bad = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
            raise ValueError(f"{usage}; got {bad}")
        values = [adam[k] for k in _ADAM_KEYS[:3]] + [adam.get("eps_form", "torch")]
        weight_decay = adam.get("weight_decay", 0.0)
    else:
        try:
            values = list(adam)
        except TypeError:
            raise ValueError(f"{usage}, got {adam!r}") from None
        if len(values) == 3:
            values.append("torch")
        if len(values) != 4:
            raise ValueError(f"{usage}, got {adam!r}")
        weight_decay = 0.0
    try:
        b1, b2, eps, wd = (float(v) for v in (*values[:3], weight_decay))
    except (TypeError, ValueError):
        raise ValueError(f"{usage}, got {adam!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1 and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"adam needs 0 <= beta1, beta2 < 1 and eps >= 0, got {adam!r}")
    if not (wd >= 0 and math.isfinite(wd)):
        raise ValueError(f"adam weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if values[3] not in ADAM_EPS_FORMS:
        raise ValueError(f"adam eps_form must be one of {list(ADAM_EPS_FORMS)}, got {values[3]!r}")
    return {"beta1": b1, "beta2": b2, "eps": eps, "eps_form": values[3], "weight_decay": wd}


def saved_output_bytes(k: int, save_state, P: int, n_layers: int) -> int:
    """Bytes of the output of ``k`` save points: ``8 (k (L + 4) + 2 R P)`` (times, loss,
    the ``L`` layer norms and the largest neuron norm; the ``R`` saved states and their
    copy in the Trajectory), ``R = k`` for ``"all"``, 1 for ``"final"``, ``ceil(k / s)``
    for a stride ``s``.  Python integers: no overflow however large ``k``."""
    if save_state == "final":
        rows = 1
    elif isinstance(save_state, (int, np.integer)) and not isinstance(save_state, bool):
        rows = -(-k // max(int(save_state), 1))
    else:
        rows = k
    return 8 * (k * (n_layers + 4) + 2 * rows * P)


def _check_output_memory(k, save_state, P, n_layers, name):
    """ValueError, before anything is allocated, when :func:`saved_output_bytes` exceeds
    the memory limit."""
    reason = over_limit(saved_output_bytes(k, save_state, P, n_layers), "the saved output would")
    if reason is not None:
        raise ValueError(f"{name}: {k} save points with save_state = {save_state!r}: {reason}")


def _save_plan(save, n_save, t_end, save_state, t0=0.0):
    if save is None:  # log-spaced in the time elapsed since t0
        save_t = t0 + default_save_times(t_end - t0, n_save)
    else:
        try:
            save_t = np.asarray(save, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(
                f"save must be None (log-spaced, n_save points) or an array of times, got {save!r}"
            ) from None
        if save_t.size == 0 or not np.all(np.isfinite(save_t)):
            raise ValueError("save must be a non-empty array of finite times")
        if np.any(np.diff(save_t) < 0) or save_t[0] < t0 or save_t[-1] > t_end:
            raise ValueError(
                "save times must be sorted and within [t0, t_end]"
                + (f" = [{t0:g}, {t_end:g}] (t0: where the run starts)" if t0 else "")
            )
    k = save_t.size
    if save_state == "all":
        rows = np.arange(k)
    elif save_state == "final":
        rows = np.full(k, -1)
        rows[-1] = 0
    elif (
        isinstance(save_state, (int, np.integer))
        and not isinstance(save_state, bool)
        and save_state >= 1
    ):
        rows = np.full(k, -1)
        picked = np.arange(0, k, int(save_state))
        rows[picked] = np.arange(picked.size)
    else:
        raise ValueError(
            f"save_state must be 'all', 'final' or a positive stride, got {save_state!r}"
        )
    return save_t, rows.astype(np.int64)


def simulate(
    net: Model,
    theta0: ArrayLike | Trajectory,
    X: ArrayLike,
    y: ArrayLike,
    *,
    t_end: float,
    method: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-12,
    save: ArrayLike | None = None,
    n_save: int = 200,
    save_state: str | int = "all",
    events: Iterable[Event] | None = (),
    dt: float | None = None,
    scales: dict[str, float] | None = None,
    max_steps: int = 10**8,
    max_wall: float | None = None,
    progress: bool | None = None,
    adam: tuple | dict = (0.9, 0.999, 1e-8),
    switching: str | bool = "auto",
    t0: float | None = None,
    penalty=None,
    dropout: float | tuple[float, float] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> Trajectory:
    """Integrate the gradient flow of ``net`` on data ``(X, y)`` from ``theta0``.

    The flow is ``dtheta/dt = -grad R`` with ``R = 1/(2n) sum_i (f(x_i) - y_i)^2``
    (note the 1/2).  PyTorch's ``nn.MSELoss()`` is ``2 R``: gradient descent on it
    at learning rate ``lr`` is ``gd`` here with ``dt = 2 lr``, and ``steps`` of it
    reach ``t = 2 lr steps``, not ``lr steps``; :func:`flowsim.torch_time` and
    :func:`flowsim.torch_steps` convert.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta0 : ndarray, shape (P,), or Trajectory
        Initial parameters, original units; or a Trajectory to continue from
        its ``theta_final`` at its ``t_final`` (a saved, stopped or interrupted
        run).  The result is then the whole run: the earlier arrays, events and
        counts followed by (added to) the continuation's.  The continuation
        keeps the earlier run's ``scales`` unless given.  ``gd`` (same ``dt``)
        and ``adam`` (from an ``adam`` run with the same ``dt``: its moments and
        step count are stored in the Trajectory) continue bit for bit as the
        uninterrupted run, and count one more gradient evaluation (at the
        stop, in both pieces).  ``rk4`` agrees to a few ulp, not bit for bit:
        the step landing on the first piece's ``t_end`` is ``t_end - t``,
        rounded.  Adaptive methods restart their step-size control (and
        ``auto`` its method choice) at ``t0``: they agree with an uninterrupted
        run to their global error (rtol 1e-10: 2e-14 relative, measured), not
        bit for bit.  Events are evaluated afresh: one that holds at ``t0`` (an
        escape already passed) fires there; leave it out to run on.
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    t_end : float
        Final time, original units (for ``gd``/``adam``: ``iterations * dt``).
    t0 : float, optional
        Start time (default 0, or the ``t_final`` of a Trajectory ``theta0``);
        for ``gd``/``adam`` a whole number of steps ``dt``, counted as done.
    method : str
        ``"dopri5"``, ``"dop853"``, ``"tsit5"`` (adaptive Runge-Kutta),
        ``"rodas"`` (linearly implicit, for stiff flows; two-layer nets),
        ``"bdf"`` (variable-order implicit multistep, for stiff flows; two-layer nets
        and three-layer nets with smoothed kinks), ``"rkc"`` (stabilized explicit,
        second order), ``"auto"`` (default: dopri5, switching to bdf on two-layer
        nets or rkc on three-layer nets where the flow is stiff; bdf from the start
        on three-layer nets with smoothed kinks; its bdf runs at rtol / 100 and atol / 100,
        which keeps the global error per tolerance of the other methods;
        ``Trajectory.method_log`` says which ran when), ``"rk4"`` (fixed
        step ``dt``), ``"gd"`` (gradient descent, learning rate ``dt``) or
        ``"adam"`` (learning rate ``dt``, parameters ``adam``).  ``gd`` and
        ``adam`` evaluate events at every iterate: one fires at the first
        iterate where it holds, with that iterate's time and state (no
        interpolation between iterates).
    rtol, atol : float
        Tolerances of the adaptive methods, on the normalized state.
    save : array_like, optional
        Save times (original units).  Default: 0 and ``n_save - 1`` log-spaced
        times up to ``t_end``.
    save_state : "all", "final" or int
        Keep the full state at every save point, only at the last, or every
        ``k``-th; observables (loss, norms) are kept at every save point.
    events : Event, sequence of Event, or None
        See :func:`escape`, :func:`loss_below`, :func:`loss_above`.  An event
        whose condition already holds at t = 0 (a norm above its threshold, a
        loss below a ``loss_below`` threshold) fires at t = 0 with the initial
        state; a terminal one ends the run there (status ``"event"``).
    scales : dict, optional
        Per-layer normalization scales; default: the RMS of each layer of theta0.
    max_steps, max_wall : int, float
        Stop with status ``"max_steps"`` / ``"max_wall"`` (seconds).
    progress : bool, optional
        Show the simulated time, the steps and the method running (no ETA: the
        cost of the time ahead is not known): on a terminal a line redrawn in
        place, elsewhere (a log, a pipe) a line every 30 s
        (:data:`flowsim._progress.LOG_INTERVAL`).  Default: shown once the run
        has taken 2 s; False: nothing.
    adam : tuple or dict
        ``(beta1, beta2, eps)``, ``(beta1, beta2, eps, eps_form)`` or
        ``dict(beta1=..., beta2=..., eps=..., eps_form=...)``; ``eps_form``
        ``"torch"`` (default; PyTorch, Kingma-Ba algorithm 1: eps added to
        ``sqrt(v_hat)``) or ``"tf1"`` (TensorFlow 1's epsilon-hat: ``theta -=
        lr_k m / (sqrt(v) + eps)``, ``lr_k = lr sqrt(1 - beta2^k) / (1 - beta1^k)``).
        The dict may add ``weight_decay=wd`` (default 0): AdamW's decoupled
        decay, PyTorch's form (each step scales theta by ``1 - lr wd`` first).
    switching : "auto" or bool
        Treat the kinks of a piecewise-linear activation (ReLU, leaky ReLU) on
        a two-layer net as switching surfaces: steps end on them, pre-activations
        cross or slide (Filippov).  ``"auto"``: on for such nets with the
        Runge-Kutta methods.
    penalty : Penalty or sequence of Penalty, optional
        Terms added to the loss (:mod:`flowsim.penalty`): ``fs.penalty.dropout(p)``
        (the dropout regularizer R1 of [ZX24]), ``fs.penalty.l2(lam)``.  The run
        follows the flow (or GD, Adam) of ``R + sum P``; ``Trajectory.loss`` stays
        R, and :func:`flowsim.penalty.values` gives each penalty at the saved states.
    dropout : float or (float, float), optional
        ``gd``/``adam`` only: the KEEP probability p of dropout on the hidden layer
        (three layers: both, or one per layer), masks ``1 + eta`` (a unit's output
        times 1/p, or 0) drawn per iteration, sample and unit.  Its mean effect is
        ``penalty=fs.penalty.dropout(p)``, which for three layers is that of
        ``dropout=(1.0, p)`` (dropout on the first layer has no closed form).
    batch_size : int, optional
        ``gd``/``adam`` only: minibatch SGD, a fresh shuffle of the samples each
        epoch (the last batch smaller when it does not divide n).
    seed : int
        Seed of the dropout masks and the minibatches (:mod:`flowsim._rng`): the
        same seed gives the same run at any thread count, interrupted or not.
        With either of them, the recorded loss and the events' loss are the
        full-data, unmasked R, evaluated at the save points (and, with events,
        at every iteration).

    Returns
    -------
    Trajectory
    """
    started = time.perf_counter()
    family, rule, adaptive, t_end = _check_options(
        method, t_end, rtol, atol, n_save, dt, max_steps, max_wall
    )
    resume = theta0 if isinstance(theta0, Trajectory) else None
    if resume is not None:
        if t0 is not None:
            raise ValueError("t0: a Trajectory continues from its own t_final; do not pass t0")
        t0, theta0 = resume.t_final, resume.theta_final
        scales = dict(resume.scales) if scales is None else scales
    t0 = _check_t0(t0, t_end)
    Xa, y = net.prepare_data(X, y)
    training = check_training(net, family, method, Xa.shape[0], dropout=dropout,
                              batch_size=batch_size, seed=seed, penalty=penalty,
                              switching=switching)  # fmt: skip
    theta0 = net.check_theta(real_array("theta0", theta0))
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0 contains NaN or infinite values")
    events = _check_events(events)
    n_points = int(n_save) if save is None else int(np.size(save))
    _check_output_memory(n_points, save_state, net.n_params, len(net.layers),
                         "n_save" if save is None else "save")  # fmt: skip
    save_t, state_rows = _save_plan(save, n_save, t_end, save_state, t0)
    adam = _check_adam(adam)
    it0 = _discrete_start(method, t0, dt, resume, adam) if family == "discrete" else 0

    scales = net.default_scales(theta0) if scales is None else _check_scales(scales)
    if set(scales) != set(net.layer_names):
        raise ValueError(
            f"scales must give one value per layer {net.layer_names}, got {sorted(scales)}"
        )
    for name, value in scales.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"scales[{name!r}] must be a finite number > 0, got {value!r}")
    c, T = net.flow_constants(scales)
    c = np.concatenate([c, training.run_block(net, T)])
    S = net.scale_vector(scales)
    y_bar = theta0 / S
    if resume is not None and resume.theta_bar_final is not None:
        stored = np.asarray(resume.theta_bar_final, dtype=np.float64)
        if np.array_equal(S, resume.scale_vector) and np.all(np.isfinite(stored)):
            y_bar = stored.copy()  # the normalized state, without the round trip through S
    if switching == "auto":
        dropout_terms = training.stochastic or any(t.kind == "dropout" for t in training.penalties)
        switching = family in ("rk", "auto") and net.has_kinks and not dropout_terms
    elif not isinstance(switching, bool):
        raise ValueError(f"switching must be 'auto', True or False, got {switching!r}")
    if switching and not net.has_kinks:
        raise ValueError("switching=True needs a piecewise-linear activation on a two-layer net")
    if switching:
        mode = np.zeros((net.width, Xa.shape[0]), dtype=np.int8)
        aux = np.zeros((net.width, Xa.shape[0]))
    else:
        mode, aux = no_switching()

    factor_ok = _factor_supported(net, Xa.shape[0], method)
    bdf_ok = factor_ok is True and not switching
    stiff_start = family == "auto" and net.stiff_from_start
    stiff_first = "bdf" if bdf_ok else "rkc"
    method_log = [(t0, (stiff_first if stiff_start else "dopri5") if family == "auto" else method)]
    if family in ("rodas", "bdf") and factor_ok is not True:
        raise ValueError(f"method {method!r} is not available here: {factor_ok}")
    # the core's stepping loops, and the model reached through the callbacks this run uses
    # (auto: the Jacobian factor is compiled at its first hand-over to BDF, see _auto_switcher)
    newton = family in ("rodas", "bdf")
    dims = net.core_dims(Xa.shape[0], switching=switching, newton=newton)
    kernels = core()
    P = y_bar.size

    k = save_t.size
    n_layers = len(net.layers)
    out_t = np.full(k, np.nan)
    out_loss = np.full(k, np.nan)
    out_norms = np.full((k, n_layers), np.nan)
    out_maxnorm = np.full(k, np.nan)
    n_rows = int(state_rows.max()) + 1 if np.any(state_rows >= 0) else 0
    out_states = np.zeros((n_rows, P))
    ist = np.zeros(N_IST, dtype=np.int64)
    fst = np.zeros(N_FST)
    t_start = t0 if family == "discrete" else t0 / T  # in the compiled loop's units
    fst[0] = t_start
    ist[0] = it0

    neuron_scale = scales[net.neuron_layer]

    def start():
        return float(t0), theta0.copy(), float(net.loss(theta0, X, y))

    ev_kind = np.array([_event_kind(e, start) for e in events], dtype=np.int64)
    ev_thr = np.array(
        [0.0 if e.quantity == "custom" else e.threshold / _threshold_unit(e, neuron_scale)
         for e in events],
        dtype=np.float64,
    )  # fmt: skip
    # custom events see original units: the time and per-parameter scales follow
    ev_thr = np.concatenate([ev_thr, [1.0 if family == "discrete" else T], S])
    ev_terminal = np.array([int(e.terminal) for e in events], dtype=np.int64)
    ev_g = np.zeros(len(events))
    ev_t = np.full(len(events), np.nan)
    ev_states = np.zeros((len(events), P))
    ev_loss = np.full(len(events), np.nan)
    start_stop = _fire_at_start(kernels, y_bar, Xa, y, c, dims, ev_kind, ev_thr, ev_terminal,
                                ev_g, ev_t, ev_states, ev_loss, t_start)  # fmt: skip

    if family in ("rk", "rkc", "rodas", "bdf", "auto"):
        tab = TABLEAUS["dopri5" if family != "rk" else rule]
        K = np.zeros((tab.A.shape[0], P))
        stage_loss = np.zeros(tab.A.shape[0])
        K_rkc = np.zeros((3, P))
        v_power = np.zeros(P)
        fst[:8] = [t_start, 0.0 if adaptive else dt / T, 1.0, np.nan, t_end / T, rtol, atol, 1e-14]
        save_arg = save_t / T
        outputs = (save_arg, state_rows, out_t, out_loss, out_norms, out_maxnorm, out_states)
        event_arrays = (ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss)

        def rk_chunk(chunk):
            kernels.rk_solve(
                y_bar, Xa, y, c, dims, tab.A, tab.b, tab.e, tab.P, tab.stages, tab.end_row,
                tab.error_order, adaptive, fst, ist, K, stage_loss, *outputs, *event_arrays,
                mode, aux, chunk,
            )  # fmt: skip

        def rkc_chunk(chunk):
            kernels.rkc_solve(y_bar, Xa, y, c, dims, fst, ist, K_rkc, v_power, *outputs,
                              *event_arrays, mode, aux, chunk)  # fmt: skip

        def rodas_chunk(chunk):
            kernels.rodas_solve(y_bar, Xa, y, c, dims, fst, ist, K_rkc, *outputs,
                                *event_arrays, mode, aux, chunk)  # fmt: skip

        if family == "bdf" or (family == "auto" and bdf_ok):
            D_bdf = np.zeros((8, P))
            work_bdf = np.empty(kernels.newton_work_size(dims, Xa.shape[0]))

        def bdf_chunk(chunk):
            kernels.bdf_solve(y_bar, Xa, y, c, dims, fst, ist, D_bdf, work_bdf, *outputs,
                              *event_arrays, mode, aux, chunk)  # fmt: skip

        if family == "rk":
            run_chunk = rk_chunk
        elif family == "rkc":
            run_chunk = rkc_chunk
        elif family == "rodas":
            run_chunk = rodas_chunk
        elif family == "bdf":
            run_chunk = bdf_chunk
        else:
            stiff = (stiff_first, bdf_chunk if bdf_ok else rkc_chunk)

            def prepare_bdf():
                dims[:] = net.core_dims(Xa.shape[0], switching=switching, newton=True)

            run_chunk = _auto_switcher(kernels, rk_chunk, stiff, K, y_bar, Xa, y, c, dims,
                                       mode, aux, v_power, fst, ist, method_log, T,
                                       prepare_bdf, stiff_start)  # fmt: skip
    else:
        n_iter = int(round(t_end / dt))
        save_iter = np.minimum(np.ceil(save_t / dt - 1e-9), n_iter).astype(np.int64)
        g = np.zeros(P)
        m1, m2 = (np.array(r) for r in resume.optimizer_state) if it0 and rule else np.zeros((2, P))
        adam_args = (adam["beta1"], adam["beta2"], adam["eps"], ADAM_EPS_FORMS[adam["eps_form"]],
                     adam["weight_decay"])  # fmt: skip
        event_arrays = (ev_kind, ev_thr, ev_terminal, ev_g, ev_t, ev_states, ev_loss)
        batches = training.batch_buffers(Xa, y)

        def run_chunk(chunk):
            kernels.discrete_solve(
                y_bar, Xa, y, c, dims, S, T, float(dt), n_iter, rule, *adam_args,
                fst, ist, g, m1, m2, mode, aux,
                save_iter, state_rows, out_t, out_loss, out_norms, out_maxnorm, out_states,
                *event_arrays, *batches, chunk,
            )  # fmt: skip

    if start_stop >= 0:  # a terminal event held at t = 0: the run ends where it starts
        loss0 = float(ev_loss[start_stop])
        while ist[3] < save_t.size and save_t[ist[3]] <= t0:
            kernels._record(y_bar, t_start, loss0, dims, 0, out_t, out_loss, out_norms,
                            out_maxnorm, out_states, state_rows, ist)  # fmt: skip
        ist[4], ist[6] = 2, start_stop  # S_EVENT, I_EVENT
        status = "event"
    else:
        status = _drive(run_chunk, ist, fst, family, t_end, T, max_steps + it0, max_wall,
                        progress, started, method_log)  # fmt: skip

    saved = int(ist[3])
    continuous = family != "discrete"
    # continuous methods save exactly at the requested times (out_t = save_t / T);
    # return those, not their round trip through the time scale
    t_saved = save_t[:saved].copy() if continuous else out_t[:saved].copy()
    scale_per_layer = np.array([scales[name] for name in net.layer_names])
    state_mask = state_rows[:saved] >= 0
    n_states = int(state_mask.sum())
    records = []
    for q, event in enumerate(events):
        if ev_t[q] == ev_t[q]:
            t_event = ev_t[q] * T if continuous else ev_t[q]
            records.append(EventRecord(event.name, float(t_event), float(ev_loss[q]),
                                       ev_states[q] * S))  # fmt: skip
    t_now = fst[0] * (T if continuous else 1.0)
    messages = {
        "done": f"reached t_end = {t_end:g}",
        "event": f"terminal event at t = {t_now:.6g}"
        + (" (it held at the start)" if start_stop >= 0 else ""),
        "nonfinite": f"non-finite state or gradient after t = {t_now:.6g}; "
        "kept the last finite state",
        "step_too_small": f"step size underflow at t = {t_now:.6g}",
        "max_steps": f"stopped after max_steps = {max_steps} steps at t = {t_now:.6g}",
        "max_wall": f"stopped after max_wall = {max_wall} s at t = {t_now:.6g}",
        "interrupted": f"interrupted at t = {t_now:.6g}",
    }
    stopped = status in ("step_too_small", "max_steps", "max_wall")
    if stopped and _chatters(net, rejected=ist[1], accepted=ist[0]):
        messages[status] += (
            f"; {int(ist[1])} of {int(ist[0] + ist[1])} steps were rejected: the flow likely "
            "chatters on pairs sliding on their kinks, which ThreeLayer(..., smoothing=eps) "
            "smooths (docs/theory.md §11)"
        )
    config = {
        "net": repr(net),
        "activation": getattr(net.activation, "text", None),
        "method": method,
        "t_end": t_end,
        "rtol": rtol,
        "atol": atol,
        "dt": dt,
        "n_save": int(save_t.size),
        "save_state": save_state if isinstance(save_state, str) else int(save_state),
        "events": [_event_config(e) for e in events],
        "max_steps": int(max_steps),
        "max_wall": max_wall,
        "adam": adam if method == "adam" else None,
        "t0": t0,
        "n_samples": int(Xa.shape[0]),
        "switching": bool(switching),
        **training.config(),
    }
    run = Trajectory(
        t=t_saved,
        t_bar=t_saved / T,
        loss=out_loss[:saved].copy(),
        norms=out_norms[:saved] * scale_per_layer,
        max_neuron_norm=out_maxnorm[:saved] * neuron_scale,
        state_t=t_saved[state_mask],
        theta_bar=out_states[:n_states].copy(),
        scale_vector=S,
        theta_final=y_bar * S,
        status=status,
        message=messages[status],
        method=method,
        nfev=int(ist[2]),
        n_accepted=int(ist[0]) - it0,
        n_rejected=int(ist[1]),
        n_switches=int(ist[8]),
        method_log=tuple((float(t_), name) for t_, name in method_log),
        t_stop=float(t_now),
        wall_time=time.perf_counter() - started,
        time_scale=float(T),
        scales=scales,
        layers=net.layer_names,
        events=tuple(records),
        config=config,
        versions=package_versions(),
        optimizer_state=np.stack([m1, m2]) if method == "adam" else np.zeros((0, P)),
        theta_bar_final=y_bar.copy(),
    )
    return run if resume is None else _concatenate(resume, run)


def _check_t0(t0, t_end: float) -> float:
    if t0 is None:
        return 0.0
    if isinstance(t0, bool) or not isinstance(t0, (int, float, np.floating, np.integer)):
        raise ValueError(f"t0 must be a number in [0, t_end), got {t0!r}")
    t0 = float(t0)
    if not (math.isfinite(t0) and 0.0 <= t0 < t_end):
        raise ValueError(f"t0 must be in [0, t_end) = [0, {t_end:g}), got {t0!r}")
    return t0


def _discrete_start(method: str, t0: float, dt: float, resume, adam: dict) -> int:
    """Iterations done before ``t0`` (``gd``, ``adam``); ValueError where ``t0`` is not
    a whole number of steps, or ``adam`` lacks the moments to continue."""
    it0 = int(round(t0 / dt))
    if abs(it0 * dt - t0) > 1e-9 * max(t0, dt):
        raise ValueError(
            f"t0 = {t0:.17g} is not a whole number of steps dt = {dt!r}: {method} counts "
            "iterations (continue a gd/adam Trajectory with the dt it ran with)"
        )
    if method == "adam" and it0 > 0:
        state = resume.optimizer_state if resume is not None else np.zeros((0, 0))
        if resume is None or resume.method != "adam" or state.shape[0] != 2:
            raise ValueError(
                "adam starts at t0 > 0 only when it continues an adam Trajectory, whose "
                "moments it carries on; pass theta0 as that Trajectory (or t0 = 0)"
            )
        if resume.config.get("dt") != dt:
            raise ValueError(
                f"adam continues with the step of the run it resumes: dt = "
                f"{resume.config.get('dt')!r}, got {dt!r}"
            )
    return it0


def _concatenate(before: Trajectory, after: Trajectory) -> Trajectory:
    """``before`` followed by ``after`` (which starts at ``before.t_final``): save
    points and states of ``after`` past the last of ``before``, events and counts
    of both."""
    keep = after.t > (before.t[-1] if before.t.size else -math.inf)
    keep_state = after.state_t > (before.state_t[-1] if before.state_t.size else -math.inf)
    rescale = before.scale_vector / after.scale_vector  # states in after's normalization
    return Trajectory(
        t=np.concatenate([before.t, after.t[keep]]),
        t_bar=np.concatenate([before.t / after.time_scale, after.t_bar[keep]]),
        loss=np.concatenate([before.loss, after.loss[keep]]),
        norms=np.concatenate([before.norms, after.norms[keep]]),
        max_neuron_norm=np.concatenate([before.max_neuron_norm, after.max_neuron_norm[keep]]),
        state_t=np.concatenate([before.state_t, after.state_t[keep_state]]),
        theta_bar=np.concatenate([before.theta_bar * rescale, after.theta_bar[keep_state]]),
        scale_vector=after.scale_vector,
        theta_final=after.theta_final,
        status=after.status,
        message=after.message,
        method=after.method,
        nfev=before.nfev + after.nfev,
        n_accepted=before.n_accepted + after.n_accepted,
        n_rejected=before.n_rejected + after.n_rejected,
        n_switches=before.n_switches + after.n_switches,
        method_log=before.method_log + after.method_log,
        t_stop=after.t_stop,
        wall_time=before.wall_time + after.wall_time,
        time_scale=after.time_scale,
        scales=after.scales,
        layers=after.layers,
        events=before.events + after.events,
        config={**after.config, "resumed": {"t0": after.config["t0"], "before": before.config}},
        versions=after.versions,
        optimizer_state=after.optimizer_state,
        theta_bar_final=after.theta_bar_final,
    )


AUTO_FIRST_CHECK = 64
"""Accepted steps after the start (and after every switch) before ``auto`` first
tests for stiffness; the interval then grows as 2 k + 16 up to AUTO_MAX_CHECK."""
AUTO_MAX_CHECK = 1024
AUTO_STIFF = 2.0
"""dopri5 is stability-limited when h * rho exceeds this (its boundary is ~3.3)."""
AUTO_NONSTIFF_STAGES = 2
"""RKC hands back to dopri5 when a whole chunk needed no more stages than this."""
AUTO_BDF_TOL = 0.01
"""``auto``'s BDF runs with its local tolerances this factor of ``rtol``, ``atol``.

BDF's error test bounds the error of the solution it carries on, while
dopri5's and RODAS's bound a lower-order companion (local extrapolation), so at
the same rtol BDF's global error is ~100x larger (W1 from the start: 2e-6 at
rtol 1e-8, RODAS 1.8e-9; a 4-neuron net to t = 5: 71 rtol, the others < 10).
Measured on W1 (tanh, n = 40, m = 100, to t = 1e5) with dopri5 handing over at
t = 546: rtol 1e-8 0.25 s, error 1.2e-9 (dopri5 -> RODAS: 1.33 s, 1.8e-9).
BDF from the start was as fast at equal accuracy but less accurate per rtol
(the saddle escape before the switch is where errors grow), and compiling its
kernels made the first run of a small net 6 s slower (cold cache: 25 s)."""
FACTOR_MAX_BYTES = 2**30
"""Largest work space of the Jacobian factor that ``rodas``, ``bdf`` and ``auto`` accept."""


def _chatters(net, *, rejected, accepted) -> bool:
    """A three-layer net with exact kinks whose steps were mostly rejected (at least a
    quarter): the sign of a flow chattering on its kinks."""
    kinked = net.kind == "three_layer" and not net.smoothing
    return kinked and kink_slopes(net.activation) is not None and 4 * rejected >= accepted


def _factor_supported(net, n: int, method: str):
    """True, or the reason why the analytic Jacobian's factor cannot be used by
    ``method`` (``rodas`` needs an exact one; ``bdf`` and ``auto`` take either)."""
    factor = net.jacobian_factor(n)
    if isinstance(factor, str):
        return factor
    kind, words = factor
    if kind != "exact" and method == "rodas":
        return (
            f"the {net.kind} net's Jacobian factor is approximate and RODAS needs the exact "
            "one; use 'bdf'"
        )
    if 8 * words > FACTOR_MAX_BYTES:
        return (
            f"its linear algebra needs {8 * words / 2**30:.1f} GiB for P = {net.n_params} "
            f"parameters and n = {n} samples (limit {FACTOR_MAX_BYTES / 2**30:.0f} GiB); use 'rkc'"
        )
    return True


def _auto_switcher(kernels, rk_chunk, stiff, K, y_bar, Xa, y, c, dims, mode, aux, v_power,
                   fst, ist, method_log, T, prepare_bdf=None, stiff_start=False):  # fmt: skip
    """``method="auto"``: dopri5 while the flow is not stiff, then ``stiff``:
    ("bdf", chunk) on nets whose Jacobian factor fits FACTOR_MAX_BYTES
    (at AUTO_BDF_TOL times the tolerances), else ("rkc", chunk).

    Like LSODA's switching: at test points the spectral radius rho of the
    Jacobian (power iteration on Hessian-vector products) tells whether
    dopri5's step is held by stability (h * rho >= AUTO_STIFF).  RKC hands back
    when the stiffness is gone (its stage count).  BDF stays: it restarts at
    order 1 after a switch, and handing back at its first test point, before it
    reached its order and step, made runs alternate between the two methods.
    Every switch is logged.  ``prepare_bdf`` runs before the first switch to BDF:
    it compiles the model's Jacobian factor, which most runs never need (the
    integrator core's BDF itself is compiled once per machine; ``flowsim warmup``
    compiles an activation's factor ahead of time).  ``stiff_start``: start with
    ``stiff`` (the model's :attr:`~flowsim.models._base.Model.stiff_from_start`).

    The test points are counts of accepted steps (AUTO_FIRST_CHECK after each
    switch, then growing intervals), not the driver's chunks, whose length
    follows the wall clock: the run is the same however fast the machine is.
    """
    stiff_name, stiff_chunk = stiff
    current = ["dopri5"]
    scratch = np.empty(y_bar.size)
    scratch_f = np.empty(y_bar.size)
    schedule = [AUTO_FIRST_CHECK, int(ist[0]) + AUTO_FIRST_CHECK]  # interval, next test

    kinked = mode.shape[0] > 0  # no kink treatment in the stiff methods: stay with dopri5

    def rho_now(f0):
        rho, used = kernels.spectral_radius(y_bar, f0, Xa, y, c, dims, mode, aux, v_power,
                                            40, scratch, scratch_f)  # fmt: skip
        ist[2] += used
        return rho

    def switch_to(name, log=True):
        current[0] = name
        ist[7] = 0  # the next method evaluates f0 itself
        ist[14] = 0
        if name == "bdf":
            if prepare_bdf is not None:  # the model's Jacobian factor (compiled on first use)
                prepare_bdf()
            fst[5] *= AUTO_BDF_TOL
            fst[6] *= AUTO_BDF_TOL
        if log:
            method_log.append((float(fst[0] * T), name))

    if stiff_start:  # the model's flow is stiff from the start: no dopri5 phase to test
        switch_to(stiff_name, log=False)

    def switch_name():
        """At a test point: the method to continue with, or None to keep the current one."""
        if current[0] == "dopri5":
            if ist[7] == 1:
                rho = rho_now(K[0])
                if fst[1] * rho >= AUTO_STIFF:
                    fst[8] = 1.2 * rho
                    ist[13] = 0
                    return stiff_name
        elif stiff_name == "rkc":
            nonstiff = ist[7] == 1 and 0 < ist[14] <= AUTO_NONSTIFF_STAGES
            ist[14] = 0
            if nonstiff:
                # keep RKC's step: with <= 2 stages h * rho < 1, inside dopri5's
                # stability region (a fresh initial step is tiny against t and
                # failed the minimum-step test late in long runs)
                return "dopri5"
        return None

    def run_chunk(chunk):
        if kinked:
            rk_chunk(chunk)
            return
        target = int(ist[0]) + chunk
        while ist[4] == 0 and ist[0] < target:
            before = int(ist[0])
            steps = min(target, schedule[1]) - before
            if current[0] == "dopri5":
                rk_chunk(steps)
            else:
                stiff_chunk(steps)
            if ist[4] != 0 or ist[0] == before:
                return
            if ist[0] >= schedule[1]:
                name = switch_name()
                if name is None:
                    schedule[0] = min(2 * schedule[0] + 16, AUTO_MAX_CHECK)
                else:
                    switch_to(name)
                    schedule[0] = AUTO_FIRST_CHECK
                schedule[1] = int(ist[0]) + schedule[0]

    return run_chunk


def _drive(run_chunk, ist, fst, family, t_end, T, max_steps, max_wall, progress, started,
           method_log):  # fmt: skip
    """Call the compiled loop chunk by chunk until it stops; returns the status name.

    Progress (:class:`flowsim._progress.Progress`) shows the simulated time, the
    steps and the method running (``method_log[-1]``); no ETA, since the cost
    of the time still ahead is not known.
    """
    bar = None
    chunk = 64
    status = None
    steps = "iterations" if family == "discrete" else "steps"

    def where() -> str:
        t_now = fst[0] * (T if family != "discrete" else 1.0)
        return f"t = {t_now:.4g} of {t_end:.4g}, {int(ist[0]):,} {steps}, {method_log[-1][1]}"

    try:
        while True:
            remaining = max_steps - int(ist[0])
            if remaining <= 0:
                status = "max_steps"
                break
            tic = time.perf_counter()
            run_chunk(min(chunk, remaining))
            elapsed = time.perf_counter() - tic
            if ist[4] != 0:
                status = _STATUS[int(ist[4])]
                break
            chunk = int(min(max(chunk * (_CHUNK_SECONDS / max(elapsed, 1e-6)), 16), 2 * chunk + 16))
            now = time.perf_counter()
            if max_wall is not None and now - started > max_wall:
                status = "max_wall"
                break
            if bar is None and (progress or (progress is None and now - started > 2.0)):
                bar = Progress("simulate", leave=False, start=started)
            if bar is not None:
                bar.update(status=where())
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        if bar is not None:
            bar.status = where()
            bar.close()
    return status
