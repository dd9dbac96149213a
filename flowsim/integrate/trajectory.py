"""The result of a simulation, and its on-disk format.

Format (readable without flowsim): ``PATH.npz`` with the arrays and
``PATH.json`` with everything else.

``PATH.npz`` arrays
    ``t`` (k,) save times in original units; ``t_bar`` (k,) the same in normalized
    time; ``loss`` (k,); ``norms`` (k, L) per-layer Frobenius norms in original
    units, layers in the order of ``layers`` in the JSON; ``max_neuron_norm`` (k,)
    largest neuron input-weight norm, original units; ``state_t`` (s,) times of
    the saved states; ``theta_bar`` (s, P) saved states in normalized variables
    (original = ``scale_vector * theta_bar``); ``scale_vector`` (P,);
    ``theta_final`` (P,) last state in original units; ``event_theta`` (e, P)
    states at the events, original units.  Optional (absent in older files),
    for resuming a run bit for bit: ``theta_bar_final`` (P,) the last state in
    normalized variables (absent: None, and a resumed run starts from
    ``theta_final / scale_vector``), and
    ``optimizer_state`` (r, P), for ``adam`` its moments ``m`` and ``v`` (r = 2,
    original units), (0, P) otherwise and by default.
``PATH.json``
    ``status``, ``message``, ``method``, ``nfev``, ``n_accepted``, ``n_rejected``,
    ``n_switches`` (kinks crossed or slid onto), ``method_log`` ([t, method] from
    each switch of ``method="auto"``),
    ``wall_time``, ``t_stop`` (time the integration stopped), ``time_scale``
    (T, with t = T t_bar), ``scales`` (per layer),
    ``layers``, ``events`` (list of {name, t, loss}), ``config``, ``versions``,
    ``npz_sha256`` and ``npz_size`` (the ``.npz`` file the JSON belongs with),
    ``format`` (``"flowsim-trajectory/2"``; version 1, without ``npz_sha256``, is
    read too).

The pair is committed together: both files are written under unique temporary
names in the target directory, then renamed into place while holding an
exclusive ``flock`` on the directory; :meth:`Trajectory.load` opens the two
under a shared one.  Concurrent saves to one path therefore leave one writer's
whole pair, and a reader sees one whole pair (without ``flock``, as on some
network file systems, a mismatched or damaged pair is still refused by the
checksum).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowsim._digest import file_sha256

FORMAT = "flowsim-trajectory/2"
_READABLE_FORMATS = ("flowsim-trajectory/1", FORMAT)


def package_versions() -> dict[str, str]:
    """Versions of flowsim and the packages its numbers depend on."""
    import numba
    import scipy
    import sympy

    from flowsim import __version__

    return {
        "flowsim": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "sympy": sympy.__version__,
        "python": platform.python_version(),
        "numba_threads": str(numba.get_num_threads()),
    }


@dataclass(frozen=True)
class EventRecord:
    """An event that fired: its name, time (original units), loss and state."""

    name: str
    t: float
    loss: float
    theta: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Trajectory:
    """A simulated trajectory (see the module docstring for the fields).

    ``theta`` gives the saved states in original units, ``theta_bar`` in
    normalized ones; ``status`` is one of ``"done"``, ``"event"``,
    ``"nonfinite"``, ``"step_too_small"``, ``"max_steps"``, ``"max_wall"``,
    ``"interrupted"``.
    """

    t: np.ndarray
    t_bar: np.ndarray
    loss: np.ndarray
    norms: np.ndarray
    max_neuron_norm: np.ndarray
    state_t: np.ndarray
    theta_bar: np.ndarray = field(repr=False)
    scale_vector: np.ndarray = field(repr=False)
    theta_final: np.ndarray = field(repr=False)
    status: str
    message: str
    method: str
    nfev: int
    n_accepted: int
    n_rejected: int
    wall_time: float
    time_scale: float
    scales: dict
    layers: tuple
    events: tuple = ()
    n_switches: int = 0
    method_log: tuple = ()
    t_stop: float = float("nan")
    config: dict = field(default_factory=dict, repr=False)
    versions: dict = field(default_factory=dict, repr=False)
    optimizer_state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    theta_bar_final: np.ndarray | None = field(default=None, repr=False)

    @property
    def theta(self) -> np.ndarray:
        """Saved states in original units, shape (s, P)."""
        return self.theta_bar * self.scale_vector

    @property
    def t_final(self) -> float:
        """Time the integration stopped (t_end, a terminal event, or where it failed)."""
        if self.t_stop == self.t_stop:
            return float(self.t_stop)
        return float(self.t[-1]) if self.t.size else 0.0

    def __repr__(self) -> str:
        methods = " -> ".join(name for _, name in self.method_log)
        method = repr(self.method) + (f" ({methods})" if self.method == "auto" else "")
        t0 = float(self.t[0]) if self.t.size else 0.0
        loss = f"{self.loss[0]:.4g} -> {self.loss[-1]:.4g}" if self.loss.size else "none saved"
        fired = f", events={[e.name for e in self.events]}" if self.events else ""
        return (
            f"Trajectory(status={self.status!r}, t={t0:.4g}..{self.t_final:.4g}, "
            f"n_saves={self.t.size}, method={method}, nfev={self.nfev}, loss={loss}{fired})"
        )

    def plot(self, axes=None):
        """Loss and per-layer norms against log t (matplotlib); returns the figure.

        Parameters
        ----------
        axes : pair of matplotlib.axes.Axes, optional
            Where to draw the loss and the norms; a new figure is made if omitted.

        Returns
        -------
        matplotlib.figure.Figure
            Save points at t > 0 only (log axis); events as dotted vertical lines.
        """
        if axes is None:
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained")
        ax_loss, ax_norm = axes
        keep = self.t > 0
        ax_loss.loglog(self.t[keep], self.loss[keep], color="k")
        ax_loss.set_ylabel("loss R")
        for j, name in enumerate(self.layers):
            ax_norm.loglog(self.t[keep], self.norms[keep, j], label=f"|{name}|")
        ax_norm.set_ylabel("layer norm")
        ax_norm.legend()
        for ax in axes:
            ax.set_xlabel("t")
            for e in self.events:
                ax.axvline(e.t, color="0.5", linestyle=":")
        return ax_loss.figure

    def to_dataframe(self):
        """The save points as a pandas DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``t``, ``t_bar``, ``loss``, ``norm_<layer>`` per layer and
            ``max_neuron_norm`` (original units), one row per save point.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Trajectory.to_dataframe needs pandas: pip install pandas "
                "(or pip install 'flowsim[sweep]')"
            ) from None
        columns = {"t": self.t, "t_bar": self.t_bar, "loss": self.loss}
        columns.update({f"norm_{name}": self.norms[:, j] for j, name in enumerate(self.layers)})
        columns["max_neuron_norm"] = self.max_neuron_norm
        return pd.DataFrame(columns)

    def event(self, name: str) -> EventRecord | None:
        """The record of event ``name``, or None if it did not fire."""
        for record in self.events:
            if record.name == name:
                return record
        return None

    def layer_norm(self, name: str) -> np.ndarray:
        """Norm of layer ``name`` at every save point, original units."""
        return self.norms[:, list(self.layers).index(name)]

    def save(self, path) -> tuple[Path, Path]:
        """Write ``path.npz`` and ``path.json`` atomically; returns both paths."""
        base = _base(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        npz, meta = _with(base, ".npz"), _with(base, ".json")
        event_theta = (
            np.stack([e.theta for e in self.events])
            if self.events
            else np.zeros((0, self.scale_vector.size))
        )
        info = {
            "format": FORMAT,
            "status": self.status,
            "message": self.message,
            "method": self.method,
            "nfev": self.nfev,
            "n_accepted": self.n_accepted,
            "n_rejected": self.n_rejected,
            "n_switches": self.n_switches,
            "method_log": [list(entry) for entry in self.method_log],
            "t_stop": self.t_stop,
            "wall_time": self.wall_time,
            "time_scale": self.time_scale,
            "scales": self.scales,
            "layers": list(self.layers),
            "events": [{"name": e.name, "t": e.t, "loss": e.loss} for e in self.events],
            "config": self.config,
            "versions": self.versions,
        }
        temporaries = []
        try:
            # both files under unique temporary names, then both renames under the
            # directory's lock: a failure leaves the old pair, a race one whole pair
            fd, tmp = tempfile.mkstemp(prefix=f".{base.name}.", suffix=".npz", dir=base.parent)
            temporaries.append(Path(tmp))
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    t=self.t,
                    t_bar=self.t_bar,
                    loss=self.loss,
                    norms=self.norms,
                    max_neuron_norm=self.max_neuron_norm,
                    state_t=self.state_t,
                    theta_bar=self.theta_bar,
                    scale_vector=self.scale_vector,
                    theta_final=self.theta_final,
                    event_theta=event_theta,
                    optimizer_state=self.optimizer_state.reshape(-1, self.scale_vector.size),
                    theta_bar_final=(
                        self.theta_final / self.scale_vector
                        if self.theta_bar_final is None
                        else self.theta_bar_final
                    ),
                )
            with open(tmp, "rb") as fh:
                info["npz_sha256"], info["npz_size"] = file_sha256(fh)
            fd, tmp_json = tempfile.mkstemp(
                prefix=f".{base.name}.", suffix=".json", dir=base.parent
            )
            temporaries.append(Path(tmp_json))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(info, indent=2, default=_json_default))
            with _directory_lock(base.parent, shared=False):
                os.replace(tmp, npz)
                os.replace(tmp_json, meta)
        finally:
            for leftover in temporaries:
                leftover.unlink(missing_ok=True)
        return npz, meta

    @classmethod
    def load(cls, path) -> Trajectory:
        """Read a trajectory written by :meth:`save` (never unpickles).

        Raises
        ------
        ValueError
            Files that are not a whole trajectory pair: bad JSON, a missing or
            ill-typed field, an ``.npz`` that does not match its JSON (checksum)
            or is damaged, a missing array or one of the wrong shape.  The
            message names the file and the field.
        """
        base = _base(path)
        json_path, npz_path = _with(base, ".json"), _with(base, ".npz")
        with contextlib.ExitStack() as stack:
            with _directory_lock(base.parent, shared=True):  # one writer's whole pair
                text_file = stack.enter_context(open(json_path, "rb"))
                npz_file = stack.enter_context(open(npz_path, "rb")) if npz_path.exists() else None
            try:
                info = json.loads(text_file.read())
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{json_path}: not a JSON file ({exc})") from None
            if not isinstance(info, dict) or info.get("format") not in _READABLE_FORMATS:
                raise ValueError(f"{json_path} is not a {FORMAT} file")
            info = _checked_info(info, json_path)
            if npz_file is None:
                raise FileNotFoundError(
                    f"{npz_path}: no such file (the arrays of {json_path.name})"
                )
            if "npz_sha256" in info:
                digest, size = file_sha256(npz_file)
                if (digest, size) != (info["npz_sha256"], info.get("npz_size", size)):
                    raise ValueError(
                        f"{npz_path} does not match {json_path.name} (npz_sha256): the "
                        "arrays file is damaged or belongs to another save"
                    )
                npz_file.seek(0)
            arrays = _read_arrays(npz_file, npz_path)
        _check_shapes(arrays, info, npz_path)
        events = tuple(
            EventRecord(e["name"], e["t"], e["loss"], arrays["event_theta"][i])
            for i, e in enumerate(info["events"])
        )
        return cls(
            t=arrays["t"],
            t_bar=arrays["t_bar"],
            loss=arrays["loss"],
            norms=arrays["norms"],
            max_neuron_norm=arrays["max_neuron_norm"],
            state_t=arrays["state_t"],
            theta_bar=arrays["theta_bar"],
            scale_vector=arrays["scale_vector"],
            theta_final=arrays["theta_final"],
            status=info["status"],
            message=info["message"],
            method=info["method"],
            nfev=info["nfev"],
            n_accepted=info["n_accepted"],
            n_rejected=info["n_rejected"],
            n_switches=info["n_switches"],
            method_log=tuple(tuple(entry) for entry in info["method_log"]),
            t_stop=float(info["t_stop"]),
            wall_time=info["wall_time"],
            time_scale=info["time_scale"],
            scales=info["scales"],
            layers=tuple(info["layers"]),
            events=events,
            config=info["config"],
            versions=info["versions"],
            optimizer_state=arrays["optimizer_state"],
            theta_bar_final=arrays.get("theta_bar_final"),
        )


