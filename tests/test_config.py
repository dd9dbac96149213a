"""Run configurations (flowsim.config), data sets (flowsim.data) and ``flowsim run``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowsim as fs
from flowsim.cli import main
from flowsim.config import (
    ConfigError,
    DataConfig,
    EventConfig,
    InitConfig,
    ModelConfig,
    RunConfig,
    SolverConfig,
    build,
    run_config,
)
from flowsim.data import KINDS, make_data

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "run.toml"

# A tiny run: tanh two-layer net (kernels shared with the other tests), 8 points.
TINY = {
    "model": {"kind": "two_layer", "activation": "tanh", "width": 4},
    "data": {"kind": "sin1d", "params": {"n": 8}},
    "init": {"seed": 3, "scale": 1e-2},
    "solver": {"t_end": 50.0, "n_save": 20},
    "events": [{"kind": "escape_norm", "threshold": 0.05, "terminal": False}],
}

TINY_TOML = """\
[model]
kind = "two_layer"
activation = "tanh"
width = 4

[data]
kind = "sin1d"
params = { n = 8 }

[init]
seed = 3
scale = 1e-2

[solver]
t_end = 50
n_save = 20

[[events]]
kind = "escape_norm"
threshold = 0.05
terminal = false
"""


def _toml(d: dict) -> str:
    """Minimal TOML writer for a RunConfig.to_dict() (tables, scalars, arrays of scalars)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(u) for u in v) + "]"
        raise TypeError(type(v))

    lines = [
        f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) or v == []
    ]

    def table(header, t):
        lines.append(f"\n{header}")
        lines.extend(f"{k} = {value(v)}" for k, v in t.items() if not isinstance(v, dict))
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"[{header.strip('[]')}.{k}]", v)

    for k, v in d.items():
        if isinstance(v, dict):
            table(f"[{k}]", v)
    for event in d.get("events", []):
        table("[[events]]", event)
    return "\n".join(lines) + "\n"


def _with(d: dict, path: str, new) -> dict:
    """Copy of ``d`` with ``path`` (dots; integers index lists) set to ``new`` (None: deleted)."""
    d = copy.deepcopy(d)
    keys = path.split(".")
    cur = d
    for k in keys[:-1]:
        cur = cur[int(k)] if k.isdigit() else cur.setdefault(k, {})
    if new is None:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = new
    return d


# -- round trips ---------------------------------------------------------------------


THREE = {
    "name": "three",
    "model": {"kind": "three_layer", "activation": "x*tanh(x)", "widths": [6, 4], "bias": False},
    "data": {"kind": "gaussian", "params": {"d": 3, "n": 12, "target": "x1*x2 - x3"}},
    "init": {"seed": 1, "beta1": 1e-3, "beta2": 1e-2, "antisymmetric": True},
    "solver": {"method": "rk4", "t_end": 10.0, "dt": 0.01, "save_state": 5, "max_wall": 60},
    "events": [
        {"kind": "loss_below", "threshold": 1e-3},
        {"kind": "escape_norm", "threshold": 2.0, "units": "normalized"},
    ],
}

GD = {
    "model": {"kind": "two_layer", "activation": "relu", "width": 6, "input_dim": 5},
    "data": {"kind": "sum_sin", "params": {"seed": 4}},
    "init": {"seed": 2, "gamma": 2.0, "gamma_prime": 0.5},
    "solver": {"method": "gd", "t_end": 100.0, "dt": 0.1, "save_state": "final"},
}


@pytest.mark.parametrize("d", [TINY, THREE, GD], ids=["tiny", "three_layer", "gd"])
def test_round_trip_dict_json_toml(d, tmp_path):
    cfg = RunConfig.from_dict(d)
    out = cfg.to_dict()
    assert RunConfig.from_dict(out) == cfg
    assert RunConfig.from_dict(out).to_dict() == out
    assert RunConfig.from_dict(json.loads(json.dumps(out))) == cfg
    path = tmp_path / "c.toml"
    path.write_text(_toml(out))
    assert tomllib.loads(path.read_text()) == out
    assert RunConfig.from_toml(path) == cfg


