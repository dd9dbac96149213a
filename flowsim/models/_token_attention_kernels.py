"""Attention with a trainable embedding: kernels (template; see :mod:`flowsim._codegen`).

``theta = [W0 (V, m), WQ (m, m), WK (m, m), W1 (m, V)]``, each row-major, in
normalized variables; ``dims = [V, m]``; ``c = [c_z, c_f, k_0, k_Q, k_K, k_1]``
(read from the front: the core may append its own constants).  ``X`` is (n, s + V):
sample i's token ids ``x_i1 .. x_is`` (as floats), then its target weights ``Y_i``
(V values >= 0; s = ``X.shape[1] - V``); ``y_i = sum_v Y_iv``.  With ``e_j = W0[x_ij]``
and ``M = WQ WK^T``::

    r   = e_s M,   z_j = c_z e_j . r,   p = softmax(z)      (only the last query row)
    xbar = sum_j p_j e_j,   l = c_f xbar W1                 (V logits; value = identity)
    R = sum_i [y_i logsumexp(l_i) - Y_i . l_i] / sum_i y_i,   d(layer)/dt = -k_layer dR/d(layer)

(``Y_i`` one-hot: the mean cross-entropy; ``Y_i = P(sequence i) P[x_is]``: the
population loss of a Markov chain.  Dividing by the rows' own total makes the loss of a
minibatch of rows, as the discrete loops pass it, the batch's weighted mean.)  Backward
per sample (before the division by ``sum_i y_i``), with ``dl = y_i softmax(l) - Y_i``,
``dxbar = c_f dl W1^T``, ``g_j = p_j (e_j . dxbar - sum_k p_k e_k . dxbar)`` (``dR/dz_j``)
and ``dr = c_z sum_j g_j e_j``::

    dW1 += c_f xbar^T dl,   dM += e_s^T dr,
    dW0[x_ij] += p_j dxbar + c_z g_j r   (value and key paths, every position j)
    dW0[x_is] += dr M^T                  (query path)

and after the sums ``dWQ = dM WK``, ``dWK = dM^T WQ``, as in
:mod:`flowsim.models._attention_kernels`, whose building blocks (token dot products,
the register-blocked products and sums over a block of samples, the softmax) this
family is generated with (:mod:`flowsim.models._attention_products`).  The gradient
with respect to the token vectors is scattered into the rows of W0 in sample order.
Samples are cut into :func:`token_chunks` chunks fixed by n and the sizes, each with
its own sums, added in chunk order: the result does not depend on the thread count.
"""

import math

import numpy as np
from numba import prange

from flowsim._jit import PARALLEL_MIN_WORK, jit, pjit
from flowsim.models._attention_products import (
    _outer_add,
    _product,
    _row_product,
    _softmax,
    _token_dots,
)

# --- template body ---

TOKEN_CONSTANTS = 6
"""Constants of ``c`` this family reads: c_z, c_f, k_0, k_Q, k_K, k_1."""

TOKEN_CHUNKS = 8
"""Chunks of samples of the parallel passes (fixed: not the thread count)."""

TOKEN_BLOCK = 8
"""Samples per block: each weight and gradient row is read once per block."""


@jit
def token_chunks(n, s, dims):
    """1 below :data:`PARALLEL_MIN_WORK` multiply-adds per pass, else a fixed count."""
    V = dims[0]
    m = dims[1]
    if n * (2 * m * m + 3 * m * V + 4 * s * m) < PARALLEL_MIN_WORK:
        return 1
    return min(TOKEN_CHUNKS, n)


@jit
def _token_layout(dims):
    """Offsets of WQ, WK, W1 in theta, and its length."""
    V = dims[0]
    m = dims[1]
    oQ = V * m
    oK = oQ + m * m
    o1 = oK + m * m
    return oQ, oK, o1, o1 + m * V


@jit
def _token_matrices(theta, dims):
    """Views W0 (V, m), WQ (m, m), WK (m, m), W1 (m, V) into a flat vector."""
    V = dims[0]
    m = dims[1]
    oQ, oK, o1, P = _token_layout(dims)
    return (theta[:oQ].reshape((V, m)), theta[oQ:oK].reshape((m, m)),
            theta[oK:o1].reshape((m, m)), theta[o1:P].reshape((m, V)))  # fmt: skip


@jit
def _token_buffers(dims, s):
    """Per-block buffers, one row per sample: E (s, m) the gathered token vectors, e_s,
    r, p, xbar, logits, dl."""
    V = dims[0]
    m = dims[1]
    B = TOKEN_BLOCK
    return (np.empty((B, s, m)), np.empty((B, m)), np.empty((B, m)), np.empty((B, s)),
            np.empty((B, m)), np.empty((B, V)), np.empty((B, V)))  # fmt: skip