_REQUIRED = object()
_FIELDS = {  # name: (kind, default); None: optional, no default
    "status": ("str", _REQUIRED),
    "message": ("str", _REQUIRED),
    "method": ("str", _REQUIRED),
    "nfev": ("int", _REQUIRED),
    "n_accepted": ("int", _REQUIRED),
    "n_rejected": ("int", _REQUIRED),
    "n_switches": ("int", 0),
    "method_log": ("method_log", []),
    "t_stop": ("number", math.nan),
    "wall_time": ("number", _REQUIRED),
    "time_scale": ("number", _REQUIRED),
    "scales": ("numbers by name", _REQUIRED),
    "layers": ("list of str", _REQUIRED),
    "events": ("events", _REQUIRED),
    "config": ("table", _REQUIRED),
    "versions": ("table", _REQUIRED),
    "npz_sha256": ("str", None),
    "npz_size": ("int", None),
}
_KIND_TEXT = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "table": "a JSON object",
    "numbers by name": "a JSON object of numbers",
    "list of str": "a list of strings",
    "events": "a list of {name: string, t: number, loss: number}",
    "method_log": "a list of [t: number, method: string]",
}
_ARRAYS = ("t", "t_bar", "loss", "norms", "max_neuron_norm", "state_t", "theta_bar",
           "scale_vector", "theta_final", "event_theta")  # fmt: skip
