"""Trajectory files: round trip, readable without flowsim, provenance, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import platform

import numba
import numpy as np
import pytest
import scipy
import sympy

import flowsim as fs
from flowsim.integrate import trajectory as trajectory_module


@pytest.fixture(scope="module")
def traj():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.3
    net = fs.TwoLayer("tanh", 6, 2, bias=True)
    theta0 = net.init(1, scale=1e-3)
    return fs.simulate(
        net, theta0, X, y, t_end=40.0, n_save=15, save_state=4, progress=False,
        events=[fs.escape(norm=0.05, terminal=False), fs.loss_below(0.2, terminal=False)],
    )  # fmt: skip


def _assert_same(a, b):
    for field in dataclasses.fields(fs.Trajectory):
        va, vb = getattr(a, field.name), getattr(b, field.name)
        if field.name == "events":
            assert len(va) == len(vb)
            for ea, eb in zip(va, vb, strict=True):
                assert (ea.name, ea.t, ea.loss) == (eb.name, eb.t, eb.loss)
                np.testing.assert_array_equal(ea.theta, eb.theta)
        elif isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and va.shape == vb.shape, field.name
            np.testing.assert_array_equal(va, vb, err_msg=field.name)
        else:
            assert va == vb, field.name


def test_fixture_has_everything(traj):
    assert traj.status == "done"
    assert len(traj.events) == 2
    assert traj.theta_bar.shape[0] == 4  # save_state=4 on 15 save points: 0, 4, 8, 12


def test_round_trip(traj, tmp_path):
    npz, meta = traj.save(tmp_path / "run")
    assert npz == tmp_path / "run.npz" and meta == tmp_path / "run.json"
    _assert_same(traj, fs.Trajectory.load(tmp_path / "run"))
    # either file name works as the path
    _assert_same(traj, fs.Trajectory.load(npz))
    _assert_same(traj, fs.Trajectory.load(meta))
    traj.save(tmp_path / "again.npz")
    _assert_same(traj, fs.Trajectory.load(tmp_path / "again"))


def test_readable_with_numpy_and_json(traj, tmp_path):
    traj.save(tmp_path / "run")
    with np.load(tmp_path / "run.npz") as data:
        arrays = {k: data[k] for k in data.files}
    info = json.loads((tmp_path / "run.json").read_text())
    assert set(arrays) == {"t", "t_bar", "loss", "norms", "max_neuron_norm", "state_t",
                           "theta_bar", "scale_vector", "theta_final", "event_theta"}  # fmt: skip
    assert info["format"] == "flowsim-trajectory/1"
    # original units from the documented recipe
    np.testing.assert_array_equal(arrays["theta_bar"] * arrays["scale_vector"], traj.theta)
    np.testing.assert_array_equal(arrays["t"], traj.t)
    assert arrays["norms"].shape == (traj.t.size, len(info["layers"]))
    assert info["layers"] == ["a", "W"]
    assert [e["name"] for e in info["events"]] == ["escape", "loss_below"]
    np.testing.assert_array_equal(arrays["event_theta"][0], traj.events[0].theta)
    for key in ("status", "method", "nfev", "n_accepted", "n_rejected", "wall_time",
                "time_scale", "scales"):  # fmt: skip
        assert info[key] == getattr(traj, key)


def test_versions_and_config_recorded(traj):
    versions = traj.versions
    assert versions["flowsim"] == fs.__version__
    assert versions["numpy"] == np.__version__
    assert versions["scipy"] == scipy.__version__
    assert versions["numba"] == numba.__version__
    assert versions["sympy"] == sympy.__version__
    assert versions["python"] == platform.python_version()
    config = traj.config
    assert config["method"] == "auto"
    assert config["t_end"] == 40.0
    assert config["rtol"] == 1e-8 and config["atol"] == 1e-12
    assert config["n_save"] == 15
    assert config["save_state"] == 4
    assert config["n_samples"] == 8
    assert "TwoLayer" in config["net"] and "tanh" in config["activation"]
    assert [e["quantity"] for e in config["events"]] == ["norm", "loss_below"]
    json.dumps(config)  # plain JSON


def test_atomic_write_leaves_no_temporary_files(traj, tmp_path):
    traj.save(tmp_path / "run")
    traj.save(tmp_path / "run")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz"]


def test_failed_write_keeps_previous_pair(traj, tmp_path, monkeypatch):
    traj.save(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = dataclasses.replace(traj, loss=traj.loss * 2)

    def failing_dumps(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trajectory_module.json, "dumps", failing_dumps)
    with pytest.raises(OSError):
        other.save(tmp_path / "run")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="flowsim-trajectory"):
        fs.Trajectory.load(tmp_path / "x")


def test_accessors(traj):
    assert traj.t_final == traj.t[-1]
    assert traj.event("nope") is None
    assert traj.event("escape").name == "escape"
    np.testing.assert_array_equal(traj.layer_norm("W"), traj.norms[:, 1])
    np.testing.assert_array_equal(traj.theta, traj.theta_bar * traj.scale_vector)
