"""Bad input gives a clear ValueError naming the offending field, never another exception
(property-based: hypothesis draws the bad values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import flowsim as fs

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

NET = fs.TwoLayer("tanh", 3, 2, bias=True)
_rng = np.random.default_rng(0)
X0 = _rng.standard_normal((5, 2))
Y0 = _rng.standard_normal(5)
THETA0 = 0.1 * _rng.standard_normal(NET.n_params)


def run(net=NET, theta=THETA0, X=X0, y=Y0, **options):
    """simulate with valid, cheap defaults; ``options`` override one field."""
    kwargs = dict(t_end=0.05, n_save=3, progress=False, max_wall=10.0)
    kwargs.update(options)
    return fs.simulate(net, theta, X, y, **kwargs)


def test_valid_defaults_run():
    assert run().status == "done"
    assert run(method="gd", dt=0.01).status == "done"


# ------------------------------------------------------------------ data and parameters

_bad_X_shapes = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=4, max_side=6).filter(
        lambda s: not (len(s) == 2 and s[1] == 2) and s != (5, 2)
    ),
    st.integers(1, 6).map(lambda d: (5, d)).filter(lambda s: s[1] != 2),
)


@SETTINGS
@given(_bad_X_shapes)
def test_bad_X_shape(shape):
    X = np.ones(shape)
    with pytest.raises(ValueError, match=r"\bX\b"):
        run(X=X)
    with pytest.raises(ValueError, match=r"\bX\b"):
        NET.loss(THETA0, X, np.ones(np.shape(X)[0] if np.ndim(X) else 1))


@SETTINGS
@given(hnp.array_shapes(min_dims=0, max_dims=3, max_side=7).filter(
    lambda s: s not in ((5,), (5, 1))))  # fmt: skip
def test_bad_y_shape(shape):
    with pytest.raises(ValueError, match=r"\by\b"):
        run(y=np.ones(shape))
    with pytest.raises(ValueError, match=r"\by\b"):
        NET.gradient(THETA0, X0, np.ones(shape))


def test_empty_data():
    with pytest.raises(ValueError, match="empty|n = 0"):
        run(X=np.ones((0, 2)), y=np.ones(0))


@SETTINGS
@given(hnp.array_shapes(min_dims=0, max_dims=3, max_side=20).filter(
    lambda s: s != (NET.n_params,)))  # fmt: skip
def test_bad_theta_shape(shape):
    with pytest.raises(ValueError, match="theta"):
        run(theta=np.ones(shape))
    with pytest.raises(ValueError, match="theta"):
        NET.output(np.ones(shape), X0)


_non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


@SETTINGS
@given(st.sampled_from(["X", "y", "theta"]), st.integers(0, 100), _non_finite)
def test_non_finite_values(field, index, value):
    arrays = {"X": X0.copy(), "y": Y0.copy(), "theta": THETA0.copy()}
    target = arrays[field].reshape(-1)
    target[index % target.size] = value
    with pytest.raises(ValueError, match=rf"\b{field}"):
        run(**arrays)
    if field != "theta":
        with pytest.raises(ValueError, match=rf"\b{field}\b"):
            NET.loss(arrays["theta"], arrays["X"], arrays["y"])


# ------------------------------------------------------------------ model construction

_bad_positive_int = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@SETTINGS
@given(_bad_positive_int)
def test_bad_width(value):
    with pytest.raises(ValueError, match="width"):
        fs.TwoLayer("tanh", value, 2)
    with pytest.raises(ValueError, match="input_dim"):
        fs.TwoLayer("tanh", 3, value)
    with pytest.raises(ValueError, match="widths"):
        fs.ThreeLayer("tanh", (3, value), 2)
    with pytest.raises(ValueError, match="widths"):
        fs.ThreeLayer("tanh", (value, 3), 2)


@pytest.mark.parametrize("widths", [3, (3,), (1, 2, 3), None, "ab"])
def test_bad_widths_pair(widths):
    with pytest.raises(ValueError, match="widths"):
        fs.ThreeLayer("tanh", widths, 2)


@SETTINGS
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                 st.none(), st.text(alphabet="abc", max_size=3)))  # fmt: skip
def test_bad_alpha(value):
    with pytest.raises(ValueError, match="alpha"):
        fs.TwoLayer("tanh", 3, 2, alpha=value)
    with pytest.raises(ValueError, match="alpha"):
        fs.ThreeLayer("tanh", (3, 2), 2, alpha=value)


@pytest.mark.parametrize("bias", [1, 0, "yes", None, 1.0])
def test_bad_bias(bias):
    with pytest.raises(ValueError, match="bias"):
        fs.TwoLayer("tanh", 3, 2, bias=bias)


# ------------------------------------------------------------------ simulate options


@SETTINGS
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                 st.none(), st.text(alphabet="abc", min_size=1, max_size=3)))  # fmt: skip
def test_bad_t_end(value):
    with pytest.raises(ValueError, match="t_end"):
        run(t_end=value)


@SETTINGS
@given(st.text(max_size=8).filter(lambda s: s not in fs.METHODS))
def test_unknown_method(name):
    with pytest.raises(ValueError, match="method"):
        run(method=name)


@SETTINGS
@given(st.one_of(st.floats(max_value=1e-14, exclude_max=True),
                 st.floats(min_value=0.1, exclude_min=True), st.just(math.nan),
                 st.none(), st.text(max_size=2)))  # fmt: skip
def test_bad_rtol(value):
    with pytest.raises(ValueError, match="rtol"):
        run(rtol=value)


@SETTINGS
@given(st.one_of(st.floats(max_value=0.0, exclude_max=True),
                 st.floats(min_value=1.0, exclude_min=True), st.just(math.nan),
                 st.none(), st.text(max_size=2)))  # fmt: skip
def test_bad_atol(value):
    with pytest.raises(ValueError, match="atol"):
        run(atol=value)


@SETTINGS
@given(st.one_of(st.integers(max_value=1), st.floats(), st.none(), st.booleans()))
def test_bad_n_save(value):
    with pytest.raises(ValueError, match="n_save"):
        run(n_save=value)


@SETTINGS
@given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.0501), st.just(math.nan),
                 st.none()))  # fmt: skip
def test_bad_dt(value):
    for method in ("gd", "adam", "rk4"):
        with pytest.raises(ValueError, match="dt"):
            run(method=method, dt=value)


@SETTINGS
@given(st.lists(st.floats(0.0, 0.05), min_size=2, max_size=8).filter(
    lambda v: np.any(np.diff(v) < 0)))  # fmt: skip
def test_unsorted_save_times(times):
    with pytest.raises(ValueError, match="save"):
        run(save=times)


@pytest.mark.parametrize(
    "save", [[], [0.0, 0.1], [-0.01, 0.02], [0.0, math.nan], [0.0, math.inf], [[0.0, 0.1, 0.2]]]
)
def test_bad_save_times(save):
    with pytest.raises(ValueError, match="save"):
        run(save=save)


@pytest.mark.parametrize("value", ["some", 0, -2, 1.5, None, True])
def test_bad_save_state(value):
    with pytest.raises(ValueError, match="save_state"):
        run(save_state=value)


@pytest.mark.parametrize("field, value", [("max_steps", 0), ("max_steps", 2.5),
                                          ("max_steps", None), ("max_wall", 0),
                                          ("max_wall", -1.0), ("max_wall", "1")])  # fmt: skip
def test_bad_limits(field, value):
    with pytest.raises(ValueError, match=field):
        run(**{field: value})


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_switching(value):
    with pytest.raises(ValueError, match="switching"):
        run(switching=value)


def test_switching_needs_kinks():
    with pytest.raises(ValueError, match="switching"):
        run(switching=True)


# ------------------------------------------------------------------ events


@SETTINGS
@given(st.one_of(st.integers(), st.text(max_size=4), st.none(), st.floats(),
                 st.builds(dict), st.tuples(st.text(max_size=2))))  # fmt: skip
def test_bad_event_objects(obj):
    with pytest.raises(ValueError, match="event"):
        run(events=[fs.escape(norm=1.0), obj])


@SETTINGS
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf)))
def test_bad_event_thresholds(value):
    with pytest.raises(ValueError, match="threshold"):
        fs.escape(norm=value)
    with pytest.raises(ValueError, match="threshold"):
        fs.loss_below(value)
    with pytest.raises(ValueError, match="threshold"):
        fs.loss_above(value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one"),
        ({"norm": 1.0, "loss": 1.0}, "exactly one"),
        ({"norm": 1.0, "units": "furlongs"}, "units"),
    ],
)
def test_bad_escape(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.escape(**kwargs)


def test_bad_event_quantity():
    with pytest.raises(ValueError, match="quantity"):
        fs.Event("x", "speed", 1.0)


@pytest.mark.parametrize("make", [lambda: fs.Event("x", "norm", "abc"),
                                  lambda: fs.escape(norm="abc")])  # fmt: skip
def test_non_numeric_event_threshold(make):
    with pytest.raises(ValueError, match="threshold"):
        make()


# ------------------------------------------------------------------ known gaps


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@SETTINGS
@given(st.sampled_from(["a", "W"]),
       st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf)))  # fmt: skip
def test_bad_scale_values(layer, value):
    scales = {"a": 0.1, "W": 0.1, layer: value}
    with pytest.raises(ValueError, match="scales"):
        run(scales=scales)


def test_bad_scale_keys():
    with pytest.raises(ValueError, match="scales"):
        run(scales={"a": 1.0})


@pytest.mark.parametrize("adam", [(1.0, 0.999, 1e-8), (0.9, 1.0, 1e-8), (0.9,),
                                  (-0.1, 0.999, 1e-8), (0.9, 0.999, -1.0)])  # fmt: skip
def test_bad_adam_parameters(adam):
    with pytest.raises(ValueError, match="adam"):
        run(method="adam", dt=0.01, adam=adam)


# ------------------------------------------------------------------ argument types


@pytest.mark.parametrize("name", ["theta", "X", "y"])
def test_complex_input_is_refused_not_cut_to_its_real_part(name):
    value = {"theta": THETA0, "X": X0, "y": Y0}[name].astype(complex)
    value[0] += 1e-3j
    label = {"theta": "theta0"}.get(name, name)
    with pytest.raises(TypeError, match=rf"^{label} must be real"):
        run(**{name: value})


def test_events_none_means_no_events():
    with_none = run(events=None)
    assert with_none.events == () and with_none.status == "done"
    np.testing.assert_array_equal(with_none.theta_final, run(events=()).theta_final)


def test_a_single_event_is_a_list_of_one():
    event = fs.escape(norm=1e-3)
    single, listed = run(events=event), run(events=[event])
    assert single.status == listed.status == "event"
    np.testing.assert_array_equal(single.theta_final, listed.theta_final)


@pytest.mark.parametrize("events", [3, "escape"])
def test_events_not_a_list(events):
    with pytest.raises(ValueError, match="events must be a list of Event objects"):
        run(events=events)


@pytest.mark.parametrize("method", [["gd"], ("dopri5",), {"gd": 1}, None, 3])
def test_method_not_a_name(method):
    with pytest.raises(ValueError, match=r"^method must be one of \['adam', 'auto'"):
        run(method=method)


@pytest.mark.parametrize("seed", ["3", 3.0, -1, True, None, [1, 2]])
def test_init_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0"):
        NET.init(seed, scale=1e-3)
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0"):
        fs.ThreeLayer("tanh", (2, 2), 1).init(seed, scale=1e-3)


@pytest.mark.parametrize("call", ["loss", "output", "gradient", "pack"])
def test_model_methods_refuse_complex_input(call):
    X = X0.astype(complex)
    X[0, 0] += 1e-3j
    with pytest.raises(TypeError, match="must be real"):
        if call == "pack":
            NET.pack(**{k: v.astype(complex) * 1j for k, v in NET.unpack(THETA0).items()})
        elif call == "output":
            NET.output(THETA0, X)
        else:
            getattr(NET, call)(THETA0, X, Y0)


def test_init_too_large_for_memory_is_refused_before_numpy():
    net = fs.TwoLayer("tanh", 10**12, 1)
    with pytest.raises(ValueError, match=r"cannot initialize the network: .* memory limit"):
        net.init(0, scale=1e-3)
