"""One-layer, one-head attention kernels (template; see :mod:`flowsim._codegen`).

``theta = [WQ (d, d), WK (d, d), WV (d, d), W1 (d, h), W2 (h, o)]``, each
row-major, in normalized variables; ``X`` is (n, s d): sample i's tokens
``X_i1 .. X_is`` (rows of length d) one after the other, s = ``X.shape[1] // d``.
``dims = [d, h, o, loss, V, activation]`` (o = 1, or o = d with a vocabulary of V
tokens for cross-entropy; the last the address of the activation's callback).
``c = [c_z, c_u, c_f, k_Q, k_K, k_V, k_1, k_2, U (V, d) row-major]``::

    q   = X_is WQ,   r = q WK^T                (only the last query row matters)
    z_j = c_z X_ij . r,    p = softmax(z),    xbar = sum_j p_j X_ij
    u   = c_u xbar WV W1,  f = c_f sigma(u) W2                          (o-vector)
    loss 0 (exponential):   l_i = exp(-y_i f)
    loss 1 (squared):       l_i = (f - y_i)^2 / 2
    loss 2 (cross-entropy): l_i = logsumexp(f U^T) - (f U^T)_{y_i}
    R = (1/n) sum_i l_i,    d(layer)/dt = -k_layer dR/d(layer)

The gradient is backpropagation through the last query row, fused over the
sequence, through the merged weights ``M = WQ WK^T`` (d, d) and ``N = WV W1``
(d, h), formed once per call: per sample ``r = X_is M`` and ``u = xbar N``
forward, ``dxbar = c_u du N^T`` backward, and the sums over samples
``dM = sum_i X_is^T dr_i``, ``Gx = sum_i xbar_i^T du_i`` and ``sum_i g_i^T df_i``;
after them ``dWQ = dM WK``, ``dWK = dM^T WQ``, ``dWV = c_u Gx W1^T``,
``dW1 = c_u WV^T Gx`` (d^3 each, once).  Five products of size d^2 (d = h) per
sample instead of eleven through q, a, dq, da: 2.1x fewer multiply-adds at
d = h = 64, s = 10.

Samples go in blocks of :data:`SAMPLE_BLOCK`.  The products over a block are
register-blocked loops written so that LLVM vectorizes them, shared with the
trainable-embedding family (:mod:`flowsim.models._attention_products`, generated
together with this body; :func:`_product`:
two rows of the result, four rows of the matrix per pass; :func:`_outer_add`:
eight samples per pass over a row of the sum), with every entry summed in a
fixed order; the dot products over tokens run two tokens per pass in four
interleaved partial sums.  Samples are cut into :func:`sample_chunks` chunks
fixed by n and the sizes; each chunk keeps its own sums, added in chunk order:
the result does not depend on the thread count (no BLAS: OpenBLAS's sums over
samples change with its thread count).
"""

import math

import numpy as np
from numba import prange

from flowsim import _abi
from flowsim._jit import PARALLEL_MIN_WORK, jit, pjit
from flowsim.models._attention_products import (
    _outer_add,
    _product,
    _row_product,
    _softmax,
    _token_dots,
)

# --- template body ---

LOSS_EXPONENTIAL = 0
LOSS_SQUARED = 1
LOSS_CROSS_ENTROPY = 2
ACTIVATION = 5
"""Index in ``dims`` of the activation callback's address (:func:`flowsim._abi.activate`)."""
N_CONSTANTS = 8
"""Constants before the unembedding in ``c``."""

ATTENTION_CHUNKS = 8
"""Chunks of samples of the parallel passes (fixed: not the thread count)."""

SAMPLE_BLOCK = 8
"""Samples per block: each weight and gradient row is read once per block."""


@jit
def sample_chunks(n, dims):
    """1 below :data:`PARALLEL_MIN_WORK` multiply-adds per pass, else a fixed count."""
    d = dims[0]
    h = dims[1]
    if n * (2 * d * d + 3 * d * h + h * dims[2]) < PARALLEL_MIN_WORK:
        return 1
    return min(ATTENTION_CHUNKS, n)


@jit
def _layout(dims):
    """Offsets of WK, WV, W1, W2 in theta, and its length."""
    d = dims[0]
    h = dims[1]
    oV = 2 * d * d
    o1 = 3 * d * d
    o2 = o1 + d * h
    return d * d, oV, o1, o2, o2 + h * dims[2]


