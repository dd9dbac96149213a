"""Tests of flowsim._progress and the progress shown by simulate: whole lines every
LOG_INTERVAL s in a log, a redrawn line on a terminal, simulated time and steps (no ETA)."""

import io
import re

import numpy as np
import pytest

import flowsim as fs
import flowsim._progress as fp


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_log_stream_gets_whole_lines_every_interval():
    clock, out = FakeClock(), io.StringIO()
    bar = fp.Progress("run", stream=out, clock=clock)
    assert not bar.tty and bar.interval == fp.LOG_INTERVAL == 30.0
    for k in range(1, 801):  # 200 s of updates every 0.25 s
        clock.now = 0.25 * k
        bar.update(status=f"step {k}")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # one line at each of 30, 60, ..., 180 s, and the last state at close
    assert len(lines) == 200 // 30 + 1
    assert lines[0] == "run: step 120, elapsed 0:30"
    assert lines[-1] == "run: step 800, elapsed 3:20"


def test_short_task_writes_nothing_to_a_log():
    clock, out = FakeClock(), io.StringIO()
    with fp.Progress("run", stream=out, clock=clock) as bar:
        clock.now = 29.0
        bar.update(status="almost")
    assert out.getvalue() == ""


def test_terminal_line_is_redrawn_with_counts_and_eta():
    clock, out = FakeClock(), FakeTTY()
    bar = fp.Progress("sweep", total=10, initial=2, unit="runs", eta=True, stream=out, clock=clock)
    bar.update(status="0 failed")  # a terminal shows the first update at once
    assert out.getvalue() == "\rsweep: 2/10 runs, 0 failed, elapsed 0:00"
    clock.now = 20.0
    bar.update(2, "1 failed")  # 2 runs in 20 s, 6 left: 60 s
    assert out.getvalue().split("\r")[-1] == "sweep: 4/10 runs, ETA 1:00, 1 failed, elapsed 0:20"
    clock.now = 20.05  # within TTY_INTERVAL: no redraw
    bar.update(1)
    assert out.getvalue().count("\r") == 2
    bar.close()  # 3 runs in 20.05 s, 5 left: 33.4 s
    assert out.getvalue().endswith("sweep: 5/10 runs, ETA 0:33, 1 failed, elapsed 0:20\n")


def test_terminal_line_erased_or_silent():
    clock, out = FakeClock(), FakeTTY()
    bar = fp.Progress("simulate", leave=False, stream=out, clock=clock)
    bar.update(status="t = 1")
    bar.close()
    assert out.getvalue().endswith("\r" + " " * len("simulate: t = 1, elapsed 0:00") + "\r")
    for stream in (FakeTTY(), io.StringIO()):
        with fp.Progress("off", enabled=False, stream=stream, clock=clock) as bar:
            clock.now += 1e6
            bar.update(1, "x")
        assert stream.getvalue() == ""


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.9, "0:59"), (197, "3:17"),
                                           (3725, "1:02:05")])  # fmt: skip
def test_clock_text(seconds, text):
    assert fp.clock_text(seconds) == text


def _gd_case(rng):
    X = rng.standard_normal((8, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    net = fs.TwoLayer("tanh", 4, 2, bias=True, alpha=1.0)
    return net, 0.5 * rng.standard_normal(net.n_params), X, y


def test_simulate_on_a_terminal_shows_time_steps_and_method(rng, monkeypatch):
    net, theta0, X, y = _gd_case(rng)
    out = FakeTTY()
    monkeypatch.setattr("sys.stderr", out)
    dt, n_iter = 0.01, 40000
    traj = fs.simulate(net, theta0, X, y, t_end=dt * n_iter, method="gd", dt=dt, progress=True)
    assert traj.status == "done"
    text = out.getvalue()
    shown = [s for s in text.split("\r") if s.strip()]
    assert shown and "%" not in text
    for line in shown:
        match = re.fullmatch(r"simulate: t = (\S+) of 400, ([\d,]+) iterations, gd, "
                             r"elapsed \d+:\d\d *", line)  # fmt: skip
        assert match, line
        t_shown, k = float(match[1]), int(match[2].replace(",", ""))
        assert 0 < k < n_iter
        assert t_shown == pytest.approx(k * dt, rel=1e-3)  # t = iterations x learning rate
    assert text.endswith("\r")  # erased at the end (leave=False)


def test_simulate_in_a_log_writes_plain_lines(rng, monkeypatch):
    net, theta0, X, y = _gd_case(rng)
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    monkeypatch.setattr(fp, "LOG_INTERVAL", 0.2)
    traj = fs.simulate(net, theta0, X, y, t_end=1e4, method="gd", dt=0.01, progress=True)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= traj.wall_time / 0.2 + 1
    assert all(re.match(r"simulate: t = \S+ of 1e\+04, [\d,]+ iterations, gd", s) for s in lines)
    assert lines[-1].startswith("simulate: t = 1e+04 of 1e+04, 1,000,000 iterations, gd")


def test_simulate_progress_false_is_silent(rng, capsys):
    net, theta0, X, y = _gd_case(rng)
    fs.simulate(net, theta0, X, y, t_end=100.0, method="gd", dt=0.01, progress=False)
    assert capsys.readouterr().err == ""


def test_sweep_progress_counts_runs_with_an_eta(tmp_path, monkeypatch, capsys):
    from flowsim.store import Store
    from flowsim.sweep import Sweep, run_sweep

    base = {
        "model": {"kind": "two_layer", "activation": "tanh", "width": 6},
        "data": {"kind": "sin1d", "params": {"n": 10}},
        "init": {"seed": 0, "scale": 1e-2},
        "solver": {"t_end": 50.0, "rtol": 1e-6, "n_save": 20},
    }
    sweep = Sweep.from_dict({"name": "tiny", "base": base, "seeds": 2,
                             "grid": {"init": {"scale": [1e-2, 1e-3]}}})  # fmt: skip
    monkeypatch.setattr(fp, "LOG_INTERVAL", 0.0)  # a line at every finished run
    result = run_sweep(sweep, Store(tmp_path / "s"), workers=2, progress=True)
    assert result.ok == 4
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 1 + 4 + 1  # the start, each run, the close
    done = [int(re.match(r"tiny: (\d)/4 runs, ", s)[1]) for s in lines]
    assert done == [0, 1, 2, 3, 4, 4]
    assert all("ETA" in s for s in lines[1:4]) and "ETA" not in lines[0] + lines[-1]
    assert lines[-1].startswith("tiny: 4/4 runs, 0 failed, elapsed")


def test_nothing_needs_tqdm(tmp_path):
    """tqdm is not a dependency: the validate, sweep and simulate paths run without it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tqdm'] = sys.modules['tqdm.auto'] = None\n"
        "import flowsim, flowsim.sweep, flowsim.cli\n"
        "from flowsim.validation._runner import run\n"
        f"print(run([], 'quick', {str(tmp_path)!r}, progress=True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "([], {})"
