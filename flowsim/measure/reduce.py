"""Network reduction ([ZZLX21]): merge condensed neurons, the inverse of embedding.

- :func:`reduce`: group the neurons of a hidden layer whose unit input weights agree and
  keep one neuron per group, with the output the group had (two-layer nets; three-layer
  nets, either hidden layer).
- :func:`plateau_levels`: the plateau levels of loss curves, pooled.
- :func:`loss_spectrum`: the plateau levels of many widths and seeds (the "loss
  spectrum"), its runs computed as a sweep (:mod:`flowsim.sweep`) into a result store
  (:mod:`flowsim.store`), so an interrupted spectrum resumes without recomputing.

docs/theory.md §16 derives the merging rules.

References
----------
.. [ZZLX21] Zhang, Zhang, Luo, Xu. Embedding principle of loss landscape of deep neural
   networks. NeurIPS 2021. arXiv:2105.14573.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from flowsim.measure.stages import loss_stages
from flowsim.models.three_layer import ThreeLayer
from flowsim.models.two_layer import TwoLayer


def _groups(W: np.ndarray, weights: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Greedy grouping, heaviest neuron first: each ungrouped neuron collects the ungrouped
    ones whose unit input weight has inner product >= threshold with its own.  Neurons with
    w = 0 form one group of their own (their outputs are the constant a sigma(0))."""
    norms = np.linalg.norm(W, axis=1)
    zero = norms == 0
    units = W / np.where(zero, 1.0, norms)[:, None]
    free = ~zero
    groups = [np.flatnonzero(zero)] if zero.any() else []
    for j in np.argsort(-weights, kind="stable"):
        if not free[j]:
            continue
        members = np.flatnonzero(free & (units @ units[j] >= threshold))
        members = np.concatenate([[j], members[members != j]])
        free[members] = False
        groups.append(members)
    return groups


def _merge(out: np.ndarray, W: np.ndarray, degree: int | None, threshold: float):
    """Merge the neurons of one hidden layer: ``out`` (m, r) their output weights (a row per
    neuron), ``W`` (m, D) their input weights.  Returns the merged ``(out', W')``, one row
    per group, the heaviest group first (the rules of :func:`reduce`)."""
    norms = np.linalg.norm(W, axis=1)
    merged_out, merged_W = [], []
    for members in _groups(W, np.linalg.norm(out, axis=1) * norms, threshold):
        j = members[0]
        if norms[j] == 0:
            merged_out.append(out[members].sum(axis=0))
            merged_W.append(W[j])
        elif degree is not None:
            merged_out.append((norms[members] / norms[j]) ** degree @ out[members])
            merged_W.append(W[j])
        else:
            total = out[members].sum(axis=0)
            beta = out[members] @ total  # each neuron's share along the merged output weight
            merged_out.append(total)
            if abs(beta.sum()) > 1e-12 * np.abs(beta).sum():
                merged_W.append(beta @ W[members] / beta.sum())
            else:
                merged_W.append(W[j])
    return np.array(merged_out), np.array(merged_W)


def _check_threshold(threshold) -> float:
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number in (-1, 1], got {threshold!r}") from None
    if not -1 < threshold <= 1:
        raise ValueError(f"threshold must be in (-1, 1], got {threshold!r}")
    return threshold


