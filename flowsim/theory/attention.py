"""Small-initialization theory of one attention layer: condensation, then rank collapse.

The model (docs/theory.md, attention section; [CL25]) is
``f(X) = sigma(softmax(X WQ WK^T X^T / sqrt(d)) X WV W1) W2`` read at the last
token, on sequences ``X`` of shape (s, d), with the exponential loss
``L = (1/n) sum_i exp(-y_i f(X_i))`` and labels +-1.  Everything here works on
plain arrays: ``X`` (n, s, d), ``y`` (n,), ``WQ, WK, WV`` (d, d), ``W1`` (d, h),
``W2`` (h,) or (h, 1).

Stage 1 (:func:`stage1`; ``derivations/attention.py`` derives each line): for
weights of size eps, ``L = 1 - c_1 (|S|/(n s)) E + O(eps^5)`` with
``S = sum_i y_i sum_j X_ij``, ``v = sign(c_1) S/|S|``, ``c_1 = sigma'(0)`` and the
cubic energy ``E = v WV W1 W2``, so the flow is, to leading order, gradient
ascent of ``E`` in the rescaled time ``tbar = (|c_1| |S|/(n s)) t``
(``eps |c_1| |S|/(n s) t`` for the normalized weights ``W/eps``).  That flow is
the three-layer leading-order flow of [CL24] on the single input ``v``
(``a = W2``, ``W = W1^T``, ``V = WV^T``), so it is integrated compiled by
:func:`flowsim.simulate` (:meth:`Stage1.simulate`).

Stage 2 (:func:`stage2`): with the outer weights frozen and ``WQ, WK`` small,
``dWQ/dt = F WK`` and ``dWK/dt = F^T WQ``; ``WQ/|WQ|``, ``WK/|WK|`` and
``WQ WK^T`` tend to rank one along the top singular pair of ``F``, and
sigma_2/sigma_1 of ``WQ`` decays at the rate ``s_1 - s_2``.

References
----------
.. [CL25] Chen, Luo. From condensation to rank collapse: a two-stage analysis of
   transformer training dynamics. NeurIPS 2025. arXiv:2510.06954.
.. [CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
   condensation. 2024. arXiv:2402.15958.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flowsim.activations import Activation
from flowsim.activations import activation as make_activation
from flowsim.models._base import real_array

GROWTH = 1e6
"""Blow-up: a column of WV reaches ``GROWTH`` times the start's largest block norm."""

SIMPLE_GAP = 1e-9
"""``s_1`` counts as simple when ``s_1 - s_2 > SIMPLE_GAP * s_1``."""


# --- input checks --------------------------------------------------------------------------


