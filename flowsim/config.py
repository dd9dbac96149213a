"""Run configurations: one simulation described as data, checked before it runs.

A :class:`RunConfig` holds a model, a data set, an initialization, solver
options and events.  It is built from a TOML file (:meth:`RunConfig.from_toml`)
or a dict (:meth:`RunConfig.from_dict`), written back with
:meth:`RunConfig.to_dict` (which :meth:`~RunConfig.from_dict` reads back to an
equal config), addressed by :meth:`RunConfig.key`, and run by
:func:`run_config` (or ``flowsim run CONFIG.toml``).

Every field is checked on construction; an error names the field by its
dotted path and says what is allowed
(``solver.method: must be one of ['adam', 'dop853', ...], got 'rk45'``;
``model.widht: unknown field; allowed: [...]``).

Schema (TOML; ``*`` marks required fields, brackets give defaults)::

    name = "..."              # [none] file stem of the result (letters, digits, _ and -);
                              #   default for `flowsim run`: the config file's stem

    [model]
    kind = "two_layer"        # * "two_layer" | "three_layer"
    activation = "tanh"       # * registered name (tanh, relu, xtanh, ...) or SymPy expression in x
    width = 100               # * two_layer only: hidden width m
    widths = [20, 20]         # * three_layer only: [m1, m2]
    input_dim = 1             # [from the data] input dimension d (checked against the data)
    bias = true               # [true] append x~ = (x, 1)
    alpha = 1.0               # [1.0] output scale f = (1/alpha) sum_k a_k sigma(...)
    smoothing = 0.0           # [0.0] three_layer only, relu / leaky relu: kink smoothing in
                              #   [0, 1) (0: exact kinks; see flowsim.ThreeLayer)

    [data]
    kind = "sin1d"            # * "sin1d" | "sum_sin" | "gaussian" | "file" (see flowsim.data)
    [data.params]             # [defaults of the kind] e.g. n, low, high, d, seed, target, path
    n = 40

    [init]                    # exactly one of: scale | beta1 + beta2 | gamma + gamma_prime
    seed = 0                  # * integer >= 0 (numpy.random.default_rng)
    scale = 1e-3              #   every parameter N(0, scale^2)
    beta1 = 1e-3              #   output layer N(0, beta1^2) ...
    beta2 = 1e-3              #   ... hidden layer(s) N(0, beta2^2)
    gamma = 2.0               #   two_layer only, [LXMZ21]: kappa = m^-gamma ...
    gamma_prime = 0.0         #   ... kappa' = m^-gamma_prime
    antisymmetric = false     # [false] mirrored neuron pairs, f(theta0) = 0 (even width)

    [solver]
    method = "auto"           # ["auto"] auto | dopri5 | dop853 | tsit5 | rodas | bdf | rkc
                              #   (adaptive) | rk4 | gd | adam
    t_end = 2e3               # * final time, original units (> 0)
    rtol = 1e-8               # [1e-8] in [1e-14, 0.1] (adaptive methods)
    atol = 1e-12              # [1e-12] in [0, 1] (adaptive methods)
    dt = 0.1                  # [none] step / learning rate: required by rk4, gd, adam; not
                              #   allowed for the adaptive methods
    max_steps = 100000000     # [10^8] stop with status "max_steps"
    max_wall = 3600.0         # [none] stop with status "max_wall" after this many seconds
    n_save = 200              # [200] save points: 0 and n_save - 1 log-spaced times
    save_state = "all"        # ["all"] "all" | "final" | stride k >= 1: which states to keep
    dropout = 0.9             # [none] gd, adam: keep probability p in (0, 1] of dropout on the
                              #   hidden layer (three layers: both, or [p1, p2])
    batch_size = 10           # [none] gd, adam: minibatch SGD, batches of this size
    seed = 0                  # [0] seed of the dropout masks and minibatches (>= 0)
    penalty_dropout = 0.9     # [none] add dropout's penalty R1 of keep probability p (any method)
    penalty_l2 = 1e-4         # [none] add weight decay lam/2 |theta|^2, lam >= 0 (any method)

    [[events]]                # [none] zero or more, at most one per kind; need a method with
                              #   dense output (not gd, adam)
    kind = "escape_norm"      # * "escape_norm" (largest neuron input-weight norm) |
                              #   "loss_below" | "loss_above"
    threshold = 0.05          # * > 0
    units = "original"        # ["original"] escape_norm only: "original" | "normalized"
    terminal = true           # [true] stop the run when it fires

The data parameters are normalized on construction: the kind's defaults are
filled in and numbers get their types, so ``{"kind": "sin1d"}`` and
``{"kind": "sin1d", "params": {"n": 40}}`` are the same config with the same
key.  Optional fields that are None are left out of :meth:`RunConfig.to_dict`.

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks
   at infinite-width limit. JMLR 22(71), 2021.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from flowsim import data as _data
from flowsim._digest import file_sha256
from flowsim._memory import format_bytes, over_limit
from flowsim.integrate.simulate import (
    METHODS,
    escape,
    loss_above,
    loss_below,
    saved_output_bytes,
    simulate,
)

MODEL_KINDS = ("three_layer", "two_layer")
EVENT_KINDS = ("escape_norm", "loss_above", "loss_below")
EVENT_UNITS = ("normalized", "original")
SAVE_STATES = ("all", "final")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,199}$")


class ConfigError(ValueError):
    """A bad configuration value; ``path`` is the dotted name of the field."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def moved(self, old: str, new: str) -> ConfigError:
        """The same error with the path prefix ``old`` replaced by ``new``."""
        path = ", ".join(
            new + p[len(old) :] if p == old or p.startswith(old + ".") else p
            for p in self.path.split(", ")
        )
        return ConfigError(path, self.message)


