"""SymPy derivations of the results in docs/theory.md, one script per result.

Each module exposes ``derive()`` (a small dict of SymPy results that code and
tests can import), ``main(out_dir=None)`` (derive, assert, write
``<out_dir>/<name>.md``; default ``derivations/out/``), and ``TITLE`` (one
line).  Run them all with ``python -m derivations [--out DIR]``.
"""

SCRIPTS = [
    "normalized_flow",
    "leading_order",
    "slope_polynomial",
    "blowup",
    "bias_shift",
    "three_layer",
    "relu_invariant",
    "saxe",
    "embedding",
    "attention",
    "dropout",
]

__all__ = ["SCRIPTS"]
