"""The two-layer problem in plain NumPy, for the competitors and the references of W1-W4.

``f(x) = sum_k a_k sigma(w_k . x~)`` with ``x~ = (x, 1)``, loss
``R = 1/(2n) sum_i (f(x_i) - y_i)^2``, ``theta = [a (m), W (m, D) row-major]``
(flowsim's layout, ``alpha = 1``).  The gradient flow is ``theta' = -grad R``;
its Jacobian is ``-H`` with ``H`` the Hessian of ``R``, which the implicit
reference solvers get analytically (:func:`hessian`):

``H = J^T J / n + (1/n) sum_i e_i grad^2 f_i``, with ``J_i = grad f_i``,
``e_i = f_i - y_i``; ``grad^2 f_i`` couples only ``a_k`` with ``w_k``
(``sigma'(z_ik) x~_i``) and ``w_k`` with itself (``a_k sigma''(z_ik) x~_i x~_i^T``).

``tests/test_benchmarks_reference.py`` checks the gradient against flowsim's
and the Hessian against finite differences of the gradient.
"""

from __future__ import annotations

import numpy as np


def _tanh_derivatives(z):
    s = np.tanh(z)
    s1 = 1.0 - s * s
    return s, s1, -2.0 * s * s1


def _x2tanh_derivatives(z):
    # sigma = z^2 tanh z
    t = np.tanh(z)
    t1 = 1.0 - t * t  # tanh'
    t2 = -2.0 * t * t1  # tanh''
    return z * z * t, 2.0 * z * t + z * z * t1, 2.0 * t + 4.0 * z * t1 + z * z * t2


def _relu_derivatives(z):
    return np.maximum(z, 0.0), (z > 0).astype(np.float64), np.zeros_like(z)


ACTIVATIONS = {
    "tanh": _tanh_derivatives,
    "x2tanh": _x2tanh_derivatives,
    "relu": _relu_derivatives,
}
"""name -> function returning ``(sigma(z), sigma'(z), sigma''(z))`` (flowsim's names)."""


def sin_data(n):
    """``n`` points of ``sin(3x) + sin(6x)/2`` on [-1, 1.5]: ``X (n, 1)``, ``Xa (n, 2)``, ``y``.

    The data of T1 and of flowsim's validation (``validation._cases.sin1d``).
    """
    x = np.linspace(-1.0, 1.5, n)
    X = x[:, None]
    Xa = np.hstack([X, np.ones((n, 1))])
    return X, Xa, np.sin(3 * x) + np.sin(6 * x) / 2


def _split(theta, m, D):
    return theta[:m], theta[m:].reshape(m, D)


def loss(theta, Xa, y, m, activation="tanh"):
    """``R(theta)``."""
    a, W = _split(theta, m, Xa.shape[1])
    e = ACTIVATIONS[activation](Xa @ W.T)[0] @ a - y
    return 0.5 * float(e @ e) / Xa.shape[0]


def gradient(theta, Xa, y, m, activation="tanh"):
    """``grad R``, shape ``(m + m D,)`` (any activation of :data:`ACTIVATIONS`)."""
    n, D = Xa.shape
    a, W = _split(theta, m, D)
    S, S1, _ = ACTIVATIONS[activation](Xa @ W.T)
    e = S @ a - y
    grad = np.empty_like(theta)
    grad[:m] = (e @ S) / n
    grad[m:] = (((S1 * e[:, None]).T @ Xa) * a[:, None]).ravel() / n
    return grad


def hessian(theta, Xa, y, m, activation="tanh"):
    """Hessian of ``R``, shape ``(P, P)`` with ``P = m + m D`` (dense; for small P)."""
    n, D = Xa.shape
    a, W = _split(theta, m, D)
    S, S1, S2 = ACTIVATIONS[activation](Xa @ W.T)
    e = S @ a - y
    J = np.empty((n, m + m * D))
    J[:, :m] = S
    J[:, m:] = ((S1 * a)[:, :, None] * Xa[:, None, :]).reshape(n, m * D)
    H = J.T @ J / n
    # (1/n) sum_i e_i grad^2 f_i: the a_k-w_k blocks and the w_k-w_k blocks
    cross = ((S1 * e[:, None]).T @ Xa) / n  # (m, D)
    own = np.einsum("ik,id,ie->kde", S2 * e[:, None], Xa, Xa) * (a / n)[:, None, None]
    k = np.arange(m)
    for d in range(D):
        row_d = m + k * D + d
        H[k, row_d] += cross[:, d]
        H[row_d, k] += cross[:, d]
        for d2 in range(D):
            H[row_d, m + k * D + d2] += own[:, d, d2]
    return H


def max_neuron_norm(theta, m, D):
    """``max_k |w_k|`` (the input weights with the bias entry): flowsim's escape quantity."""
    return float(np.sqrt(np.max(np.sum(theta[m:].reshape(m, D) ** 2, axis=1))))
