"""Events located on the dense output, against SciPy's own event location (DOP853 at
rtol 1e-12 on the naive gradient)."""

from __future__ import annotations

import naive
import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import flowsim as fs

DELTA = 0.1  # escape threshold on max_k |w_k|, original units


@pytest.fixture
def small_init_case():
    """Two-layer tanh net from small initialization (p = 1: exponential escape)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.3
    net = fs.TwoLayer("tanh", 6, 2, bias=True)
    theta0 = net.init(1, scale=1e-3)
    return net, theta0, X, y


def _max_neuron_norm(net, theta):
    return np.linalg.norm(net.unpack(theta)["W"], axis=-1).max()


def _scipy_event(net, theta0, X, y, event, t_end):
    def rhs(_t, theta):
        return -naive.flat_gradient(net, theta, X, y)

    event.terminal = True
    sol = solve_ivp(rhs, (0.0, t_end), theta0, method="DOP853", rtol=1e-12, atol=1e-16,
                    events=event, dense_output=True)  # fmt: skip
    assert sol.status == 1, "reference: the event did not fire"
    return sol.t_events[0][0], sol.y_events[0][0], sol


def test_escape_time_matches_scipy(small_init_case):
    net, theta0, X, y = small_init_case
    t_ref, theta_ref, _ = _scipy_event(
        net, theta0, X, y, lambda t, th: _max_neuron_norm(net, th) - DELTA, 200.0
    )
    traj = fs.simulate(net, theta0, X, y, t_end=200.0, events=[fs.escape(norm=DELTA)],
                       progress=False)  # fmt: skip
    assert traj.status == "event"
    record = traj.event("escape")
    assert record is not None
    assert record.t == pytest.approx(t_ref, rel=1e-8)
    # the event state: on the threshold, consistent with the trajectory and the reference
    assert _max_neuron_norm(net, record.theta) == pytest.approx(DELTA, rel=1e-10)
    np.testing.assert_allclose(record.theta, theta_ref, rtol=0, atol=1e-8 * DELTA)
    assert record.loss == pytest.approx(naive.flat_loss(net, record.theta, X, y), rel=1e-12)
    np.testing.assert_array_equal(traj.theta_final, record.theta)
    assert traj.t[-1] <= record.t
    assert np.all(traj.max_neuron_norm <= DELTA * (1 + 1e-12))
    assert "terminal event" in traj.message


def test_escape_in_normalized_units(small_init_case):
    net, theta0, X, y = small_init_case
    original = fs.simulate(net, theta0, X, y, t_end=200.0, events=[fs.escape(norm=DELTA)],
                           progress=False)  # fmt: skip
    scale = net.default_scales(theta0)["W"]
    normalized = fs.simulate(
        net, theta0, X, y, t_end=200.0, progress=False,
        events=[fs.escape(norm=DELTA / scale, units="normalized")],
    )  # fmt: skip
    assert normalized.event("escape").t == pytest.approx(original.event("escape").t, rel=1e-12)


def test_loss_below_matches_scipy(small_init_case):
    net, theta0, X, y = small_init_case
    threshold = 0.3 * naive.flat_loss(net, theta0, X, y)
    t_ref, _, _ = _scipy_event(
        net, theta0, X, y, lambda t, th: naive.flat_loss(net, th, X, y) - threshold, 500.0
    )
    traj = fs.simulate(net, theta0, X, y, t_end=500.0, events=[fs.loss_below(threshold)],
                       progress=False)  # fmt: skip
    assert traj.status == "event"
    record = traj.event("loss_below")
    assert record.t == pytest.approx(t_ref, rel=1e-8)
    assert record.loss == pytest.approx(threshold, rel=1e-10)
    assert record.loss == pytest.approx(naive.flat_loss(net, record.theta, X, y), rel=1e-12)
    assert np.all(traj.loss >= threshold)


def test_escape_by_loss_is_loss_below(small_init_case):
    net, theta0, X, y = small_init_case
    threshold = 0.5 * naive.flat_loss(net, theta0, X, y)
    a = fs.simulate(net, theta0, X, y, t_end=500.0, events=[fs.escape(loss=threshold)],
                    progress=False)  # fmt: skip
    b = fs.simulate(net, theta0, X, y, t_end=500.0, events=[fs.loss_below(threshold)],
                    progress=False)  # fmt: skip
    assert a.event("escape").t == b.event("loss_below").t


def test_non_terminal_events_recorded_without_stopping(small_init_case):
    net, theta0, X, y = small_init_case
    threshold = 0.3 * naive.flat_loss(net, theta0, X, y)
    terminal = fs.simulate(net, theta0, X, y, t_end=200.0, events=[fs.escape(norm=DELTA)],
                           progress=False)  # fmt: skip
    t_end = 60.0
    traj = fs.simulate(
        net, theta0, X, y, t_end=t_end, progress=False,
        events=[fs.escape(norm=DELTA, terminal=False), fs.loss_below(threshold, terminal=False)],
    )  # fmt: skip
    assert traj.status == "done"
    assert traj.t[-1] == pytest.approx(t_end, rel=1e-15)
    escape, below = traj.event("escape"), traj.event("loss_below")
    assert escape is not None and below is not None
    assert escape.t < below.t < t_end
    # the same steps up to the event: the same located time and state
    assert escape.t == pytest.approx(terminal.event("escape").t, rel=1e-13)
    np.testing.assert_allclose(escape.theta, terminal.event("escape").theta, rtol=1e-12)
    # recorded once, on the threshold, while the run went on past it
    assert _max_neuron_norm(net, escape.theta) == pytest.approx(DELTA, rel=1e-10)
    assert traj.max_neuron_norm[-1] > DELTA
    assert below.loss == pytest.approx(threshold, rel=1e-10)
    assert traj.loss[-1] < threshold


def test_event_state_matches_dense_trajectory(small_init_case):
    """A save point placed at the event time sees the event's state."""
    net, theta0, X, y = small_init_case
    first = fs.simulate(net, theta0, X, y, t_end=200.0, events=[fs.escape(norm=DELTA)],
                        progress=False)  # fmt: skip
    t_event = first.event("escape").t
    save = np.array([0.0, 0.5 * t_event, t_event, 1.5 * t_event])
    traj = fs.simulate(net, theta0, X, y, t_end=1.5 * t_event, save=save, progress=False,
                       events=[fs.escape(norm=DELTA, terminal=False)])  # fmt: skip
    record = traj.event("escape")
    np.testing.assert_allclose(traj.theta[2], record.theta, rtol=1e-9, atol=1e-9 * DELTA)


