"""Penalties added to the training loss: ``fs.simulate(..., penalty=...)``.

A run with penalties follows the gradient flow (or GD, Adam) of ``R + sum P``;
its :class:`~flowsim.Trajectory` keeps ``R`` alone in ``loss``, and
:func:`values` gives each penalty at the run's saved states.

- :func:`dropout`: the explicit regularizer of dropout [ZX24] (docs/theory.md
  §18), ``R1 = ((1-p)/(2np)) sum_i sum_k (a_k sigma_k(x_i)/alpha)^2`` over the
  units of the (last) hidden layer, for a keep probability p: the flow that
  dropout GD follows as its learning rate goes to 0.  Two- and three-layer
  nets (three layers: the last hidden layer; dropout on the first has no
  closed form).
- :func:`l2`: weight decay, ``lam/2 |theta|^2`` (every parameter, original
  units); any model.  With Adam it is the coupled L2 term of the gradient;
  AdamW's decoupled decay is ``adam=dict(..., weight_decay=wd)`` of ``simulate``.

Both are compiled into the run: the l2 term by the integrator core for every
model, the dropout penalty inside the model's flow kernel (fused with the data
term: the same pass over the samples).  The stiff methods' Jacobian factor
includes the l2 term exactly; the dropout penalty's is left out, so ``bdf``
and ``auto`` treat it by their Newton iteration (convergence checked, steps
adapt) and ``rodas``, which needs the exact Jacobian, is refused.

References
----------
.. [ZX24] Zhang, Xu. Implicit regularization of dropout. IEEE TPAMI 2024.
   arXiv:2207.05952.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("dropout", "l2")


@dataclass(frozen=True)
class Penalty:
    """One penalty term: ``kind`` ``"dropout"`` (``value`` = the keep probability p)
    or ``"l2"`` (``value`` = lam)."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"penalty kind must be one of {KINDS}, got {self.kind!r}")
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise ValueError(f"{self.kind} penalty: the value must be a number, got {value!r}")
        if self.kind == "dropout" and not (0.0 < value <= 1.0):
            raise ValueError(
                f"dropout penalty: the keep probability p must be in (0, 1], got {value!r}"
            )
        if self.kind == "l2" and not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"l2 penalty: lam must be a finite number >= 0, got {value!r}")
        object.__setattr__(self, "value", float(value))

    @property
    def weight(self) -> float:
        """The coefficient of the compiled term: (1-p)/p for dropout, lam for l2."""
        return (1.0 - self.value) / self.value if self.kind == "dropout" else self.value

    def __call__(self, net, theta, X, y) -> float:
        """The penalty at ``theta`` (original units) on the data ``(X, y)``."""
        if self.kind == "l2":
            theta = np.asarray(theta, dtype=np.float64)
            return 0.5 * self.value * float(theta @ theta)
        from flowsim.theory.dropout import dropout_penalty

        return float(dropout_penalty(net, theta, X, y, self.value))

    def to_config(self) -> dict:
        return {"kind": self.kind, "value": self.value}


def dropout(p: float) -> Penalty:
    """The dropout penalty R1 of keep probability ``p`` (0 < p <= 1; p = 0.9 drops 10%)."""
    return Penalty("dropout", p)


def l2(lam: float) -> Penalty:
    """Weight decay ``lam/2 |theta|^2`` (lam >= 0)."""
    return Penalty("l2", lam)


def check(penalty) -> tuple[Penalty, ...]:
    """``penalty`` (None, a Penalty or a sequence of them, each kind at most once) as a tuple."""
    if penalty is None:
        return ()
    items = (penalty,) if isinstance(penalty, Penalty) else penalty
    try:
        items = tuple(items)
    except TypeError:
        raise ValueError(
            f"penalty must be fs.penalty.dropout(p), fs.penalty.l2(lam), a list of them or "
            f"None, got {penalty!r}"
        ) from None
    for item in items:
        if not isinstance(item, Penalty):
            raise ValueError(
                f"penalty: each term must be fs.penalty.dropout(p) or fs.penalty.l2(lam), "
                f"got {item!r}"
            )
    kinds = [item.kind for item in items]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"penalty: each kind at most once, got {kinds}")
    return items


def from_config(config: dict) -> tuple[Penalty, ...]:
    """The penalties a run's ``config`` records (parsed, never evaluated)."""
    entries = config.get("penalty") or []
    if not isinstance(entries, list):
        raise ValueError(f"config['penalty'] must be a list, got {entries!r}")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"kind", "value"}:
            raise ValueError(f"config['penalty']: entries are {{kind, value}}, got {entry!r}")
        out.append(Penalty(entry["kind"], entry["value"]))
    return tuple(out)


def values(run, net, X, y) -> dict[str, np.ndarray]:
    """Each penalty of ``run`` (by kind) at its saved states, times ``run.state_t``."""
    return {
        term.kind: np.array([term(net, theta, X, y) for theta in run.theta])
        for term in from_config(run.config)
    }