# -- value checks ----------------------------------------------------------------


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


def _choice(path, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(path, f"must be one of {sorted(choices)}, got {value!r}")
    return value


def _int(path, value, low=1, what=None):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(path, f"must be {what or f'an integer >= {low}'}, got {value!r}")
    return int(value)


def _float(path, value, *, low=None, high=None, positive=False, what=None):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.number))
    if ok:
        value = float(value)
        ok = (
            math.isfinite(value)
            and (not positive or value > 0)
            and (low is None or value >= low)
            and (high is None or value <= high)
        )
    if not ok:
        if what is None:
            if positive:
                what = "a positive finite number"
            elif low is not None and high is not None:
                what = f"a number in [{low:g}, {high:g}]"
            else:
                what = "a finite number"
        raise ConfigError(path, f"must be {what}, got {value!r}")
    return value


def _bool(path, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return bool(value)


def _config_fields(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.metadata.get("config", True)]


def _required_fields(cls) -> list[str]:
    return [
        f.name
        for f in fields(cls)
        if f.metadata.get("config", True)
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_table(cls, d, path: str) -> dict:
    """``d`` as a dict of ``cls``'s fields, or a ConfigError naming unknown or missing keys."""
    if not isinstance(d, Mapping):
        raise ConfigError(path, f"must be a table of fields, got {d!r}")
    allowed = _config_fields(cls)
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise ConfigError(
            ", ".join(_join(path, k) for k in unknown), f"unknown field{s}; allowed: {allowed}"
        )
    missing = [k for k in _required_fields(cls) if k not in d]
    if missing:
        s = "s" if len(missing) > 1 else ""
        raise ConfigError(", ".join(_join(path, k) for k in missing), f"missing required field{s}")
    return dict(d)


def _section_dict(obj) -> dict:
    out = {}
    for f in fields(obj):
        if not f.metadata.get("config", True):
            continue
        value = getattr(obj, f.name)
        if value is None:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else copy.deepcopy(value)
    return out


# -- sections ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The network: ``TwoLayer(activation, width, ...)`` or ``ThreeLayer(activation, widths, ...)``.

    ``input_dim`` None: taken from the data.
    """

    kind: str
    activation: str
    width: int | None = None
    widths: tuple[int, int] | None = None
    input_dim: int | None = None
    bias: bool = True
    alpha: float = 1.0
    smoothing: float | None = None  # None (omitted from the key) is 0: exact kinks

    def __post_init__(self):
        from flowsim.activations import REGISTRY, activation

        _choice("model.kind", self.kind, MODEL_KINDS)
        if not isinstance(self.activation, str) or not self.activation.strip():
            raise ConfigError(
                "model.activation",
                f"must be a registered name or an expression in x, got {self.activation!r}",
            )
        try:
            activation(self.activation)
        except ValueError as exc:
            allowed = f"a registered name {sorted(REGISTRY)} or an expression in x"
            raise ConfigError("model.activation", f"{exc}; allowed: {allowed}") from None
        if self.kind == "two_layer":
            if self.widths is not None:
                raise ConfigError("model.widths", "only for kind 'three_layer'; use width")
            if self.width is None:
                raise ConfigError("model.width", "missing; a two_layer model needs width")
            _set(self, "width", _int("model.width", self.width))
        else:
            if self.width is not None:
                raise ConfigError("model.width", "only for kind 'two_layer'; use widths = [m1, m2]")
            if self.widths is None:
                raise ConfigError("model.widths", "missing; a three_layer model needs [m1, m2]")
            if not isinstance(self.widths, (list, tuple)) or len(self.widths) != 2:
                raise ConfigError(
                    "model.widths", f"must be a pair [m1, m2] of integers >= 1, got {self.widths!r}"
                )
            widths = tuple(_int(f"model.widths[{k}]", w) for k, w in enumerate(self.widths))
            _set(self, "widths", widths)
        if self.input_dim is not None:
            _set(self, "input_dim", _int("model.input_dim", self.input_dim))
        _set(self, "bias", _bool("model.bias", self.bias))
        _set(self, "alpha", _float("model.alpha", self.alpha, positive=True))
        if self.smoothing is not None:
            self._check_smoothing(activation)

    def _check_smoothing(self, activation):
        """``smoothing``: 0 and omitted are one value (None, out of the run key, so keys
        stored before the field existed stay valid); otherwise three-layer and kinked."""
        from flowsim.models._base import check_smoothing

        value = _float("model.smoothing", self.smoothing, low=0.0, what="a number in [0, 1)")
        _set(self, "smoothing", value or None)
        if value and self.kind != "three_layer":
            raise ConfigError("model.smoothing", "only for kind 'three_layer'; use 0")
        try:
            check_smoothing(value, activation(self.activation))
        except ValueError as exc:
            raise ConfigError("model.smoothing", str(exc)) from None

    def build(self, input_dim: int):
        """The network, for data of dimension ``input_dim``."""
        from flowsim.models import ThreeLayer, TwoLayer

        if self.kind == "two_layer":
            return TwoLayer(
                self.activation, self.width, input_dim, bias=self.bias, alpha=self.alpha
            )
        return ThreeLayer(self.activation, self.widths, input_dim, bias=self.bias, alpha=self.alpha,
                          smoothing=self.smoothing or 0.0)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """A data set of :mod:`flowsim.data`: ``make_data(kind, **params)``.

    ``params`` is stored with the kind's defaults filled in.  ``base_dir`` (not
    part of the config's content) is where a relative ``path`` of kind
    ``"file"`` is resolved: the directory of the config file.
    """

    kind: str
    params: dict = field(default_factory=dict)
    base_dir: Path | None = field(
        default=None, compare=False, repr=False, metadata={"config": False}
    )

    def __post_init__(self):
        params = dict(self.params) if isinstance(self.params, Mapping) else self.params
        try:
            params = _data.check_params(self.kind, params, "data.params.")
        except ValueError as exc:
            path, _, message = str(exc).partition(": ")
            raise ConfigError(path, message) from None
        _set(self, "params", params)
        if self.base_dir is not None:
            _set(self, "base_dir", Path(self.base_dir))

    @property
    def input_dim(self) -> int | None:
        """Dimension of the inputs, or None when only the file knows it."""
        return _data.input_dim(self.kind, self.params)

    def file(self) -> Path | None:
        """The data file of kind ``"file"``, resolved against ``base_dir``."""
        if self.kind != "file":
            return None
        path = Path(self.params["path"]).expanduser()
        return path if path.is_absolute() else Path(self.base_dir or ".") / path

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)``."""
        try:
            return _data._make_data(self.kind, self.params, self.base_dir, "data.params.")
        except ValueError as exc:
            path, _, message = str(exc).partition(": ")
            raise ConfigError(path, message) from None


@dataclass(frozen=True, kw_only=True)
class InitConfig:
    """Initialization ``net.init(seed, ...)``: exactly one of ``scale``,
    ``beta1`` + ``beta2`` or ``gamma`` + ``gamma_prime`` (two_layer only)."""

    seed: int
    scale: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    gamma: float | None = None
    gamma_prime: float | None = None
    antisymmetric: bool = False

    def __post_init__(self):
        _set(self, "seed", _int("init.seed", self.seed, low=0))
        for name in ("scale", "beta1", "beta2"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, _float(f"init.{name}", value, positive=True))
        for name in ("gamma", "gamma_prime"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, _float(f"init.{name}", value))
        groups = {
            "scale": ("scale",),
            "beta": ("beta1", "beta2"),
            "gamma": ("gamma", "gamma_prime"),
        }
        given = [
            g for g, names in groups.items() if any(getattr(self, n) is not None for n in names)
        ]
        choices = "give exactly one of scale, beta1 + beta2, gamma + gamma_prime"
        if not given:
            raise ConfigError("init.scale", f"missing; {choices}")
        if len(given) > 1:
            names = [n for g in given for n in groups[g] if getattr(self, n) is not None]
            raise ConfigError(
                ", ".join(f"init.{n}" for n in names), f"cannot be combined; {choices}"
            )
        for name in groups[given[0]]:
            if getattr(self, name) is None:
                other = [n for n in groups[given[0]] if n != name][0]
                raise ConfigError(f"init.{name}", f"missing; init.{other} needs it")
        _set(self, "antisymmetric", _bool("init.antisymmetric", self.antisymmetric))

    def kwargs(self) -> dict:
        """Keyword arguments of ``net.init`` (besides the seed)."""
        names = ("scale", "beta1", "beta2", "gamma", "gamma_prime")
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        out["antisymmetric"] = self.antisymmetric
        return out


@dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """Options of :func:`flowsim.simulate` (see there)."""

    method: str = "auto"
    t_end: float
    rtol: float = 1e-8
    atol: float = 1e-12
    dt: float | None = None
    max_steps: int = 10**8
    max_wall: float | None = None
    n_save: int = 200
    save_state: str | int = "all"
    dropout: float | list | None = None
    batch_size: int | None = None
    seed: int | None = None
    penalty_dropout: float | None = None
    penalty_l2: float | None = None

    def __post_init__(self):
        _choice("solver.method", self.method, METHODS)
        self._check_training()
        _set(self, "t_end", _float("solver.t_end", self.t_end, positive=True))
        _set(self, "rtol", _float("solver.rtol", self.rtol, low=1e-14, high=0.1))
        _set(self, "atol", _float("solver.atol", self.atol, low=0.0, high=1.0))
        adaptive = METHODS[self.method][2]
        fixed = sorted(m for m, spec in METHODS.items() if not spec[2])
        if adaptive and self.dt is not None:
            raise ConfigError(
                "solver.dt",
                f"only for the fixed-step methods {fixed}; method {self.method!r} chooses its "
                "own steps",
            )
        if not adaptive:
            if self.dt is None:
                raise ConfigError("solver.dt", f"missing; method {self.method!r} needs a step dt")
            dt = _float("solver.dt", self.dt, positive=True, what="a number in (0, t_end]")
            if dt > self.t_end:
                raise ConfigError("solver.dt", f"must be a number in (0, t_end], got {dt!r}")
            _set(self, "dt", dt)
        _set(self, "max_steps", _int("solver.max_steps", self.max_steps))
        if self.max_wall is not None:
            _set(self, "max_wall", _float("solver.max_wall", self.max_wall, positive=True))
        _set(self, "n_save", _int("solver.n_save", self.n_save, low=2))
        what = "'all', 'final' or a stride (integer >= 1)"
        if isinstance(self.save_state, str):
            if self.save_state not in SAVE_STATES:
                raise ConfigError("solver.save_state", f"must be {what}, got {self.save_state!r}")
        else:
            _set(self, "save_state", _int("solver.save_state", self.save_state, what=what))

    def _check_training(self):
        stochastic = ("gd", "adam")
        keep = "a keep probability in (0, 1]"
        if self.dropout is not None:
            if self.method not in stochastic:
                raise ConfigError(
                    "solver.dropout",
                    f"needs method 'gd' or 'adam', got {self.method!r} (the flow of its mean: "
                    "penalty_dropout)",
                )
            if isinstance(self.dropout, list):
                if len(self.dropout) != 2:
                    raise ConfigError("solver.dropout", f"must be {keep} or a pair of them, "
                                      f"got {self.dropout!r}")  # fmt: skip
                _set(self, "dropout", [_float(f"solver.dropout[{q}]", v, low=0.0, high=1.0,
                                              positive=True, what=keep)
                                       for q, v in enumerate(self.dropout)])  # fmt: skip
            else:
                _set(self, "dropout", _float("solver.dropout", self.dropout, high=1.0,
                                             positive=True, what=keep))  # fmt: skip
        if self.batch_size is not None:
            if self.method not in stochastic:
                raise ConfigError("solver.batch_size", f"needs method 'gd' or 'adam', got "
                                  f"{self.method!r}")  # fmt: skip
            _set(self, "batch_size", _int("solver.batch_size", self.batch_size))
        if self.seed is not None:
            _set(self, "seed", _int("solver.seed", self.seed, low=0))
        if self.penalty_dropout is not None:
            _set(self, "penalty_dropout", _float("solver.penalty_dropout", self.penalty_dropout,
                                                 high=1.0, positive=True, what=keep))  # fmt: skip
        if self.penalty_l2 is not None:
            _set(self, "penalty_l2", _float("solver.penalty_l2", self.penalty_l2, low=0.0,
                                            what="a number >= 0"))  # fmt: skip

    def training(self) -> dict:
        """The keyword arguments of :func:`flowsim.simulate` for dropout, minibatches and
        penalties."""
        from flowsim import penalty

        terms = []
        if self.penalty_dropout is not None:
            terms.append(penalty.dropout(self.penalty_dropout))
        if self.penalty_l2 is not None:
            terms.append(penalty.l2(self.penalty_l2))
        dropout = tuple(self.dropout) if isinstance(self.dropout, list) else self.dropout
        return {"dropout": dropout, "batch_size": self.batch_size, "seed": self.seed or 0,
                "penalty": terms or None}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EventConfig:
    """An event: ``escape_norm`` (:func:`flowsim.escape` with ``norm``),
    ``loss_below`` or ``loss_above``."""

    kind: str
    threshold: float
    units: str = "original"
    terminal: bool = True

    def __post_init__(self):
        _choice("events.kind", self.kind, EVENT_KINDS)
        _set(self, "threshold", _float("events.threshold", self.threshold, positive=True))
        _choice("events.units", self.units, EVENT_UNITS)
        if self.kind != "escape_norm" and self.units != "original":
            raise ConfigError(
                "events.units",
                f"only for kind 'escape_norm' (a loss has no units), got {self.units!r}",
            )
        _set(self, "terminal", _bool("events.terminal", self.terminal))

    def build(self):
        """The :class:`flowsim.Event`."""
        if self.kind == "escape_norm":
            return escape(norm=self.threshold, units=self.units, terminal=self.terminal)
        if self.kind == "loss_below":
            return loss_below(self.threshold, terminal=self.terminal)
        return loss_above(self.threshold, terminal=self.terminal)


# -- the run ------------------------------------------------------------------------


def run_memory(model: ModelConfig, solver: SolverConfig, n: int, d: int) -> dict[str, int]:
    """Estimated bytes of a run, in four parts.

    With ``n`` samples of dimension ``d`` (``D = d + 1`` with a bias, else
    ``d``), ``P`` parameters (two layers: ``m (D + 1)``; three:
    ``m2 + m2 m1 + m1 D``), ``H`` hidden units (``m``; ``m1 + m2``), ``L``
    layers, ``k = n_save`` save points of which ``R`` keep the state (``k``
    for ``"all"``, 1 for ``"final"``, ``ceil(k / s)`` for a stride ``s``),
    in float64 (8 bytes):

    * ``"data"``: ``8 n (2 D + 2)`` (X, X with the bias column, y, a copy);
    * ``"parameters"``: ``8 * 40 P`` (theta0, scales, the state, up to 13
      Runge-Kutta stages, BDF's 8 differences, event states, kernel scratch);
    * ``"per-sample work"``: ``8 * 4 n H`` (pre-activations, activation values
      and derivatives of a pass, the switching pattern);
    * ``"saved output"``: ``8 (k (L + 4) + 2 R P)`` (times, loss, norms; the
      saved states and their copy in the returned Trajectory), the same estimate
      ``simulate`` checks (:func:`flowsim.integrate.simulate.saved_output_bytes`).

    The Jacobian factor of ``rodas``/``bdf`` is bounded on its own
    (:data:`flowsim.integrate.simulate.FACTOR_MAX_BYTES`).  Sizes are Python
    integers: no overflow however large the config.
    """
    D = d + 1 if model.bias else d
    if model.kind == "two_layer":
        P, H, L = model.width * (D + 1), model.width, 2
    else:
        m1, m2 = model.widths
        P, H, L = m2 + m2 * m1 + m1 * D, m1 + m2, 3
    return {
        "data": 8 * n * (2 * D + 2),
        "parameters": 8 * 40 * P,
        "per-sample work": 8 * 4 * n * H,
        "saved output": saved_output_bytes(solver.n_save, solver.save_state, P, L),
    }


def _check_memory(model, solver, n, d, n_field="data.params.n"):
    """ConfigError when :func:`run_memory` exceeds :func:`flowsim._memory.memory_limit`.

    The field named is the first, in the order a run is built, whose stage does
    not fit: the parameters alone (the width), the data alone (n), both with
    the per-sample work (n and the width), the whole with the saved output
    (n_save).
    """
    parts = run_memory(model, solver, n, d)
    width = ("model.width", f"width = {model.width}") if model.kind == "two_layer" else (
        "model.widths", f"widths = {list(model.widths)}")  # fmt: skip
    samples = (n_field, f"n = {n}")
    stages = [
        (["parameters"], [width]),
        (["data"], [samples]),
        (["parameters", "data", "per-sample work"], [samples, width]),
        (list(parts), [("solver.n_save", f"n_save = {solver.n_save}")]),
    ]
    for names, named in stages:
        reason = over_limit(sum(parts[k] for k in names), "the run would")
        if reason is not None:
            values = ", ".join(text for _, text in named)
            detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items())
            raise ConfigError(", ".join(f for f, _ in named), f"{values}: {reason} ({detail})")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One simulation: model, data, initialization, solver options, events."""

    model: ModelConfig
    data: DataConfig
    init: InitConfig
    solver: SolverConfig
    events: tuple[EventConfig, ...] = ()
    name: str | None = None

    def __post_init__(self):
        for name, cls in (
            ("model", ModelConfig),
            ("data", DataConfig),
            ("init", InitConfig),
            ("solver", SolverConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(name, f"must be a {cls.__name__}, got {getattr(self, name)!r}")
        if not isinstance(self.events, (list, tuple)):
            raise ConfigError("events", f"must be a list of EventConfig, got {self.events!r}")
        _set(self, "events", tuple(self.events))
        for i, event in enumerate(self.events):
            if not isinstance(event, EventConfig):
                raise ConfigError(f"events[{i}]", f"must be an EventConfig, got {event!r}")
        if self.name is not None and not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise ConfigError(
                "name", f"must be a file stem (letters, digits, '_', '-'), got {self.name!r}"
            )
        self._check_consistency()

    def _check_consistency(self):
        model, init = self.model, self.init
        if model.kind != "two_layer" and (init.gamma is not None):
            raise ConfigError(
                "init.gamma, init.gamma_prime",
                f"only for model.kind 'two_layer', got model.kind {model.kind!r}",
            )
        if init.antisymmetric:
            m, label = (
                (model.width, "model.width")
                if model.kind == "two_layer"
                else (model.widths[1], "model.widths[1]")
            )
            if m % 2:
                raise ConfigError("init.antisymmetric", f"needs an even {label}, got {m}")
        d = self.data.input_dim
        if model.input_dim is not None and d is not None and model.input_dim != d:
            raise ConfigError(
                "model.input_dim",
                f"must match the data's dimension {d} ({self.data.kind!r}), got {model.input_dim}",
            )
        if self.events and METHODS[self.solver.method][0] == "discrete":
            dense = sorted(m for m, spec in METHODS.items() if spec[0] != "discrete")
            raise ConfigError(
                "events",
                f"method {self.solver.method!r} has no dense output to locate events on; "
                f"events need one of {dense}",
            )
        seen = {}
        for i, event in enumerate(self.events):
            if event.kind in seen:
                raise ConfigError(
                    f"events[{i}].kind",
                    f"{event.kind!r} is already events[{seen[event.kind]}]; one event per kind",
                )
            seen[event.kind] = i
        if self.data.input_dim is not None:  # kind "file": checked in build(), once loaded
            _check_memory(model, self.solver, self.data.params["n"], self.data.input_dim)

    # -- dicts and files ----------------------------------------------------------
    @classmethod
    def from_dict(cls, d, base_dir=None) -> RunConfig:
        """A config from a dict shaped like the TOML schema (module docstring).

        ``base_dir``: directory a relative data ``path`` is resolved against.
        """
        d = _check_table(cls, d, "")
        sections = {}
        for name, section in (
            ("model", ModelConfig),
            ("init", InitConfig),
            ("solver", SolverConfig),
        ):
            sections[name] = section(**_check_table(section, d[name], name))
        sections["data"] = DataConfig(
            **_check_table(DataConfig, d["data"], "data"), base_dir=base_dir
        )
        raw_events = d.get("events", [])
        if not isinstance(raw_events, (list, tuple)):
            raise ConfigError(
                "events", f"must be an array of tables ([[events]]), got {raw_events!r}"
            )
        events = []
        for i, raw in enumerate(raw_events):
            try:
                events.append(EventConfig(**_check_table(EventConfig, raw, "events")))
            except ConfigError as exc:
                raise exc.moved("events", f"events[{i}]") from None
        return cls(**sections, events=tuple(events), name=d.get("name"))

    @classmethod
    def from_toml(cls, path) -> RunConfig:
        """Read a TOML config; a relative data ``path`` is relative to the file's directory."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib

        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
        return cls.from_dict(d, base_dir=path.resolve().parent)

    def to_dict(self) -> dict:
        """Plain dict (JSON and TOML types); ``from_dict`` reads it back to an equal config.

        Optional fields that are None are left out.
        """
        out = {} if self.name is None else {"name": self.name}
        out["model"] = _section_dict(self.model)
        out["data"] = _section_dict(self.data)
        out["init"] = _section_dict(self.init)
        out["solver"] = _section_dict(self.solver)
        out["events"] = [_section_dict(e) for e in self.events]
        return out

    def key(self) -> str:
        """Content address: SHA-256 hex of the canonical JSON of :meth:`to_dict`
        without ``name`` (a label: the same numerics under two names are one
        result), ``flowsim.__version__`` and, for data of kind ``"file"``, the
        SHA-256 of the file's bytes (so the key changes when the data does)."""
        from flowsim import __version__

        config = self.to_dict()
        config.pop("name", None)
        payload = {"config": config, "flowsim": __version__}
        file = self.data.file()
        if file is not None:
            try:
                _data.check_file(file, "data.params.path")  # not /dev/zero, not 100 GB
                with open(file, "rb") as fh:
                    payload["data_sha256"] = file_sha256(fh)[0]
            except ValueError as exc:
                path, _, message = str(exc).partition(": ")
                raise ConfigError(path, message) from None
            except OSError as exc:
                raise ConfigError(
                    "data.params.path", f"cannot read {str(file)!r} ({exc})"
                ) from None
        text = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
        return hashlib.sha256(text.encode("ascii")).hexdigest()


def build(cfg: RunConfig):
    """``(net, theta0, X, y, events)``: what :func:`run_config` passes to ``simulate``."""
    X, y = cfg.data.build()
    d = X.shape[1]
    if cfg.model.input_dim is not None and cfg.model.input_dim != d:
        raise ConfigError(
            "model.input_dim", f"must match the data's dimension {d}, got {cfg.model.input_dim}"
        )
    _check_memory(cfg.model, cfg.solver, X.shape[0], d, n_field="data.params.path")
    net = cfg.model.build(d)
    theta0 = net.init(cfg.init.seed, **cfg.init.kwargs())
    events = [event.build() for event in cfg.events]
    return net, theta0, X, y, events


def run_config(cfg: RunConfig, *, progress=None):
    """Run ``cfg``: build the data, network, initial state and events, call
    :func:`flowsim.simulate`.

    Returns
    -------
    Trajectory
        Its ``config`` holds simulate's record plus ``run_config``
        (``cfg.to_dict()``) and ``run_key`` (``cfg.key()``).
    """
    if not isinstance(cfg, RunConfig):
        raise ValueError(f"run_config needs a RunConfig, got {cfg!r}")
    key = cfg.key()
    net, theta0, X, y, events = build(cfg)
    s = cfg.solver
    traj = simulate(
        net,
        theta0,
        X,
        y,
        t_end=s.t_end,
        method=s.method,
        rtol=s.rtol,
        atol=s.atol,
        dt=s.dt,
        n_save=s.n_save,
        save_state=s.save_state,
        events=events,
        max_steps=s.max_steps,
        max_wall=s.max_wall,
        progress=progress,
        **s.training(),
    )
    config = {**traj.config, "run_config": cfg.to_dict(), "run_key": key}
    return dataclasses.replace(traj, config=config)
