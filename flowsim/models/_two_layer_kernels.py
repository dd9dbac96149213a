"""Two-layer network kernels (template; see :mod:`flowsim._codegen`).

Parameter vector ``theta = [a (m), W (m*D) row-major]`` in normalized
variables.  The constants ``c = [c_f, c_z, c_a, c_w]`` make one kernel serve
every scaling ([LXMZ21], docs/theory.md §2):

    z_ik = c_z * (w_k . x_i)
    f_i  = c_f * sum_k a_k sigma(z_ik),   e_i = f_i - y_i
    da_k/dt = -c_a (1/n) sum_i e_i sigma(z_ik)
    dw_k/dt = -c_w (1/n) sum_i e_i a_k sigma'(z_ik) x_i

``dims = [m, D, activation]``, the last the address of the activation's
callback (compiled on its own: this template is compiled once per machine, for
every activation).  A smooth activation's flow is one pass over the samples
(:func:`_flow_one_pass`, parallel over chunks of samples) while its per-sample
vectors over neurons stay in cache; beyond that, and for frozen activation
patterns, it is two passes over blocks of neurons (:func:`forward`, then
:func:`_backward` given the residuals).  Every sum runs in an order fixed by
n, m and D, so results do not depend on the thread count.
"""

import math

import numpy as np
from numba import prange

from flowsim import _abi
from flowsim._jit import PARALLEL_MIN_WORK, PARALLEL_MIN_WORK_FROZEN, jit, pjit
from flowsim._rng import rng_keep, rng_stream
from flowsim.models._gauss_jordan import _invert_small

# --- template body ---


N_CONSTANTS = 4
"""Entries of ``c`` before the run block (:data:`flowsim._abi.RUN_BLOCK`)."""

ACTIVATION = 2
"""Index in ``dims`` of the activation callback's address (:func:`flowsim._abi.activate`)."""

NEURON_BLOCK = 256
"""Neurons per block of the vectorized passes (the block's buffers stay in L1)."""

MAX_FORWARD_BLOCKS = 64


