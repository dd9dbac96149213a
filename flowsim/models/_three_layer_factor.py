"""The three-layer flow's approximate Jacobian factor (template; see :mod:`flowsim._codegen`).

For nets with smoothed kinks (``c[6] = eps > 0``, docs/theory.md §11): the ramps make
the flow stiff, with relaxation rates ~ 1/eps, and RKC's cost grows as 1/eps.  BDF
needs ``M = shift I - J`` only to converge its Newton iteration, so an approximation
that holds the stiff part serves (a poorer one costs Newton iterations, not accuracy).

The flow is ``F = -(1/n) sum_i e_i C grad f_i`` in normalized variables (``C`` constant
per layer: ``c_a / c_f``, ``c_W / (c_f b_W)``, ``c_V / (c_f b_V b_W)``), so::

    -J = (C/n) sum_i [grad f_i grad f_i^T + e_i Hess f_i]
       ~ C sum_p w_p g_p g_p^T                          (q columns g_p)

with the Gauss-Newton term (``g = grad f_i``, ``w = 1/n``: the data fit's stiffness,
one column per sample) and, of ``e_i Hess f_i``, the terms of order 1/eps: one rank-one
term per pair inside its ramp, along the gradient of its pre-activation (layer 2:
``g = grad u_ik``, ``w = e_i c_f b_W a_k sigma''(u_ik) / n``; layer 1: ``g = grad z_ij``,
``w = e_i c_f b_W b_V (sum_k a_k sigma'(u_ik) W_kj) sigma''(z_ij) / n``).  Left out: the
products of the layers (order 1 in ReLU's weights times the residual) and the terms of
the ramp scales' own gradients (order 1).  Woodbury then gives::

    M^-1 = (1/shift) (I - C G K^-1 diag(w) G^T),   K = shift I_q + diag(w) G^T C G,

``q = n + r`` for ``r`` pairs in ramps, at most :data:`FACTOR_MAX_PAIRS` (the stiffest,
``|w_p| g_p^T C g_p``, when more are).  Each column is stored by its sample ``i_p`` and
its coefficients on layer 2 (``m2``) and layer 1 (``m1``): its W part is
``wcoef_p (x) h_i`` and its V part ``vcoef_p (x) x_i``, so ``G^T C G`` and the products
with ``G`` are matrix products of size (q, m) and (n, P).

work layout (float64): header (:data:`F_HEADER`) | c_f g_i (n m2) | h_i (n m1b) |
x_i (n D) | sample i_p (qmax) | w_p (qmax) | wcoef (qmax m2) | vcoef (qmax m1) |
K^-1 (qmax^2), ``qmax = n +`` min(n (m1 + m2), FACTOR_MAX_PAIRS).
"""

import math

import numpy as np

from flowsim._jit import jit
from flowsim.models._gauss_jordan import _invert_small
from flowsim.models._three_layer_kernels import _hidden, _widths3

# --- template body ---

FACTOR_MAX_PAIRS = 512
"""Most ramp pairs in the factor (K's inversion costs ~2 q^3)."""
F_HEADER = 8
"""work[0] q, [1] shift, [2:5] C of layers a, W, V."""


@jit
def _factor_sizes(dims, n):
    m1, m2, D, m1b = _widths3(dims)
    qmax = n + min(n * (m1 + m2), FACTOR_MAX_PAIRS)
    return m1, m2, D, m1b, qmax


@jit
def newton_work_size(dims, n):
    m1, m2, D, m1b, qmax = _factor_sizes(dims, n)
    return F_HEADER + n * (m2 + m1b + D) + qmax * (2 + m2 + m1) + qmax * qmax


