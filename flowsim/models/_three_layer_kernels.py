"""Three-layer network kernels (template; see :mod:`flowsim._codegen`).

``theta = [a (m2), W (m2, m1b) row-major, V (m1, D) row-major]`` in normalized
variables, ``m1b = m1 + 1`` with a second-layer bias (last column of W), else m1.
Constants ``c = [c_f, b_V, b_W, c_a, c_W, c_V, eps, lo, hi]``::

    z_ij = b_V v_j . x_i,     h_ij = sigma(z_ij)       (h_i,m1 = 1 with bias)
    u_ik = b_W sum_j W_kj h_ij,   g_ik = sigma(u_ik)
    f_i  = c_f sum_k a_k g_ik,    e_i = f_i - y_i
    da/dt = -c_a (1/n) G^T e
    dW/dt = -c_W (1/n) (e a^T * sigma'(U))^T H
    dV/dt = -c_V (1/n) ((e a^T * sigma'(U)) W[:, :m1] * sigma'(Z))^T X

With ``eps > 0`` the kinks of a piecewise-linear activation (slopes ``lo``, ``hi``) are
smoothed relative to each pair's own scale (:func:`_smoothed`, docs/theory.md §11):
sigma(z) is ``lo z + (hi - lo) s rho(z / s)`` with ``s_ij^2 = sum_d V_jd^2 x~_id^2`` in
layer 1 and ``s_ik^2 = sum_j W_kj^2 h_ij^2`` in layer 2, which adds the terms of ``s``'s
own gradient to dW and dV.

``dims = [m1, m2, D, bias, activation]``, the last the address of the activation's
callback (:func:`flowsim._abi.activate`: this template is compiled once for every
activation).  The layer products go through BLAS (np.dot),
which is deterministic for a fixed thread count.
"""

import math

import numpy as np

from flowsim import _abi
from flowsim._jit import jit
from flowsim._rng import rng_keep, rng_stream

# --- template body ---


@jit
def _widths3(dims):
    """``(m1, m2, D, m1b)`` from ``dims``."""
    return dims[0], dims[1], dims[2], dims[0] + dims[3]


@jit
def _unpack3(theta, dims):
    m1, m2, D, m1b = _widths3(dims)
    a = theta[:m2]
    W = theta[m2 : m2 + m2 * m1b].reshape((m2, m1b))
    V = theta[m2 + m2 * m1b :].reshape((m1, D))
    return a, W, V


N_CONSTANTS = 9
"""Entries of ``c`` before the run block (:data:`flowsim._abi.RUN_BLOCK`)."""

ACTIVATION = 4
"""Index in ``dims`` of the activation callback's address."""


@jit
def _mask(A, dA, tA, start_unit, keep, seed, step):
    """Dropout on a hidden layer: row i of ``A`` (its first ``dA.shape[1]`` columns),
    of ``dA`` and of ``tA`` (if it has columns) times the mask of units ``start_unit ..``
    of the stream ``(seed, step, i)`` (1/p kept, 0 dropped)."""
    width = dA.shape[1]
    R = np.empty(width)
    for i in range(A.shape[0]):
        rng_keep(rng_stream(seed, step, i), start_unit, keep, 1.0 / keep, R)
        for j in range(width):
            A[i, j] *= R[j]
            dA[i, j] *= R[j]
        if tA.shape[1] > 0:
            for j in range(width):
                tA[i, j] *= R[j]


@jit
def _smoothed(Z, S2, scale, eps, lo, hi, A, dA, tA):
    """A piecewise-linear activation with its kink smoothed over ``|z| < eps s``.

    ``sigma(z) = lo z + (hi - lo) s rho(z / s)``, ``s = sqrt(S2)``, with ``rho`` the ReLU
    outside ``|r| < eps`` and inside it the C^2 ramp ``rho(r) = 2 eps t^3 (1 - t / 2)``,
    ``t = (r + eps) / (2 eps)`` (``rho' = t^2 (3 - 2 t)``).  Writes ``A = scale sigma``
    (first ``Z.shape[1]`` columns), its slope ``dA = lo + (hi - lo) rho'`` and
    ``tA = (hi - lo) (rho - r rho') / s``, the weight of ``s``'s gradient: ``sigma`` is
    positively homogeneous of degree 1 in (z, s) jointly, and
    ``d sigma = dA dz + s tA ds``.
    """
    n, w = Z.shape
    for i in range(n):
        for j in range(w):
            z = Z[i, j]
            s = math.sqrt(S2[i, j])
            if s == 0.0:  # z = 0 too: the middle of the ramp
                A[i, j] = 0.0
                dA[i, j] = lo + 0.5 * (hi - lo)
                tA[i, j] = 0.0
                continue
            r = z / s
            if r <= -eps:
                rho, d = 0.0, 0.0
            elif r >= eps:
                rho, d = r, 1.0
            else:
                t = (r + eps) / (2.0 * eps)
                rho = 2.0 * eps * t * t * t * (1.0 - 0.5 * t)
                d = t * t * (3.0 - 2.0 * t)
            A[i, j] = scale * (lo * z + (hi - lo) * s * rho)
            dA[i, j] = lo + (hi - lo) * d
            tA[i, j] = (hi - lo) * (rho - r * d) / s