@jit
def _matrices(theta, dims):
    """Views WQ (d, d), WK (d, d), WV (d, d), W1 (d, h), W2 (h, o) into a flat vector."""
    d = dims[0]
    h = dims[1]
    oK, oV, o1, o2, P = _layout(dims)
    return (theta[:oK].reshape((d, d)), theta[oK:oV].reshape((d, d)),
            theta[oV:o1].reshape((d, d)), theta[o1:o2].reshape((d, h)),
            theta[o2:P].reshape((h, dims[2])))  # fmt: skip


@jit
def _merged(theta, dims):
    """M = WQ WK^T (d, d), N = WV W1 (d, h) and N^T (h, d): the weights that the
    forward pass needs (two products per sample instead of four)."""
    d = dims[0]
    WQ, WK, WV, W1, W2 = _matrices(theta, dims)
    M = np.empty((d, d))
    N = np.empty((d, dims[1]))
    _product(WQ, d, np.ascontiguousarray(WK.T), M)
    _product(WV, d, W1, N)
    return M, N, np.ascontiguousarray(N.T)


@jit
def _unembedding(c, dims):
    """U (V, d) and its transpose (d, V) for cross-entropy; empty matrices otherwise."""
    if dims[3] != LOSS_CROSS_ENTROPY:
        return np.empty((0, 0)), np.empty((0, 0))
    U = c[N_CONSTANTS : N_CONSTANTS + dims[4] * dims[0]].reshape((dims[4], dims[0]))
    return U, np.ascontiguousarray(U.T)


@jit
def _buffers(dims, s):
    """Per-block buffers, one row per sample: xs, r, p, xbar, u, g, sigma', f, logits,
    dl (dl: dl_i/d logits or dl_i/df)."""
    d = dims[0]
    h = dims[1]
    o = dims[2]
    V = dims[4] if dims[3] == LOSS_CROSS_ENTROPY else 1
    B = SAMPLE_BLOCK
    return (np.empty((B, d)), np.empty((B, d)), np.empty((B, s)), np.empty((B, d)),
            np.empty((B, h)), np.empty((B, h)), np.empty((B, h)), np.empty((B, o)),
            np.empty((B, V)), np.empty((B, V)))  # fmt: skip


@jit
def _forward_block(X, i0, nb, c, dims, M, N, W2, UT, buffers):
    """Forward pass of samples i0 .. i0 + nb - 1 into the buffers' rows:
    ``r = X_is M``, ``p = softmax(c_z X_i r)``, ``xbar = p X_i``, ``u = xbar N``
    (c_u applied in sigma), ``f = c_f sigma(c_u u) W2``."""
    xs, r, p, xbar, u, g, dg, f, logits, dl = buffers
    d = dims[0]
    s = X.shape[1] // d
    for b in range(nb):
        xs[b] = X[i0 + b, (s - 1) * d :]
    _product(xs, nb, M, r)
    for b in range(nb):
        Xi = X[i0 + b].reshape((s, d))
        z = p[b]
        _token_dots(Xi, r[b], z)
        _softmax(z, c[0])
        _row_product(z, Xi, xbar[b])
    _product(xbar, nb, N, u)
    _abi.activate(dims[ACTIVATION], u, nb * u.shape[1], c[1], 1, g, dg, dg)
    _product(g, nb, W2, f)
    f[:nb] *= c[2]
    if dims[3] == LOSS_CROSS_ENTROPY:
        _product(f, nb, UT, logits)


@jit
def _loss_one(f, logits, yi, loss_kind, df):
    """Sample loss; ``df`` = its derivative in the logits (cross-entropy) or f."""
    if loss_kind == LOSS_EXPONENTIAL:
        value = math.exp(-yi * f[0])
        df[0] = -yi * value
        return value
    if loss_kind == LOSS_SQUARED:
        df[0] = f[0] - yi
        return 0.5 * df[0] * df[0]
    lmax = -np.inf
    for v in range(logits.size):
        lmax = max(lmax, logits[v])
    total = 0.0
    for v in range(logits.size):
        df[v] = math.exp(logits[v] - lmax)
        total += df[v]
    label = int(yi)
    value = math.log(total) + lmax - logits[label]
    for v in range(logits.size):
        df[v] /= total
    df[label] -= 1.0
    return value