_OPTIONAL_ARRAYS = ("optimizer_state", "theta_bar_final")  # absent in older files


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_kind(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _is_number(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "numbers by name":
        return isinstance(value, dict) and all(map(_is_number, value.values()))
    if kind == "list of str":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "events":
        return isinstance(value, list) and all(
            isinstance(e, dict) and isinstance(e.get("name"), str) and _is_number(e.get("t"))
            and _is_number(e.get("loss")) for e in value
        )  # fmt: skip
    if kind == "method_log":
        return isinstance(value, list) and all(
            isinstance(e, list) and len(e) == 2 and _is_number(e[0]) and isinstance(e[1], str)
            for e in value
        )
    raise AssertionError(kind)


def _checked_info(info: dict, path: Path) -> dict:
    """The JSON fields, each checked against :data:`_FIELDS`, defaults filled in."""
    out = dict(info)
    for name, (kind, default) in _FIELDS.items():
        if name not in info:
            if default is _REQUIRED:
                raise ValueError(f"{path}: field {name!r} is missing")
            if default is not None:
                out[name] = default
        elif not _is_kind(info[name], kind):
            got = repr(info[name])
            got = got if len(got) <= 60 else got[:57] + "..."
            raise ValueError(f"{path}: field {name!r} must be {_KIND_TEXT[kind]}, got {got}")
    return out


def _read_arrays(fh, path: Path) -> dict:
    """The arrays of an open ``.npz`` file (object arrays refused, never unpickled)."""
    try:
        with np.load(fh, allow_pickle=False) as data:
            missing = [name for name in _ARRAYS if name not in data.files]
            if missing:
                raise ValueError(f"{path}: array {missing[0]!r} is missing")
            arrays = {name: data[name] for name in _ARRAYS + _OPTIONAL_ARRAYS if name in data}
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable trajectory npz ({exc})") from None
    if "optimizer_state" not in arrays:
        arrays["optimizer_state"] = np.zeros((0, arrays["scale_vector"].size))
    return arrays


def _check_shapes(arrays: dict, info: dict, path: Path) -> None:
    """Each array real with the shape the module docstring gives."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{path}: array {name!r} has dtype {a.dtype}, expected float64")
    k, s, p = (arrays[n].shape[0] if arrays[n].ndim == 1 else -1
               for n in ("t", "state_t", "scale_vector"))  # fmt: skip
    expected = {
        "t": (k,), "t_bar": (k,), "loss": (k,), "norms": (k, len(info["layers"])),
        "max_neuron_norm": (k,), "state_t": (s,), "theta_bar": (s, p), "scale_vector": (p,),
        "theta_final": (p,), "event_theta": (len(info["events"]), p),
    }  # fmt: skip
    r = arrays["optimizer_state"].shape[0] if arrays["optimizer_state"].ndim == 2 else -1
    expected["optimizer_state"] = (r if r in (0, 2) else -1, p)
    if "theta_bar_final" in arrays:
        expected["theta_bar_final"] = (p,)
    for name, shape in expected.items():
        if arrays[name].shape != shape or -1 in shape:
            want = tuple("?" if n == -1 else n for n in shape)
            raise ValueError(
                f"{path}: array {name!r} has shape {arrays[name].shape}, expected {want} "
                "(k save points, s saved states, P parameters)"
            )


@contextlib.contextmanager
def _directory_lock(directory: Path, *, shared: bool):
    """Hold ``flock`` on ``directory``, shared or exclusive; no lock where the file
    system has none (the checksum still refuses a mismatched pair)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _base(path) -> Path:
    """``path`` without a trailing .npz/.json (other dots in the name are kept)."""
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".npz", ".json") else base


def _with(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