def test_three_layer_escape_uses_first_layer_rows():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 2))
    y = X[:, 0] - 0.5 * X[:, 1] + 0.2
    net = fs.ThreeLayer("tanh", (5, 4), 2, bias=False)
    theta0 = net.init(2, scale=0.05)
    delta = 0.5
    traj = fs.simulate(net, theta0, X, y, t_end=2000.0, events=[fs.escape(norm=delta)],
                       progress=False)  # fmt: skip
    assert traj.status == "event"
    record = traj.event("escape")
    V = net.unpack(record.theta)["V"]
    assert np.linalg.norm(V, axis=1).max() == pytest.approx(delta, rel=1e-10)

    def rhs(_t, theta):
        return -naive.flat_gradient(net, theta, X, y)

    def ev(_t, theta):
        return np.linalg.norm(net.unpack(theta)["V"], axis=1).max() - delta

    ev.terminal = True
    sol = solve_ivp(rhs, (0.0, 2000.0), theta0, method="DOP853", rtol=1e-12, atol=1e-16,
                    events=ev)  # fmt: skip
    assert record.t == pytest.approx(sol.t_events[0][0], rel=1e-7)


def test_earliest_terminal_event_stops(small_init_case):
    net, theta0, X, y = small_init_case
    events = [fs.Event("late", "norm", 2 * DELTA), fs.Event("early", "norm", DELTA)]
    traj = fs.simulate(net, theta0, X, y, t_end=200.0, events=events, progress=False)
    assert traj.status == "event"
    early = traj.event("early")
    np.testing.assert_array_equal(traj.theta_final, early.theta)
    late = traj.event("late")
    assert late is None or late.t <= early.t


