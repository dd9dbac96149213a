"""Products and softmax shared by the attention families (template; see :mod:`flowsim._codegen`).

The one set of attention kernels' building blocks: the token dot products, the
register-blocked products and outer-product sums over a block of samples, and the
softmax of a logit row.  :mod:`flowsim.models._attention_kernels` (fixed token
vectors, :class:`flowsim.Attention`) and :mod:`flowsim.models._token_attention_kernels`
(a trainable embedding, :class:`flowsim.TokenAttention`) are each generated together
with this body.  Every entry is summed in a fixed order, so that results do not depend
on the thread count of the passes that call them.
"""

import math

import numpy as np

from flowsim._jit import jit

# --- template body ---


@jit
def _softmax(z, scale):
    """z <- softmax(scale z) in place (the maximum subtracted; summed in order)."""
    s = z.size
    zmax = -np.inf
    for j in range(s):
        z[j] *= scale
        zmax = max(zmax, z[j])
    total = 0.0
    for j in range(s):
        z[j] = math.exp(z[j] - zmax)
        total += z[j]
    for j in range(s):
        z[j] /= total


@jit
def _token_dots(Xi, v, out):
    """out[j] = Xi[j] . v for every row j of Xi (s, L): two rows per pass over v, each
    summed in four interleaved partial sums added in a fixed order (the same on every
    run)."""
    s = Xi.shape[0]
    L = Xi.shape[1]
    whole = L - L % 4
    for j in range(0, s, 2):
        a = Xi[j]
        b = Xi[min(j + 1, s - 1)]  # the last row twice when s is odd
        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = 0.0
        for e in range(0, whole, 4):
            v0, v1, v2, v3 = v[e], v[e + 1], v[e + 2], v[e + 3]
            a0 += a[e] * v0
            a1 += a[e + 1] * v1
            a2 += a[e + 2] * v2
            a3 += a[e + 3] * v3
            b0 += b[e] * v0
            b1 += b[e + 1] * v1
            b2 += b[e + 2] * v2
            b3 += b[e + 3] * v3
        ta = 0.0
        tb = 0.0
        for e in range(whole, L):
            ta += a[e] * v[e]
            tb += b[e] * v[e]
        out[j] = ta + ((a0 + a1) + (a2 + a3))
        if j + 1 < s:
            out[j + 1] = tb + ((b0 + b1) + (b2 + b3))


@jit
def _row_product(x, M, out):
    """out = x M (x: K values, M: (K, N), C-contiguous): four rows of M per pass over
    ``out`` (vectorized over its N entries); each entry summed over k in order."""
    K = M.shape[0]
    N = M.shape[1]
    K4 = K - K % 4
    out[:] = 0.0
    for k in range(0, K4, 4):
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        m0, m1, m2, m3 = M[k], M[k + 1], M[k + 2], M[k + 3]
        for j in range(N):
            out[j] = out[j] + x0 * m0[j] + x1 * m1[j] + x2 * m2[j] + x3 * m3[j]
    for k in range(K4, K):
        x0 = x[k]
        m0 = M[k]
        for j in range(N):
            out[j] += x0 * m0[j]


@jit
def _product(A, nb, M, out):
    """out[:nb] = A[:nb] M (rows of A: K values; M: (K, N); C-contiguous).

    Two rows of ``out`` at a time, four rows of M per pass over them: each row of M
    loaded once per pair of rows, inner loops contiguous (vectorized).  Every entry
    is summed over k in order, exactly as :func:`_row_product` sums it.
    """
    K = M.shape[0]
    N = M.shape[1]
    K4 = K - K % 4
    for b in range(0, nb - 1, 2):
        o0, o1, a0, a1 = out[b], out[b + 1], A[b], A[b + 1]
        o0[:] = 0.0
        o1[:] = 0.0
        for k in range(0, K4, 4):
            x0, x1, x2, x3 = a0[k], a0[k + 1], a0[k + 2], a0[k + 3]
            w0, w1, w2, w3 = a1[k], a1[k + 1], a1[k + 2], a1[k + 3]
            m0, m1, m2, m3 = M[k], M[k + 1], M[k + 2], M[k + 3]
            for j in range(N):
                v0, v1, v2, v3 = m0[j], m1[j], m2[j], m3[j]
                o0[j] = o0[j] + x0 * v0 + x1 * v1 + x2 * v2 + x3 * v3
                o1[j] = o1[j] + w0 * v0 + w1 * v1 + w2 * v2 + w3 * v3
        for k in range(K4, K):
            x0, w0, m0 = a0[k], a1[k], M[k]
            for j in range(N):
                o0[j] += x0 * m0[j]
                o1[j] += w0 * m0[j]
    if nb % 2:
        _row_product(A[nb - 1], M, out[nb - 1])


@jit
def _outer_add(G, A, B, nb):
    """G += A[:nb]^T B[:nb] (G: (K, N); rows of A: K values, of B: N values).

    Eight rows of B per pass over a row of G (vectorized), then one at a time:
    the rows are added in order.
    """
    K = G.shape[0]
    N = G.shape[1]
    nb8 = nb - nb % 8
    for b in range(0, nb8, 8):
        b0, b1, b2, b3 = B[b], B[b + 1], B[b + 2], B[b + 3]
        b4, b5, b6, b7 = B[b + 4], B[b + 5], B[b + 6], B[b + 7]
        for a in range(K):
            x0, x1, x2, x3 = A[b, a], A[b + 1, a], A[b + 2, a], A[b + 3, a]
            x4, x5, x6, x7 = A[b + 4, a], A[b + 5, a], A[b + 6, a], A[b + 7, a]
            row = G[a]
            for j in range(N):
                row[j] = (row[j] + x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j]
                          + x4 * b4[j] + x5 * b5[j] + x6 * b6[j] + x7 * b7[j])  # fmt: skip
    for b in range(nb8, nb):
        b0 = B[b]
        for a in range(K):
            x0 = A[b, a]
            row = G[a]
            for j in range(N):
                row[j] += x0 * b0[j]
