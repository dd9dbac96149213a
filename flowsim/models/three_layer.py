"""Three-layer network (docs/theory.md §1).

References
----------
.. [CL24] Chen, Luo. On the dynamics of three-layer neural networks: initial
   condensation. 2024. arXiv:2402.15958.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy as sp

from flowsim.activations import Activation
from flowsim.models import (
    _gauss_jordan,
    _smooth_switching,
    _three_layer_factor,
    _three_layer_kernels,
)
from flowsim.models._base import Model, check_positive_int, check_smoothing, kink_slopes
from flowsim.models._init import draw_init, resolve_stds


class ThreeLayer(Model):
    """``f(x) = (1/alpha) sum_k a_k sigma(sum_j W_kj sigma(v_j . x~) [+ b_k])``.

    Parameters
    ----------
    activation : str, sympy.Expr or Activation
    widths : tuple of int
        ``(m1, m2)``: first and second hidden widths.
    input_dim : int
    bias : bool
        Constant 1 appended to each hidden layer's input: the first layer sees
        ``x~ = (x, 1)`` and the second layer has biases ``b_k`` (last column of W).
    alpha : float
    smoothing : float
        ``eps >= 0``.  For a piecewise-linear activation (ReLU, leaky ReLU): 0 keeps its
        kinks exact; ``eps > 0`` smooths each kink over the pre-activations within
        ``eps`` of it relative to the pair's own scale (a C^2 ramp; docs/theory.md
        §11).  The smoothed net is still positively homogeneous in every neuron, so
        both layers' balances are conserved; its activations are within ``3 eps / 16``
        of ReLU's, relative to that scale, and its flow, unlike the exact one, does not
        chatter where pairs slide on their kinks (the condensed regime).  1e-3 was
        within 1.5e-4 of gradient descent's rate-0 limit on the cases measured, 1e-2
        too wide a ramp; the cost grows as ``eps`` falls.

    Notes
    -----
    ``unpack`` gives ``{"a": (m2,), "W": (m2, m1[+1]), "V": (m1, D)}``.
    Normalized variables: each layer divided by its scale (``beta_a``,
    ``beta_W``, ``beta_V``), time ``t = beta_a beta_W t_bar`` (the product of the
    two outermost scales, as ``beta1 beta2`` for two layers).
    """

    kind = "three_layer"
    neuron_layer = "V"
    _template = _three_layer_kernels

    _shared = (_gauss_jordan,)
    # no kink treatment; the Jacobian factor of smoothed kinks (BDF)
    _stand_ins = (_smooth_switching, _three_layer_factor)

    def __init__(self, activation: str | sp.Expr | Activation, widths: Sequence[int],
                 input_dim: int, *, bias: bool = True, alpha: float = 1.0,
                 smoothing: float = 0.0) -> None:  # fmt: skip
        super().__init__(activation, input_dim, bias=bias, alpha=alpha)
        self.smoothing = check_smoothing(smoothing, self.activation)
        try:
            m1, m2 = widths
        except (TypeError, ValueError):
            raise ValueError(f"widths must be a pair (m1, m2), got {widths!r}") from None
        self.widths = (check_positive_int("widths[0]", m1), check_positive_int("widths[1]", m2))
        m1, m2 = self.widths
        m1b = m1 + (1 if self.bias else 0)
        self.layers = (("a", (m2,)), ("W", (m2, m1b)), ("V", (m1, self.D)))

    def __repr__(self) -> str:
        return (
            f"ThreeLayer({self.activation.name!r}, widths={self.widths}, "
            f"input_dim={self.input_dim}, bias={self.bias}, alpha={self.alpha}"
            + (f", smoothing={self.smoothing}" if self.smoothing else "")
            + ")"
        )

    def options(self) -> dict:
        """The keyword options that build a net like this one at other widths."""
        return {"bias": self.bias, "alpha": self.alpha, "smoothing": self.smoothing}

    @property
    def stiff_from_start(self) -> bool:
        """Smoothed kinks: stiff from the first pair in a ramp (t ~ 0.3 on benchmark R2's
        nets).  ``auto``'s stiffness test, a power iteration on finite differences, reads
        the ramps' rates as 129 where the Jacobian's is 2134 (t = 10, m = 50): its step
        (5e-6 in normalized units) is wider than the narrowest ramps (with a step of 1e-8
        it finds 2118).  It kept dopri5 to t = 25-140."""
        return bool(self.smoothing)

    def jacobian_factor(self, n_samples: int) -> tuple[str, int] | str:
        """Approximate, and only for smoothed kinks, whose ramps make the flow stiff
        (:mod:`flowsim.models._three_layer_factor`): its work space, plus the hidden
        layers, the ramp candidates and the two Gram matrices built per factor."""
        if not self.smoothing:
            return (
                "the three-layer net's Jacobian factor is implemented for smoothed kinks only "
                "(smoothing > 0); two-layer nets have an exact one"
            )
        from flowsim.models._three_layer_factor import FACTOR_MAX_PAIRS

        (m1, m2), n, D = self.widths, n_samples, self.D
        m1b = m1 + int(self.bias)
        q = n + min(n * (m1 + m2), FACTOR_MAX_PAIRS)
        work = 8 + n * (m2 + m1b + D) + q * (2 + m2 + m1) + q * q
        per_factor = 5 * n * (m1 + m2) + 10 * n * (m1b + m2) + m2 * m1b + 2 * q * q
        return "approximate", work + per_factor

    def check_regrouping(self, action: str) -> None:
        """Splitting or merging first-layer neurons keeps the function of the exact net
        but not of a smoothed one: ``s_ik^2 = sum_j W_kj^2 h_ij^2`` changes."""
        if self.smoothing:
            raise ValueError(
                f"{action} first-layer neurons changes a smoothed net's second-layer ramps "
                "(s_ik); it is exact only with smoothing = 0"
            )

    def dims(self) -> np.ndarray:
        """``[m1, m2, D, bias, activation address]``."""
        m1, m2 = self.widths
        address = self.activation.address
        return np.array([m1, m2, self.D, int(self.bias), address], dtype=np.int64)

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        ba, bW, bV, alpha = float(scales["a"]), float(scales["W"]), float(scales["V"]), self.alpha
        T = ba * bW
        c = [
            ba / alpha,
            bV,
            bW,
            T / (ba * alpha),
            T * ba / (bW * alpha),
            T * ba * bW / (bV * alpha),
            self.smoothing,
            *(kink_slopes(self.activation) if self.smoothing else (0.0, 0.0)),
        ]
        return np.array(c, dtype=np.float64), T

    def init(self, seed: int, *, scale: float | None = None, beta1: float | None = None,
             beta2: float | None = None, antisymmetric: bool = False) -> np.ndarray:  # fmt: skip
        """Random initial parameters: every layer N(0, scale^2), or the output
        layer N(0, beta1^2) and both hidden layers N(0, beta2^2).

        ``antisymmetric=True`` (even m2) pairs second-layer neuron ``k + m2/2`` with
        ``k`` (same incoming weights, opposite output weight): ``f(theta0) = 0`` up to the
        rounding of the sum over neurons.
        """
        stds = resolve_stds(("a", "W"), scale, {"a": beta1, "W": beta2})
        stds["V"] = stds["W"]
        arrays = draw_init(seed, self.layers, stds)
        if antisymmetric:
            m2 = self.widths[1]
            if m2 % 2:
                raise ValueError(f"antisymmetric initialization needs an even m2, got {m2}")
            h = m2 // 2
            arrays["W"][h:] = arrays["W"][:h]
            arrays["a"][h:] = -arrays["a"][:h]
        return self.pack(**arrays)