def reduce(net, theta: ArrayLike, threshold: float = 0.9, *, layer: int | None = None):
    """Merge the neurons of a hidden layer whose unit input weights agree (docs/theory.md §16).

    Neurons are grouped greedily, the heaviest (``|c_k| |w_k|``; ``w_k`` the input weights,
    ``c_k`` the output weights) first: each ungrouped neuron ``j`` takes every ungrouped
    ``k`` with ``u_k . u_j >= threshold``, ``u = w / |w|``.  A group becomes one neuron:

    - positively homogeneous sigma of degree p (ReLU: p = 1): ``w' = w_j`` and
      ``c' = sum_k c_k (|w_k| / |w_j|)^p``, exact when the group's orientations coincide;
    - otherwise: ``c' = sum_k c_k`` and ``w' = sum_k beta_k w_k / sum_k beta_k`` with
      ``beta_k = c_k . c'`` (two-layer: ``w' = sum_k a_k w_k / a'``), which matches the
      group's output to first order in the spread ``w_k - w'`` along ``c'`` (exactly, for
      a scalar output weight) and is exact when the input weights coincide, i.e. the
      inverse of :func:`flowsim.theory.embed`.  A group whose ``|sum_k beta_k|`` is below
      1e-12 of ``sum_k |beta_k|`` keeps ``w' = w_j``.

    Neurons with ``w_k = 0`` form one group (``c' = sum c_k``, ``w' = 0``: exact).

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,)
    threshold : float
        Inner product of unit input weights (cosine) at or above which neurons merge,
        in (-1, 1].
    layer : {None, 1, 2}
        The hidden layer, as in :func:`flowsim.theory.embed`: TwoLayer has one (None or 1);
        ThreeLayer needs 1 (neurons ``V``, input weights ``v_j``, output weights the
        column ``W[:, j]``) or 2 (neurons ``W``, input weights the rows ``W_k`` with the
        bias, output weights ``a_k``).

    Returns
    -------
    (narrow net, theta') : (TwoLayer or ThreeLayer, ndarray)
        The narrow net has one neuron per group in the reduced layer, the heaviest group
        first.
    """
    if not isinstance(net, TwoLayer | ThreeLayer):
        raise TypeError(f"reduce takes a TwoLayer or ThreeLayer, got {type(net).__name__}")
    theta = net.check_theta(theta)
    threshold = _check_threshold(threshold)
    p = {name: np.array(value) for name, value in net.unpack(theta).items()}
    degree = net.activation.homogeneous
    options = net.options()
    if isinstance(net, TwoLayer):
        if layer not in (None, 1):
            raise ValueError(f"layer must be None or 1 for TwoLayer (one hidden layer), "
                             f"got {layer!r}")  # fmt: skip
        a, W = _merge(p["a"][:, None], p["W"], degree, threshold)
        narrow = TwoLayer(net.activation, len(a), net.input_dim, **options)
        return narrow, narrow.pack(a=a[:, 0], W=W)
    m1, m2 = net.widths
    if layer == 2:
        a, W = _merge(p["a"][:, None], p["W"], degree, threshold)
        narrow = ThreeLayer(net.activation, (m1, len(a)), net.input_dim, **options)
        return narrow, narrow.pack(a=a[:, 0], W=W, V=p["V"])
    if layer == 1:
        net.check_regrouping("merging")
        columns, V = _merge(p["W"][:, :m1].T, p["V"], degree, threshold)
        W = np.hstack([columns.T, p["W"][:, m1:]])  # the bias column, if any, stays last
        narrow = ThreeLayer(net.activation, (len(V), m2), net.input_dim, **options)
        return narrow, narrow.pack(a=p["a"], W=W, V=V)
    raise ValueError(f"layer must be 1 (V, width m1) or 2 (W, width m2) for ThreeLayer, "
                     f"got {layer!r}")  # fmt: skip


def plateau_levels(curves: Iterable[tuple[ArrayLike, ArrayLike]], *, skip_first: bool = True,
                   **stage_options) -> np.ndarray:  # fmt: skip
    """Plateau levels of loss curves, pooled (:func:`flowsim.measure.loss_stages`).

    Parameters
    ----------
    curves : iterable of (t, loss) pairs
        One loss curve per run (e.g. many seeds of one width).
    skip_first : bool
        Leave out the plateau a curve starts with (from small initialization: the initial
        plateau at ``R(0)``, the same for every run).
    **stage_options
        Passed to :func:`flowsim.measure.loss_stages`.

    Returns
    -------
    ndarray, shape (k,)
        The plateau levels (``Stage.loss``), in curve order; histogram them to see the
        spectrum.
    """
    levels = []
    for t, loss in curves:
        stages = loss_stages(t, loss, **stage_options)
        if skip_first and stages and stages[0].kind == "plateau":
            stages = stages[1:]
        levels.extend(s.loss for s in stages if s.kind == "plateau")
    return np.array(levels, dtype=float)


