"""Conversions between flowsim's time and a PyTorch training script's learning rate and steps.

flowsim's loss is ``R(theta) = 1/(2n) sum_i (f(x_i) - y_i)^2`` and its time is
that of the gradient flow ``dtheta/dt = -grad R``; ``method="gd"`` with step
``dt`` is ``theta <- theta - dt grad R`` and reaches ``t = dt x steps``.  A
PyTorch script's loss is usually ``nn.MSELoss()``, the mean without the 1/2:
``L = 2 R``, so its time is ``2 x lr x steps``, not ``lr x steps``.
"""

from __future__ import annotations

import math
import numbers

LOSSES = ("mse", "sum", "half_mse")
"""PyTorch losses :func:`torch_time` knows: ``nn.MSELoss()`` (``"mse"``, mean of the
squared errors), ``nn.MSELoss(reduction="sum")`` (``"sum"``) and half the mean
(``"half_mse"``, flowsim's own ``R``)."""


def loss_factor(loss: str = "mse", n_samples: int | None = None) -> float:
    """The factor ``c`` with ``L = c R``: PyTorch's loss over flowsim's.

    Parameters
    ----------
    loss : {"mse", "sum", "half_mse"}
        See :data:`LOSSES`.
    n_samples : int, optional
        Number of training points ``n``; needed (only) for ``"sum"``.

    Returns
    -------
    float
        2 for ``"mse"``, ``2 n`` for ``"sum"``, 1 for ``"half_mse"``.
    """
    if loss == "mse":
        return 2.0
    if loss == "half_mse":
        return 1.0
    if loss == "sum":
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(
                f"n_samples: loss='sum' needs the number of training points (an integer >= 1), "
                f"got {n_samples!r}"
            )
        return 2.0 * n_samples
    raise ValueError(f"loss: must be one of {list(LOSSES)}, got {loss!r}")


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be a positive finite number, got {value!r}")
    return float(value)


def torch_time(lr: float, steps: float = 1, *, loss: str = "mse",
               n_samples: int | None = None) -> float:  # fmt: skip
    """flowsim time reached by ``steps`` full-batch gradient-descent steps of a PyTorch script.

    Parameters
    ----------
    lr : float
        The script's learning rate (``torch.optim.SGD(params, lr=lr)``, no momentum).
    steps : float
        Number of steps (epochs, when each epoch is one full-batch step); with the
        default 1, the result is the step ``dt`` to give ``simulate(method="gd")``.
    loss : {"mse", "sum", "half_mse"}
        The script's loss (:data:`LOSSES`); default ``nn.MSELoss()``.
    n_samples : int, optional
        Number of training points, for ``loss="sum"``.

    Returns
    -------
    t : float
        ``c x lr x steps`` with ``c`` = :func:`loss_factor` (2 for ``nn.MSELoss()``).

    Notes
    -----
    With flowsim's ``R = 1/(2n) sum_i (f(x_i) - y_i)^2`` and the script's loss
    ``L = c R`` (``nn.MSELoss()``: ``L = 1/n sum_i (f(x_i) - y_i)^2``, c = 2), one
    SGD step is::

        theta <- theta - lr grad L = theta - (c lr) grad R,

    which is flowsim's ``gd`` step with ``dt = c lr``: the iterates are the same,
    and after ``steps`` steps the gradient flow's time is ``t = c lr steps``.  So::

        fs.simulate(net, theta0, X, y, method="gd", dt=fs.torch_time(lr),
                    t_end=fs.torch_time(lr, epochs))

    repeats the script step for step, and ``fs.simulate(..., t_end=fs.torch_time(lr,
    epochs))`` with a flow method is the continuous-time limit of it.  The model must
    be the same function (flowsim's output is ``(1/alpha) sum_k a_k sigma(w_k . x~)``).

    Adam is invariant to a constant factor of the loss except through its epsilon:
    ``m`` and ``sqrt(v)`` both scale by ``c``, so the script's Adam with ``lr`` and
    ``eps`` is flowsim's ``adam`` with ``dt = lr`` and ``eps / c``; its time is
    ``lr x steps`` whatever the loss.
    """
    return loss_factor(loss, n_samples) * _positive("lr", lr) * _positive("steps", steps)


def torch_steps(t: float, lr: float, *, loss: str = "mse", n_samples: int | None = None) -> float:
    """Inverse of :func:`torch_time`: the number of PyTorch steps at ``lr`` that reach time ``t``.

    Parameters
    ----------
    t : float
        flowsim time (original units).
    lr : float
        The script's learning rate.
    loss : {"mse", "sum", "half_mse"}
        The script's loss (:data:`LOSSES`).
    n_samples : int, optional
        Number of training points, for ``loss="sum"``.

    Returns
    -------
    float
        ``t / (c lr)``, not rounded: round it to get a number of steps.
    """
    return _positive("t", t) / (loss_factor(loss, n_samples) * _positive("lr", lr))