@jit
def _layer2_scales(H2, W):
    """``s_ik^2 = sum_j W_kj^2 h_ij^2``, (n, m2), without an (m2, m1) temporary; four
    interleaved partial sums (a fixed order, and independent chains that vectorize)."""
    n = H2.shape[0]
    m2, m1b = W.shape
    S2 = np.empty((n, m2))
    for i in range(n):
        h = H2[i]
        for k in range(m2):
            w = W[k]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            j = 0
            while j + 4 <= m1b:
                s0 += h[j] * (w[j] * w[j])
                s1 += h[j + 1] * (w[j + 1] * w[j + 1])
                s2 += h[j + 2] * (w[j + 2] * w[j + 2])
                s3 += h[j + 3] * (w[j + 3] * w[j + 3])
                j += 4
            while j < m1b:
                s0 += h[j] * (w[j] * w[j])
                j += 1
            S2[i, k] = (s0 + s1) + (s2 + s3)
    return S2


@jit
def _scale_gradients(Et, H, H2, W, m1, gW, B):
    """The terms of layer 2's ramp scales ``s_ik`` in the gradient: ``gW += W * (Et^T H2)``
    and ``B += H * (Et W^2)`` (first ``m1`` columns).  ``Et`` is 0 outside the ramps, so
    only pairs inside them cost anything, and no (m2, m1) temporary is made (at m = 300
    each one cost ~0.15 ms in the allocator)."""
    n, m2 = Et.shape
    m1b = W.shape[1]
    row = np.empty(m1b)
    for k in range(m2):
        inside = False
        for i in range(n):
            if Et[i, k] != 0.0:
                inside = True
        if not inside:
            continue
        row[:] = 0.0
        for i in range(n):
            e = Et[i, k]
            if e != 0.0:
                for j in range(m1b):
                    row[j] += e * H2[i, j]
        for j in range(m1b):
            gW[k, j] += W[k, j] * row[j]
    for i in range(n):
        row[:] = 0.0
        for k in range(m2):
            e = Et[i, k]
            if e != 0.0:
                for j in range(m1):
                    w = W[k, j]
                    row[j] += e * (w * w)
        for j in range(m1):
            B[i, j] += H[i, j] * row[j]


@jit
def _hidden(theta, X, c, dims, run=-1):
    """Both hidden layers and their derivatives; ``run`` >= 0: the index of ``c``'s run
    block, whose dropout masks then act on them (units j of layer 1 and m1 + k of
    layer 2 in sample i's stream).  Also the pre-activations ``Z``, ``U`` and, with
    smoothed kinks, the ramps' squared scales ``S1``, ``S2`` (the Jacobian factor's)."""
    a, W, V = _unpack3(theta, dims)
    n = X.shape[0]
    m1, m2, D, m1b = _widths3(dims)
    eps = c[6]
    smooth = eps > 0.0
    Z = np.dot(X, V.T)
    H = np.empty((n, m1b))
    dZ = np.empty((n, m1))
    tZ = np.empty((n, m1 if smooth else 0))
    S1 = np.dot(X * X, (V * V).T) if smooth else np.empty((0, 0))
    if smooth:
        _smoothed(Z, S1, c[1], eps, c[7], c[8], H, dZ, tZ)
    for i in range(n):
        if not smooth:
            _abi.activate(dims[ACTIVATION], Z[i], m1, c[1], 1, H[i], dZ[i], dZ[i])
        if m1b > m1:
            H[i, m1] = 1.0
    if run >= 0 and c[run + 3] < 1.0:
        _mask(H, dZ, tZ, 0, c[run + 3], np.int64(c[run + 5]), np.int64(c[run + 6]))
    U = np.dot(H, W.T)
    G = np.empty((n, m2))
    dU = np.empty((n, m2))
    tU = np.empty((n, m2 if smooth else 0))
    H2 = H * H if smooth else np.empty((0, 0))  # after the mask, as U
    S2 = _layer2_scales(H2, W) if smooth else np.empty((0, 0))
    if smooth:
        _smoothed(U, S2, c[2], eps, c[7], c[8], G, dU, tU)
    else:
        _abi.activate(dims[ACTIVATION], U, n * m2, c[2], 1, G, dU, dU)
    if run >= 0 and c[run + 4] < 1.0:
        _mask(G, dU, tU, m1, c[run + 4], np.int64(c[run + 5]), np.int64(c[run + 6]))
    return a, W, V, H, dZ, tZ, G, dU, tU, H2, Z, S1, U, S2


