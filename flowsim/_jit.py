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

PARALLEL_MIN_WORK = 200_000
"""Below this many multiply-adds per pass (n * m * D) kernels run their serial twin."""