def _sequences(X, y) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (n, s, d) and ``y`` (n,) as finite float64 arrays, or a ValueError naming the field."""
    X = real_array("X", X)
    y = real_array("y", y)
    if X.ndim != 3 or 0 in X.shape:
        raise ValueError(f"X must have shape (n, s, d) with n, s, d >= 1, got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    for name, arr in (("X", X), ("y", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return X, y


def _outer(WV, W1, W2, d: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``WV`` (..., d, d), ``W1`` (..., d, h), ``W2`` (..., h) with matching leading axes.

    ``W2`` may also be given as a column (..., h, 1).
    """
    WV, W1, W2 = (real_array(name, a) for name, a in (("WV", WV), ("W1", W1), ("W2", W2)))
    if WV.ndim < 2 or WV.shape[-1] != WV.shape[-2]:
        raise ValueError(f"WV must have shape (..., d, d), got {WV.shape}")
    if d is not None and WV.shape[-1] != d:
        raise ValueError(f"WV must have shape (..., {d}, {d}) to match the data, got {WV.shape}")
    d = WV.shape[-1]
    if W1.ndim != WV.ndim or W1.shape[-2] != d:
        raise ValueError(f"W1 must have shape {WV.shape[:-2] + (d, 'h')}, got {W1.shape}")
    if W2.ndim == W1.ndim and W2.shape[-1] == 1:
        W2 = W2[..., 0]
    if W2.shape != W1.shape[:-2] + W1.shape[-1:]:
        raise ValueError(
            f"W2 must have shape {W1.shape[:-2] + W1.shape[-1:]} (or with a trailing 1), "
            f"got {W2.shape}"
        )
    for name, arr in (("WV", WV), ("W1", W1), ("W2", W2)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return WV, W1, W2


# --- stage 1 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage1Blowup:
    """Blow-up of the stage-1 leading-order flow from one start (rescaled time ``tbar``).

    Attributes
    ----------
    E0 : float
        The cubic energy at the start.
    bound : float
        ``E0^(-1/3)``, an upper bound on ``T_star`` when ``E0 > 0`` (inf otherwise).
    T_star : float
        Blow-up time, ``t_b + E(t_b)^(-1/3)`` with ``t_b`` the time the largest
        column of WV reached ``GROWTH`` times the start's size (inf if it did not).
    T_star_error : float
        ``E(t_b)^(-1/3)``: ``T_star - T_star_error <= T* <= T_star`` holds rigorously.
    t_star : float
        ``T_star`` in the attention net's own time, ``T_star / time_factor`` (when the
        weights given were the net's weights, not normalized ones).
    status : str
        ``"blow-up"`` or the integrator's status when no blow-up was found by ``t_end``.
    """

    E0: float
    bound: float
    T_star: float
    T_star_error: float
    t_star: float
    status: str


@dataclass(frozen=True, repr=False)
class Stage1:
    """Stage-1 (condensation) predictions for one data set; see :func:`stage1`.

    Attributes
    ----------
    S : ndarray, shape (d,)
        ``sum_i y_i sum_j X_ij``.
    v : ndarray, shape (d,)
        ``sign(c_1) S / |S|``: the direction the columns of WV condense on.
    c1 : float
        ``sigma'(0)``.
    time_factor : float
        ``|c_1| |S| / (n s)``: ``tbar = time_factor * t`` for the net's weights,
        ``tbar = eps * time_factor * t`` for the normalized weights ``W / eps``.
    n, s, d : int
        Sequences, tokens per sequence, token dimension.
    """

    S: np.ndarray
    v: np.ndarray
    c1: float
    time_factor: float
    n: int
    s: int
    d: int

    def __repr__(self) -> str:
        return (
            f"Stage1(n={self.n}, s={self.s}, d={self.d}, |S|={np.linalg.norm(self.S):.6g}, "
            f"c1={self.c1:.6g}, time_factor={self.time_factor:.6g})"
        )

    def energy(self, WV, W1, W2):
        """The cubic energy ``E = v WV W1 W2``.

        Parameters
        ----------
        WV : array_like, shape (..., d, d)
        W1 : array_like, shape (..., d, h)
        W2 : array_like, shape (..., h) or (..., h, 1)
            Leading axes (e.g. time) are kept.

        Returns
        -------
        float or ndarray of shape (...)
        """
        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        E = np.einsum("a,...ab,...bc,...c->...", self.v, WV, W1, W2)
        return float(E) if E.ndim == 0 else E

    def rhs(self, WV, W1, W2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``d(WV, W1, W2)/dtbar = grad E = (v^T (W1 W2)^T, (v WV)^T W2^T, (v WV W1)^T)``.

        Shapes as the arguments (``dW2`` of shape (..., h)).
        """
        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        wv = np.einsum("a,...ab->...b", self.v, WV)
        u = np.einsum("...bc,...c->...b", W1, W2)
        dWV = self.v[:, None] * u[..., None, :]
        dW1 = wv[..., :, None] * W2[..., None, :]
        dW2 = np.einsum("...b,...bc->...c", wv, W1)
        return dWV, dW1, dW2

    def invariants(self, WV, W1, W2) -> dict[str, np.ndarray]:
        """Conserved quantities of the stage-1 leading-order flow.

        Returns
        -------
        dict
            ``"rows"`` (..., d): ``wv_k^2 - |row k of W1|^2`` with ``wv = v WV``;
            ``"columns"`` (..., h): ``W2_c^2 - |column c of W1|^2``;
            ``"orthogonal"`` (..., d, d): ``(I - v v^T) WV``, the part of WV the flow
            never moves (so ``WV(t) - WV(0) = v wv(t)-change``: rank one along v).
        """
        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        wv = np.einsum("a,...ab->...b", self.v, WV)
        return {
            "rows": wv**2 - np.sum(W1**2, axis=-1),
            "columns": W2**2 - np.sum(W1**2, axis=-2),
            "orthogonal": WV - self.v[:, None] * wv[..., None, :],
        }

    def assumption1(self, WV, W1, W2) -> tuple:
        """Fractions ``|A1|/d`` and ``|A2|/(d h)`` of the condensation condition.

        ``A1 = {k : wv_k (W1 W2)_k > 0}``: the coordinates of ``wv = v WV`` moving
        away from 0 (``d wv_k^2/dtbar = 2 wv_k (W1 W2)_k``).
        ``A2 = {(k, c) : wv_k W1_kc W2_c > 0}``: the entries of W1 moving away from 0
        (``d W1_kc^2/dtbar = 2 W1_kc wv_k W2_c``), i.e. those whose sign agrees with
        the rank-one limit ``wv^T W2^T``.  Both fractions tend to 1 as the outer
        weights condense.  (Our reading of Assumption 1 of [CL25]; h = d gives the
        paper's ``|A2|/d^2``.)

        Returns
        -------
        (frac_A1, frac_A2) : floats, or ndarrays of shape (...)
        """
        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        wv = np.einsum("a,...ab->...b", self.v, WV)
        u = np.einsum("...bc,...c->...b", W1, W2)
        a1 = np.mean(wv * u > 0, axis=-1)
        a2 = np.mean(wv[..., :, None] * W1 * W2[..., None, :] > 0, axis=(-2, -1))
        if a1.ndim == 0:
            return float(a1), float(a2)
        return a1, a2

    def leading_order_net(self, hidden: int):
        """The compiled leading-order system: a three-layer leading-order model
        (widths (d, h), no bias, identity activation) whose flow on the single
        input ``v`` with label 1 is ``grad E`` (see :meth:`pack`)."""
        from flowsim.theory.leading_order import LeadingOrderThreeLayer

        return LeadingOrderThreeLayer("x", (self.d, int(hidden)), self.d, bias=False)

    def pack(self, WV, W1, W2) -> np.ndarray:
        """Flat parameters of :meth:`leading_order_net`: ``a = W2``, ``W = W1^T``, ``V = WV^T``."""
        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        if WV.ndim != 2:
            raise ValueError(f"pack takes one state, got WV of shape {WV.shape}")
        net = self.leading_order_net(W1.shape[1])
        return net.pack(a=W2, W=W1.T, V=WV.T)

    def unpack(self, theta, hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(WV, W1, W2)`` from flat parameters (P,) or a series of them (T, P)."""
        theta = real_array("theta", theta)
        net = self.leading_order_net(hidden)
        if theta.shape[-1] != net.n_params:
            raise ValueError(f"theta must have {net.n_params} entries last, got {theta.shape}")
        rows = theta.reshape(-1, net.n_params)
        parts = [net.unpack(row) for row in rows]
        WV = np.stack([np.swapaxes(p["V"], -1, -2) for p in parts])
        W1 = np.stack([np.swapaxes(p["W"], -1, -2) for p in parts])
        W2 = np.stack([p["a"] for p in parts])
        lead = theta.shape[:-1]
        return (WV.reshape(lead + WV.shape[1:]), W1.reshape(lead + W1.shape[1:]),
                W2.reshape(lead + W2.shape[1:]))  # fmt: skip

    def simulate(self, WV, W1, W2, **options):
        """Integrate the leading-order flow with :func:`flowsim.simulate` from (WV, W1, W2).

        Time is the rescaled ``tbar``; the states are :meth:`pack` ed (use
        :meth:`unpack` on ``Trajectory.theta``).  ``options`` go to ``simulate``
        (``t_end`` is required).
        """
        from flowsim.integrate.simulate import simulate

        theta0 = self.pack(WV, W1, W2)
        net = self.leading_order_net(np.shape(W1)[-1])
        return simulate(net, theta0, self.v[None, :], np.ones(1), **options)

    def blowup(self, WV, W1, W2, *, t_end: float | None = None, rtol: float = 1e-12,
               growth: float = GROWTH) -> Stage1Blowup:  # fmt: skip
        """Blow-up time ``T*`` of the leading-order flow from (WV, W1, W2), and its bound.

        Integrates (:meth:`simulate`, dop853) until the largest column of WV reaches
        ``growth`` times the largest block norm at the start, at ``t_b``; then
        ``t_b <= T* <= t_b + E(t_b)^(-1/3)`` (the bound applied from ``t_b``), and
        the upper end is reported (``E^(-1/3)`` falls with slope -1 at the end).

        Parameters
        ----------
        WV, W1, W2 : array_like
            One start (shapes as in :meth:`energy`, no leading axes).
        t_end : float, optional
            Give up after this rescaled time; default ``1.01 E0^(-1/3)`` when
            ``E0 > 0``, else ``1000`` over the largest block norm.
        rtol : float
            Relative tolerance of the integration.
        growth : float
            Blow-up threshold (> 1), relative to the start.

        Returns
        -------
        Stage1Blowup
        """
        from flowsim.integrate.simulate import escape

        WV, W1, W2 = _outer(WV, W1, W2, self.d)
        if not (math.isfinite(growth) and growth > 1):
            raise ValueError(f"growth must be a finite number > 1, got {growth!r}")
        size = max(np.linalg.norm(WV), np.linalg.norm(W1), np.linalg.norm(W2))
        if not size > 0:
            raise ValueError("WV, W1, W2 are all zero: the leading-order flow stays at 0")
        E0 = self.energy(WV, W1, W2)
        bound = E0 ** (-1.0 / 3.0) if E0 > 0 else math.inf
        if t_end is None:
            t_end = 1.01 * bound if E0 > 0 else 1000.0 / size
        run = self.simulate(WV, W1, W2, t_end=t_end, method="dop853", rtol=rtol,
                            atol=1e-14 * size, save_state="final", n_save=2, progress=False,
                            events=[escape(norm=growth * size)])  # fmt: skip
        if run.status != "event":
            return Stage1Blowup(E0, bound, math.inf, math.inf, math.inf, run.status)
        t_b = run.event("escape").t
        E_b = self.energy(*self.unpack(run.theta_final, W1.shape[1]))
        error = E_b ** (-1.0 / 3.0)
        T_star = t_b + error
        return Stage1Blowup(E0, bound, T_star, error, T_star / self.time_factor, "blow-up")


def stage1(X, y, *, activation: str | Activation | None = "tanh") -> Stage1:
    """Stage-1 predictions of [CL25] for sequences ``X`` and labels ``y``.

    Parameters
    ----------
    X : array_like, shape (n, s, d)
        Token vectors.
    y : array_like, shape (n,)
        Labels (the theory takes +-1; any real values are accepted).
    activation : str, Activation or None
        The outer activation; None is the identity.  It must be smooth with
        ``sigma(0) = 0`` and ``c_1 = sigma'(0) != 0``.

    Returns
    -------
    Stage1

    Raises
    ------
    ValueError
        Bad shapes, non-finite data, ``S = 0``, or an activation outside the theory.

    References
    ----------
    .. [CL25] Chen, Luo, arXiv:2510.06954 (Eq. 5-7, Proposition 1; the prefactor
       is 1/n, not 1/(2n): derivations/attention.py).
    """
    X, y = _sequences(X, y)
    c1 = _c1(activation)
    n, s, d = X.shape
    S = np.einsum("i,ijd->d", y, X)
    norm = float(np.linalg.norm(S))
    if not norm > 0:
        raise ValueError("S = sum_i y_i sum_j X_ij is zero: stage 1 has no direction v")
    v = math.copysign(1.0, c1) * S / norm
    return Stage1(S, v, c1, abs(c1) * norm / (n * s), n, s, d)


def _c1(spec) -> float:
    """``sigma'(0)`` of an activation that stage 1 covers, or a ValueError saying why not."""
    if spec is None:
        return 1.0
    act = make_activation(spec)
    if act.homogeneous is not None or act.sigma0 != 0.0 or act.multiplicity != 1:
        raise ValueError(
            "activation: stage 1 is derived for smooth activations with sigma(0) = 0 and "
            f"sigma'(0) != 0 (tanh, x, ...); {act.name!r} has sigma(0) = {act.sigma0}, "
            f"multiplicity {act.multiplicity}"
            + (", and a kink at 0" if act.homogeneous is not None else "")
        )
    return float(act.leading_coefficient)


# --- stage 2 -------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Stage2:
    """Stage-2 (key-query) predictions from frozen outer weights; see :func:`stage2`.

    Attributes
    ----------
    F : ndarray, shape (d, d)
        ``dWQ/dt = F WK``, ``dWK/dt = F^T WQ``.
    P, Q : ndarray, shape (d, d)
        ``F = P diag(singular_values) Q^T``; columns ``p_k``, ``q_k``.
    singular_values : ndarray, shape (d,)
        Descending.
    rate : float
        ``s_1 - s_2``: the predicted decay rate of sigma_2/sigma_1 of WQ and WK.
    simple : bool
        ``s_1`` simple (``rate > SIMPLE_GAP * s_1``): the limits are rank one.
    """

    F: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    singular_values: np.ndarray
    rate: float
    simple: bool

    def __repr__(self) -> str:
        s = ", ".join(f"{x:.4g}" for x in self.singular_values[:4])
        more = ", ..." if self.singular_values.size > 4 else ""
        d = self.F.shape[0]
        return f"Stage2(d={d}, s=[{s}{more}], rate={self.rate:.6g}, simple={self.simple})"

    def solve(self, WQ0, WK0, t):
        """The linear stage-2 flow from ``(WQ0, WK0)``: ``(WQ(t), WK(t))``.

        ``WQ(t) = P cosh(S t) P^T WQ0 + P sinh(S t) Q^T WK0``,
        ``WK(t) = Q sinh(S t) P^T WQ0 + Q cosh(S t) Q^T WK0``.

        Parameters
        ----------
        WQ0, WK0 : array_like, shape (d, d)
        t : float or array_like, shape (T,)

        Returns
        -------
        WQ, WK : ndarrays, shape (d, d) or (T, d, d)
        """
        WQ0, WK0 = self._start(WQ0, WK0)
        t_arr = real_array("t", t)
        st = np.multiply.outer(t_arr, self.singular_values)[..., :, None]
        a, b = self.P.T @ WQ0, self.Q.T @ WK0
        WQ = self.P @ (np.cosh(st) * a + np.sinh(st) * b)
        WK = self.Q @ (np.sinh(st) * a + np.cosh(st) * b)
        return WQ, WK

    def limits(self, WQ0, WK0) -> dict[str, np.ndarray]:
        """Rank-one limits (t -> infinity, unit Frobenius norm) from ``(WQ0, WK0)``.

        With ``c = p_1^T WQ0 + q_1^T WK0``: ``WQ/|WQ| -> p_1 c/|c|``,
        ``WK/|WK| -> q_1 c/|c|``, ``WQ WK^T/|WQ WK^T| -> p_1 q_1^T``.

        Returns
        -------
        dict with keys "WQ", "WK", "WQWK" (each (d, d)) and "c" (d,)
        """
        if not self.simple:
            raise ValueError(
                "the top singular value of F is not simple: WQ, WK tend to rank "
                "<= its multiplicity, not to one rank-one limit"
            )
        WQ0, WK0 = self._start(WQ0, WK0)
        p1, q1 = self.P[:, 0], self.Q[:, 0]
        c = p1 @ WQ0 + q1 @ WK0
        norm = np.linalg.norm(c)
        if not norm > 1e-12 * (np.linalg.norm(WQ0) + np.linalg.norm(WK0)):
            raise ValueError("p_1^T WQ0 + q_1^T WK0 = 0: the growing mode is not excited")
        return {
            "WQ": np.outer(p1, c / norm),
            "WK": np.outer(q1, c / norm),
            "WQWK": np.outer(p1, q1),
            "c": c,
        }

    def _start(self, WQ0, WK0) -> tuple[np.ndarray, np.ndarray]:
        d = self.F.shape[0]
        out = []
        for name, W in (("WQ0", WQ0), ("WK0", WK0)):
            W = real_array(name, W)
            if W.shape != (d, d):
                raise ValueError(f"{name} must have shape ({d}, {d}), got {W.shape}")
            out.append(W)
        return out[0], out[1]


def stage2(WV, W1, W2, X, y, *, activation: str | Activation | None = None) -> Stage2:
    """Stage-2 predictions of [CL25]: the matrix F of the linearized WQ, WK flow.

    At zero logits the softmax derivative is ``(1/s)(I - 1 1^T/s)``, so for small
    WQ, WK and frozen outer weights, with ``xbar_i`` the mean token, the centred
    scatter ``C_i = sum_j (X_ij - xbar_i)^T (X_ij - xbar_i)`` (symmetric),
    ``h_i = xbar_i WV W1``, ``u_i = WV W1 (sigma'(h_i) * W2)`` and
    ``L1_i = exp(-y_i sigma(h_i) W2)``::

        F = (1/(n s sqrt(d))) sum_i y_i L1_i X_is^T u_i^T C_i

    (identity activation: ``u_i = u = WV W1 W2``, as in docs/theory.md).

    Parameters
    ----------
    WV : array_like, shape (d, d)
    W1 : array_like, shape (d, h)
    W2 : array_like, shape (h,) or (h, 1)
    X : array_like, shape (n, s, d)
    y : array_like, shape (n,)
    activation : str, Activation or None
        The outer activation; None (default) drops it, as the theory does.

    Returns
    -------
    Stage2

    References
    ----------
    .. [CL25] Chen, Luo, arXiv:2510.06954 (Assumption 2; rank collapse of WQ, WK).
    """
    X, y = _sequences(X, y)
    n, s, d = X.shape
    WV, W1, W2 = _outer(WV, W1, W2, d)
    if WV.ndim != 2:
        raise ValueError(f"WV must be one (d, d) matrix, got shape {WV.shape}")
    xbar = X.mean(axis=1)
    centred = X - xbar[:, None, :]
    h = xbar @ WV @ W1
    if activation is None:
        out, slope = h, np.ones_like(h)
    else:
        act = make_activation(activation)
        out, slope = act(h), act.derivative(h)
    L1 = np.exp(-y * (out @ W2))
    u = (slope * W2) @ W1.T @ WV.T  # (n, d): row i is u_i^T
    uC = np.einsum("ia,ija,ijb->ib", u, centred, centred)  # u_i^T C_i
    F = np.einsum("i,ia,ib->ab", y * L1, X[:, -1, :], uC) / (n * s * math.sqrt(d))
    P, sv, Qt = np.linalg.svd(F)
    rate = float(sv[0] - sv[1]) if d > 1 else float(sv[0])
    simple = bool(rate > SIMPLE_GAP * sv[0])
    return Stage2(F, P, Qt.T, sv, rate, simple)
