"""Stochastic training and penalties of a run: checked, then turned into what the
compiled loops read (the run block of :mod:`flowsim._abi`, the minibatch buffers).

- ``dropout`` (``gd``, ``adam``): masks on the hidden layers, drawn inside the
  model's flow kernel from a counter-based generator keyed by ``(seed,
  iteration, sample, unit)`` (:mod:`flowsim._rng`): reproducible, independent
  of the thread count and of where a run was interrupted.
- ``batch_size`` (``gd``, ``adam``): minibatch SGD; each epoch draws a
  permutation of the samples from ``(seed, epoch)`` and takes its batches in
  order, the last one smaller when ``batch_size`` does not divide n (PyTorch's
  ``DataLoader(shuffle=True)``).
- ``penalty`` (every method): :mod:`flowsim.penalty`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowsim import _abi
from flowsim import penalty as _penalty


@dataclass
class Training:
    """A run's stochastic settings and penalties, checked."""

    keep: tuple[float, float]
    batch_size: int | None
    seed: int
    penalties: tuple

    def run_block(self, net, T: float) -> np.ndarray:
        """:func:`flowsim._abi.run_block` for ``net`` (time scale ``T``)."""
        weights = {term.kind: term.weight for term in self.penalties}
        dropout_weight = weights.get("dropout", 0.0)
        layer = 1 if _hidden_layers(net) == 1 else 2  # the penalty's layer: the last hidden one
        penalty = (dropout_weight, 0.0) if layer == 1 else (0.0, dropout_weight)
        return _abi.run_block(l2=T * weights.get("l2", 0.0), penalty=penalty, keep=self.keep,
                              seed=self.seed)  # fmt: skip

    def batch_buffers(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(perm, Xb, yb, Xl, yl)`` of the discrete loop (empty ``Xb``: full batch)."""
        n = X.shape[0]
        size = self.batch_size if self.batch_size is not None and self.batch_size < n else 0
        rest = n % size if size else 0
        perm = np.full(n + 1 if size else 1, -1, dtype=np.int64)
        return (perm, np.empty((size, *X.shape[1:])), np.empty(size),
                np.empty((rest, *X.shape[1:])), np.empty(rest))  # fmt: skip

    @property
    def stochastic(self) -> bool:
        return self.batch_size is not None or min(self.keep) < 1.0

    def config(self) -> dict:
        return {
            "dropout": list(self.keep) if min(self.keep) < 1.0 else None,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "penalty": [term.to_config() for term in self.penalties],
        }


def _hidden_layers(net) -> int | None:
    """Hidden layers whose units dropout acts on: 1 (two layers), 2 (three), None."""
    from flowsim.models import ThreeLayer, TwoLayer

    if isinstance(net, ThreeLayer):
        return 2
    if isinstance(net, TwoLayer):
        return 1
    return None


def _keep(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{name} must be a keep probability in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"{name} must be a keep probability in (0, 1] (p = 0.9 drops 10%), got {value!r}"
        )
    return float(value)


def check(net, family: str, method: str, n_samples: int, *, dropout, batch_size, seed,
          penalty, switching) -> Training:  # fmt: skip
    """The run's :class:`Training`, or a ValueError that names the field."""
    layers = _hidden_layers(net)
    keep = (1.0, 1.0)
    if dropout is not None:
        if family != "discrete":
            raise ValueError(
                f"dropout is a stochastic method: method must be 'gd' or 'adam', got "
                f"{method!r} (the flow of its mean: penalty=fs.penalty.dropout(p))"
            )
        if layers is None:
            raise ValueError(f"dropout: implemented for TwoLayer and ThreeLayer nets, not {net!r}")
        if isinstance(dropout, (tuple, list)):
            if layers != 2 or len(dropout) != 2:
                raise ValueError(
                    f"dropout: one keep probability per hidden layer ({layers}), got {dropout!r}"
                )
            keep = (_keep(dropout[0], "dropout[0]"), _keep(dropout[1], "dropout[1]"))
        else:
            p = _keep(dropout, "dropout")
            keep = (p, 1.0) if layers == 1 else (p, p)
    if batch_size is not None:
        if family != "discrete":
            raise ValueError(f"batch_size: minibatches need method 'gd' or 'adam', got {method!r}")
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or not (1 <= batch_size <= n_samples)
        ):
            raise ValueError(
                f"batch_size must be an integer in [1, n] = [1, {n_samples}], got {batch_size!r}"
            )
        batch_size = int(batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**53):
        raise ValueError(f"seed must be an integer in [0, 2**53), got {seed!r}")
    penalties = _penalty.check(penalty)
    kinds = {term.kind for term in penalties}
    if "dropout" in kinds:
        if layers is None:
            raise ValueError(
                f"penalty dropout: derived for TwoLayer and ThreeLayer nets, not {net!r}"
            )
        if min(keep) < 1.0:
            raise ValueError(
                "dropout masks and the dropout penalty model the same thing (the penalty is "
                "the masks' mean effect): use one of them"
            )
        if method == "rodas":
            raise ValueError(
                "method 'rodas' needs the exact Jacobian, and the dropout penalty's is not in "
                "its factor: use 'bdf' or 'auto'"
            )
    if ("dropout" in kinds or min(keep) < 1.0) and switching is True:
        raise ValueError("switching=True (kink treatment) does not combine with dropout")
    return Training(keep, batch_size, int(seed), penalties)