@jit
def _factor_views(work, dims, n):
    m1, m2, D, m1b, qmax = _factor_sizes(dims, n)
    o = F_HEADER
    GA = work[o : o + n * m2].reshape((n, m2))
    o += n * m2
    Hs = work[o : o + n * m1b].reshape((n, m1b))
    o += n * m1b
    Xs = work[o : o + n * D].reshape((n, D))
    o += n * D
    IP = work[o : o + qmax]
    o += qmax
    WT = work[o : o + qmax]
    o += qmax
    WC = work[o : o + qmax * m2].reshape((qmax, m2))
    o += qmax * m2
    VC = work[o : o + qmax * m1].reshape((qmax, m1))
    o += qmax * m1
    return GA, Hs, Xs, IP, WT, WC, VC, work[o : o + qmax * qmax], qmax


@jit
def _ramp_curvature(u, s, eps, lo, hi):
    """sigma''(u) of the smoothed kink at scale ``s`` (0 outside the ramp)."""
    if not (s > 0.0) or abs(u) >= eps * s:
        return 0.0
    t = (u / s + eps) / (2.0 * eps)
    return (hi - lo) * 3.0 * t * (1.0 - t) / (eps * s)


@jit
def newton_factor(theta, X, y, c, dims, shift, work):
    """Factor the approximation of M = shift I - J(theta) into ``work``; False if K is
    singular.  Dropout and the dropout penalty are left out of the approximation."""
    n = X.shape[0]
    m1, m2, D, m1b, qmax = _factor_sizes(dims, n)
    GA, Hs, Xs, IP, WT, WC, VC, Kflat, qmax = _factor_views(work, dims, n)
    a, W, V, H, dZ, tZ, G, dU, tU, H2, Z, S1, U, S2 = _hidden(theta, X, c, dims)
    c0, c1, c2, eps, lo, hi = c[0], c[1], c[2], c[6], c[7], c[8]
    Ca = c[3] / c0
    CW = c[4] / (c0 * c2)
    CV = c[5] / (c0 * c1 * c2)
    e = np.empty(n)
    for i in range(n):
        s = 0.0
        for k in range(m2):
            s += a[k] * G[i, k]
        e[i] = c0 * s - y[i]
    Wv = np.ascontiguousarray(W[:, :m1])
    AdU = dU * a.reshape((1, m2))  # a_k sigma'(u_ik), (n, m2)
    Bhat = np.dot(AdU, Wv)  # sum_k a_k sigma'(u_ik) W_kj, (n, m1)
    GA[:, :] = c0 * G
    Hs[:, :] = H
    Xs[:, :] = X
    # the Gauss-Newton columns: grad f_i
    for i in range(n):
        IP[i] = i
        WT[i] = 1.0 / n
        for k in range(m2):
            WC[i, k] = c0 * c2 * AdU[i, k]
        for j in range(m1):
            VC[i, j] = c0 * c2 * c1 * Bhat[i, j] * dZ[i, j]
    q = n
    HH = np.dot(H, H.T)
    XX = np.dot(X, X.T)
    if eps > 0.0:
        # candidates: kind (0 layer 2, 1 layer 1), sample, unit, weight, stiffness
        n_cand = n * (m1 + m2)
        kind = np.empty(n_cand, dtype=np.int64)
        ci = np.empty(n_cand, dtype=np.int64)
        cu = np.empty(n_cand, dtype=np.int64)
        cw = np.empty(n_cand)
        stiff = np.empty(n_cand)
        r = 0
        for i in range(n):
            for k in range(m2):
                curv = _ramp_curvature(U[i, k], math.sqrt(S2[i, k]), eps, lo, hi)
                w = e[i] * a[k] * c0 * c2 * curv / n
                if w != 0.0:
                    g2 = 0.0
                    for j in range(m1):
                        g2 += (W[k, j] * dZ[i, j]) ** 2
                    kind[r] = 0
                    ci[r] = i
                    cu[r] = k
                    cw[r] = w
                    stiff[r] = abs(w) * (CW * HH[i, i] + CV * c1 * c1 * g2 * XX[i, i])
                    r += 1
            for j in range(m1):
                curv = _ramp_curvature(Z[i, j], math.sqrt(S1[i, j]), eps, lo, hi)
                w = e[i] * Bhat[i, j] * c0 * c1 * c2 * curv / n
                if w != 0.0:
                    kind[r] = 1
                    ci[r] = i
                    cu[r] = j
                    cw[r] = w
                    stiff[r] = abs(w) * CV * XX[i, i]
                    r += 1
        order = np.argsort(-stiff[:r], kind="mergesort")  # stable: ties keep their order
        for p in order[: qmax - n]:
            i = ci[p]
            IP[q] = i
            WT[q] = cw[p]
            WC[q, :] = 0.0
            VC[q, :] = 0.0
            if kind[p] == 0:  # grad u_ik: h_i on W's row k, c1 W_kj sigma'(z_ij) x_i on v_j
                k = cu[p]
                WC[q, k] = 1.0
                for j in range(m1):
                    VC[q, j] = c1 * W[k, j] * dZ[i, j]
            else:  # grad z_ij: x_i on v_j
                VC[q, cu[p]] = 1.0
            q += 1
    # K = shift I + diag(w) G^T C G, G^T C G from the columns' coefficients
    ip = IP[:q].astype(np.int64)
    gram_w = np.dot(WC[:q], WC[:q].T)
    gram_v = np.dot(VC[:q], VC[:q].T)
    K = Kflat[: q * q].reshape((q, q))
    for p in range(q):
        for r2 in range(q):
            g = CW * gram_w[p, r2] * HH[ip[p], ip[r2]] + CV * gram_v[p, r2] * XX[ip[p], ip[r2]]
            if p < n and r2 < n:
                g += Ca * np.dot(GA[p], GA[r2])
            K[p, r2] = WT[p] * g
        K[p, p] += shift
    work[0] = q
    work[1] = shift
    work[2] = Ca
    work[3] = CW
    work[4] = CV
    return _invert_small(K, np.empty(2 * q))