def test_no_event_recorded_after_terminal_stop(small_init_case):
    net, theta0, X, y = small_init_case
    events = [
        fs.Event("after", "norm", DELTA * (1 + 1e-9)),  # crosses in the same step, later
        fs.Event("stop", "norm", DELTA),
        fs.Event("after_nonterminal", "norm", DELTA * (1 + 1e-9), terminal=False),
    ]
    traj = fs.simulate(net, theta0, X, y, t_end=200.0, events=events, progress=False)
    t_stop = traj.event("stop").t
    for record in traj.events:
        assert record.t <= t_stop, (record.name, record.t, t_stop)


def test_terminal_event_true_at_start_fires_at_t0_and_stops(small_init_case):
    """The largest neuron norm is above the threshold already: the run ends at t = 0 with
    the event recorded on the initial state (the loops see only upward crossings, so
    before, the event never fired and the run went on to t_end)."""
    net, theta0, X, y = small_init_case
    start = _max_neuron_norm(net, theta0)
    loss0 = naive.flat_loss(net, theta0, X, y)
    for method in ("dopri5", "rodas", "auto"):
        traj = fs.simulate(net, theta0, X, y, t_end=100.0, method=method, progress=False,
                           events=[fs.escape(norm=0.5 * start)])  # fmt: skip
        assert traj.status == "event", method
        assert "held at the start" in traj.message
        record = traj.event("escape")
        assert record.t == 0.0 and traj.t_stop == 0.0
        np.testing.assert_allclose(record.theta, theta0, rtol=1e-15, atol=0)
        np.testing.assert_allclose(traj.theta_final, theta0, rtol=1e-15, atol=0)
        assert record.loss == pytest.approx(loss0, rel=1e-13)
        np.testing.assert_array_equal(traj.t, [0.0])
        assert traj.loss[0] == pytest.approx(loss0, rel=1e-13)
        assert traj.max_neuron_norm[0] == pytest.approx(start, rel=1e-13)
        assert traj.nfev == 0


def test_non_terminal_event_true_at_start_fires_once_at_t0(small_init_case):
    """A loss already above a loss_above threshold fires at t = 0 and the run goes on;
    a terminal event that crosses later still stops it where SciPy says."""
    net, theta0, X, y = small_init_case
    loss0 = naive.flat_loss(net, theta0, X, y)
    events = [fs.loss_above(0.5 * loss0, terminal=False), fs.escape(norm=DELTA)]
    traj = fs.simulate(net, theta0, X, y, t_end=200.0, events=events, progress=False)
    above = traj.event("loss_above")
    assert above.t == 0.0 and above.loss == pytest.approx(loss0, rel=1e-13)
    np.testing.assert_allclose(above.theta, theta0, rtol=1e-15, atol=0)
    assert [e.name for e in traj.events].count("loss_above") == 1
    assert traj.status == "event" and traj.t_stop > 0
    t_ref, _, _ = _scipy_event(net, theta0, X, y,
                               lambda t, th: _max_neuron_norm(net, th) - DELTA, 200.0)  # fmt: skip
    assert traj.event("escape").t == pytest.approx(t_ref, rel=1e-7)


# ------------------------------------------------------------------ events of gd and adam


def _gd_case(scale=0.5):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 5, 2, bias=True, alpha=1.0)
    theta0 = scale * rng.standard_normal(net.n_params)
    lr, n_iter = 0.05, 400
    reference = naive.gradient_descent(net, theta0, X, y, lr, n_iter)
    losses = np.array([naive.flat_loss(net, th, X, y) for th in reference])
    return net, theta0, X, y, lr, n_iter, reference, losses