@jit
def _forward_blocks(m):
    """Number of neuron blocks of the forward pass: depends on m only, not on threads."""
    return min((m + NEURON_BLOCK - 1) // NEURON_BLOCK, MAX_FORWARD_BLOCKS)


@pjit
def forward(theta, X, c, dims, out):
    """out[i] = f(x_i).

    Vectorized over samples: per neuron, the pre-activations of all samples
    are built one input coordinate at a time, then the activation runs over
    them in one call.  Neuron blocks (fixed by m) accumulate partial outputs,
    summed in block order: the result does not depend on the threads.
    """
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    XT = np.ascontiguousarray(X.T)
    nb = _forward_blocks(m)
    size = (m + nb - 1) // nb
    part = np.zeros((nb, n))
    for b in prange(nb):
        z = np.empty(n)
        s = np.empty(n)
        row = part[b]
        for k in range(b * size, min(m, (b + 1) * size)):
            off = m + k * D
            z[:] = 0.0
            for d in range(D):
                w = theta[off + d]
                for i in range(n):
                    z[i] += w * XT[d, i]
            a = theta[k]
            _abi.activate(dims[ACTIVATION], z, n, c[1], 0, s, s, s)
            for i in range(n):
                row[i] += a * s[i]
    _sum_parts(part, c[0], out)


@jit
def _sum_parts(part, scale, out):
    """out[i] = scale * the sum of the blocks' partial outputs ``part[:, i]``, added in
    block order (the same at any thread count)."""
    for i in range(part.shape[1]):
        s = 0.0
        for b in range(part.shape[0]):
            s += part[b, i]
        out[i] = scale * s


@jit
def predict(theta, X, c, dims, out):
    """out[i] = f(x_i), in parallel only for large nets."""
    if X.shape[0] * dims[0] * dims[1] >= PARALLEL_MIN_WORK:
        forward(theta, X, c, dims, out)
    else:
        forward_serial(theta, X, c, dims, out)  # noqa: F821 - generated twin


@jit
def loss(theta, X, y, c, dims):
    """R = 1/(2n) sum_i (f(x_i) - y_i)^2."""
    n = X.shape[0]
    f = np.empty(n)
    predict(theta, X, c, dims, f)
    total = 0.0
    for i in range(n):
        total += (f[i] - y[i]) ** 2
    return 0.5 * total / n


@jit
def _transpose_block(theta, m, D, k0, L, WT):
    """WT[d, j] = input weight d of neuron k0 + j, for the L neurons of a block."""
    for j in range(L):
        for d in range(D):
            WT[d, j] = theta[m + (k0 + j) * D + d]


@jit
def _neuron_block(theta, m, D, b):
    """Block ``b`` of :data:`NEURON_BLOCK` neurons: its first neuron k0, its size L and
    its input weights transposed, (D, L)."""
    k0 = b * NEURON_BLOCK
    L = min(m, k0 + NEURON_BLOCK) - k0
    WT = np.empty((D, L))
    _transpose_block(theta, m, D, k0, L, WT)
    return k0, L, WT


@jit
def _scaled_gradient(theta, c, m, D, n, k0, L, ga, gw, out):
    """out = the flow of neurons k0 .. k0 + L - 1 from their accumulated sums
    ``ga`` (L) and ``gw`` (D, L) over samples."""
    for j in range(L):
        k = k0 + j
        out[k] = -c[2] * ga[j] / n
        scale = -c[3] * theta[k] / n
        for d in range(D):
            out[m + k * D + d] = scale * gw[d, j]


@pjit
def _backward(theta, X, e, c, dims, out):
    """Scaled gradient of the smooth activation's flow, given residuals ``e``.

    Vectorized over neurons: in blocks of :data:`NEURON_BLOCK`, with the block's
    input weights transposed, each sample updates the block's gradient
    accumulators in loops over neurons (no cross-lane reductions, so no
    reassociation: each neuron's sums run over samples in order).
    """
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    nb = (m + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nb):
        k0, L, WT = _neuron_block(theta, m, D, b)
        ga = np.zeros(L)
        gw = np.zeros((D, L))
        z = np.empty(L)
        r = np.empty(L)
        sv = np.empty(L)
        dsv = np.empty(L)
        for i in range(n):
            ei = e[i]
            z[:] = 0.0
            for d in range(D):
                xd = X[i, d]
                for j in range(L):
                    z[j] += WT[d, j] * xd
            _abi.activate(dims[ACTIVATION], z, L, c[1], 1, sv, dsv, dsv)
            for j in range(L):
                ga[j] += ei * sv[j]
                r[j] = ei * dsv[j]
            for d in range(D):
                xd = X[i, d]
                for j in range(L):
                    gw[d, j] += r[j] * xd
        _scaled_gradient(theta, c, m, D, n, k0, L, ga, gw, out)


@jit
def _parallel(n, dims, mode):
    """Whether a pass over n samples runs parallel: the frozen pattern's passes from
    :data:`PARALLEL_MIN_WORK_FROZEN` multiply-adds, the activation's from
    :data:`PARALLEL_MIN_WORK`."""
    work = n * dims[0] * dims[1]
    return work >= (PARALLEL_MIN_WORK_FROZEN if mode.shape[0] > 0 else PARALLEL_MIN_WORK)


@jit
def residuals(theta, X, y, c, dims, mode, e):
    """e = f(X) - y (the pattern frozen by a non-empty ``mode``); returns the loss."""
    n = X.shape[0]
    parallel = _parallel(n, dims, mode)
    if mode.shape[0] > 0:
        if parallel:
            _forward_frozen(theta, X, c, dims, mode, e)  # noqa: F821 - _kink_kernels
        else:
            _forward_frozen_serial(theta, X, c, dims, mode, e)  # noqa: F821 - generated twin
    elif parallel:
        forward(theta, X, c, dims, e)
    else:
        forward_serial(theta, X, c, dims, e)  # noqa: F821 - generated twin
    total = 0.0
    for i in range(n):
        e[i] -= y[i]
        total += e[i] * e[i]
    return 0.5 * total / n


@jit
def flow_from_residuals(theta, X, e, c, dims, mode, aux, out):
    """out = d theta / dt given the residuals ``e`` at theta."""
    parallel = _parallel(X.shape[0], dims, mode)
    if mode.shape[0] > 0:
        if parallel:
            _backward_frozen(theta, X, e, c, dims, mode, aux, out)  # noqa: F821 - _kink_kernels
        else:
            _backward_frozen_serial(theta, X, e, c, dims, mode, aux, out)  # noqa: F821 - twin
    elif parallel:
        _backward(theta, X, e, c, dims, out)
    else:
        _backward_serial(theta, X, e, c, dims, out)  # noqa: F821 - generated twin


SAMPLE_CHUNKS = 4
"""Chunks of samples of the parallel one-pass flow (fixed: not the thread count)."""

GROUP_ELEMENTS = 2048
MAX_GROUP = 8
"""The one-pass flow evaluates the activation for a group of up to ``MAX_GROUP``
samples per call (at most ``GROUP_ELEMENTS`` pre-activations, kept in cache): one
call per sample cost small nets 4-8 % (m = 100, n = 40)."""

ONE_PASS_MAX_BYTES = 4 << 20
"""The one-pass flow keeps (2 D + 4) m doubles per chunk of samples; above this
it would stream them from memory, and the two passes over neuron blocks win."""


@jit
def _lane_dot(a, a0, b, L):
    """sum_j a[a0 + j] b[j], j < L, in eight interleaved partial sums added in a
    fixed order: vectorized (a single running sum is one add per 4 cycles), and
    the same on every run."""
    whole = L - L % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, whole, 8):
        s0 += a[a0 + j] * b[j]
        s1 += a[a0 + j + 1] * b[j + 1]
        s2 += a[a0 + j + 2] * b[j + 2]
        s3 += a[a0 + j + 3] * b[j + 3]
        s4 += a[a0 + j + 4] * b[j + 4]
        s5 += a[a0 + j + 5] * b[j + 5]
        s6 += a[a0 + j + 6] * b[j + 6]
        s7 += a[a0 + j + 7] * b[j + 7]
    tail = 0.0
    for j in range(whole, L):
        tail += a[a0 + j] * b[j]
    return tail + (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))