@jit
def newton_solve(work, dims, n, rhs, out):
    """out = M^-1 rhs with the factor from :func:`newton_factor`."""
    m1, m2, D, m1b, qmax = _factor_sizes(dims, n)
    GA, Hs, Xs, IP, WT, WC, VC, Kflat, qmax = _factor_views(work, dims, n)
    q = int(work[0])
    shift, Ca, CW, CV = work[1], work[2], work[3], work[4]
    K = Kflat[: q * q].reshape((q, q))
    ip = IP[:q].astype(np.int64)
    ra = rhs[:m2]
    rW = rhs[m2 : m2 + m2 * m1b].reshape((m2, m1b))
    rV = rhs[m2 + m2 * m1b :].reshape((m1, D))
    RH = np.dot(Hs, rW.T)  # (n, m2): r_W[k] . h_i
    RX = np.dot(Xs, rV.T)  # (n, m1): r_V[j] . x_i
    beta = np.empty(q)  # diag(w) G^T rhs
    for p in range(q):
        i = ip[p]
        s = np.dot(WC[p], RH[i]) + np.dot(VC[p], RX[i])
        if p < n:
            s += np.dot(GA[p], ra)
        beta[p] = WT[p] * s
    gamma = np.dot(K, beta)
    # G gamma, gathered by sample: W part sum_i (sum_p gamma_p wcoef_p) h_i^T, V part alike
    Wsum = np.zeros((n, m2))
    Vsum = np.zeros((n, m1))
    for p in range(q):
        i = ip[p]
        for k in range(m2):
            Wsum[i, k] += gamma[p] * WC[p, k]
        for j in range(m1):
            Vsum[i, j] += gamma[p] * VC[p, j]
    Ga = np.dot(gamma[:n], GA)
    GW = np.dot(Wsum.T, Hs)
    GV = np.dot(Vsum.T, Xs)
    inv = 1.0 / shift
    for k in range(m2):
        out[k] = inv * (ra[k] - Ca * Ga[k])
    oW = out[m2 : m2 + m2 * m1b].reshape((m2, m1b))
    oW[:, :] = inv * (rW - CW * GW)
    oV = out[m2 + m2 * m1b :].reshape((m1, D))
    oV[:, :] = inv * (rV - CV * GV)
