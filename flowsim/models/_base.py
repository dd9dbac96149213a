"""What every model shares: parameter layout, input checks, compiled kernels."""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp
from numpy.typing import ArrayLike

from flowsim import _abi, _codegen, _dense, _rng
from flowsim._jit import PARALLEL_MIN_WORK, PARALLEL_MIN_WORK_FROZEN
from flowsim.activations import Activation, activation


def real_array(name: str, value) -> np.ndarray:
    """``value`` as a float64 array; a TypeError for complex input, which a float64 cast
    would cut to its real part silently."""
    if np.iscomplexobj(value):
        raise TypeError(f"{name} must be real, got a complex array; pass its .real if meant")
    return np.asarray(value, dtype=np.float64)


def check_data(X, y, input_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float64 copies of ``X`` (n, d) and ``y`` (n,), or a ValueError
    (a TypeError for complex arrays)."""
    X = real_array("X", X)
    y = real_array("y", y)
    if X.ndim == 1 and input_dim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != input_dim:
        raise ValueError(f"X must have shape (n, {input_dim}), got {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("the data set is empty (n = 0)")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values")
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def kink_slopes(act: Activation) -> tuple[float, float] | None:
    """``(sigma'(-1), sigma'(1))`` of a piecewise-linear activation with a kink at 0
    (positively homogeneous of degree 1, two slopes), else None."""
    if act.homogeneous != 1:
        return None
    lo, hi = float(act.derivative(-1.0)), float(act.derivative(1.0))
    return (lo, hi) if lo != hi else None


def check_smoothing(value, act: Activation) -> float:
    """A kink smoothing width (:class:`flowsim.ThreeLayer`): a float in [0, 1), and 0
    unless the activation has a kink."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"smoothing must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {value!r}")
    if value and kink_slopes(act) is None:
        raise ValueError(
            f"smoothing applies to a piecewise-linear activation with a kink (relu, leaky "
            f"relu); {act.name!r} has none: use smoothing = 0"
        )
    return value


def no_switching() -> tuple[np.ndarray, np.ndarray]:
    """Empty ``mode``/``aux`` arrays: evaluate the activation itself, no kink treatment."""
    return np.zeros((0, 0), dtype=np.int8), np.zeros((0, 0))


class Model:
    """Base class: a network with a flat float64 parameter vector.

    Subclasses set ``self.layers`` (ordered ``(name, shape)`` pairs: the layout
    of ``theta``), ``_template`` (the kernel template module) and implement
    :meth:`flow_constants`.
    """

    layers: tuple[tuple[str, tuple[int, ...]], ...]
    _template = None

    def __init__(self, activation_spec: str | sp.Expr | Activation, input_dim: int, *,
                 bias: bool, alpha: float) -> None:  # fmt: skip
        self.activation: Activation = activation(activation_spec)
        self.input_dim = check_positive_int("input_dim", input_dim)
        if not isinstance(bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        self.bias = bool(bias)
        self.alpha = check_positive_float("alpha", alpha)
        self.D = self.input_dim + (1 if self.bias else 0)

    def __getstate__(self) -> dict:
        """Pickled without the compiled modules, which belong to this process (they are
        rebuilt, or loaded from the cache, on first use)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("kernels", "_serial_kernels")}

    # -- layout ---------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.layers)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.layers)

    def layer_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, shape in self.layers:
            size = int(np.prod(shape))
            out[name] = slice(start, start + size)
            start += size
        return out

    def check_theta(self, theta: ArrayLike) -> np.ndarray:
        theta = np.ascontiguousarray(real_array("theta", theta))
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {theta.shape}")
        return theta

    def unpack(self, theta: ArrayLike) -> dict[str, np.ndarray]:
        """Named views into ``theta`` (no copies)."""
        theta = np.asarray(theta)
        if theta.shape[-1:] != (self.n_params,):
            raise ValueError(f"theta must have last axis {self.n_params}, got {theta.shape}")
        lead = theta.shape[:-1]
        return {
            name: theta[..., sl].reshape(lead + shape)
            for (name, shape), sl in zip(self.layers, self.layer_slices().values(), strict=True)
        }

    def pack(self, **arrays: ArrayLike) -> np.ndarray:
        """Inverse of :meth:`unpack`: one flat vector from named arrays."""
        missing = set(self.layer_names) - set(arrays)
        if missing:
            raise ValueError(f"missing layers: {sorted(missing)}")
        parts = []
        for name, shape in self.layers:
            array = real_array(name, arrays[name])
            if array.shape != shape:
                raise ValueError(f"layer {name!r} must have shape {shape}, got {array.shape}")
            parts.append(array.ravel())
        return np.concatenate(parts)

    def augment(self, X: ArrayLike) -> np.ndarray:
        """Inputs with the bias coordinate appended: ``x~ = (x, 1)``, shape (n, D)."""
        X = real_array("X", X)
        if X.ndim == 1 and self.input_dim == 1:
            X = X[:, None]
        if self.bias:
            return np.hstack([X, np.ones((X.shape[0], 1))])
        return X

    @property
    def has_kinks(self) -> bool:
        """Piecewise-linear activation whose kinks the integrator can treat (two layers)."""
        return False

    stiff_from_start = False
    """The flow is stiff as soon as it starts, so ``auto`` skips its dopri5 phase."""

    def jacobian_factor(self, n_samples: int) -> tuple[str, int] | str:
        """The family's analytic Jacobian factor (``newton_*`` kernels, RODAS and BDF):
        ``(kind, words)``, ``kind`` "exact" or "approximate" (enough for BDF's Newton
        iteration, not for RODAS) and ``words`` the float64 words a run's factor holds;
        or the reason why the family has none."""
        return (
            "its analytic Jacobian factor is implemented for two-layer nets, and approximate "
            "for three-layer nets with smoothed kinks, only"
        )

    # -- kernels --------------------------------------------------------------
    @functools.cached_property
    def kernels(self):
        """Generated module: the model's kernels and their callbacks for the integrator
        core (:mod:`flowsim._abi`).  The same module serves every activation (the
        activation is a callback whose address is in ``dims``), so it is compiled once
        per machine."""
        return _codegen.build_module(self.kind, self._kernel_parts())

    def _kernel_parts(self) -> list[str]:
        body = _codegen.template_body
        return [
            body(_dense),
            body(_rng),
            self._model_source(),
            _abi.table_source(),
        ]

    @functools.cached_property
    def _serial_kernels(self):
        """As :attr:`kernels` with the parallel kernels compiled serial (small runs)."""
        return _codegen.build_module(self.kind, self._kernel_parts(), parallel=False)

    def kernels_for(self, n_samples: int):
        """The kernels for a run on ``n_samples`` samples: below
        :data:`flowsim._jit.PARALLEL_MIN_WORK` multiply-adds per pass the kernels
        run their serial twins anyway, so the parallel ones are not compiled (a family
        with a kink treatment: below :data:`flowsim._jit.PARALLEL_MIN_WORK_FROZEN`)."""
        threshold = PARALLEL_MIN_WORK_FROZEN if self.has_kinks else PARALLEL_MIN_WORK
        if n_samples * self.n_params < threshold:
            return self._serial_kernels
        return self.kernels

    def core_dims(self, n_samples: int, *, switching: bool = False,
                  newton: bool = False) -> np.ndarray:  # fmt: skip
        """``dims`` for the integrator core: this model's dims followed by the
        addresses of its callbacks (:mod:`flowsim._abi`), compiled on first use
        (one process compiles, concurrent ones wait and load its cache).

        ``switching``, ``newton``: the run treats kinks / may use RODAS or BDF, so
        those callbacks are compiled too (otherwise inert stand-ins take their place).
        """
        kernels = self.kernels_for(n_samples)
        needs = {"switching": switching, "newton": newton}
        if _abi.compiled(kernels, **needs):  # the usual case: no lock file, no cache look-up
            table = _abi.compile_table(kernels, **needs)
        else:
            with _codegen.compile_lock(kernels, f"the {self.kind} kernels (once per machine)"):
                table = _abi.compile_table(kernels, **needs)
        return np.concatenate([self.dims(), np.array(table, dtype=np.int64)])

    _stand_ins: tuple = ()
    """Templates appended to the model's kernels: the stand-ins of the interface
    functions the family does not implement (:mod:`flowsim.models._smooth_switching`,
    :mod:`flowsim.models._no_factor`)."""

    _shared: tuple = ()
    """Templates of kernels the family shares with others, placed before its own
    (:mod:`flowsim.models._attention_products` for the attention families)."""

    def _model_source(self) -> str:
        """The shared templates, the model's template and its stand-ins (subclasses may
        specialize)."""
        parts = [*self._shared, self._template, *self._stand_ins]
        return "\n\n".join(_codegen.template_body(t) for t in parts)

    def dims(self) -> np.ndarray:
        raise NotImplementedError

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        """Kernel constants and time scale ``T`` for per-layer ``scales``."""
        raise NotImplementedError

    def unit_scales(self) -> dict[str, float]:
        return dict.fromkeys(self.layer_names, 1.0)

    def scale_vector(self, scales: dict[str, float]) -> np.ndarray:
        """Per-parameter scale ``S`` with ``theta = S * theta_bar``."""
        out = np.empty(self.n_params)
        for name, sl in self.layer_slices().items():
            out[sl] = scales[name]
        return out

    def default_scales(self, theta0: ArrayLike) -> dict[str, float]:
        """Per-layer RMS of ``theta0``: the normalization that makes it O(1).

        A layer that is identically zero gets scale 1.
        """
        theta0 = self.check_theta(theta0)
        out = {}
        for name, sl in self.layer_slices().items():
            rms = float(np.sqrt(np.mean(theta0[sl] ** 2))) if sl.stop > sl.start else 0.0
            out[name] = rms if rms > 0 and np.isfinite(rms) else 1.0
        return out

    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Checked, kernel-ready data: ``(Xk, y)`` with ``Xk`` a C-contiguous float64
        matrix, one row per sample (here ``x~ = (x, 1)``), and ``y`` float64 (n,).

        The one place a model family states the data it takes; a ValueError
        (TypeError for complex input) names what is wrong.
        """
        X, y = check_data(X, y, self.input_dim)
        return np.ascontiguousarray(self.augment(X)), y

    # -- evaluation in original units ------------------------------------------
    def _prepare(self, theta, X, y=None):
        theta = self.check_theta(theta)
        if y is None:
            y = np.zeros(np.shape(X)[0] if np.ndim(X) else 0)
        Xk, y = self.prepare_data(X, y)
        c, _ = self.flow_constants(self.unit_scales())
        return theta, Xk, y, c

    def output(self, theta: ArrayLike, X: ArrayLike) -> np.ndarray:
        """Network output ``f(x_i)``, shape (n,)."""
        theta, Xa, _, c = self._prepare(theta, X)
        out = np.empty(Xa.shape[0])
        self.kernels_for(Xa.shape[0]).predict(theta, Xa, c, self.dims(), out)
        return out

    def loss(self, theta: ArrayLike, X: ArrayLike, y: ArrayLike) -> float:
        """``R(theta) = 1/(2n) sum_i (f(x_i) - y_i)^2``."""
        theta, Xa, y, c = self._prepare(theta, X, y)
        return float(self.kernels_for(Xa.shape[0]).loss(theta, Xa, y, c, self.dims()))

    def gradient(self, theta: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """``grad R(theta)``, same shape as theta."""
        theta, Xa, y, c = self._prepare(theta, X, y)
        out = np.empty_like(theta)
        mode, aux = no_switching()
        self.kernels_for(Xa.shape[0]).flow(theta, Xa, y, c, self.dims(), mode, aux, out)
        return -out

    def hessian(self, theta: ArrayLike, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Exact Hessian of ``R`` in the original variables, shape (P, P) (docs/theory.md §16).

        Analytic and compiled (:mod:`flowsim.models._hessian_kernels`, one module for every
        activation, apart from the flow kernels).  For a piecewise-linear activation it is
        the Hessian away from the kinks (``sigma'' = 0``).
        """
        from flowsim.models import _hessian_kernels

        if getattr(self, "smoothing", 0.0):
            raise NotImplementedError("no Hessian kernel for a net with smoothed kinks")
        kernel = getattr(_hessian_kernels, f"hessian_{self.kind}", None)
        if kernel is None:
            raise NotImplementedError(f"no Hessian kernel for {type(self).__name__}")
        theta, Xa, y, _ = self._prepare(theta, X, y)
        parts = [_codegen.template_body(_hessian_kernels)]
        module = _codegen.build_module("hessian", parts, parallel=False)
        out = np.empty((theta.size, theta.size))
        getattr(module, kernel.__name__)(theta, Xa, y, 1.0 / self.alpha, self.dims(), out)
        return out
