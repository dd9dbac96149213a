"""Dropout's explicit regularizer ([ZX24]): ``E_eta R_drop = R + R1``.

Dropout with keep probability ``p`` multiplies the output of hidden unit ``k`` on
sample ``i`` by ``1 + eta_ik``, ``eta_ik = (1-p)/p`` with probability ``p`` and
``-1`` otherwise (mean 0, variance ``(1-p)/p``), independently over samples and
units.  For the squared loss, averaging over the masks of the layer that feeds
the output linearly gives

    E_eta R_drop = R + R1,   R1 = ((1-p)/(2 n p)) sum_i sum_k (a_k h_ik / alpha)^2,

``h_ik`` the unit's output on sample i: ``sigma(w_k . x~_i)`` for two layers, the
second hidden layer's ``sigma(sum_j W_kj sigma(v_j . x~_i) [+ b_k])`` for three.

- :func:`dropout_penalty`: ``R1``.
- :func:`dropout_penalty_gradient`: ``grad R1`` in the original variables, the
  NumPy reference for the compiled penalty.

docs/theory.md §18 states the result and how it is checked
(derivations/dropout.py, tests/test_theory_dropout.py).

References
----------
.. [ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024.
   arXiv:2207.05952.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from flowsim.models.three_layer import ThreeLayer
from flowsim.models.two_layer import TwoLayer

__all__ = ["dropout_penalty", "dropout_penalty_gradient"]


def _keep(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} (the keep probability) must be a number in (0, 1], "
                         f"got {value!r}")  # fmt: skip
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} (the keep probability) must be in (0, 1], got {value!r}")
    return value


def _last_layer_keep(net, p) -> float:
    """The keep probability of the layer that feeds the output, checked."""
    if isinstance(net, TwoLayer):
        return _keep(p, "p")
    if isinstance(net, ThreeLayer):
        if isinstance(p, (tuple, list)):
            if len(p) != 2:
                raise ValueError(f"p for a ThreeLayer is a number (last hidden layer) or a "
                                 f"pair (p1, p2), got {p!r}")  # fmt: skip
            p1, p2 = _keep(p[0], "p[0]"), _keep(p[1], "p[1]")
            if p1 != 1.0:
                raise ValueError(
                    f"p[0] = {p1}: dropout on the first hidden layer of a three-layer net has "
                    "no closed-form penalty (its masks pass through the second layer's "
                    "activation, so E R_drop is not R plus a sum of squares); only the last "
                    "hidden layer (p = p2 or (1, p2)) has one"
                )
            return p2
        return _keep(p, "p")
    raise TypeError(f"dropout_penalty takes a TwoLayer or ThreeLayer, got {type(net).__name__}")


def _last_hidden(net, theta: np.ndarray, Xa: np.ndarray) -> dict[str, np.ndarray]:
    """Forward pass in plain NumPy up to the last hidden layer, with what the gradient needs.

    Returns ``a`` and ``h`` (n, m): the last hidden layer's outputs; two layers add
    ``dz`` (sigma' of the pre-activations); three layers ``du``, ``H`` (n, m1[+1]),
    ``dz`` (n, m1) and ``W``.
    """
    params = net.unpack(theta)
    sigma = net.activation
    if isinstance(net, TwoLayer):
        z = Xa @ params["W"].T
        return {"a": params["a"], "h": sigma(z), "dz": sigma.derivative(z)}
    z = Xa @ params["V"].T
    H = sigma(z)
    if net.bias:
        H = np.hstack([H, np.ones((H.shape[0], 1))])
    u = H @ params["W"].T
    return {"a": params["a"], "h": sigma(u), "du": sigma.derivative(u), "H": H,
            "dz": sigma.derivative(z), "W": params["W"]}  # fmt: skip


def _prepare(net, theta, X, y, p):
    keep = _last_layer_keep(net, p)
    theta = net.check_theta(theta)
    Xa, _ = net.prepare_data(X, y)
    return keep, theta, Xa


def dropout_penalty(net, theta: ArrayLike, X: ArrayLike, y: ArrayLike, p) -> float:
    """Dropout's explicit regularizer ``R1`` of [ZX24] (squared loss).

    ``R1 = ((1-p)/(2 n p)) sum_i sum_k (a_k h_ik / alpha)^2`` with ``h_ik`` the output
    of the last hidden layer's unit k on sample i, so that the loss averaged over the
    dropout masks of that layer is ``R + R1``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,)
        Parameters in the original variables.
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
        Targets (``R1`` does not depend on them; checked against ``X``).
    p : float or (float, float)
        Keep probability in (0, 1].  TwoLayer: a number.  ThreeLayer: a number
        (dropout on the last hidden layer) or a pair ``(p1, p2)`` with ``p1 = 1``.

    Returns
    -------
    float
        ``R1``; 0 for ``p = 1``.

    Raises
    ------
    ValueError
        ``p`` outside (0, 1] or not a number; ``p1 < 1`` for a ThreeLayer (dropout on
        the first hidden layer has no closed form); bad shapes of theta, X, y.
    TypeError
        A model other than TwoLayer or ThreeLayer.

    References
    ----------
    .. [ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024.
       arXiv:2207.05952.
    """
    keep, theta, Xa = _prepare(net, theta, X, y, p)
    fwd = _last_hidden(net, theta, Xa)
    outputs = fwd["a"] * fwd["h"] / net.alpha  # (n, m): a_k h_ik / alpha
    return float((1.0 - keep) / (2.0 * Xa.shape[0] * keep) * np.sum(outputs**2))


def dropout_penalty_gradient(net, theta: ArrayLike, X: ArrayLike, y: ArrayLike, p) -> np.ndarray:
    """``grad R1`` (:func:`dropout_penalty`) in the original variables.

    With ``c = (1-p)/(n p alpha^2)`` and ``r_ik = c a_k^2 h_ik sigma'(.)`` (the
    derivative through unit k's pre-activation on sample i)::

        dR1/da_k  = c a_k sum_i h_ik^2
        two layers:    dR1/dw_k = sum_i r_ik x~_i
        three layers:  dR1/dW_kj = sum_i r_ik H_ij,
                       dR1/dv_j  = sum_i (sum_k r_ik W_kj) sigma'(v_j . x~_i) x~_i

    (``H`` the first hidden layer's outputs with the bias 1 appended).

    Parameters
    ----------
    net, theta, X, y, p
        As for :func:`dropout_penalty`.

    Returns
    -------
    ndarray, shape (P,)
        Laid out as ``theta`` (``net.unpack`` reads it); zeros for ``p = 1``.

    References
    ----------
    .. [ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024.
       arXiv:2207.05952.
    """
    keep, theta, Xa = _prepare(net, theta, X, y, p)
    fwd = _last_hidden(net, theta, Xa)
    a, h = fwd["a"], fwd["h"]
    c = (1.0 - keep) / (Xa.shape[0] * keep * net.alpha**2)
    grads = {"a": c * a * np.sum(h**2, axis=0)}
    if isinstance(net, TwoLayer):
        grads["W"] = (c * a**2 * h * fwd["dz"]).T @ Xa
    else:
        r = c * a**2 * h * fwd["du"]  # (n, m2)
        grads["W"] = r.T @ fwd["H"]
        m1 = net.widths[0]
        grads["V"] = ((r @ fwd["W"][:, :m1]) * fwd["dz"]).T @ Xa
    return net.pack(**grads)