def test_from_toml_matches_from_dict(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    cfg = RunConfig.from_toml(path)
    assert cfg == RunConfig.from_dict(TINY)
    assert cfg.data.base_dir == tmp_path.resolve()
    assert isinstance(cfg.solver.t_end, float)  # TOML integer 50 normalized


def test_example_config_loads_and_round_trips():
    cfg = RunConfig.from_toml(EXAMPLE)
    assert cfg.name == "tanh_condensation"
    assert (cfg.model.width, cfg.init.scale, cfg.solver.t_end) == (100, 1e-3, 2e3)
    assert [e.kind for e in cfg.events] == ["escape_norm"]
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_defaults_filled_and_none_left_out():
    cfg = RunConfig.from_dict(TINY)
    out = cfg.to_dict()
    assert out["data"]["params"] == {**KINDS["sin1d"], "n": 8}
    assert "name" not in out and "dt" not in out["solver"] and "input_dim" not in out["model"]
    assert out["solver"]["method"] == "auto" and out["model"]["bias"] is True


# -- key -------------------------------------------------------------------------------


def test_key_is_stable():
    a, b = RunConfig.from_dict(TINY), RunConfig.from_dict(copy.deepcopy(TINY))
    assert a.key() == b.key() and len(a.key()) == 64
    # defaults written out or left implicit: the same config, the same key
    explicit = _with(_with(TINY, "solver.method", "auto"), "data.params.low", -1)
    assert RunConfig.from_dict(explicit).key() == a.key()
    # a field added later, at its default, keeps the keys stored before it was added
    assert RunConfig.from_dict(_with(TINY, "model.smoothing", 0.0)).key() == a.key()
    # and the same in a fresh interpreter with another hash seed
    code = (
        "from flowsim.config import RunConfig; import json, sys; "
        "print(RunConfig.from_dict(json.loads(sys.argv[1])).key())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TINY)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert run.stdout.strip() == a.key()


CHANGES = [
    ("model.activation", "xtanh"),
    ("model.width", 6),
    ("model.input_dim", 1),
    ("model.bias", False),
    ("model.alpha", 2.0),
    ("data.params.n", 9),
    ("data.params.low", -0.5),
    ("data.params.high", 1.0),
    ("data.params.target", "sin(3*x)"),
    ("init.seed", 4),
    ("init.scale", 2e-2),
    ("init.antisymmetric", True),
    ("solver.method", "dop853"),
    ("solver.t_end", 60.0),
    ("solver.rtol", 1e-9),
    ("solver.atol", 1e-11),
    ("solver.max_steps", 1000),
    ("solver.max_wall", 10.0),
    ("solver.n_save", 21),
    ("solver.save_state", "final"),
    ("events.0.threshold", 0.06),
    ("events.0.units", "normalized"),
    ("events.0.terminal", True),
    ("events", []),
]


def test_key_ignores_the_name_label():
    assert (
        RunConfig.from_dict(_with(TINY, "name", "other")).key() == RunConfig.from_dict(TINY).key()
    )


def test_key_changes_with_every_field(monkeypatch):
    base = RunConfig.from_dict(TINY).key()
    keys = [RunConfig.from_dict(_with(TINY, path, new)).key() for path, new in CHANGES]
    assert base not in keys
    assert len(set(keys)) == len(keys)
    monkeypatch.setattr(fs, "__version__", "0.0.0-other")
    assert RunConfig.from_dict(TINY).key() != base


def test_key_follows_data_file_content(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.arange(4.0), y=np.ones(4))
    d = _with(TINY, "data", {"kind": "file", "params": {"path": "d.npz"}})
    cfg = RunConfig.from_dict(d, base_dir=tmp_path)
    first = cfg.key()
    np.savez(tmp_path / "d.npz", X=np.arange(4.0), y=np.zeros(4))
    assert cfg.key() != first


# -- validation --------------------------------------------------------------------------

# (mutation path, new value or None to delete, field the message must start with)
BAD = [
    ("extra", 1, "extra"),
    ("model", "tanh", "model"),
    ("model.widht", 3, "model.widht"),
    ("model.kind", "four_layer", "model.kind"),
    ("model.kind", None, "model.kind"),
    ("model.activation", "foo(x", "model.activation"),
    ("model.activation", "tanhh", "model.activation"),
    ("model.width", 0, "model.width"),
    ("model.width", 2.5, "model.width"),
    ("model.width", None, "model.width"),
    ("model.widths", [3, 3], "model.widths"),
    ("model.input_dim", 2, "model.input_dim"),
    ("model.bias", "yes", "model.bias"),
    ("model.alpha", -1.0, "model.alpha"),
    ("data.kind", "sine", "data.kind"),
    ("data.colour", 1, "data.colour"),
    ("data.params.n", 0, "data.params.n"),
    ("data.params.seed", 1, "data.params.seed"),
    ("data.params.low", 2.0, "data.params.low"),
    ("data.params.high", "1", "data.params.high"),
    ("data.params.target", "sin(3*z)", "data.params.target"),
    ("data.params.target", "sin(3*x", "data.params.target"),
    ("data.params.target", "foo(x)", "data.params.target"),
    ("init.seed", -1, "init.seed"),
    ("init.seed", None, "init.seed"),
    ("init.scale", None, "init.scale"),
    ("init.scale", 0.0, "init.scale"),
    ("init.beta1", 1e-3, "init.scale, init.beta1"),
    ("init.antisymmetric", 1, "init.antisymmetric"),
    ("init.sclae", 1, "init.sclae"),
    ("solver.method", "rk45", "solver.method"),
    ("solver.t_end", None, "solver.t_end"),
    ("solver.t_end", float("inf"), "solver.t_end"),
    ("solver.rtol", 0.5, "solver.rtol"),
    ("solver.atol", -1e-3, "solver.atol"),
    ("solver.dt", 0.1, "solver.dt"),
    ("solver.max_steps", 0, "solver.max_steps"),
    ("solver.max_wall", 0, "solver.max_wall"),
    ("solver.n_save", 1, "solver.n_save"),
    ("solver.save_state", "some", "solver.save_state"),
    ("solver.save_state", 0, "solver.save_state"),
    ("events", {"kind": "escape_norm"}, "events"),
    ("events.0.kind", "escape", "events[0].kind"),
    ("events.0.threshold", None, "events[0].threshold"),
    ("events.0.threshold", -1.0, "events[0].threshold"),
    ("events.0.units", "si", "events[0].units"),
    ("events.0.terminal", "no", "events[0].terminal"),
    ("events.0.when", 1, "events[0].when"),
    ("name", "a/b", "name"),
]

# whole-config mistakes that only show against another field
BAD_COMBINED = [
    (
        {"init": {"seed": 0, "beta1": 1e-3}},
        "init.beta2",
    ),
    ({"init": {"seed": 0, "scale": 1e-2, "antisymmetric": True}, "model.width": 5}, "init.anti"),
    (
        {
            "model": {"kind": "three_layer", "activation": "tanh", "widths": [3, 3]},
            "init": {"seed": 0, "gamma": 1.0, "gamma_prime": 0.0},
        },
        "init.gamma",
    ),  # fmt: skip
    ({"solver": {"method": "gd", "t_end": 10.0}}, "solver.dt"),
    ({"solver": {"method": "gd", "t_end": 10.0, "dt": 20.0}}, "solver.dt"),
    ({"solver": {"method": "gd", "t_end": 10.0, "dt": 0.1}}, "events"),
    ({"events": TINY["events"] * 2}, "events[1].kind"),
    ({"events.0.kind": "loss_below", "events.0.units": "normalized"}, "events[0].units"),
    ({"data": {"kind": "gaussian", "params": {"d": 2, "target": "x3"}}}, "data.params.target"),
    ({"data": {"kind": "gaussian", "params": {"d": 2}}, "model.input_dim": 3}, "model.input_dim"),
    ({"data": {"kind": "file", "params": {}}}, "data.params.path"),
    ({"data": {"kind": "sum_sin", "params": {"target": "x1"}}}, "data.params.target"),
]


@pytest.mark.parametrize("path, new, field", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_field_is_named(path, new, field):
    with pytest.raises(ValueError) as info:
        RunConfig.from_dict(_with(TINY, path, new))
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert "\n" not in message


@pytest.mark.parametrize("changes, field", BAD_COMBINED, ids=[f for _, f in BAD_COMBINED])
def test_inconsistent_fields_are_named(changes, field):
    d = TINY
    for path, new in changes.items():
        d = _with(d, path, new)
    with pytest.raises(ValueError) as info:
        RunConfig.from_dict(d)
    assert str(info.value).startswith(field), str(info.value)


def test_messages_list_the_allowed_values():
    with pytest.raises(
        ConfigError, match=r"solver.method: must be one of \['adam', 'auto', 'bdf', 'dop853'"
    ):
        SolverConfig(method="rk45", t_end=1.0)
    with pytest.raises(ValueError, match=r"model.widht: unknown field; allowed: \['kind'"):
        RunConfig.from_dict(_with(TINY, "model.widht", 3))
    with pytest.raises(ValueError, match=r"data.params.foo.*allowed: \['n', 'low', 'high'"):
        RunConfig.from_dict(_with(TINY, "data.params.foo", 3))
    with pytest.raises(ValueError, match="model.activation: .*allowed: a registered name"):
        ModelConfig(kind="two_layer", activation="tanhh", width=3)


def test_sections_are_frozen_and_typed():
    cfg = RunConfig.from_dict(TINY)
    with pytest.raises(AttributeError):
        cfg.solver.t_end = 3.0
    with pytest.raises(ConfigError, match="^model: must be a ModelConfig"):
        RunConfig(model=TINY["model"], data=cfg.data, init=cfg.init, solver=cfg.solver)
    direct = RunConfig(
        model=ModelConfig(kind="two_layer", activation="tanh", width=4),
        data=DataConfig(kind="sin1d", params={"n": 8}),
        init=InitConfig(seed=3, scale=1e-2),
        solver=SolverConfig(t_end=50, n_save=20),
        events=[EventConfig(kind="escape_norm", threshold=0.05, terminal=False)],
    )
    assert direct == cfg and direct.key() == cfg.key()


# -- data --------------------------------------------------------------------------------


def test_sin1d_defaults():
    X, y = make_data("sin1d")
    x = np.linspace(-1.0, 1.5, 40)
    assert X.shape == (40, 1) and y.shape == (40,)
    assert X.flags.c_contiguous and X.dtype == np.float64
    np.testing.assert_array_equal(X[:, 0], x)
    np.testing.assert_allclose(y, np.sin(3 * x) + np.sin(6 * x) / 2, rtol=1e-15, atol=1e-15)
    X2, y2 = make_data("sin1d", n=5, low=0, high=1, target="x**2 + 1")
    np.testing.assert_allclose(y2, X2[:, 0] ** 2 + 1, rtol=1e-15)
    _, y3 = make_data("sin1d", n=3, target="2")  # a constant broadcasts
    np.testing.assert_array_equal(y3, [2.0, 2.0, 2.0])


def test_sum_sin_is_seeded():
    X, y = make_data("sum_sin")
    assert X.shape == (80, 5) and y.shape == (80,)
    assert X.min() >= -4 and X.max() <= 2
    np.testing.assert_allclose(y, np.sum(3.5 * np.sin(5 * X + 1), axis=1), rtol=1e-14)
    X2, y2 = make_data("sum_sin", seed=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make_data("sum_sin", seed=1)
    assert not np.array_equal(X, X3)
    X4, _ = make_data("sum_sin", d=2, n=7, low=0.0, high=0.5)
    assert X4.shape == (7, 2) and X4.min() >= 0 and X4.max() <= 0.5


def test_gaussian_is_seeded():
    X, y = make_data("gaussian", d=3, n=50, target="x1 - 2*x3**2", seed=7)
    assert X.shape == (50, 3)
    np.testing.assert_allclose(y, X[:, 0] - 2 * X[:, 2] ** 2, rtol=1e-14)
    np.testing.assert_array_equal(X, np.random.default_rng(7).standard_normal((50, 3)))
    X2, y2 = make_data("gaussian", d=3, n=50, target="x1 - 2*x3**2", seed=7)
    np.testing.assert_array_equal(y, y2)
    X3, y3 = make_data("gaussian")
    assert X3.shape == (100, 5)
    np.testing.assert_array_equal(y3, X3[:, 0])


def test_file_data(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    y = X.sum(axis=1)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    X1, y1 = make_data("file", path="data.npz", base_dir=tmp_path)
    np.testing.assert_array_equal(X1, X)
    np.testing.assert_array_equal(y1, y)
    X2, _ = make_data("file", path=str(tmp_path / "data.npz"))  # absolute
    np.testing.assert_array_equal(X2, X)
    np.savez(tmp_path / "one_d.npz", X=np.arange(3.0), y=np.ones(3))
    assert make_data("file", path="one_d.npz", base_dir=tmp_path)[0].shape == (3, 1)
    with pytest.raises(ValueError, match="^path: no such file"):
        make_data("file", path="missing.npz", base_dir=tmp_path)
    np.savez(tmp_path / "no_y.npz", X=X)
    with pytest.raises(ValueError, match=r"^path: .* has no array\(s\) \['y'\]"):
        make_data("file", path="no_y.npz", base_dir=tmp_path)
    with pytest.raises(ValueError, match="^path: missing"):
        make_data("file")


@pytest.mark.parametrize(
    "kind, params, match",
    [
        ("sine", {}, r"^kind: must be one of \['file', 'gaussian', 'sin1d', 'sum_sin'\]"),
        ("sin1d", {"m": 3}, r"^m: unknown parameter of 'sin1d' data; allowed: \['n'"),
        ("sin1d", {"n": -2}, r"^n: must be an integer >= 1"),
        ("sin1d", {"low": 2.0, "high": 1.0}, r"^low: must be < high"),
        ("sin1d", {"target": "sin(3*x"}, r"^target: cannot parse"),
        ("sin1d", {"target": "sin(y)"}, r"^target: unknown symbol\(s\) \['y'\]"),
        ("sin1d", {"target": "g(x)"}, r"^target: unknown function\(s\) \['g'\]"),
        ("sin1d", {"target": "log(x)"}, r"^target: 'log\(x\)' is not finite at \d+ of 40"),
        ("sin1d", {"target": "1/x", "low": -1.0, "high": 1.0, "n": 3}, r"^target: .* not finite"),
        ("gaussian", {"d": 2, "target": "x3"}, r"^target: unknown symbol\(s\) \['x3'\]"),
        ("sum_sin", {"seed": -1}, r"^seed: must be an integer >= 0"),
        ("sum_sin", {"d": True}, r"^d: must be an integer >= 1"),
    ],
)
def test_make_data_errors(kind, params, match):
    with pytest.raises(ValueError, match=match):
        make_data(kind, **params)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 50),
    low=st.floats(-10, 10),
    width=st.floats(1e-3, 10),
)
def test_sin1d_grid_property(n, low, width):
    X, y = make_data("sin1d", n=n, low=low, high=low + width)
    assert X.shape == (n, 1) and y.shape == (n,)
    assert np.all(np.diff(X[:, 0]) >= 0) and np.all(np.isfinite(y))
    assert X[0, 0] == low


# -- running -------------------------------------------------------------------------------


def test_run_config_equals_direct_simulate():
    cfg = RunConfig.from_dict(TINY)
    traj = run_config(cfg, progress=False)

    X = np.linspace(-1.0, 1.5, 8)[:, None]
    y = np.sin(3 * X[:, 0]) + np.sin(6 * X[:, 0]) / 2
    net = fs.TwoLayer("tanh", 4, 1)
    theta0 = net.init(3, scale=1e-2)
    ref = fs.simulate(
        net, theta0, X, y, t_end=50.0, n_save=20, events=[fs.escape(norm=0.05, terminal=False)],
        progress=False,
    )  # fmt: skip

    for name in ("t", "t_bar", "loss", "norms", "max_neuron_norm", "state_t", "theta_bar",
                 "scale_vector", "theta_final"):  # fmt: skip
        np.testing.assert_array_equal(getattr(traj, name), getattr(ref, name), err_msg=name)
    assert (traj.status, traj.nfev, traj.n_accepted, traj.n_rejected) == (
        ref.status, ref.nfev, ref.n_accepted, ref.n_rejected,
    )  # fmt: skip
    assert [(e.name, e.t, e.loss) for e in traj.events] == [
        (e.name, e.t, e.loss) for e in ref.events
    ]
    assert traj.event("escape") is not None  # the tiny run does escape
    assert traj.config["run_config"] == cfg.to_dict()
    assert traj.config["run_key"] == cfg.key()
    assert {k: v for k, v in traj.config.items() if not k.startswith("run_")} == ref.config


def test_build_three_layer_and_gamma():
    net, theta0, X, y, events = build(RunConfig.from_dict(THREE))
    assert isinstance(net, fs.ThreeLayer) and net.widths == (6, 4) and not net.bias
    assert X.shape == (12, 3) and net.input_dim == 3
    ref = net.init(1, beta1=1e-3, beta2=1e-2, antisymmetric=True)
    np.testing.assert_array_equal(theta0, ref)
    assert [(e.name, e.units) for e in events] == [
        ("loss_below", "original"),
        ("escape", "normalized"),
    ]
    net, theta0, X, _, events = build(RunConfig.from_dict(GD))
    assert isinstance(net, fs.TwoLayer) and X.shape == (80, 5) and events == []
    np.testing.assert_array_equal(theta0, net.init(2, gamma=2.0, gamma_prime=0.5))


def test_file_data_dimension_checked_at_build(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((4, 2)), y=np.ones(4))
    d = _with(TINY, "data", {"kind": "file", "params": {"path": "d.npz"}})
    build(RunConfig.from_dict(d, base_dir=tmp_path))  # input_dim inferred: 2
    d = _with(d, "model.input_dim", 3)
    with pytest.raises(ValueError, match="^model.input_dim: must match the data's dimension 2"):
        build(RunConfig.from_dict(d, base_dir=tmp_path))
    with pytest.raises(ValueError, match="^data.params.path: no such file"):
        build(RunConfig.from_dict(d, base_dir=tmp_path / "elsewhere"))


# -- the command ---------------------------------------------------------------------------


def test_cli_run_writes_and_refuses_to_overwrite(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny: done" in printed and str(out / "tiny.npz") in printed
    traj = fs.Trajectory.load(out / "tiny")
    cfg = RunConfig.from_toml(config)
    assert traj.config["run_config"] == cfg.to_dict()
    assert traj.config["run_key"] == cfg.key()
    assert RunConfig.from_dict(traj.config["run_config"]) == cfg
    stamp = (out / "tiny.npz").stat().st_mtime_ns

    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "exist" in captured.err and "--force" in captured.err and captured.out == ""
    assert (out / "tiny.npz").stat().st_mtime_ns == stamp

    assert main(["run", str(config), "--out", str(out), "--quiet", "--force"]) == 0
    assert capsys.readouterr().out == ""
    assert (out / "tiny.npz").stat().st_mtime_ns != stamp


def test_cli_run_uses_the_config_name(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('name = "named"\n' + TINY_TOML)
    assert main(["run", str(config), "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "named.npz").exists() and (tmp_path / "named.json").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        (TINY_TOML.replace("width = 4", "widht = 4"), "model.widht: unknown field"),
        (TINY_TOML.replace("t_end = 50", "t_end = -50"), "solver.t_end: must be"),
        (TINY_TOML.replace("n = 8", "n = 8, target = 'log(x)'"), "data.params.target"),
        (TINY_TOML.replace("[solver]", "[solver"), "invalid TOML"),
    ],
    ids=["unknown", "range", "expression", "toml"],
)
def test_cli_run_bad_config(tmp_path, capsys, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "out" / "bad.npz").exists()


def test_cli_run_missing_config(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


# -- bounded resources ---------------------------------------------------------------------


def _file_config(tmp_path, path) -> Path:
    config = tmp_path / "file.toml"
    text = TINY_TOML.replace('kind = "sin1d"\nparams = { n = 8 }',
                             f'kind = "file"\nparams = {{ path = "{path}" }}')  # fmt: skip
    config.write_text(text)
    return config


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory"])
def test_data_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """/dev/zero was hashed forever (and a FIFO blocks on open): a real `flowsim run`
    process ends within the timeout with a one-line message naming the field."""
    path = {"dev_zero": Path("/dev/zero"), "fifo": tmp_path / "pipe",
            "directory": tmp_path}[kind]  # fmt: skip
    if kind == "fifo":
        os.mkfifo(path)
    config = _file_config(tmp_path, path)
    out = subprocess.run([sys.executable, "-m", "flowsim.cli", "run", str(config), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert "data.params.path" in out.stderr and "is not a regular file" in out.stderr
    assert str(path) in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(ConfigError, match="not a regular file"):
        RunConfig.from_toml(config).key()


def test_data_file_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    X = np.zeros((200, 2))
    np.savez(tmp_path / "big.npz", X=X, y=np.zeros(200))
    size = (tmp_path / "big.npz").stat().st_size
    assert size > 4000
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "4000")
    cfg = RunConfig.from_toml(_file_config(tmp_path, tmp_path / "big.npz"))
    with pytest.raises(ConfigError, match=r"big.npz' is .* KiB; reading it would need") as exc:
        cfg.key()
    assert exc.value.path == "data.params.path" and "3.91 KiB" in str(exc.value)
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "1M")
    assert len(cfg.key()) == 64


def test_compressed_data_file_is_bounded_by_its_declared_shape(tmp_path, monkeypatch):
    """A few KiB of zlib that declare 16 MB of float64: refused from the header, before
    NumPy inflates it."""
    n = 2_000_000
    np.savez_compressed(tmp_path / "bomb.npz", X=np.zeros((n, 1)), y=np.zeros(n))
    assert (tmp_path / "bomb.npz").stat().st_size < 200_000
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "20M")
    estimate = 2 * 8 * (n + n) / 2**20  # X and y as float64, twice
    with pytest.raises(
        ValueError, match=rf"^path: .*bomb.npz'.* need an estimated {estimate:.3g} MiB"
    ):
        make_data("file", path=str(tmp_path / "bomb.npz"))


def test_memory_limit_default_and_override(monkeypatch):
    from flowsim._memory import memory_limit

    monkeypatch.delenv("FLOWSIM_MAX_MEMORY", raising=False)
    with open("/proc/meminfo") as fh:
        total_kib = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    assert memory_limit() == pytest.approx(total_kib * 1024 / 2, rel=1e-3)
    for text, expected in [("16G", 16 * 2**30), ("1.5M", 1.5 * 2**20), ("123", 123),
                           ("2GiB", 2 * 2**30)]:  # fmt: skip
        monkeypatch.setenv("FLOWSIM_MAX_MEMORY", text)
        assert memory_limit() == expected
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "lots")
    with pytest.raises(ValueError, match="FLOWSIM_MAX_MEMORY: must be a number of bytes"):
        memory_limit()


GIB = 2**30
TIB = 2**40


@pytest.mark.parametrize(
    "path, new, field, expected",
    [
        # width m = 1e12 on sin1d (D = 2): P = 3e12, parameters 8 * 40 * P bytes
        (
            "model.width",
            1e12,
            "model.width",
            f"width = {10**12}: the run would need an estimated {8 * 40 * 3e12 / TIB:.3g} TiB",
        ),
        # n = 1e10 samples (D = 2): data 8 n (2 D + 2) bytes
        (
            "data.params.n",
            1e10,
            "data.params.n",
            f"n = {10**10}: the run would need an estimated {8 * 1e10 * 6 / GIB:.3g} GiB",
        ),
        # n_save = 1e8, saving all states of P = 12: 8 (k (2 + 4) + 2 k P) bytes + the rest
        (
            "solver.n_save",
            1e8,
            "solver.n_save",
            f"n_save = {10**8}: the run would need an estimated {8 * 1e8 * (6 + 24) / GIB:.3g} GiB",
        ),
    ],
    ids=["width", "n", "n_save"],
)
def test_sizes_are_checked_before_allocating(monkeypatch, path, new, field, expected):
    """These died in NumPy (or allocated 10 GB): now a ConfigError naming the field, its
    value, the estimate (recomputed here from the documented formula) and the limit."""
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "8G")
    d = _with(TINY, path, new)
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict(d)
    assert exc.value.path == field
    assert expected in str(exc.value) and "above the memory limit 8 GiB" in str(exc.value)
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "100000T")  # the same config within a larger limit
    RunConfig.from_dict(d)


def test_three_layer_widths_are_checked(monkeypatch):
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "1G")
    d = _with(THREE, "model.widths", [100_000, 100_000])  # P > 1e10
    with pytest.raises(ConfigError, match=r"widths = \[100000, 100000\]") as exc:
        RunConfig.from_dict(d)
    assert exc.value.path == "model.widths"


def test_file_data_size_is_checked_at_build(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", X=np.zeros((1000, 3)), y=np.zeros(1000))
    cfg = RunConfig.from_toml(_file_config(tmp_path, tmp_path / "d.npz"))
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "150K")  # the file fits, the run does not
    with pytest.raises(ConfigError, match=r"n = 1000, width = 4: the run would") as exc:
        build(cfg)
    assert exc.value.path == "data.params.path, model.width"


def test_make_data_and_simulate_check_sizes_too(monkeypatch):
    monkeypatch.setenv("FLOWSIM_MAX_MEMORY", "1G")
    with pytest.raises(ValueError, match=r"^n: n = 100000000, d = 3: the data set would"):
        make_data("gaussian", n=10**8, d=3)
    net = fs.TwoLayer("tanh", 4, 1)
    theta0 = net.init(0, scale=1e-2)
    X, y = make_data("sin1d", n=8)
    with pytest.raises(ValueError, match=r"^n_save: 100000000 save points with save_state"):
        fs.simulate(net, theta0, X, y, t_end=1.0, n_save=10**8, save_state="final")
    with pytest.raises(ValueError, match=r"^save: 20000000 save points"):
        fs.simulate(net, theta0, X, y, t_end=1.0, save=np.linspace(0, 1, 2 * 10**7))


def test_cli_run_refuses_an_unwritable_out_before_simulating(tmp_path, capsys, monkeypatch):
    """--out under a regular file (root ignores permission bits, not this): refused at
    once, not after the simulation."""
    import flowsim.config

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(flowsim.config, "run_config", must_not_run)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    blocker = tmp_path / "somefile"
    blocker.write_text("not a directory")
    assert main(["run", str(config), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flowsim run: --out {blocker / 'sub'}: cannot write there (")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("existing", [False, True])
def test_cli_run_disk_full_while_saving(tmp_path, capsys, monkeypatch, existing):
    """ENOSPC in the middle of writing the .npz: a message, exit 1, no partial or
    temporary file, and an older result (with --force) left whole."""
    import errno

    import flowsim.integrate.trajectory as trajectory

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "out"
    if existing:
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else {}

    def savez_then_full(fh, **arrays):
        fh.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trajectory.np, "savez", savez_then_full)
    args = ["run", str(config), "--out", str(out), "--quiet"] + (["--force"] if existing else [])
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == (f"flowsim run: cannot save {out / 'tiny'}.npz and .json (No space left on "
                   "device); nothing was written, the result is lost\n")  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_dropout_batches_and_penalties_from_a_config():
    """The solver's stochastic and penalty fields reach simulate; a config without them
    keeps its key (the new fields are left out when unset)."""
    base = {"model": {"kind": "two_layer", "activation": "tanh", "width": 6},
            "data": {"kind": "sin1d", "params": {"n": 12}}, "init": {"seed": 0, "scale": 0.3},
            "solver": {"method": "gd", "dt": 0.01, "t_end": 0.1}}  # fmt: skip
    plain = RunConfig.from_dict(base)
    assert "seed" not in plain.to_dict()["solver"]
    d = copy.deepcopy(base)
    d["solver"].update(dropout=0.8, batch_size=5, seed=3, penalty_l2=1e-3)
    run = fs.run_config(RunConfig.from_dict(d))
    net, theta0, X, y, _ = fs.config.build(RunConfig.from_dict(d))
    direct = fs.simulate(net, theta0, X, y, t_end=0.1, method="gd", dt=0.01, dropout=0.8,
                         batch_size=5, seed=3, penalty=fs.penalty.l2(1e-3),
                         progress=False)  # fmt: skip
    assert np.array_equal(run.theta_final, direct.theta_final)
    assert run.config["penalty"] == [{"kind": "l2", "value": 1e-3}]


@pytest.mark.parametrize(
    "field, value, words",
    [("dropout", 1.5, "keep probability"), ("dropout", [0.9], "pair"),
     ("batch_size", 0, "integer"), ("seed", -1, ">= 0"), ("penalty_dropout", 0.0, "(0, 1]"),
     ("penalty_l2", -1.0, ">= 0")],
)  # fmt: skip
def test_bad_training_fields_name_the_field(field, value, words):
    d = {"model": {"kind": "two_layer", "activation": "tanh", "width": 6},
         "data": {"kind": "sin1d"}, "init": {"seed": 0, "scale": 0.3},
         "solver": {"method": "gd", "dt": 0.01, "t_end": 0.1, field: value}}  # fmt: skip
    with pytest.raises(ConfigError, match=f"solver.{field}") as info:
        RunConfig.from_dict(d)
    assert words in str(info.value)
    d["solver"] = {"method": "dopri5", "t_end": 1.0, "dropout": 0.9}
    with pytest.raises(ConfigError, match="solver.dropout.*'gd' or 'adam'"):
        RunConfig.from_dict(d)
