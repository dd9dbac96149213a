"""Counter-based random numbers for the compiled loops (template; see :mod:`flowsim._codegen`).

A draw is a pure function of its coordinates, ``hash(seed, step, sample, unit)``,
not the next value of a stateful generator: the same seed gives the same
dropout masks and minibatches whatever the thread count, the order in which
threads reach the samples, or where a run was interrupted and resumed.

The hash is SplitMix64 [Ste14]: the stream of ``(seed, step, sample)`` starts
at the finalizer of its coordinates, and unit ``j`` of it is the finalizer of
``start + (j + 1) * golden``, SplitMix64's own sequence.  A keep decision compares
the top 32 bits with ``floor(p 2^32)``: P(keep) = p to within 2^-32.

References
----------
.. [Ste14] Steele, Lea, Flood. Fast splittable pseudorandom number generators.
   OOPSLA 2014.
"""

import numpy as np

from flowsim._jit import jit

# --- template body ---

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@jit
def rng_mix(x):
    """SplitMix64's finalizer: a bijection of uint64 that mixes every bit."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@jit
def rng_stream(seed, step, sample):
    """The start of the stream of draws of ``(seed, step, sample)`` (non-negative ints)."""
    h = rng_mix(np.uint64(seed) * _GOLDEN + np.uint64(0x632BE59BD9B4E019))
    h = rng_mix(h ^ (np.uint64(step) * _M1))
    return rng_mix(h ^ (np.uint64(sample) * _M2))


@jit
def rng_keep(start, first, keep, scale, out):
    """``out[j] = scale`` where unit ``first + j`` of the stream ``start`` is kept
    (probability ``keep``), else 0: a dropout mask."""
    threshold = np.uint64(keep * 4294967296.0)
    for j in range(out.size):
        u = rng_mix(start + np.uint64(first + j + 1) * _GOLDEN) >> np.uint64(32)
        out[j] = scale if u < threshold else 0.0


@jit
def rng_permutation(seed, epoch, out):
    """``out`` = a permutation of 0 .. n-1 drawn from ``(seed, epoch)`` (Fisher-Yates;
    ``out.size`` < 2^32)."""
    n = out.size
    for i in range(n):
        out[i] = i
    start = rng_stream(seed, epoch, 0)
    for i in range(n - 1, 0, -1):
        u = rng_mix(start + np.uint64(i) * _GOLDEN) >> np.uint64(32)
        j = np.int64((u * np.uint64(i + 1)) >> np.uint64(32))  # on 0..i, bias < n 2^-32
        out[i], out[j] = out[j], out[i]
