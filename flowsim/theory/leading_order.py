"""The leading-order (small-initialization) flow as a compiled model.

With ``|theta| = O(eps)`` and ``sigma0 = 0`` the output is negligible, the
residual is ``e = -y`` and every neuron follows ([ZZJLZX22]; docs/theory.md §4;
``derivations/leading_order.py``)::

    da_k/dt = (c_p/alpha) G(w_k),   dw_k/dt = (c_p/alpha) a_k grad G(w_k),
    G(w) = (1/n) sum_i y_i (w . x~_i)^p.

This is the two-layer flow with the activation replaced by its leading
monomial ``c_p z^p`` (derived by SymPy from the activation's expression) and
the output switched off, so it is built from the same generated kernels and
integrated by the same ``simulate``: pass the same ``theta0`` to both and
compare neuron by neuron.  ReLU-like activations keep themselves
(``G(w) = (1/n) sum_i y_i sigma(w . x~_i)``).  For ``sigma0 != 0`` the target is
centred (docs/theory.md §6; the leading order then describes the state after the
fast output relaxation).  Three layers (p = 1, [CL24]): the same construction
with ``sigma -> c_1 z`` gives ``f ~ (c_1^2/alpha) a^T W V x~`` and the cubic
energy's flow.

References
----------
.. [ZZJLZX22] Zhou et al. Towards understanding the condensation of neural
   networks at initial training. NeurIPS 2022.
.. [CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
   condensation. 2024.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from flowsim.activations import activation, x
from flowsim.models import ThreeLayer, TwoLayer
from flowsim.models._base import check_data


def leading_monomial(act) -> sp.Expr:
    """``c_p x^p`` for a smooth activation; the activation itself if homogeneous."""
    act = activation(act)
    if act.homogeneous is not None:
        return act.expr
    p = act.multiplicity
    coefficient = sp.diff(act.expr, x, p).subs(x, 0) / sp.factorial(p)
    return sp.simplify(coefficient) * x**p


class _NoOutput:
    """Mixin: the output is switched off (``c_f = 0``), so the residual is ``-y``."""

    def flow_constants(self, scales):
        c, T = super().flow_constants(scales)
        c = c.copy()
        c[0] = 0.0
        return c, T


class LeadingOrderTwoLayer(_NoOutput, TwoLayer):
    """Two-layer leading-order flow (same parameter layout as the full net)."""

    kind = "lo_two_layer"


class LeadingOrderThreeLayer(_NoOutput, ThreeLayer):
    """Three-layer leading-order flow for p = 1 (same layout as the full net)."""

    kind = "lo_three_layer"


@dataclass(frozen=True)
class LeadingOrder:
    """A leading-order system: ``net`` (a model with the full net's layout) and
    the target ``y`` it sees (centred when sigma0 != 0).

    ``simulate(theta0, **options)`` integrates it with :func:`flowsim.simulate`.
    """

    net: TwoLayer | ThreeLayer
    X: np.ndarray
    y: np.ndarray
    monomial: sp.Expr
    centred: bool

    def simulate(self, theta0, **options):
        from flowsim.integrate.simulate import simulate

        return simulate(self.net, theta0, self.X, self.y, **options)

    def rhs(self, theta) -> np.ndarray:
        """``d theta / dt`` of the leading-order flow (original units)."""
        return -self.net.gradient(theta, self.X, self.y)


def leading_order(net, X, y) -> LeadingOrder:
    """The leading-order system of ``net`` on data ``(X, y)``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
        Two layers: any multiplicity p (homogeneous activations: themselves).
        Three layers: p = 1 only ([CL24]).
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)

    Returns
    -------
    LeadingOrder
    """
    X, y = check_data(X, y, net.input_dim)
    act = net.activation
    centred = act.sigma0 != 0.0
    target = y - y.mean() if centred else y
    monomial = leading_monomial(act) if act.homogeneous is None else act.expr
    if isinstance(net, ThreeLayer):
        if act.homogeneous is not None or act.multiplicity != 1:
            raise ValueError(
                "three-layer leading order is derived for smooth activations with p = 1 "
                f"([CL24]); {act.name!r} has p = {act.multiplicity}"
            )
        lo = LeadingOrderThreeLayer(str(monomial), net.widths, net.input_dim, bias=net.bias,
                                    alpha=net.alpha)  # fmt: skip
    else:
        lo = LeadingOrderTwoLayer(str(monomial), net.width, net.input_dim, bias=net.bias,
                                  alpha=net.alpha)  # fmt: skip
    return LeadingOrder(lo, X, target, monomial, centred)