@jit
def forward(theta, X, c, dims, out):
    """out[i] = f(x_i)."""
    m2 = dims[1]
    a, W, V, H, dZ, tZ, G, dU, tU, H2, Z, S1, U, S2 = _hidden(theta, X, c, dims)
    for i in range(X.shape[0]):
        s = 0.0
        for k in range(m2):
            s += a[k] * G[i, k]
        out[i] = c[0] * s


@jit
def predict(theta, X, c, dims, out):
    forward(theta, X, c, dims, out)


@jit
def loss(theta, X, y, c, dims):
    n = X.shape[0]
    f = np.empty(n)
    forward(theta, X, c, dims, f)
    total = 0.0
    for i in range(n):
        total += (f[i] - y[i]) ** 2
    return 0.5 * total / n


@jit
def flow(theta, X, y, c, dims, mode, aux, out):
    """out = d theta / dt; returns the loss at theta (``mode``, ``aux`` unused:
    no switching treatment for three layers yet).

    Called by the core (``c`` with its run block): dropout masks on the hidden
    layers (the masked net's loss and flow, :func:`_hidden`), and the dropout
    penalty of layer 2, ``R1 = (q/2n) sum_ik (c_f a_k g_ik)^2`` (docs/theory.md §18).
    """
    n = X.shape[0]
    m1 = dims[0]
    m2 = dims[1]
    m1b = m1 + dims[3]
    run = N_CONSTANTS if c.size == N_CONSTANTS + _abi.N_RUN else -1  # called by the core
    a, W, V, H, dZ, tZ, G, dU, tU, H2, Z, S1, U, S2 = _hidden(theta, X, c, dims, run)
    pen = c[run + 2] * c[0] if run >= 0 else 0.0
    e = np.empty(n)
    total = 0.0
    for i in range(n):
        s = 0.0
        for k in range(m2):
            s += a[k] * G[i, k]
        e[i] = c[0] * s - y[i]
        total += e[i] * e[i]
    Delta = np.empty((n, m2))
    if pen == 0.0:
        ga = np.dot(G.T, e)
        for i in range(n):
            for k in range(m2):
                Delta[i, k] = e[i] * a[k] * dU[i, k]
    else:  # the dropout penalty on layer 2: unit k's own residual e_i + pen a_k g_ik
        E = np.empty((n, m2))
        for i in range(n):
            for k in range(m2):
                E[i, k] = e[i] + pen * a[k] * G[i, k]
                Delta[i, k] = E[i, k] * a[k] * dU[i, k]
        ga = np.sum(G * E, axis=0)
    gW = np.dot(Delta.T, H)
    B = np.dot(Delta, np.ascontiguousarray(W[:, :m1]))
    if tU.shape[1] > 0:  # smoothed kinks: the gradients of s_ik and s_ij
        Et = np.empty((n, m2))  # as Delta, with tU for dU
        for i in range(n):
            for k in range(m2):
                Et[i, k] = (e[i] + pen * a[k] * G[i, k]) * a[k] * tU[i, k]
        _scale_gradients(Et, H, H2, W, m1, gW, B)
        gV = V * np.dot((B * tZ).T, X * X) + np.dot((B * dZ).T, X)
    else:
        gV = np.dot((B * dZ).T, X)
    for k in range(m2):
        out[k] = -c[3] * ga[k] / n
    off = m2
    for k in range(m2):
        for j in range(m1b):
            out[off + k * m1b + j] = -c[4] * gW[k, j] / n
    off = m2 + m2 * m1b
    D = dims[2]
    for j in range(m1):
        for d in range(D):
            out[off + j * D + d] = -c[5] * gV[j, d] / n
    return 0.5 * total / n


@jit
def max_neuron_norm(theta, dims):
    """max_j |v_j| over first-hidden-layer neurons (normalized units)."""
    a, W, V = _unpack3(theta, dims)
    best = 0.0
    for j in range(V.shape[0]):
        s = 0.0
        for d in range(V.shape[1]):
            s += V[j, d] ** 2
        best = max(best, s)
    return math.sqrt(best)


@jit
def layer_norms(theta, dims, out):
    """out = [|a|, |W|_F, |V|_F] (normalized units)."""
    a, W, V = _unpack3(theta, dims)
    out[0] = math.sqrt(np.sum(a * a))
    out[1] = math.sqrt(np.sum(W * W))
    out[2] = math.sqrt(np.sum(V * V))


# switching: not implemented for three layers (kinks are integrated as is); the
# no-op switching kernels come from flowsim.models._smooth_switching and the
# Jacobian-factor stand-ins (no rodas, bdf) from flowsim.models._no_factor.
