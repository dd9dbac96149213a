"""One-layer attention with a trainable token embedding ([CLXL26]; docs/theory.md §19).

References
----------
.. [CLXL26] Chen, Lin, Xu et al. Focus and dilution: the multi-stage learning process
   of attention. 2026 (abstract only: ``shared/seeds/related-abstracts.txt``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from flowsim.models import (
    _attention_products,
    _no_factor,
    _smooth_switching,
    _token_attention_kernels,
)
from flowsim.models._base import Model, check_positive_int, real_array
from flowsim.models._init import draw_init, layer_stds


class TokenAttention(Model):
    """``logits = sum_j softmax_j(e_s WQ WK^T e_j^T / sqrt(m)) e_j W1``, ``e_j = W0[x_j]``.

    A one-layer, one-head transformer on token ids, read at the last position
    ([CLXL26] as reconstructed in docs/theory.md §19): a trainable embedding
    ``W0`` (V, m), query and key weights ``WQ``, ``WK`` (m, m), the value the identity,
    no residual or normalization, and a projection ``W1`` (m, V) to the logits.
    Only the last query row enters the logits, so a causal mask changes nothing
    (there is no mask option).

    Parameters
    ----------
    vocabulary : int
        V, the number of tokens.
    m : int
        Embedding dimension.
    scaled : bool, optional
        Divide the attention logits by sqrt(m) (default True, as :class:`flowsim.Attention`).

    Notes
    -----
    ``unpack`` gives ``{"W0": (V, m), "WQ": (m, m), "WK": (m, m), "W1": (m, V)}``.
    Data: ``X`` token ids (n, s); ``y`` next-token ids (n,) (the mean cross-entropy),
    or target weights (n, V), entries >= 0, and then
    ``R = sum_i sum_v Y_iv CE_v(l_i) / sum_iv Y_iv`` with ``CE_v(l) = logsumexp(l) - l_v``:
    a one-hot row per sample is the mean cross-entropy, the rows of
    :func:`flowsim.data.markov_population` the exact population loss.  A minibatch
    (``batch_size`` of ``gd``, ``adam``) is weighted by its own total: its mean.

    Normalized variables: each layer divided by its scale (``beta_0``, ``beta_Q``,
    ``beta_K``, ``beta_1``), time ``t = T t_bar`` with ``T = (beta_0 beta_1)^(-1/2)``.
    The attention logits are then ``c_z e_s WQ WK^T e_j`` in normalized units with
    ``c_z = beta_0^2 beta_Q beta_K (/ sqrt(m))``, the logits ``c_f xbar W1`` with
    ``c_f = beta_0 beta_1``, and each layer moves by
    ``d layer_bar / d t_bar = -(T / beta_layer^2) dR / d layer_bar``.  With every scale
    eps, T = 1/eps: the embedding and projection move at O(1) in t_bar at the start
    (their gradient is O(eps)), the attention weights at O(eps^2).

    ``max_neuron_norm`` (and the ``escape`` event) is the largest row norm of ``W0``
    (one token's vector); ``neuron_layer = "W0"``.  The kernels are those of
    :class:`flowsim.Attention` generalized to a trainable embedding: the same
    products and softmax (:mod:`flowsim.models._attention_products`), the gradient
    with respect to the token vectors scattered into the rows of ``W0``
    (:mod:`flowsim.models._token_attention_kernels`).  ``rodas`` and ``bdf`` are not
    available (no analytic Jacobian).
    """

    kind = "token_attention"
    neuron_layer = "W0"
    _template = _token_attention_kernels
    _shared = (_attention_products,)
    _stand_ins = (_smooth_switching, _no_factor)  # no kink treatment, no Jacobian factor

    def __init__(self, vocabulary: int, m: int, *, scaled: bool = True) -> None:
        V = check_positive_int("vocabulary", vocabulary)
        m = check_positive_int("m", m)
        if not isinstance(scaled, (bool, np.bool_)):
            raise ValueError(f"scaled must be True or False, got {scaled!r}")
        super().__init__("linear", m, bias=False, alpha=1.0)
        self.vocabulary = V
        self.m = m
        self.scaled = bool(scaled)
        self.layers = (("W0", (V, m)), ("WQ", (m, m)), ("WK", (m, m)), ("W1", (m, V)))

    def __repr__(self) -> str:
        return f"TokenAttention(vocabulary={self.vocabulary}, m={self.m}, scaled={self.scaled})"

    def dims(self) -> np.ndarray:
        """``[V, m]`` (the kernels read s from the data: ``X.shape[1] - V``)."""
        return np.array([self.vocabulary, self.m], dtype=np.int64)

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        """``c = [c_z, c_f, T/beta_0^2, T/beta_Q^2, T/beta_K^2, T/beta_1^2]`` and
        ``T = (beta_0 beta_1)^(-1/2)`` (see the class)."""
        b0, bQ, bK, b1 = (float(scales[name]) for name in self.layer_names)
        T = (b0 * b1) ** -0.5
        cz = b0 * b0 * bQ * bK / (math.sqrt(self.m) if self.scaled else 1.0)
        c = [cz, b0 * b1] + [T / b**2 for b in (b0, bQ, bK, b1)]
        return np.array(c, dtype=np.float64), T

    def init(self, seed: int, *, scale: float | Mapping[str, float]) -> np.ndarray:
        """Random initial parameters, every entry N(0, scale^2) i.i.d.

        Parameters
        ----------
        seed : int
        scale : float or dict
            One standard deviation for every layer, or one per layer
            (``{"W0": ..., "WQ": ..., "WK": ..., "W1": ...}``).
        """
        stds = layer_stds(self.layer_names, scale)
        return self.pack(**draw_init(seed, self.layers, stds))

    # -- data -------------------------------------------------------------------
    def _ids(self, X: ArrayLike) -> np.ndarray:
        ids = real_array("X", X)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise ValueError(f"X must be token ids of shape (n, s), s >= 1, got {ids.shape}")
        if ids.shape[0] == 0:
            raise ValueError("the data set is empty (n = 0)")
        V = self.vocabulary
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise ValueError("X: token ids must be integers")
        if ids.min() < 0 or ids.max() >= V:
            raise ValueError(f"X: token ids must lie in [0, {V - 1}], got "
                             f"[{ids.min():g}, {ids.max():g}]")  # fmt: skip
        return ids

    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Kernel-ready data: ``(Xk, mass)``, ``Xk`` (n, s + V) the token ids then the
        target weights of each sample divided by their total, ``mass`` (n,) the row sums
        of those weights (see the module :mod:`flowsim.models._token_attention_kernels`).

        ``y``: next-token ids (n,), or target weights (n, V) >= 0 with a positive total.
        """
        ids = self._ids(X)
        n, V = ids.shape[0], self.vocabulary
        y = real_array("y", y)
        if y.ndim == 2 and y.shape[1] == 1 and V != 1:
            y = y[:, 0]
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values")
        if y.shape == (n,):
            if np.any(y != np.round(y)) or y.min() < 0 or y.max() >= V:
                raise ValueError(f"y: next-token ids must be integers in [0, {V - 1}]")
            weights = np.zeros((n, V))
            weights[np.arange(n), y.astype(np.int64)] = 1.0
        elif y.shape == (n, V):
            if np.any(y < 0) or not y.sum() > 0:
                raise ValueError("y: target weights (n, V) must be >= 0 with a positive total")
            weights = y
        else:
            raise ValueError(f"y must be next-token ids ({n},) or target weights ({n}, {V}), "
                             f"got shape {y.shape}")  # fmt: skip
        weights = weights / weights.sum()
        Xk = np.ascontiguousarray(np.hstack([ids, weights]), dtype=np.float64)
        return Xk, np.ascontiguousarray(weights.sum(axis=1))

    # -- evaluation in original units ----------------------------------------------
    def output(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """The logits of the last position, shape (n, V)."""
        theta = self.check_theta(theta)
        ids = self._ids(X)
        Xk = np.ascontiguousarray(np.hstack([ids, np.zeros((ids.shape[0], self.vocabulary))]))
        c, _ = self.flow_constants(self.unit_scales())
        out = np.empty(ids.shape[0] * self.vocabulary)
        self.kernels_for(ids.shape[0]).predict(theta, Xk, c, self.dims(), out)
        return out.reshape(-1, self.vocabulary)