@jit
def _token_forward_block(X, i0, nb, c, dims, W0, M, W1, buffers):
    """Forward pass of samples i0 .. i0 + nb - 1 into the buffers' rows (see the module)."""
    E, xs, r, p, xbar, logits, dl = buffers
    s = X.shape[1] - dims[0]
    for b in range(nb):
        for j in range(s):
            E[b, j] = W0[int(X[i0 + b, j])]
        xs[b] = E[b, s - 1]
    _product(xs, nb, M, r)
    for b in range(nb):
        _token_dots(E[b], r[b], p[b])
        _softmax(p[b], c[0])
        _row_product(p[b], E[b], xbar[b])
    _product(xbar, nb, W1, logits)
    logits[:nb] *= c[1]


@jit
def _soft_cross_entropy(logits, targets, mass, dl):
    """``mass logsumexp(l) - targets . l`` and its derivative ``dl`` in the logits."""
    lmax = -np.inf
    for v in range(logits.size):
        lmax = max(lmax, logits[v])
    total = 0.0
    for v in range(logits.size):
        dl[v] = math.exp(logits[v] - lmax)
        total += dl[v]
    value = mass * (math.log(total) + lmax)
    for v in range(logits.size):
        value -= targets[v] * logits[v]
        dl[v] = mass * dl[v] / total - targets[v]
    return value


@jit
def _token_merged(theta, dims):
    """M = WQ WK^T and its transpose (m, m), W1^T (V, m)."""
    m = dims[1]
    W0, WQ, WK, W1 = _token_matrices(theta, dims)
    M = np.empty((m, m))
    _product(WQ, m, np.ascontiguousarray(WK.T), M)
    return M, np.ascontiguousarray(M.T), np.ascontiguousarray(W1.T)


