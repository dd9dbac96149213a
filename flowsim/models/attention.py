"""One-layer, one-head attention network (docs/theory.md, attention section).

References
----------
.. [CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis of
   transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from flowsim.activations import Activation
from flowsim.models import _attention_kernels, _attention_products, _no_factor, _smooth_switching
from flowsim.models._base import Model, check_positive_int, real_array
from flowsim.models._init import draw_init, layer_stds

LOSSES = {"exponential": 0, "squared": 1, "cross_entropy": 2}
"""Loss name -> the kernels' loss code."""


class Attention(Model):
    """``f(X) = sigma(softmax(X WQ WK^T X^T / sqrt(d)) X WV W1) W2``, read at the last token.

    A sequence ``X`` is s tokens of dimension d (rows ``X_1 .. X_s``); one layer,
    one head, no residual, no normalization ([CL25], Definition 3).  Only the
    last query row of the softmax enters the prediction (a causal mask would
    change nothing)::

        p = softmax(X_s WQ WK^T X^T / sqrt(d)),   f(X) = sigma(p X WV W1) W2

    Parameters
    ----------
    d : int
        Token dimension.
    hidden : int, optional
        Width h of the feed-forward layer (default d).
    activation : str, sympy.Expr, Activation or None
        Any flowsim activation; None is the identity (``"linear"``).
    loss : {"exponential", "squared", "cross_entropy"}
        ``R = (1/n) sum_i exp(-y_i f(X_i))`` with labels +-1 (the theorems of
        [CL25]); ``R = 1/(2n) sum_i (f(X_i) - y_i)^2``; or
        ``R = (1/n) sum_i [logsumexp(l_i) - l_{i, y_i}]`` with logits
        ``l_i = f(X_i) U^T`` over a vocabulary of V tokens, labels the token ids.
    embedding : array_like, shape (V, d), optional
        Fixed token embedding E: data may then be token ids (n, s), read as the
        vectors ``E[ids]``.
    unembedding : array_like, shape (V, d), optional
        Fixed unembedding U of cross-entropy (default: the embedding).

    Notes
    -----
    ``unpack`` gives ``{"WQ": (d, d), "WK": (d, d), "WV": (d, d), "W1": (d, h),
    "W2": (h, o)}``, o = 1, or o = d for cross-entropy (``W2`` then maps to the
    token space, logits ``f U^T``).

    Normalized variables: each layer divided by its scale (``beta_Q``, ``beta_K``,
    ``beta_V``, ``beta_1``, ``beta_2``) and time ``t = T t_bar`` with
    ``T = (beta_V beta_1 beta_2)^(-1/3)``.  The prediction is then
    ``c_f sigma(c_u p xbar WV_bar W1_bar) W2_bar`` with softmax logits
    ``c_z X_s WQ_bar WK_bar^T X^T``, ``c_z = beta_Q beta_K / sqrt(d)``,
    ``c_u = beta_V beta_1``, ``c_f = beta_2``, and each layer moves by
    ``d layer_bar / d t_bar = -(T / beta_layer^2) dR / d layer_bar``.  With
    every scale eps, T = 1/eps: the outer weights' normalized flow is O(1) at
    the start (their gradient is O(eps^2)), the escape of stage 1 takes
    ``t_bar = O(1)`` ([CL25]; the data factor ``|S| / (n s)`` of the rescaled time
    of the theory is left to :mod:`flowsim.theory`).  At unit scales T = 1.

    ``max_neuron_norm`` (and the ``escape`` event) is the largest column norm of
    ``W1``, the incoming weights of one hidden neuron; ``neuron_layer = "W1"``.
    The gradient is computed in one pass per sample through the last query row
    (:mod:`flowsim.models._attention_kernels`).  Kinks of a piecewise-linear
    activation are integrated as they are; ``rodas`` and ``bdf`` are not
    available (no analytic Jacobian).
    """

    kind = "attention"
    neuron_layer = "W1"
    _template = _attention_kernels
    _shared = (_attention_products,)
    _stand_ins = (_smooth_switching, _no_factor)  # no kink treatment, no Jacobian factor

    def __init__(self, d: int, *, hidden: int | None = None,
                 activation: str | sp.Expr | Activation | None = "tanh",
                 loss: str = "exponential", embedding: ArrayLike | None = None,
                 unembedding: ArrayLike | None = None) -> None:  # fmt: skip
        d = check_positive_int("d", d)
        super().__init__("linear" if activation is None else activation, d,
                         bias=False, alpha=1.0)  # fmt: skip
        self.d = d
        self.hidden = d if hidden is None else check_positive_int("hidden", hidden)
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.loss_name = loss
        self.embedding = None if embedding is None else self._token_matrix("embedding", embedding)
        if unembedding is not None and loss != "cross_entropy":
            raise ValueError(f"unembedding is used by loss='cross_entropy' only, not {loss!r}")
        if loss == "cross_entropy":
            if unembedding is None and self.embedding is None:
                raise ValueError(
                    "loss='cross_entropy' needs the fixed unembedding: give unembedding=... "
                    "or embedding=... (shape (V, d))"
                )
            U = self.embedding if unembedding is None else unembedding
            self.unembedding = self._token_matrix("unembedding", U)
        else:
            self.unembedding = None
        h, o = self.hidden, (d if loss == "cross_entropy" else 1)
        self.layers = (("WQ", (d, d)), ("WK", (d, d)), ("WV", (d, d)), ("W1", (d, h)),
                       ("W2", (h, o)))  # fmt: skip

    def _token_matrix(self, name: str, value) -> np.ndarray:
        matrix = real_array(name, value)
        if matrix.ndim != 2 or matrix.shape[1] != self.d or matrix.shape[0] < 1:
            raise ValueError(f"{name} must have shape (V, {self.d}), V >= 1, got {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return np.ascontiguousarray(matrix)

    def __repr__(self) -> str:
        return (
            f"Attention(d={self.d}, hidden={self.hidden}, activation="
            f"{self.activation.name!r}, loss={self.loss_name!r})"
        )

    @property
    def vocabulary(self) -> int | None:
        """V, the number of tokens of the embedding or unembedding (None without)."""
        matrix = self.unembedding if self.unembedding is not None else self.embedding
        return None if matrix is None else matrix.shape[0]

    def dims(self) -> np.ndarray:
        """``[d, h, o, loss, V, activation address]`` (see the kernel template)."""
        o = self.layers[-1][1][1]
        V = self.unembedding.shape[0] if self.unembedding is not None else 0
        loss = LOSSES[self.loss_name]
        address = self.activation.address
        return np.array([self.d, self.hidden, o, loss, V, address], dtype=np.int64)

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        """``c = [c_z, c_u, c_f, T/beta_Q^2, T/beta_K^2, T/beta_V^2, T/beta_1^2, T/beta_2^2,
        U (V, d) row-major]`` and ``T = (beta_V beta_1 beta_2)^(-1/3)`` (see the class)."""
        bQ, bK, bV, b1, b2 = (float(scales[name]) for name in self.layer_names)
        T = (bV * b1 * b2) ** (-1.0 / 3.0)
        c = [bQ * bK / math.sqrt(self.d), bV * b1, b2] + [T / b**2 for b in (bQ, bK, bV, b1, b2)]
        tail = self.unembedding.ravel() if self.unembedding is not None else np.empty(0)
        return np.concatenate([np.array(c, dtype=np.float64), tail]), T

    def init(self, seed: int, *, scale: float | Mapping[str, float]) -> np.ndarray:
        """Random initial parameters, every entry N(0, scale^2) i.i.d. ([CL25]).

        Parameters
        ----------
        seed : int
        scale : float or dict
            One standard deviation for every layer, or one per layer
            (``{"WQ": ..., "WK": ..., "WV": ..., "W1": ..., "W2": ...}``).
        """
        stds = layer_stds(self.layer_names, scale)
        return self.pack(**draw_init(seed, self.layers, stds))

    # -- data -------------------------------------------------------------------
    def tokens(self, X: ArrayLike) -> np.ndarray:
        """Sequences as token vectors, shape (n, s, d): ``X`` itself (n, s, d), or
        the embedding's rows ``E[X]`` for token ids ``X`` (n, s)."""
        X = np.asarray(X)
        if X.ndim == 2:
            if self.embedding is None:
                raise ValueError(
                    f"X of shape {X.shape} is token ids (n, s): they need embedding=...; "
                    f"or give token vectors (n, s, {self.d})"
                )
            V = self.embedding.shape[0]
            ids = real_array("X", X)
            if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
                raise ValueError("X: token ids must be integers")
            if ids.size and (ids.min() < 0 or ids.max() >= V):
                raise ValueError(f"X: token ids must lie in [0, {V - 1}], got "
                                 f"[{ids.min():g}, {ids.max():g}]")  # fmt: skip
            return self.embedding[ids.astype(np.int64)]
        X = real_array("X", X)
        if X.ndim != 3 or X.shape[2] != self.d or X.shape[1] < 1:
            raise ValueError(
                f"X must be token vectors (n, s, {self.d}) or token ids (n, s), got {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        return X

    def _flat_tokens(self, X: ArrayLike) -> np.ndarray:
        X = self.tokens(X)
        if X.shape[0] == 0:
            raise ValueError("the data set is empty (n = 0)")
        return np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float64)

    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Kernel-ready data: ``(Xk, y)``, ``Xk`` (n, s d) the token vectors of each
        sequence one after the other, ``y`` float64 (n,): +-1 (exponential), real
        (squared), token ids in [0, V) (cross-entropy)."""
        Xk = self._flat_tokens(X)
        y = real_array("y", y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (Xk.shape[0],):
            raise ValueError(f"y must have shape ({Xk.shape[0]},) to match X, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinite values")
        if self.loss_name == "exponential" and not np.all(np.abs(y) == 1.0):
            raise ValueError("y: loss='exponential' takes labels -1 and +1")
        if self.loss_name == "cross_entropy":
            V = self.unembedding.shape[0]
            if np.any(y != np.round(y)) or y.min() < 0 or y.max() >= V:
                raise ValueError(f"y: loss='cross_entropy' takes token ids in [0, {V - 1}]")
        return Xk, np.ascontiguousarray(y)

    # -- evaluation in original units ----------------------------------------------
    def output(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """``f(X_i)`` at the last token, shape (n,); for cross-entropy the logits
        ``f(X_i) U^T``, shape (n, V)."""
        theta = self.check_theta(theta)
        Xk = self._flat_tokens(X)
        c, _ = self.flow_constants(self.unit_scales())
        dims = self.dims()
        width = int(dims[4]) if self.loss_name == "cross_entropy" else 1
        out = np.empty(Xk.shape[0] * width)
        self.kernels_for(Xk.shape[0]).predict(theta, Xk, c, dims, out)
        return out.reshape(-1, width) if self.loss_name == "cross_entropy" else out
