"""Theory predictions checked against simulation (docs/theory.md §2-9).

- :func:`regime`, :data:`SCHEMES`, :func:`scheme`, :func:`scales_for`,
  :func:`kappa`, :func:`kappa_prime`: the phase diagram of [LXMZ21].
- :func:`stable_directions`, :func:`max_orientations`: the condensed
  orientations of the leading-order flow ([ZZJLZX22]).
- :func:`blowup_time`: blow-up and escape times of the leading-order flow
  (two layers, p >= 2; p = 1; three layers [CL24]).
- :func:`plateau_exit_time`, :func:`plateau_slope`, :func:`escape_time_law`:
  the initial plateau ([CLW24]).
- :func:`leading_order`: the leading-order flow as a compiled model, integrable
  with :func:`flowsim.simulate` from the same theta0 as the full net.
- :func:`embed`, :func:`hessian_spectrum`, :func:`critical_point`: the embedding
  principle ([ZZLX21]).
- :func:`describe`: what ``flowsim derive`` prints for an activation.
- :func:`stage1`, :func:`stage2`: one attention layer, condensation then key-query
  rank collapse ([CL25]).
- :func:`dropout_penalty`, :func:`dropout_penalty_gradient`: dropout's explicit
  regularizer R1 and its gradient ([ZX24]).
"""

from flowsim.theory.attention import Stage1, Stage1Blowup, Stage2, stage1, stage2
from flowsim.theory.blowup import BlowupPrediction, blowup_time
from flowsim.theory.describe import describe
from flowsim.theory.directions import Directions, Extrema, max_orientations, stable_directions
from flowsim.theory.dropout import dropout_penalty, dropout_penalty_gradient
from flowsim.theory.embedding import (
    CriticalPoint,
    Spectrum,
    critical_point,
    embed,
    hessian_spectrum,
)
from flowsim.theory.leading_order import LeadingOrder, leading_order
from flowsim.theory.regimes import (
    SCHEMES,
    e_et_al,
    exponents,
    kappa,
    kappa_prime,
    regime,
    scales_for,
    scheme,
)
from flowsim.theory.stages import (
    escape_time_law,
    fit_escape_exponent,
    fit_plateau_slope,
    plateau_exit_time,
    plateau_slope,
)

__all__ = [
    "SCHEMES",
    "BlowupPrediction",
    "CriticalPoint",
    "Directions",
    "Extrema",
    "LeadingOrder",
    "Spectrum",
    "Stage1",
    "Stage1Blowup",
    "Stage2",
    "blowup_time",
    "critical_point",
    "describe",
    "dropout_penalty",
    "dropout_penalty_gradient",
    "e_et_al",
    "embed",
    "escape_time_law",
    "exponents",
    "fit_escape_exponent",
    "fit_plateau_slope",
    "hessian_spectrum",
    "kappa",
    "kappa_prime",
    "leading_order",
    "max_orientations",
    "plateau_exit_time",
    "plateau_slope",
    "regime",
    "scales_for",
    "scheme",
    "stable_directions",
    "stage1",
    "stage2",
]