def _first_below(losses, threshold) -> int:
    below = np.flatnonzero(losses <= threshold)
    assert below.size and below[0] > 0, "the reference loop never crosses the threshold"
    return int(below[0])


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_gd_loss_event_stops_at_the_numpy_loops_crossing_iterate(fraction):
    """The first iterate whose loss is at or below the threshold, in a plain NumPy GD
    loop; the threshold lies halfway between two iterates' losses (no rounding tie)."""
    net, theta0, X, y, lr, n_iter, reference, losses = _gd_case()
    k = _first_below(losses, losses[-1] + fraction * (losses[0] - losses[-1]))
    threshold = 0.5 * (losses[k - 1] + losses[k])
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="gd", dt=lr,
                       events=fs.escape(loss=threshold), progress=False)  # fmt: skip
    assert traj.status == "event"
    assert traj.n_accepted == k
    (record,) = traj.events
    assert record.t == pytest.approx(k * lr, rel=1e-15)
    assert traj.t_final == pytest.approx(k * lr, rel=1e-15)
    np.testing.assert_allclose(record.theta, reference[k], rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj.theta_final, reference[k], rtol=0, atol=1e-14)
    assert record.loss == pytest.approx(losses[k], rel=1e-13)
    assert traj.t[-1] <= k * lr * (1 + 1e-15)  # nothing saved after the stop