@pjit
def _token_forward_pass(theta, X, y, c, dims, nch, values, out):
    """Per sample: ``values[i]`` its loss (y given) and its V logits into ``out`` (flat)
    when ``out`` is not empty."""
    n = X.shape[0]
    V = dims[0]
    s = X.shape[1] - V
    W0, WQ, WK, W1 = _token_matrices(theta, dims)
    M, MT, W1T = _token_merged(theta, dims)
    for ch in prange(nch):
        buffers = _token_buffers(dims, s)
        logits, dl = buffers[5], buffers[6]
        stop = (ch + 1) * n // nch
        for i0 in range(ch * n // nch, stop, TOKEN_BLOCK):
            nb = min(TOKEN_BLOCK, stop - i0)
            _token_forward_block(X, i0, nb, c, dims, W0, M, W1, buffers)
            for b in range(nb):
                if y.size:
                    targets = X[i0 + b, s : s + V]
                    values[i0 + b] = _soft_cross_entropy(logits[b], targets, y[i0 + b], dl[b])
                if out.size:
                    for v in range(V):
                        out[(i0 + b) * V + v] = logits[b, v]


@jit
def _token_forward(theta, X, y, c, dims, values, out):
    nch = token_chunks(X.shape[0], X.shape[1] - dims[0], dims)
    if nch == 1:
        _token_forward_pass_serial(theta, X, y, c, dims, nch, values, out)  # noqa: F821 - twin
    else:
        _token_forward_pass(theta, X, y, c, dims, nch, values, out)


@jit
def predict(theta, X, c, dims, out):
    """out = the last position's logits, flat (n V)."""
    _token_forward(theta, X, np.empty(0), c, dims, np.empty(0), out)


@jit
def _mean(values, y):
    """sum_i values_i / sum_i y_i (each sum in sample order)."""
    total = 0.0
    mass = 0.0
    for i in range(values.size):
        total += values[i]
        mass += y[i]
    return total / mass


@jit
def loss(theta, X, y, c, dims):
    """R = sum_i l_i / sum_i y_i (samples added in order)."""
    n = X.shape[0]
    values = np.empty(n)
    _token_forward(theta, X, y, c, dims, values, np.empty(0))
    return _mean(values, y)


@jit
def _token_sums(Gc, dims):
    """Views of one chunk's sums: dW0 (V, m), dM (m, m), dW1 / c_f (m, V)."""
    V = dims[0]
    m = dims[1]
    oM = V * m
    o1 = oM + m * m
    return (Gc[:oM].reshape((V, m)), Gc[oM:o1].reshape((m, m)),
            Gc[o1 : o1 + m * V].reshape((m, V)))  # fmt: skip


@pjit
def _token_flow_pass(theta, X, y, c, dims, nch, G, values):
    """Per chunk ``G[ch]`` = its samples' sums (:func:`_token_sums`); ``values[i] = l_i``."""
    n = X.shape[0]
    V = dims[0]
    m = dims[1]
    s = X.shape[1] - V
    W0, WQ, WK, W1 = _token_matrices(theta, dims)
    M, MT, W1T = _token_merged(theta, dims)
    cz = c[0]
    cf = c[1]
    for ch in prange(nch):
        buffers = _token_buffers(dims, s)
        E, xs, r, p, xbar, logits, dl = buffers
        B = TOKEN_BLOCK
        dx = np.empty((B, m))
        dr = np.empty((B, m))
        dq = np.empty((B, m))
        w = np.empty(s)
        Gc = G[ch]
        Gc[:] = 0.0  # by the thread that fills it
        dW0, dM, G1 = _token_sums(Gc, dims)
        stop = (ch + 1) * n // nch
        for i0 in range(ch * n // nch, stop, B):
            nb = min(B, stop - i0)
            _token_forward_block(X, i0, nb, c, dims, W0, M, W1, buffers)
            for b in range(nb):
                targets = X[i0 + b, s : s + V]
                values[i0 + b] = _soft_cross_entropy(logits[b], targets, y[i0 + b], dl[b])
            _outer_add(G1, xbar, dl, nb)  # dW1 / c_f = xbar^T dl
            _product(dl, nb, W1T, dx)  # dxbar / c_f = dl W1^T
            dx[:nb] *= cf
            for b in range(nb):
                pb = p[b]
                _token_dots(E[b], dx[b], w)  # dp_j = e_j . dxbar
                mean = 0.0
                for j in range(s):
                    mean += pb[j] * w[j]
                for j in range(s):  # c_z dR/dz_j
                    w[j] = cz * pb[j] * (w[j] - mean)
                _row_product(w, E[b], dr[b])  # dr = c_z sum_j g_j e_j
                rb = r[b]
                dxb = dx[b]
                for j in range(s):  # value and key paths into the token's row of W0
                    row = dW0[int(X[i0 + b, j])]
                    pj = pb[j]
                    wj = w[j]
                    for k in range(m):
                        row[k] += pj * dxb[k] + wj * rb[k]
            _outer_add(dM, xs, dr, nb)  # dM = e_s^T dr
            _product(dr, nb, MT, dq)  # query path: dr M^T
            for b in range(nb):
                row = dW0[int(X[i0 + b, s - 1])]
                for k in range(m):
                    row[k] += dq[b, k]


@jit
def _token_reduce(G, nch, width):
    """G[0] = sum of the chunks' rows, added in chunk order."""
    for ch in range(1, nch):
        for k in range(width):
            G[0, k] += G[ch, k]


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """out = d theta / dt (the negative scaled gradient); returns the loss at theta
    (``mode``, ``aux`` unused: no switching treatment).

    The chunks' sums give dW0 and dW1 = c_f G1 directly and dM, from which
    dWQ = dM WK, dWK = dM^T WQ.
    """
    n = X.shape[0]
    m = dims[1]
    oQ, oK, o1, P = _token_layout(dims)
    nch = token_chunks(n, X.shape[1] - dims[0], dims)
    G = np.empty((nch, P - m * m))
    values = np.empty(n)
    if nch == 1:
        _token_flow_pass_serial(theta, X, y, c, dims, nch, G, values)  # noqa: F821 - twin
    else:
        _token_flow_pass(theta, X, y, c, dims, nch, G, values)
    _token_reduce(G, nch, P - m * m)
    dW0, dM, G1 = _token_sums(G[0], dims)
    W0, WQ, WK, W1 = _token_matrices(theta, dims)
    grad = np.zeros(P)
    g0, gQ, gK, g1 = _token_matrices(grad, dims)
    g0[:] = dW0
    _product(dM, m, WK, gQ)
    _outer_add(gK, dM, WQ, m)
    g1[:] = G1
    mass = 0.0
    for i in range(n):
        mass += y[i]
    bounds = (0, oQ, oK, o1, P)
    factors = (1.0, 1.0, 1.0, c[1])
    for layer in range(4):
        scale = -c[2 + layer] * factors[layer] / mass
        for k in range(bounds[layer], bounds[layer + 1]):
            out[k] = scale * grad[k]
    return _mean(values, y)


@jit
def max_neuron_norm(theta, dims):
    """max_v |W0[v]|: the largest token vector of the embedding (normalized units)."""
    W0 = _token_matrices(theta, dims)[0]
    best = 0.0
    for v in range(W0.shape[0]):
        acc = 0.0
        for k in range(W0.shape[1]):
            acc += W0[v, k] ** 2
        best = max(best, acc)
    return math.sqrt(best)


@jit
def layer_norms(theta, dims, out):
    """out = Frobenius norms of [W0, WQ, WK, W1] (normalized units)."""
    oQ, oK, o1, P = _token_layout(dims)
    bounds = (0, oQ, oK, o1, P)
    for layer in range(4):
        acc = 0.0
        for k in range(bounds[layer], bounds[layer + 1]):
            acc += theta[k] * theta[k]
        out[layer] = math.sqrt(acc)
