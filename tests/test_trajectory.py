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
                           "theta_bar", "scale_vector", "theta_final", "event_theta",
                           "optimizer_state", "theta_bar_final"}  # fmt: skip
    assert info["format"] == "flowsim-trajectory/2"
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


# -- integrity: concurrent saves, damaged and crafted files --------------------------------


def _tagged(traj, writer: int, round_: int):
    """A trajectory whose loss values say who wrote it (checked against its message)."""
    value = 1000.0 * writer + round_
    return dataclasses.replace(traj, loss=np.full_like(traj.loss, value),
                               message=f"{value}")  # fmt: skip


def _save_rounds(traj, path, writer: int, rounds: int, start) -> None:
    start.wait()
    for r in range(rounds):
        _tagged(traj, writer, r).save(path)


def test_concurrent_saves_to_one_path_leave_whole_pairs(traj, tmp_path):
    """Two processes saving one stem 20 times each while this one reads it: every
    load gives one writer's whole pair, and nothing is left behind."""
    import multiprocessing

    path = tmp_path / "run"
    _tagged(traj, 9, 0).save(path)
    context = multiprocessing.get_context("fork")
    start = context.Barrier(3)
    writers = [context.Process(target=_save_rounds, args=(traj, path, w, 20, start))
               for w in (1, 2)]  # fmt: skip
    for p in writers:
        p.start()
    start.wait()
    loads = 0
    while any(p.is_alive() for p in writers) or loads < 20:
        loaded = fs.Trajectory.load(path)
        np.testing.assert_array_equal(loaded.loss, float(loaded.message))
        loads += 1
    for p in writers:
        p.join(timeout=60)
        assert p.exitcode == 0
    final = fs.Trajectory.load(path)
    assert final.message in ("1019.0", "2019.0")  # one writer's last pair, whole
    np.testing.assert_array_equal(final.loss, float(final.message))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz"]


def test_a_mismatched_or_damaged_pair_is_refused(traj, tmp_path):
    _tagged(traj, 1, 0).save(tmp_path / "a")
    _tagged(traj, 2, 0).save(tmp_path / "b")
    (tmp_path / "a.npz").write_bytes((tmp_path / "b.npz").read_bytes())  # same size, others'
    with pytest.raises(ValueError, match=r"a\.npz does not match a\.json"):
        fs.Trajectory.load(tmp_path / "a")
    data = (tmp_path / "b.npz").read_bytes()
    (tmp_path / "b.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"b\.npz does not match"):
        fs.Trajectory.load(tmp_path / "b")


def test_version_1_files_still_load(traj, tmp_path):
    traj.save(tmp_path / "run")
    info = json.loads((tmp_path / "run.json").read_text())
    for name in ("npz_sha256", "npz_size", "n_switches", "method_log", "t_stop"):
        info.pop(name)  # the oldest files lack these
    info["format"] = "flowsim-trajectory/1"
    (tmp_path / "run.json").write_text(json.dumps(info))
    old = fs.Trajectory.load(tmp_path / "run")
    np.testing.assert_array_equal(old.theta_bar, traj.theta_bar)
    assert old.n_switches == 0 and old.method_log == () and np.isnan(old.t_stop)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("status"), "field 'status' is missing"),
        (lambda d: d.pop("events"), "field 'events' is missing"),
        (lambda d: d.update(nfev="3"), "field 'nfev' must be an integer, got '3'"),
        (lambda d: d.update(nfev=True), "field 'nfev' must be an integer"),
        (lambda d: d.update(wall_time=None), "field 'wall_time' must be a number"),
        (lambda d: d.update(layers="aW"), "field 'layers' must be a list of strings"),
        (lambda d: d.update(events=[{"name": "escape"}]), "field 'events' must be a list of"),
        (lambda d: d.update(events=[1]), "field 'events' must be a list of"),
        (lambda d: d.update(method_log=[[0.0]]), "field 'method_log' must be a list of"),
        (lambda d: d.update(scales={"a": "big"}), "field 'scales' must be a JSON object of"),
        (lambda d: d.update(config=[]), "field 'config' must be a JSON object"),
        (lambda d: d.update(npz_sha256=7), "field 'npz_sha256' must be a string"),
        (lambda d: d.update(layers=["a"]), "array 'norms' has shape"),
        (lambda d: d.update(events=d["events"][:1]), "array 'event_theta' has shape"),
    ],
)
def test_crafted_json_gives_a_value_error_naming_file_and_field(traj, tmp_path, change, message):
    traj.save(tmp_path / "run")
    info = json.loads((tmp_path / "run.json").read_text())
    change(info)
    (tmp_path / "run.json").write_text(json.dumps(info))
    with pytest.raises(ValueError) as caught:
        fs.Trajectory.load(tmp_path / "run")
    assert str(tmp_path) in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"format": 1}'])
def test_json_that_is_not_a_trajectory_is_refused(traj, tmp_path, text):
    traj.save(tmp_path / "run")
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(ValueError, match=r"run\.json"):
        fs.Trajectory.load(tmp_path / "run")


def _resave_npz(tmp_path, **arrays):
    """Replace the arrays file of ``tmp_path/run`` and drop its checksum from the JSON."""
    np.savez(tmp_path / "run.npz", **arrays)
    info = json.loads((tmp_path / "run.json").read_text())
    info.pop("npz_sha256", None), info.pop("npz_size", None)
    (tmp_path / "run.json").write_text(json.dumps(info))


def test_crafted_arrays_are_refused_and_never_unpickled(traj, tmp_path):
    traj.save(tmp_path / "run")
    with np.load(tmp_path / "run.npz") as data:
        arrays = {k: data[k] for k in data.files}
    _resave_npz(tmp_path, **{k: v for k, v in arrays.items() if k != "loss"})
    with pytest.raises(ValueError, match=r"run\.npz: array 'loss' is missing"):
        fs.Trajectory.load(tmp_path / "run")
    _resave_npz(tmp_path, **{**arrays, "loss": np.array([{"x": 1}] * traj.t.size, dtype=object)})
    with pytest.raises(ValueError, match=r"run\.npz: not a readable trajectory npz.*pickle"):
        fs.Trajectory.load(tmp_path / "run")
    _resave_npz(tmp_path, **{**arrays, "t": arrays["t"][:-1]})
    with pytest.raises(ValueError, match=r"run\.npz: array 't_bar' has shape"):
        fs.Trajectory.load(tmp_path / "run")
    (tmp_path / "run.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"run\.npz: not a readable trajectory npz"):
        fs.Trajectory.load(tmp_path / "run")