def test_gd_non_terminal_events_recorded_once_without_stopping():
    net, theta0, X, y, lr, n_iter, reference, losses = _gd_case(scale=0.1)  # norms grow
    k = _first_below(losses, 0.5 * (losses[0] + losses[-1]))
    threshold = 0.5 * (losses[k - 1] + losses[k])
    norms = np.array([_max_neuron_norm(net, th) for th in reference])
    j = int(np.flatnonzero(norms >= 0.5 * (norms[0] + norms.max()))[0])
    assert j > 0 and norms[:j].max() < norms[j]
    norm_threshold = 0.5 * (norms[:j].max() + norms[j])  # first crossed at iterate j
    events = [fs.loss_below(threshold, terminal=False),
              fs.escape(norm=norm_threshold, terminal=False)]  # fmt: skip
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method="gd", dt=lr,
                       events=events, progress=False)  # fmt: skip
    assert traj.status == "done" and traj.n_accepted == n_iter
    assert [e.name for e in traj.events] == ["loss_below", "escape"]
    assert traj.event("loss_below").t == pytest.approx(k * lr, rel=1e-15)
    assert traj.event("escape").t == pytest.approx(j * lr, rel=1e-15)
    np.testing.assert_allclose(traj.event("escape").theta, reference[j], rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj.theta_final, reference[-1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["gd", "adam"])
def test_discrete_event_true_at_start_fires_at_t0(method):
    net, theta0, X, y, lr, n_iter, reference, losses = _gd_case()
    traj = fs.simulate(net, theta0, X, y, t_end=lr * n_iter, method=method, dt=lr,
                       events=fs.loss_above(0.5 * losses[0]), progress=False)  # fmt: skip
    assert traj.status == "event" and traj.n_accepted == 0
    assert traj.events[0].t == 0.0
    np.testing.assert_allclose(traj.theta_final, theta0, rtol=1e-15, atol=0)


# ------------------------------------------------------------------ compiled custom events
@numba.njit
def _time_reaches_2_5(t, theta, loss):
    return t - 2.5


@numba.njit
def _loss_falls_to_0_1(t, theta, loss):
    return 0.1 - loss


@numba.njit
def _first_output_weight_reaches(t, theta, loss):
    return abs(theta[0]) - 0.05


def test_custom_event_sees_original_time_and_loss(small_init_case):
    """A time event fires at its time; a loss event where the built-in one does; both
    with the normalization of small initialization (scales 1e-3, T = 1e-6)."""
    net, theta0, X, y = small_init_case
    t_end = 2.0e4
    options = {"t_end": t_end, "rtol": 1e-10, "atol": 1e-14, "progress": False}
    events = [fs.event(_time_reaches_2_5, terminal=False)]
    time_run = fs.simulate(net, theta0, X, y, events=events, **options)
    assert time_run.event("_time_reaches_2_5").t == pytest.approx(2.5, rel=1e-12)
    built_in = fs.simulate(net, theta0, X, y, events=[fs.loss_below(0.1)], **options)
    custom = fs.simulate(net, theta0, X, y, events=[fs.event(_loss_falls_to_0_1, name="fit")],
                         **options)  # fmt: skip
    assert custom.status == "event" and built_in.status == "event"
    assert built_in.event("loss_below").t > 0  # a crossing, not the start rule
    assert custom.event("fit").t == pytest.approx(built_in.event("loss_below").t, rel=1e-12)
    assert custom.config["events"][0]["function"].endswith("_loss_falls_to_0_1")


def test_custom_event_sees_original_parameters(small_init_case):
    """|a_0| reaching 0.05 (original units), against SciPy's event on the naive flow."""
    net, theta0, X, y = small_init_case
    traj = fs.simulate(net, theta0, X, y, t_end=2.0e4, rtol=1e-11, atol=1e-15, progress=False,
                       events=[fs.event(_first_output_weight_reaches)])  # fmt: skip

    def g(_t, theta):
        return abs(theta[0]) - 0.05

    g.terminal = True
    ref = solve_ivp(lambda _t, th: -naive.flat_gradient(net, th, X, y), (0, 2.0e4), theta0,
                    method="DOP853", rtol=1e-12, atol=1e-16, events=g)  # fmt: skip
    assert traj.status == "event"
    assert traj.event("_first_output_weight_reaches").t == pytest.approx(ref.t_events[0][0],
                                                                          rel=1e-7)  # fmt: skip
    # gradient descent: the first iterate at which it holds
    gd = fs.simulate(net, theta0, X, y, t_end=50.0, method="gd", dt=0.5, progress=False,
                     events=[fs.event(_time_reaches_2_5)])  # fmt: skip
    assert gd.event("_time_reaches_2_5").t == pytest.approx(2.5, rel=1e-12)


def test_custom_event_needs_a_compiled_function():
    with pytest.raises(TypeError, match="numba.njit"):
        fs.event(lambda t, theta, loss: t - 1.0)


@numba.njit
def _loss_minus_0_1(t, theta, loss):
    return loss - 0.1


def test_custom_event_direction(small_init_case):
    """g = loss - 0.1 (positive at the start, loss 0.188) falls through 0 where
    loss_below(0.1) fires: direction -1, and direction 0 (leave the starting sign);
    direction 1 holds at the start, so it fires there."""
    net, theta0, X, y = small_init_case
    assert net.loss(theta0, X, y) > 0.1
    options = {"t_end": 2.0e4, "rtol": 1e-10, "atol": 1e-14, "progress": False}
    built_in = fs.simulate(net, theta0, X, y, events=[fs.loss_below(0.1)], **options)
    t_ref = built_in.event("loss_below").t
    assert t_ref > 0
    for direction in (-1, 0):
        event = fs.event(_loss_minus_0_1, name="fit", direction=direction)
        traj = fs.simulate(net, theta0, X, y, events=[event], **options)
        assert traj.status == "event"
        assert traj.event("fit").t == pytest.approx(t_ref, rel=1e-12)
    rising = fs.simulate(net, theta0, X, y, events=[fs.event(_loss_minus_0_1, name="up")],
                         **options)  # fmt: skip
    assert rising.status == "event" and rising.event("up").t == 0.0
    with pytest.raises(ValueError, match="direction must be 1, -1 or 0"):
        fs.event(_loss_minus_0_1, direction=2)
