"""Exact Hessians of the loss in original variables (template; see :mod:`flowsim._codegen`).

``R = 1/(2n) sum_i e_i^2``, ``e_i = f_i - y_i``, so ::

    H = (1/n) sum_i (J_i J_i^T + e_i d2f_i),   J_i = grad_theta f_i

(docs/theory.md §16).  Each kernel writes the Gauss-Newton part ``J^T J / n`` (one
BLAS product) and adds the residual part sample by sample from the closed-form
second derivatives of ``f_i``; sigma and its derivatives come from the
activation's callback (:func:`flowsim._abi.activate`).  For a piecewise-linear
activation ``sigma'' = 0``: the Hessian away from the kinks.  Layouts as the
models' (``theta = [a, W]`` and ``[a, W, V]``, row-major); ``inv_alpha = 1/alpha``;
``X`` already augmented.

``dims``: the models' own, ``[m, D, activation]`` (two layers) or
``[m1, m2, D, bias, activation]`` (three layers), the last entry the address of the
activation's callback.
"""

import numpy as np

from flowsim import _abi
from flowsim._jit import jit

# --- template body ---


@jit
def hessian_two_layer(theta, X, y, inv_alpha, dims, out):
    """out (P, P) = Hessian of R at theta; ``f = inv_alpha sum_k a_k sigma(w_k . x)``.

    Second derivatives of f_i: ``d2f/da_k dw_k = inv_alpha sigma'(z_ik) x_i`` and
    ``d2f/dw_k dw_k = inv_alpha a_k sigma''(z_ik) x_i x_i^T``; every other block is 0.
    """
    m = dims[0]
    D = dims[1]
    n = X.shape[0]
    P = m + m * D
    a = theta[:m]
    W = theta[m:].reshape((m, D))
    Z = np.dot(X, W.T)
    J = np.empty((n, P))
    S = np.empty((n, m))
    d1 = np.empty((n, m))
    d2 = np.empty((n, m))
    _abi.activate(dims[2], Z, n * m, 1.0, 2, S, d1, d2)
    e = np.empty(n)
    for i in range(n):
        f = 0.0
        for k in range(m):
            s = S[i, k]
            ds = d1[i, k]
            f += a[k] * s
            J[i, k] = inv_alpha * s
            for d in range(D):
                J[i, m + k * D + d] = inv_alpha * a[k] * ds * X[i, d]
        e[i] = inv_alpha * f - y[i]
    out[:, :] = np.dot(J.T, J) / n
    for k in range(m):
        off = m + k * D
        for i in range(n):
            r = e[i] * inv_alpha / n
            c1 = r * d1[i, k]
            c2 = r * a[k] * d2[i, k]
            for d in range(D):
                out[k, off + d] += c1 * X[i, d]
                out[off + d, k] += c1 * X[i, d]
                for q in range(D):
                    out[off + d, off + q] += c2 * X[i, d] * X[i, q]


@jit
def hessian_three_layer(theta, X, y, inv_alpha, dims, out):
    """out (P, P) = Hessian of R at theta for ``f = inv_alpha sum_k a_k sigma(u_k)``,
    ``u_k = sum_j W_kj h_j`` (``h_m1 = 1`` with bias), ``h_j = sigma(v_j . x)``.

    With ``g_k = sigma(u_k)`` and ``beta_j = sum_k a_k g'_k W_kj``, the second derivatives
    of f (times alpha) are::

        a_k, W_kj:   g'_k h_j
        a_k, v_j:    g'_k W_kj h'_j x
        W_kj, W_kl:  a_k g''_k h_j h_l
        W_kj, v_l:   a_k (g''_k W_kl h_j + g'_k [j = l]) h'_l x
        v_j, v_l:    (sum_k a_k g''_k W_kj W_kl h'_j h'_l + [j = l] beta_j h''_j) x x^T
    """
    m1 = dims[0]
    m2 = dims[1]
    D = dims[2]
    m1b = m1 + dims[3]
    n = X.shape[0]
    oW = m2
    oV = m2 + m2 * m1b
    P = oV + m1 * D
    a = theta[:m2]
    W = theta[oW:oV].reshape((m2, m1b))
    V = theta[oV:].reshape((m1, D))
    Z = np.dot(X, V.T)
    J = np.empty((n, P))
    e = np.empty(n)
    h = np.empty(m1b)
    h1 = np.empty(m1)
    h2 = np.empty(m1)
    u = np.empty(m2)
    g = np.empty(m2)
    g1 = np.empty(m2)
    g2 = np.empty(m2)
    beta = np.empty(m1)
    Hf = np.zeros((P, P))  # sum_i e_i d2f_i / inv_alpha
    for i in range(n):
        x = X[i]
        _abi.activate(dims[4], Z[i], m1, 1.0, 2, h, h1, h2)
        if m1b > m1:
            h[m1] = 1.0
        for k in range(m2):
            uk = 0.0
            for j in range(m1b):
                uk += W[k, j] * h[j]
            u[k] = uk
        _abi.activate(dims[4], u, m2, 1.0, 2, g, g1, g2)
        f = 0.0
        for k in range(m2):
            s = g[k]
            f += a[k] * s
            J[i, k] = inv_alpha * s
            for j in range(m1b):
                J[i, oW + k * m1b + j] = inv_alpha * a[k] * g1[k] * h[j]
        for j in range(m1):
            b = 0.0
            for k in range(m2):
                b += a[k] * g1[k] * W[k, j]
            beta[j] = b
            for d in range(D):
                J[i, oV + j * D + d] = inv_alpha * b * h1[j] * x[d]
        e[i] = inv_alpha * f - y[i]
        r = e[i]
        for k in range(m2):
            ck = r * g1[k]
            ak2 = r * a[k] * g2[k]
            for j in range(m1b):
                p = oW + k * m1b + j
                Hf[k, p] += ck * h[j]  # a_k, W_kj
                Hf[p, k] += ck * h[j]
                for q in range(m1b):  # W_kj, W_kq
                    Hf[p, oW + k * m1b + q] += ak2 * h[j] * h[q]
                for l in range(m1):  # W_kj, v_l
                    c = ak2 * W[k, l] * h[j] * h1[l]
                    if j == l:
                        c += r * a[k] * g1[k] * h1[l]
                    for d in range(D):
                        Hf[p, oV + l * D + d] += c * x[d]
                        Hf[oV + l * D + d, p] += c * x[d]
            for j in range(m1):  # a_k, v_j
                c = ck * W[k, j] * h1[j]
                for d in range(D):
                    Hf[k, oV + j * D + d] += c * x[d]
                    Hf[oV + j * D + d, k] += c * x[d]
        for j in range(m1):  # v_j, v_l
            for l in range(m1):
                c = 0.0
                for k in range(m2):
                    c += a[k] * g2[k] * W[k, j] * W[k, l]
                c *= r * h1[j] * h1[l]
                if j == l:
                    c += r * beta[j] * h2[j]
                for d in range(D):
                    for q in range(D):
                        Hf[oV + j * D + d, oV + l * D + q] += c * x[d] * x[q]
    out[:, :] = np.dot(J.T, J) / n + (inv_alpha / n) * Hf
