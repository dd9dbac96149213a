"""A model given by the user: a Numba-compiled loss and gradient.

The integrator core takes any model that provides the callbacks of
:mod:`flowsim._abi`.  :class:`UserModel` builds them around one function of
the user's, so that a parameter vector of the user's own design gets
:func:`flowsim.simulate` with every explicit and discrete method, events,
saving, resuming and the result store.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numpy.typing import ArrayLike

from flowsim import _abi
from flowsim.models._base import Model, check_positive_int, real_array


class UserModel(Model):
    """A parameter vector ``theta`` and a loss ``R(theta; X, y)`` of the user's.

    Parameters
    ----------
    loss_and_gradient : numba dispatcher
        ``loss_and_gradient(theta, X, y, grad) -> float``: an ``@numba.njit``
        function that returns ``R`` at ``theta`` (float64, shape (P,)) on the
        data ``X`` (float64, shape (n, d)) and ``y`` (float64, shape (n,)) and
        writes ``grad R`` into ``grad`` (shape (P,)).
    n_params : int
        ``P``.
    input_dim : int
        ``d``, the number of columns of ``X``.
    layers : sequence of (name, shape), optional
        The layout of ``theta`` for :meth:`unpack`, the per-layer norms the
        trajectory records, and per-layer ``scales``; default one layer
        ``("theta", (P,))``.  The first layer is the one the ``"norm"`` event
        (:func:`flowsim.escape`) watches, through its Euclidean norm.
    name : str, optional
        Shown in ``repr`` and stored with results.

    Notes
    -----
    The flow is integrated in the variables ``theta_bar = theta / S`` with the
    per-layer ``scales`` of :func:`flowsim.simulate` (default 1: no
    normalization, unlike the built-in families) and time unchanged:
    ``d theta_bar / dt = -(1/S) grad R(S theta_bar)``.  The stiff methods
    ``rodas`` and ``bdf`` need an analytic Jacobian factor and are refused;
    ``rkc`` and ``auto`` (dopri5 with RKC where the flow is stiff) work.
    Callbacks are compiled once per process (about a second), not cached on
    disk: the user's function lives in the user's own module.
    """

    kind = "user"
    activation = None
    has_kinks = False
    width = 0

    def __init__(self, loss_and_gradient, n_params: int, input_dim: int, *,
                 layers=None, name: str | None = None) -> None:  # fmt: skip
        if not isinstance(loss_and_gradient, numba.core.registry.CPUDispatcher):
            raise TypeError(
                "loss_and_gradient must be a @numba.njit function "
                f"(theta, X, y, grad) -> loss, got {type(loss_and_gradient).__name__}"
            )
        self.function = loss_and_gradient
        self.name = name or getattr(loss_and_gradient, "__name__", "user")
        P = check_positive_int("n_params", n_params)
        self.input_dim = check_positive_int("input_dim", input_dim)
        layers = (("theta", (P,)),) if layers is None else tuple(layers)
        checked = []
        for entry in layers:
            try:
                layer_name, shape = entry
                shape = tuple(check_positive_int(f"layer {layer_name!r} shape", int(s))
                              for s in np.atleast_1d(shape))  # fmt: skip
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layers: each entry must be (name, shape): {exc}") from None
            checked.append((str(layer_name), shape))
        self.layers = tuple(checked)
        if self.n_params != P:
            raise ValueError(f"layers hold {self.n_params} parameters, n_params is {P}")
        self.neuron_layer = self.layers[0][0]

    def __repr__(self) -> str:
        return (
            f"UserModel({self.name!r}, n_params={self.n_params}, input_dim={self.input_dim}, "
            f"layers={self.layers!r})"
        )

    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        X = real_array("X", X)
        y = real_array("y", y)
        if X.ndim == 1 and self.input_dim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"X must have shape (n, {self.input_dim}), got {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("X and y must be finite")
        return np.ascontiguousarray(X), np.ascontiguousarray(y)

    def dims(self) -> np.ndarray:
        """``[number of layers, layer offsets..., P]``."""
        offsets = [sl.start for sl in self.layer_slices().values()]
        return np.array([len(self.layers), *offsets, self.n_params], dtype=np.int64)

    def default_scales(self, theta0: ArrayLike) -> dict[str, float]:
        """No normalization by default (scale 1 per layer)."""
        self.check_theta(theta0)
        return self.unit_scales()

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        """``c = S`` (the per-parameter scale) and time scale 1."""
        return self.scale_vector(scales), 1.0

    def output(self, theta, X):
        raise NotImplementedError("a UserModel has a loss, not an output")

    def loss(self, theta: ArrayLike, X: ArrayLike, y: ArrayLike) -> float:
        theta = self.check_theta(theta)
        X, y = self.prepare_data(X, y)
        return float(self.function(theta, X, y, np.empty_like(theta)))

    def gradient(self, theta: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        theta = self.check_theta(theta)
        X, y = self.prepare_data(X, y)
        grad = np.empty_like(theta)
        self.function(theta, X, y, grad)
        return grad

    def core_dims(self, n_samples: int, *, switching: bool = False,
                  newton: bool = False) -> np.ndarray:  # fmt: skip
        table = np.array(_callbacks(self.function), dtype=np.int64)
        return np.concatenate([self.dims(), table])


@functools.lru_cache(maxsize=64)
def _callbacks(fn) -> list[int]:
    """The :mod:`flowsim._abi` callbacks around ``fn`` (compiled on first use)."""

    @numba.njit
    def flow(theta_bar, X, y, c, dims, mode, aux, out):
        theta = c[: theta_bar.size] * theta_bar  # c: the scales, then the run block
        value = fn(theta, X, y, out)
        for p in range(out.size):
            out[p] = -out[p] / c[p]
        return value

    @numba.njit
    def loss(theta_bar, X, y, c, dims):
        theta = c[: theta_bar.size] * theta_bar
        return fn(theta, X, y, np.empty_like(theta))

    @numba.njit
    def layer_norms(theta, dims, out):
        n_layers = dims[0]
        for q in range(n_layers):
            s = 0.0
            for p in range(dims[1 + q], dims[2 + q]):
                s += theta[p] * theta[p]
            out[q] = np.sqrt(s)

    @numba.njit
    def max_neuron_norm(theta, dims):
        s = 0.0
        for p in range(dims[1], dims[2]):
            s += theta[p] * theta[p]
        return np.sqrt(s)

    # the wrappers of flowsim._abi (fixed text of flowsim's own, no user input) around these
    # four; the kink and Jacobian-factor slots take the shared inert stand-ins
    own = {"flow": flow, "loss": loss, "layer_norms": layer_norms,
           "max_neuron_norm": max_neuron_norm}  # fmt: skip
    namespace = {"carray": numba.carray, **own}
    exec("\n\n".join(_abi.wrapper_source(name) for name in own), namespace)  # noqa: S102
    stubs = _abi.stub_table()
    return [
        numba.cfunc(_abi.c_signature(name), nogil=True)(namespace[f"_c_{name}"]).address
        if name in own
        else stubs[q]
        for q, (name, _, _) in enumerate(_abi.INTERFACE)
    ]
