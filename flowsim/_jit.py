"""JIT options in one place.

Every compiled kernel in flowsim, hand-written or generated, is decorated with
:data:`jit` (serial) or :data:`pjit` (``prange``-parallel).  ``cache=True``
everywhere so that a kernel compiles once per machine.  Of the fast-math
flags only ``contract`` (fused multiply-add) is on: it is deterministic, so
results stay reproducible bit for bit for a fixed thread count, and it lets
the vectorized elementary functions of :mod:`flowsim._vmath` use FMA (twice
as fast).  No reassociation, no finite-math assumptions (non-finite states
must be detected).
"""

from __future__ import annotations

import numba

from flowsim import _numba_cache

_numba_cache.install()  # before any kernel is compiled or loaded

JIT_OPTIONS = {"cache": True, "nogil": True, "fastmath": {"contract"}, "error_model": "numpy"}
PARALLEL_OPTIONS = {**JIT_OPTIONS, "parallel": True}

jit = numba.njit(**JIT_OPTIONS)
pjit = numba.njit(**PARALLEL_OPTIONS)
jit_inline = numba.njit(inline="always", **JIT_OPTIONS)
"""For small functions returning three or more values: LLVM does not inline
those on its own, and a loop calling one does not vectorize (measured: tanh's
value and two derivatives 9.1 ns per element called, 3.5 ns inlined).  Also for
small functions called with literal arguments (``step_factor(..., True)``):
Numba compiles a called function once per literal value (eight times for the
callback table's ``_address``), an inlined one not at all."""

PARALLEL_MIN_WORK = 200_000
"""Below this many multiply-adds per pass (n * m * D) kernels run their serial twin."""

PARALLEL_MIN_WORK_FROZEN = 50_000
"""The same for the passes of a frozen activation pattern (the ReLU flow's kink
treatment: forward, backward with the sliding terms, the kink scan), which do more per
multiply-add.  Measured on the exact ReLU flow at gamma = 2, n = 4, m = 10^4 (8e4 per
pass; R1 in ``benchmarks/``), alternating runs on 2 idle cores: 44.9 s on two threads
against 65.4 and 67.1 s serial, the same trajectory (steps, switches, final time)."""
