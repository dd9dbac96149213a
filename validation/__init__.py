"""The validation suite: each module checks one prediction of the theory.

Installed as ``flowsim.validation`` (the folder ``validation/`` at the top of the
repository; see ``[tool.setuptools]`` in ``pyproject.toml``), never as a top-level
``validation`` package.  A check module defines ``NAME``, ``CLAIM``, ``SIZES``
(configs for ``"quick"`` and ``"full"``), ``simulate(size) -> dict`` (the expensive
part, cached on disk by the runner: arrays, numbers, strings, None, and lists,
tuples and dicts of them), ``evaluate(data, size, figure_path) -> [Record]`` and
``draw(data, base) -> png path`` (figure code only reads data); the first line of
its docstring is its one-line description (``flowsim validate --list``).  Run with
``flowsim validate``.
"""

CHECKS = [
    "attention",
    "cluster_counts",
    "directions",
    "dropout",
    "embedding",
    "escape_times",
    "feature_evolution",
    "focus_dilution",
    "invariants",
    "phase_diagram",
    "plateau_stages",
]

__all__ = ["CHECKS"]