@dataclass(frozen=True)
class LossSpectrum:
    """Result of :func:`loss_spectrum`; the dicts are keyed by width (an int, or a pair
    ``(m1, m2)`` for three-layer nets), in the order given.

    Attributes
    ----------
    seeds : tuple of int
    levels : dict of ndarray, shape (k,)
        The later plateau levels of every seed's run, pooled (:func:`plateau_levels`).
    final : dict of ndarray, shape (S,)
        Loss at the end of each seed's run (NaN for a failed run).
    keys : dict of tuple of str
        Store key of each seed's run.
    failures : tuple
        ``(width, seed, reason, message)`` of every run stored as a failure (left out of
        ``levels``).
    computed : int
        Runs computed by this call; the others were found in the store.
    """

    seeds: tuple
    levels: dict
    final: dict
    keys: dict
    failures: tuple
    computed: int


def loss_spectrum(base, store, *, widths: Sequence, seeds: int | Sequence[int],
                  skip_first: bool = True, scheduler: str = "local", workers: int | None = None,
                  progress: bool = True, **stage_options) -> LossSpectrum:  # fmt: skip
    """The loss spectrum of [ZZLX21]: the plateau levels of many seeds per width.

    Every (width, seed) of ``base`` is a run of one sweep (:class:`flowsim.sweep.Sweep`,
    grid ``model.width`` or ``model.widths``, ``seeds``), computed by
    :func:`flowsim.sweep.run_sweep` into ``store`` where the store lacks it: a run is
    computed once, and an interrupted spectrum resumes where it stopped.  The plateau
    levels are then read from the stored loss curves (:func:`plateau_levels`).

    Parameters
    ----------
    base : RunConfig or dict
        The run config the widths and seeds are put into (schema: :mod:`flowsim.config`);
        ``solver.save_state = "final"`` keeps the store small (only the loss curve is read).
    store : Store or path
    widths : sequence
        Hidden widths (two-layer: int; three-layer: pairs ``(m1, m2)``).
    seeds : int or sequence of int
        A count ``S`` (seeds 0 ... S-1) or the seeds.
    skip_first : bool
        Leave out each run's initial plateau (:func:`plateau_levels`).
    scheduler, workers, progress
        Of :func:`flowsim.sweep.run_sweep`.
    **stage_options
        Passed to :func:`flowsim.measure.loss_stages`.

    Returns
    -------
    LossSpectrum
    """
    from flowsim.config import RunConfig
    from flowsim.store import Store
    from flowsim.sweep import Sweep, run_sweep

    if isinstance(base, RunConfig):
        base = base.to_dict()
    if not isinstance(base, Mapping):
        raise ValueError(f"base must be a RunConfig or a dict, got {base!r}")
    widths = [tuple(int(m) for m in w) if isinstance(w, Sequence) else w for w in widths]
    if not widths:
        raise ValueError("widths must be a non-empty sequence")
    field = "widths" if base.get("model", {}).get("kind") == "three_layer" else "width"
    seeds = list(range(seeds)) if isinstance(seeds, int | np.integer) else list(seeds)
    sweep = Sweep.from_dict({"name": "loss_spectrum", "base": dict(base),
                             "grid": {f"model.{field}": [list(w) if isinstance(w, tuple) else w
                                                         for w in widths]},
                             "seeds": seeds})  # fmt: skip
    store = store if isinstance(store, Store) else Store(store)
    done = run_sweep(sweep, store, scheduler=scheduler, workers=workers, progress=progress)
    levels, final, keys, failures = {}, {}, {}, []
    for run in sweep.runs():
        w = run.point[f"model.{field}"]
        width = tuple(w) if isinstance(w, list) else w
        record = store.record(run.key)
        keys.setdefault(width, []).append(run.key)
        curves = levels.setdefault(width, [])
        if record is None or record["status"] != "ok":
            reason, message = (record["reason"], record["message"]) if record else ("missing", "")
            failures.append((width, run.point["init.seed"], reason, message))
            final.setdefault(width, []).append(np.nan)
            continue
        traj = store.load(run.key)
        curves.append((traj.t, traj.loss))
        final.setdefault(width, []).append(float(traj.loss[-1]))
    return LossSpectrum(
        seeds=tuple(seeds),
        levels={w: plateau_levels(c, skip_first=skip_first, **stage_options)
                for w, c in levels.items()},
        final={w: np.array(v) for w, v in final.items()},
        keys={w: tuple(v) for w, v in keys.items()},
        failures=tuple(failures),
        computed=done.computed,
    )  # fmt: skip