@pjit
def _forward_pass(theta, X, y, c, dims, nch, values, out):
    """Per sample: ``values[i]`` its loss (y given) and ``out`` its output row
    (o values, or the V logits for cross-entropy) when ``out`` is not empty."""
    n = X.shape[0]
    s = X.shape[1] // dims[0]
    W2 = _matrices(theta, dims)[4]
    M, N, NT = _merged(theta, dims)
    U, UT = _unembedding(c, dims)
    for ch in prange(nch):
        buffers = _buffers(dims, s)
        f, logits, dl = buffers[7], buffers[8], buffers[9]
        rows = logits if dims[3] == LOSS_CROSS_ENTROPY else f
        width = rows.shape[1]
        stop = (ch + 1) * n // nch
        for i0 in range(ch * n // nch, stop, SAMPLE_BLOCK):
            nb = min(SAMPLE_BLOCK, stop - i0)
            _forward_block(X, i0, nb, c, dims, M, N, W2, UT, buffers)
            for b in range(nb):
                if y.size:
                    values[i0 + b] = _loss_one(f[b], logits[b], y[i0 + b], dims[3], dl[b])
                if out.size:
                    for k in range(width):
                        out[(i0 + b) * width + k] = rows[b, k]


@jit
def _forward(theta, X, y, c, dims, values, out):
    nch = sample_chunks(X.shape[0], dims)
    if nch == 1:
        _forward_pass_serial(theta, X, y, c, dims, nch, values, out)  # noqa: F821 - twin
    else:
        _forward_pass(theta, X, y, c, dims, nch, values, out)


@jit
def predict(theta, X, c, dims, out):
    """out = the outputs, flat (n o), or (n V) logits for cross-entropy."""
    _forward(theta, X, np.empty(0), c, dims, np.empty(0), out)


@jit
def loss(theta, X, y, c, dims):
    """R = (1/n) sum_i l_i (samples added in order)."""
    n = X.shape[0]
    values = np.empty(n)
    _forward(theta, X, y, c, dims, values, np.empty(0))
    total = 0.0
    for i in range(n):
        total += values[i]
    return total / n


@jit
def _sums(Gc, dims):
    """Views of one chunk's sums: dM = sum_i X_is^T dr_i (d, d), Gx = sum_i xbar_i^T
    du_i (d, h), g2 = sum_i g_i^T df_i (h, o)."""
    d = dims[0]
    h = dims[1]
    oG = d * d
    o2 = oG + d * h
    return (Gc[:oG].reshape((d, d)), Gc[oG:o2].reshape((d, h)),
            Gc[o2 : o2 + h * dims[2]].reshape((h, dims[2])))  # fmt: skip


@pjit
def _flow_pass(theta, X, y, c, dims, nch, G, values):
    """Per chunk ``G[ch]`` = its samples' sums (:func:`_sums`); ``values[i] = l_i``."""
    n = X.shape[0]
    d = dims[0]
    h = dims[1]
    o = dims[2]
    s = X.shape[1] // d
    W2 = _matrices(theta, dims)[4]
    W2T = np.ascontiguousarray(W2.T)
    M, N, NT = _merged(theta, dims)
    U, UT = _unembedding(c, dims)
    cross_entropy = dims[3] == LOSS_CROSS_ENTROPY
    czu = c[0] * c[1]
    for ch in prange(nch):
        buffers = _buffers(dims, s)
        xs, r, p, xbar, u, g, dg, f, logits, dl = buffers
        B = SAMPLE_BLOCK
        df = np.empty((B, o))
        du = np.empty((B, h))
        dx = np.empty((B, d))
        dr = np.empty((B, d))
        w = np.empty(s)
        Gc = G[ch]
        Gc[:] = 0.0  # by the thread that fills it
        dM, Gx, g2 = _sums(Gc, dims)
        stop = (ch + 1) * n // nch
        for i0 in range(ch * n // nch, stop, B):
            nb = min(B, stop - i0)
            _forward_block(X, i0, nb, c, dims, M, N, W2, UT, buffers)
            for b in range(nb):
                values[i0 + b] = _loss_one(f[b], logits[b], y[i0 + b], dims[3], dl[b])
            if cross_entropy:  # df = dl U
                _product(dl, nb, U, df)
            else:
                df[:nb, 0] = dl[:nb, 0]
            _outer_add(g2, g, df, nb)  # dW2 / c_f = g^T df
            _product(df, nb, W2T, du)  # du = c_f (W2 df) * sigma'(c_u u)
            for b in range(nb):
                for k in range(h):
                    du[b, k] *= c[2] * dg[b, k]
            _outer_add(Gx, xbar, du, nb)  # dN / c_u = xbar^T du
            _product(du, nb, NT, dx)  # dxbar / c_u = du N^T
            for b in range(nb):
                Xi = X[i0 + b].reshape((s, d))
                pb = p[b]
                _token_dots(Xi, dx[b], w)  # dp_j / c_u = X_ij . (du N^T)
                mean = 0.0
                for j in range(s):
                    mean += pb[j] * w[j]
                for j in range(s):  # dr = c_z sum_j p_j (dp_j - mean) X_ij, dp with c_u
                    w[j] = czu * pb[j] * (w[j] - mean)
                _row_product(w, Xi, dr[b])
            _outer_add(dM, xs, dr, nb)  # dM = X_is^T dr


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """out = d theta / dt (the negative scaled gradient); returns the loss at theta
    (``mode``, ``aux`` unused: no switching treatment for attention).

    The chunks' sums dM, dN = c_u Gx, dW2 (:func:`_sums`) give the gradient through
    M = WQ WK^T and N = WV W1: dWQ = dM WK, dWK = dM^T WQ, dWV = dN W1^T,
    dW1 = WV^T dN.
    """
    n = X.shape[0]
    d = dims[0]
    h = dims[1]
    oK, oV, o1, o2, P = _layout(dims)
    nch = sample_chunks(n, dims)
    width = d * d + d * h + h * dims[2]
    G = np.empty((nch, width))
    values = np.empty(n)
    if nch == 1:
        _flow_pass_serial(theta, X, y, c, dims, nch, G, values)  # noqa: F821 - twin
    else:
        _flow_pass(theta, X, y, c, dims, nch, G, values)
    _reduce_chunks(G, nch, width)
    dM, Gx, g2 = _sums(G[0], dims)
    WQ, WK, WV, W1, W2 = _matrices(theta, dims)
    grad = np.zeros(P)
    gQ, gK, gV, g1, gW2 = _matrices(grad, dims)
    _product(dM, d, WK, gQ)
    _outer_add(gK, dM, WQ, d)
    _product(Gx, d, np.ascontiguousarray(W1.T), gV)
    _outer_add(g1, WV, Gx, d)
    gW2[:] = g2
    bounds = (0, oK, oV, o1, o2, P)
    factors = (1.0, 1.0, c[1], c[1], c[2])
    for layer in range(5):
        scale = -c[3 + layer] * factors[layer] / n
        for k in range(bounds[layer], bounds[layer + 1]):
            out[k] = scale * grad[k]
    total = 0.0
    for i in range(n):
        total += values[i]
    return total / n


@jit
def _reduce_chunks(G, nch, P):
    """G[0] = sum of the chunks' rows, added in chunk order (serial: a few d^2 sums, less
    than the start of a parallel region costs)."""
    for ch in range(1, nch):
        for k in range(P):
            G[0, k] += G[ch, k]


@jit
def max_neuron_norm(theta, dims):
    """max_k |W1[:, k]|: the largest incoming weight vector of a hidden neuron
    (normalized units)."""
    W1 = _matrices(theta, dims)[3]
    best = 0.0
    for k in range(W1.shape[1]):
        acc = 0.0
        for e in range(W1.shape[0]):
            acc += W1[e, k] ** 2
        best = max(best, acc)
    return math.sqrt(best)


@jit
def layer_norms(theta, dims, out):
    """out = Frobenius norms of [WQ, WK, WV, W1, W2] (normalized units)."""
    oK, oV, o1, o2, P = _layout(dims)
    bounds = (0, oK, oV, o1, o2, P)
    for layer in range(5):
        acc = 0.0
        for k in range(bounds[layer], bounds[layer + 1]):
            acc += theta[k] * theta[k]
        out[layer] = math.sqrt(acc)


# switching: no kink treatment for attention; the no-op switching kernels come
# from flowsim.models._smooth_switching (Attention), and the
# Jacobian-factor stand-ins (no rodas, bdf) from flowsim.models._no_factor.
