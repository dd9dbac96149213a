"""Two-layer network ``f(x) = (1/alpha) sum_k a_k sigma(w_k . x~)``.

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural networks
   at infinite-width limit. JMLR 22(71), 2021. arXiv:2007.07497.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from flowsim import _codegen
from flowsim.activations import Activation
from flowsim.models import _gauss_jordan, _kink_kernels, _smooth_switching, _two_layer_kernels
from flowsim.models._base import Model, check_positive_int, kink_slopes
from flowsim.models._init import draw_init, resolve_stds


class TwoLayer(Model):
    """Two-layer network of width ``m`` (docs/theory.md §1).

    Parameters
    ----------
    activation : str, sympy.Expr or Activation
    width : int
        Number of hidden neurons ``m``.
    input_dim : int
        Input dimension ``d``; with ``bias=True`` the neurons see ``D = d + 1``.
    bias : bool
        Append a constant 1 to the input (the neuron's bias is the last entry of w_k).
    alpha : float
        Output scale: ``f = (1/alpha) sum_k a_k sigma(w_k . x~)``.

    Notes
    -----
    ``theta = [a (m), W (m, D) row-major]``; ``unpack`` gives ``{"a", "W"}``.

    Normalized variables ([LXMZ21]): ``a = beta1 a_bar``, ``w = beta2 w_bar``,
    ``t = beta1 beta2 t_bar``.  For a positively homogeneous activation of degree
    k the kernel constants are written through kappa = beta1 beta2^k / alpha
    (k = 1: exactly the kappa, kappa' form of [LXMZ21]); otherwise sigma is
    evaluated at ``beta2 * w_bar . x~`` (docs/theory.md §2).
    """

    kind = "two_layer"
    neuron_layer = "W"
    _template = _two_layer_kernels
    _shared = (_gauss_jordan,)  # the Jacobian factor's small inverses

    def __init__(self, activation: str | sp.Expr | Activation, width: int, input_dim: int, *,
                 bias: bool = True, alpha: float = 1.0) -> None:  # fmt: skip
        super().__init__(activation, input_dim, bias=bias, alpha=alpha)
        self.width = check_positive_int("width", width)
        self.layers = (("a", (self.width,)), ("W", (self.width, self.D)))

    def __repr__(self) -> str:
        return (
            f"TwoLayer({self.activation.name!r}, width={self.width}, input_dim={self.input_dim},"
            f" bias={self.bias}, alpha={self.alpha})"
        )

    @property
    def has_kinks(self) -> bool:
        return kink_slopes(self.activation) is not None

    def jacobian_factor(self, n_samples: int) -> tuple[str, int]:
        """Exact: its work space, plus the (n, P) Jacobian factors G and E and the
        activation's value and derivatives (3 (m, n)) built per step."""
        n, m, P = n_samples, self.width, self.n_params
        D1 = P // m
        words = (P * P if n >= P else m * D1 * D1 + 2 * P * n + n * n) + 2 * n * P
        return "exact", words + 3 * m * n

    def _model_source(self) -> str:
        """The kink treatment (:mod:`flowsim.models._kink_kernels`) for a piecewise-linear
        activation; otherwise its no-op stand-ins (compile time: ~20 s cold)."""
        kinks = _kink_kernels if self.has_kinks else _smooth_switching
        parts = (*self._shared, self._template, kinks)
        return "\n\n".join(_codegen.template_body(t) for t in parts)

    def options(self) -> dict:
        """The keyword options that build a net like this one at other widths."""
        return {"bias": self.bias, "alpha": self.alpha}

    def dims(self) -> np.ndarray:
        """``[m, D, activation address]``."""
        return np.array([self.width, self.D, self.activation.address], dtype=np.int64)

    def flow_constants(self, scales: dict[str, float]) -> tuple[np.ndarray, float]:
        """``c = [c_f, c_z, c_a, c_w]`` and ``T = beta1 beta2`` (see the module template)."""
        beta1, beta2, alpha = float(scales["a"]), float(scales["W"]), self.alpha
        k = self.activation.homogeneous
        if k is None:
            c = [beta1 / alpha, beta2, beta2 / alpha, beta1**2 / alpha]
        else:
            c = [
                beta1 * beta2**k / alpha,
                1.0,
                beta2 ** (k + 1) / alpha,
                beta1**2 * beta2 ** (k - 1) / alpha,
            ]
        return np.array(c, dtype=np.float64), beta1 * beta2

    def init(
        self,
        seed: int,
        *,
        scale: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        gamma: float | None = None,
        gamma_prime: float | None = None,
        antisymmetric: bool = False,
    ) -> np.ndarray:
        """Random initial parameters.

        Exactly one of: ``scale`` (every parameter N(0, scale^2)); ``beta1`` and
        ``beta2`` (a ~ N(0, beta1^2), w ~ N(0, beta2^2 I)); ``gamma`` and
        ``gamma_prime`` ([LXMZ21]: ``beta1 = sqrt(alpha) m^(-(gamma+gamma')/2)``,
        ``beta2 = sqrt(alpha) m^(-(gamma-gamma')/2)``, so that
        ``kappa = m^-gamma`` and ``kappa' = m^-gamma'``; with alpha = 1 this is
        the choice of docs/theory.md §2).

        ``antisymmetric=True`` (even width) pairs neuron ``k + m/2`` with neuron
        ``k``: same input weights, opposite output weight, so ``f(theta0) = 0`` up to the
        rounding of the sum over neurons.
        """
        m = self.width
        if gamma is not None or gamma_prime is not None:
            if gamma is None or gamma_prime is None:
                raise ValueError("give both gamma and gamma_prime")
            if scale is not None or beta1 is not None or beta2 is not None:
                raise ValueError("give either gamma/gamma_prime or scale or beta1/beta2, not both")
            root = np.sqrt(self.alpha)
            beta1 = root * m ** (-(gamma + gamma_prime) / 2)
            beta2 = root * m ** (-(gamma - gamma_prime) / 2)
        stds = resolve_stds(("a", "W"), scale, {"a": beta1, "W": beta2})
        arrays = draw_init(seed, self.layers, stds)
        if antisymmetric:
            if m % 2:
                raise ValueError(f"antisymmetric initialization needs an even width, got {m}")
            h = m // 2
            arrays["W"][h:] = arrays["W"][:h]
            arrays["a"][h:] = -arrays["a"][:h]
        return self.pack(**arrays)
