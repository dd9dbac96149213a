"""The sweep-backed validations: their full-size runs are exactly their sweep files.

``flowsim validate --full`` runs ``phase_diagram`` and ``escape_times`` from the
sweep files in ``validation/sweeps/`` (through a result store) and looks the
results up by the store keys of the configs the check builds itself
(``full_configs``).  These tests expand the files and compare keys; nothing runs.
"""

from __future__ import annotations

from collections import Counter

import pytest

from flowsim.store import Store, store_key
from flowsim.sweep import Sweep, run_sweep
from flowsim.validation import escape_times, phase_diagram
from flowsim.validation._runner import SWEEP_DIR, sweep_files

CHECKS = {"phase_diagram": phase_diagram, "escape_times": escape_times}


def _expansion(module) -> Counter:
    return Counter(run.key for path in sweep_files(module, "full")
                   for run in Sweep.from_toml(path).runs())  # fmt: skip


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_full_size_runs_are_the_expansion_of_the_sweep_files(name):
    module = CHECKS[name]
    expected = Counter(store_key(cfg) for part in module.full_configs("full").values()
                       for cfg in part.values())  # fmt: skip
    expanded = _expansion(module)
    assert max(expanded.values()) == 1, "a run appears twice in the sweep files"
    assert expanded == expected


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_sweep_files_dry_run(name, tmp_path):
    store = Store(tmp_path / "s")
    for path in sweep_files(CHECKS[name], "full"):
        assert path.parent == SWEEP_DIR and path.exists()
        sweep = Sweep.from_toml(path)
        result = run_sweep(sweep, store, dry_run=True, progress=False)
        assert len(result.planned) == result.total == len(sweep)
    assert store.keys() == []


def test_quick_size_does_not_use_a_sweep():
    for module in CHECKS.values():
        assert sweep_files(module, "quick") == []


def test_phase_diagram_steps_are_stable_and_runs_long_enough():
    """The per-(gamma, m) rule: dt times the curvature bound grows like m^(1-gamma) (gamma
    < 1), so dt shrinks with it; runs last longer where the loss decays more slowly."""
    sizes = phase_diagram.SIZES["full"]
    for gamma in sizes["gammas"]:
        steps = [phase_diagram.full_step(gamma, m) for m in sizes["gd_widths"]]
        ends = [phase_diagram.full_t_end(gamma, m) for m in sizes["gd_widths"]]
        assert all(0 < dt <= 0.05 for dt in steps)
        assert steps == sorted(steps, reverse=True) and ends == sorted(ends, reverse=True)
        for m, dt in zip(sizes["gd_widths"], steps, strict=True):
            assert dt * m ** (1 - gamma) <= 1 / 3 + 1e-12 or dt == 0.05