@jit
def one_pass_chunks(n, m, D):
    """Chunks of samples of :func:`_flow_one_pass` (0: use the two-pass flow)."""
    if (2 * D + 4) * m * 8 > ONE_PASS_MAX_BYTES:
        return 0
    if n * m * D < PARALLEL_MIN_WORK:
        return 1
    return min(SAMPLE_CHUNKS, n)


@pjit
def _flow_one_pass(theta, X, y, c, dims, nch, run, out):
    """:func:`flow` of a smooth activation in one pass over the data: sigma and
    sigma' once per (sample, neuron) pair.

    Per sample, the pre-activations, sigma and sigma' of all m neurons are kept
    in rows of three small buffers (in cache; the activation runs over a group of
    samples per call, :data:`GROUP_ELEMENTS`), the output sums them
    (:func:`_lane_dot`), and the residual then adds the sample's terms to the
    gradient sums, in full-length loops over neurons.

    ``nch`` chunks of consecutive samples (:func:`one_pass_chunks`, fixed by n,
    m and D) each keep their own sums, added in chunk order: the result does not
    depend on the thread count.

    ``run`` >= 0: the index of ``c``'s run block (:data:`flowsim._abi.RUN_BLOCK`),
    with dropout masks (sample i's hidden outputs and their derivatives times
    ``1/p`` or 0, drawn from ``(seed, iteration, i)``: the masked net's loss and
    flow) or the dropout penalty ``R1 = (q/2n) sum_ik (c_f a_k s_ik)^2``, whose
    flow is the data term's with ``e_i`` replaced by ``c_f q a_k s_ik``
    (docs/theory.md §18).
    """
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    WT = np.empty((D, m))
    _transpose_block(theta, m, D, 0, m, WT)
    G = np.empty((nch, 1 + D, m))
    sq = np.zeros(nch)
    cz = c[1]
    pen = 0.0
    keep = 1.0
    seed = 0
    step = 0
    if run >= 0:
        pen = c[run + 1] * c[0]
        keep = c[run + 3]
        seed = np.int64(c[run + 5])
        step = np.int64(c[run + 6])
    group = min(MAX_GROUP, max(1, GROUP_ELEMENTS // m))
    for ch in prange(nch):
        Z = np.empty((group, m))
        SG = np.empty((group, m))
        DSG = np.empty((group, m))
        R = np.empty(m)
        G[ch] = 0.0  # by the thread that fills it
        ga = G[ch, 0]
        total = 0.0
        first = ch * n // nch
        last = (ch + 1) * n // nch
        for i in range(first, last):
            g = (i - first) % group
            if g == 0:  # the pre-activations of the next group, the activation in one call
                size = min(group, last - i)
                for b in range(size):
                    z = Z[b]
                    x0 = X[i + b, 0]
                    w0 = WT[0]
                    for j in range(m):
                        z[j] = w0[j] * x0
                    for d in range(1, D):
                        xd = X[i + b, d]
                        wd = WT[d]
                        for j in range(m):
                            z[j] += wd[j] * xd
                _abi.activate(dims[ACTIVATION], Z, size * m, cz, 1, SG, DSG, DSG)
            S = SG[g]
            DS = DSG[g]
            if keep < 1.0:
                rng_keep(rng_stream(seed, step, i), 0, keep, 1.0 / keep, R)
                for j in range(m):
                    S[j] *= R[j]
                    DS[j] *= R[j]
            ei = c[0] * _lane_dot(theta, 0, S, m) - y[i]
            total += ei * ei
            if pen == 0.0:
                for j in range(m):
                    ga[j] += ei * S[j]
                for d in range(D):
                    xd = ei * X[i, d]
                    gd = G[ch, 1 + d]
                    for j in range(m):
                        gd[j] += DS[j] * xd
                continue
            for j in range(m):  # the penalty: neuron j's own residual
                ej = ei + pen * theta[j] * S[j]
                ga[j] += ej * S[j]
                R[j] = ej * DS[j]
            for d in range(D):
                xd = X[i, d]
                gd = G[ch, 1 + d]
                for j in range(m):
                    gd[j] += R[j] * xd
        sq[ch] = total
    nb = (m + NEURON_BLOCK - 1) // NEURON_BLOCK
    for b in prange(nb):  # the chunks' sums, added in chunk order
        k0 = b * NEURON_BLOCK
        k1 = min(m, k0 + NEURON_BLOCK)
        for r in range(1 + D):
            acc = G[0, r]
            for ch in range(1, nch):
                part = G[ch, r]
                for j in range(k0, k1):
                    acc[j] += part[j]
    _scaled_gradient(theta, c, m, D, n, 0, m, G[0, 0], G[0, 1:], out)
    total = 0.0
    for ch in range(nch):
        total += sq[ch]
    return 0.5 * total / n


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """out = d theta / dt (the negative scaled gradient); returns the loss at theta.

    ``mode`` (m, n) int8 freezes the activation pattern of a switching
    (piecewise-linear) activation: +1 / -1 the side of the kink, 2 sliding on
    it (Filippov); an empty ``mode`` evaluates the activation itself, in one
    pass when :func:`one_pass_chunks` allows.
    """
    nch = 0
    run = -1
    if mode.shape[0] == 0:
        n = X.shape[0]
        nch = one_pass_chunks(n, dims[0], dims[1])
        if c.size == N_CONSTANTS + _abi.N_RUN:  # called by the core: dropout, penalty?
            r = N_CONSTANTS
            if c[r + 1] != 0.0 or c[r + 3] < 1.0:
                run = r
                if nch == 0:  # beyond the cache: still one pass, which keeps the masks
                    nch = 1 if n * dims[0] * dims[1] < PARALLEL_MIN_WORK else min(SAMPLE_CHUNKS, n)
        if nch == 1:
            return _flow_one_pass_serial(theta, X, y, c, dims, nch, run, out)  # noqa: F821
        if nch > 1:
            return _flow_one_pass(theta, X, y, c, dims, nch, run, out)
    # Constant conditions: Numba prunes the branch a module never takes, and does not
    # compile what it calls.
    if FROZEN_PATTERNS:  # noqa: F821 - from the kink treatment or its stand-ins
        return _two_pass_flow(theta, X, y, c, dims, mode, aux, out)
    if PARALLEL:  # noqa: F821 - set by flowsim._codegen.build_module
        return _two_pass_flow(theta, X, y, c, dims, mode, aux, out)
    # A small run's module (kernels_for) and a smooth activation: one pass beyond the
    # cache too.  Only a single sample gets here (m (D + 2) > 2^18 needs n m (D + 1) >
    # PARALLEL_MIN_WORK for n >= 2), and its pass streams theta either way.  A cold
    # first simulate then does not compile the two passes (2.6 s).  Here nch = 0.
    return _flow_one_pass_serial(theta, X, y, c, dims, nch + 1, run, out)  # noqa: F821


@jit
def _two_pass_flow(theta, X, y, c, dims, mode, aux, out):
    """:func:`flow` in two passes over blocks of neurons: the residuals, then the flow."""
    e = np.empty(X.shape[0])
    value = residuals(theta, X, y, c, dims, mode, e)
    flow_from_residuals(theta, X, e, c, dims, mode, aux, out)
    return value


@jit
def max_neuron_norm(theta, dims):
    """max_k |w_k| (normalized units)."""
    m = dims[0]
    D = dims[1]
    best = 0.0
    for k in range(m):
        s = 0.0
        for d in range(D):
            s += theta[m + k * D + d] ** 2
        best = max(best, s)
    return math.sqrt(best)


@jit
def layer_norms(theta, dims, out):
    """out = [|a|, |W|_F] (normalized units)."""
    m = dims[0]
    sa = 0.0
    for k in range(m):
        sa += theta[k] ** 2
    sw = 0.0
    for j in range(m, theta.size):
        sw += theta[j] ** 2
    out[0] = math.sqrt(sa)
    out[1] = math.sqrt(sw)


# -- linearly implicit steps: M = shift * I - J, J = d(flow)/d(theta) -------------
# With e_i the residuals, E_i = d e_i / d theta and G_i the per-sample factor of the
# flow (flow = -(1/n) sum_i e_i G_i):
#     J = -(1/n) G^T E - B,   B = (1/n) sum_i e_i dG_i/dtheta   (block-diagonal per neuron)
# so M = A + U V with A = shift I + B (blocks of size D + 1), U = G^T / n, V = E.
# For n < P the Woodbury identity solves with M in O(P n) after an O(P n^2) factor:
#     M^-1 r = A^-1 r - Z (I + V Z)^-1 V A^-1 r,   Z = A^-1 U;
# otherwise M is formed (P x P) and inverted.  G^T and E^T are stored (P, n), so that
# every neuron's rows are contiguous over samples and the loops vectorize.
# work layout (float64): Ainv (m (D+1)^2) | Z (P n) | E^T (P n) | Kinv (n n), or Minv (P P).


@jit
def newton_work_size(dims, n):
    m = dims[0]
    D1 = dims[1] + 1
    P = m * D1
    if n < P:
        return m * D1 * D1 + 2 * P * n + n * n
    return P * P


@jit
def _param_index(m, D, k, r):
    """Index in theta of entry r of neuron k's block (a_k, w_k1, ..., w_kD)."""
    return k if r == 0 else m + k * D + r - 1


@jit
def _dot(u, v, n):
    """sum_i u[i] v[i] with four interleaved partial sums (fixed order: deterministic;
    independent chains, so it vectorizes without reassociation)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = 0
    while i + 4 <= n:
        s0 += u[i] * v[i]
        s1 += u[i + 1] * v[i + 1]
        s2 += u[i + 2] * v[i + 2]
        s3 += u[i + 3] * v[i + 3]
        i += 4
    while i < n:
        s0 += u[i] * v[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@jit
def _jacobian_parts(theta, X, y, c, dims, shift, Ablk, GT, ET):
    """A = shift I + B (blocks, into Ablk (m, D+1, D+1)); G^T and E^T, (P, n).

    The pre-activations of every (neuron, sample) pair, then sigma and both
    derivatives in one activation call, and the output summed neuron by neuron; a
    second pass builds the factors from the residuals."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    D1 = D + 1
    XT = np.ascontiguousarray(X.T)
    Z = np.zeros((m, n))
    SV = np.empty((m, n))
    DSIG = np.empty((m, n))
    D2S = np.empty((m, n))
    for k in range(m):
        off = m + k * D
        z = Z[k]
        for d in range(D):
            w = theta[off + d]
            for i in range(n):
                z[i] += w * XT[d, i]
    _abi.activate(dims[ACTIVATION], Z, m * n, c[1], 2, SV, DSIG, D2S)
    f = np.zeros(n)
    for k in range(m):
        a = theta[k]
        sv = SV[k]
        for i in range(n):
            f[i] += a * sv[i]
    e = np.empty(n)
    for i in range(n):
        e[i] = (c[0] * f[i] - y[i]) / n
    tmp = np.empty(n)
    ds = np.empty(n)
    Ablk[:, :, :] = 0.0
    for k in range(m):
        a = theta[k]
        off = m + k * D
        ga = GT[k]
        ea = ET[k]
        sv = SV[k]
        dsig = DSIG[k]
        d2s = D2S[k]
        for i in range(n):
            ga[i] = c[2] * sv[i]
            ea[i] = c[0] * sv[i]
            ds[i] = dsig[i] * e[i]  # e_i sigma'_i and e_i sigma''_i from here on
            d2s[i] *= e[i]
        for d in range(D):
            gw = GT[off + d]
            ew = ET[off + d]
            xd = XT[d]
            for i in range(n):
                v = dsig[i] * xd[i]
                gw[i] = c[3] * a * v
                ew[i] = c[0] * c[1] * a * v
                tmp[i] = d2s[i] * xd[i]
            acc = _dot(ds, xd, n)
            Ablk[k, 0, 1 + d] = c[2] * c[1] * acc
            Ablk[k, 1 + d, 0] = c[3] * acc
            for d2 in range(d + 1):
                acc = _dot(tmp, XT[d2], n)
                Ablk[k, 1 + d, 1 + d2] = c[3] * c[1] * a * acc
                Ablk[k, 1 + d2, 1 + d] = Ablk[k, 1 + d, 1 + d2]
        for r in range(D1):
            Ablk[k, r, r] += shift


@jit
def newton_factor(theta, X, y, c, dims, shift, work):
    """Factor M = shift I - J(theta) into ``work``; False if M is singular."""
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    D1 = D + 1
    P = m * D1
    Ablk = np.empty((m, D1, D1))
    piv = np.empty(2 * max(D1, n, P if n >= P else 1))
    nA = m * D1 * D1
    if n >= P:
        GT = np.empty((P, n))
        ET = np.empty((P, n))
        _jacobian_parts(theta, X, y, c, dims, shift, Ablk, GT, ET)
        Minv = work[: P * P].reshape((P, P))
        Minv[:, :] = (GT / n) @ ET.T
        for k in range(m):
            for r in range(D1):
                for q in range(D1):
                    Minv[_param_index(m, D, k, r), _param_index(m, D, k, q)] += Ablk[k, r, q]
        return _invert_small(Minv, piv)
    Ainv = work[:nA].reshape((m, D1, D1))
    Z = work[nA : nA + P * n].reshape((P, n))
    ET = work[nA + P * n : nA + 2 * P * n].reshape((P, n))
    Kinv = work[nA + 2 * P * n : nA + 2 * P * n + n * n].reshape((n, n))
    GT = Z  # G^T is only needed to build Z = A^-1 G^T / n: use Z's space, block by block
    _jacobian_parts(theta, X, y, c, dims, shift, Ablk, GT, ET)
    blk = np.empty((D1, n))
    for k in range(m):
        Ainv[k, :, :] = Ablk[k]
        if not _invert_small(Ainv[k], piv):
            return False
        for r in range(D1):
            blk[r, :] = GT[_param_index(m, D, k, r)]
        for r in range(D1):
            row = Z[_param_index(m, D, k, r)]
            f = Ainv[k, r, 0] / n
            for i in range(n):
                row[i] = f * blk[0, i]
            for q in range(1, D1):
                f = Ainv[k, r, q] / n
                for i in range(n):
                    row[i] += f * blk[q, i]
    Kinv[:, :] = ET.T @ Z
    for i in range(n):
        Kinv[i, i] += 1.0
    return _invert_small(Kinv, piv)


@jit
def newton_solve(work, dims, n, rhs, out):
    """out = M^-1 rhs with the factor from :func:`newton_factor`."""
    m = dims[0]
    D = dims[1]
    D1 = D + 1
    P = m * D1
    if n >= P:
        Minv = work[: P * P].reshape((P, P))
        out[:] = Minv @ rhs
        return
    nA = m * D1 * D1
    Ainv = work[:nA].reshape((m, D1, D1))
    Z = work[nA : nA + P * n].reshape((P, n))
    ET = work[nA + P * n : nA + 2 * P * n].reshape((P, n))
    Kinv = work[nA + 2 * P * n : nA + 2 * P * n + n * n].reshape((n, n))
    for k in range(m):
        for r in range(D1):
            acc = 0.0
            for q in range(D1):
                acc += Ainv[k, r, q] * rhs[_param_index(m, D, k, q)]
            out[_param_index(m, D, k, r)] = acc
    s = Kinv @ (out @ ET)
    out -= Z @ s
