"""Code-execution payloads through every entry point that reads an expression: the Python
API, ``flowsim derive``, ``flowsim run``, ``flowsim sweep --dry-run`` and a tampered
stored record.  Each must refuse the text with a message and leave no marker file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowsim
import flowsim as fs
from flowsim.config import RunConfig
from flowsim.store import Store, StoreError

ROOT = Path(flowsim.__file__).absolute().parent.parent
MARKER = "pwned_marker"

PAYLOADS = [
    f"__import__('os').system('touch {MARKER}')",
    f"x + __import__('pathlib').Path('{MARKER}').touch()",
    f"open('{MARKER}', 'w') and x",
    f"x.__class__.__mro__[-1].__subclasses__() and open('{MARKER}', 'w')",
    f"(lambda: open('{MARKER}', 'w'))()",
    f"[open('{MARKER}', 'w') for _ in (1,)]",
    f"Function('{MARKER}')(x)",
]


def _run(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flowsim.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _refused(proc, name) -> None:
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("payload", PAYLOADS)
def test_python_api_refuses_payloads(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for build in (fs.activation, lambda text: fs.TwoLayer(text, 3, 1)):
        with pytest.raises(ValueError, match="not allowed|unknown|cannot parse"):
            build(payload)
    with pytest.raises(ValueError, match="target"):
        fs.make_data("sin1d", target=payload)
    with pytest.raises(ValueError, match="target"):
        fs.make_data("gaussian", d=2, target=payload.replace("x", "x1"))
    assert list(tmp_path.iterdir()) == []


def test_cli_derive_refuses_payloads(tmp_path):
    for payload in PAYLOADS[:3]:
        proc = _run(["derive", payload], tmp_path)
        _refused(proc, "flowsim derive")
        assert not (tmp_path / MARKER).exists()


RUN_TOML = """\
[model]
kind = "two_layer"
activation = {activation}
width = 4
[data]
kind = "sin1d"
params = {{ n = 8, target = {target} }}
[init]
seed = 0
scale = 1e-2
[solver]
t_end = 1.0
"""


@pytest.mark.parametrize("field", ["activation", "target"])
def test_cli_run_refuses_payloads_in_a_config(field, tmp_path):
    payload = json.dumps(PAYLOADS[0])  # a TOML basic string is a JSON string here
    values = {"activation": '"tanh"', "target": '"sin(3*x)"', field: payload}
    config = tmp_path / "run.toml"
    config.write_text(RUN_TOML.format(**values))
    proc = _run(["run", str(config), "--out", str(tmp_path / "out")], tmp_path)
    _refused(proc, "model.activation" if field == "activation" else "data.params.target")
    assert not (tmp_path / MARKER).exists()


SWEEP_TOML = """\
name = "hostile"
[base.model]
kind = "two_layer"
activation = "tanh"
width = 4
[base.data]
kind = "sin1d"
params = {{ n = 8 }}
[base.init]
seed = 0
scale = 1e-2
[base.solver]
t_end = 1.0
[grid]
{grid}
"""


@pytest.mark.parametrize(
    "grid",
    [
        f'"model.activation" = ["tanh", {json.dumps(PAYLOADS[0])}]',
        f'"data.params.target" = ["x", {json.dumps(PAYLOADS[1])}]',
    ],
)
def test_cli_sweep_dry_run_refuses_payloads(grid, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP_TOML.format(grid=grid))
    proc = _run(["sweep", str(sweep), "--store", str(tmp_path / "store"), "--dry-run"], tmp_path)
    _refused(proc, "flowsim sweep")
    assert not (tmp_path / MARKER).exists()


def test_store_config_of_a_tampered_record(tmp_path, monkeypatch):
    cfg = RunConfig.from_dict(
        {
            "model": {"kind": "two_layer", "activation": "tanh", "width": 3},
            "data": {"kind": "sin1d", "params": {"n": 6}},
            "init": {"seed": 0, "scale": 1e-2},
            "solver": {"t_end": 1.0, "n_save": 5},
        }
    )
    store = Store(tmp_path / "s")
    record, _ = store.compute(cfg)
    path = store.path(record["key"]) / "result.json"
    monkeypatch.chdir(tmp_path)
    original = path.read_text()
    for section, field in (("model.activation", "activation"), ("data.params.target", "params")):
        edited = json.loads(original)
        if field == "params":
            edited["config"]["data"]["params"]["target"] = PAYLOADS[0]
        else:
            edited["config"]["model"]["activation"] = PAYLOADS[0]
        path.write_text(json.dumps(edited))
        with pytest.raises((StoreError, ValueError), match=f"{section}.*unknown function|hash"):
            store.config(record["key"])
        assert not (tmp_path / MARKER).exists()
