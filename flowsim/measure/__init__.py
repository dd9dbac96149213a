"""Measurements on simulated networks: condensation, distances, ranks, loss stages.

- :func:`cosine_similarity`, :func:`block_order`, :func:`plot_similarity`:
  the neuron-by-neuron cosine-similarity heatmap of [ZZJLZX22].
- :func:`clusters`: count the condensed orientations and lines.
- :func:`feature_map`, :func:`plot_feature_map`: orientation ``atan2(b, w)``
  and amplitude ``|a| |(w, b)|`` of each neuron of a 1D-input net with bias.
- :func:`relative_distance`, :func:`slope_S_w`: ``RD`` and ``S_w`` of [LXMZ21].
- :func:`effective_rank`: Roy & Vetterli's effective rank; :func:`singular_value_ratio`:
  sigma_2/sigma_1.
- :func:`cosine_with`, :func:`reordered_similarity`, :func:`relative_change`,
  :func:`singular_subspace`, :func:`principal_angles`: the attention stages of [CL25].
- :func:`last_query_attention`, :func:`attention_on_tokens`, :func:`attention_entropy`,
  :func:`phi_alignment`, :func:`trajectory_pca`: focus and dilution of [CLXL26]
  (:class:`flowsim.TokenAttention`).
- :func:`loss_stages`, :func:`plot_stages`: plateaus and descents of [CLW24].
- :func:`reduce`, :func:`plateau_levels`, :func:`loss_spectrum`: network reduction and
  plateau levels, the loss spectrum run as a sweep into a result store ([ZZLX21]).
- :func:`amplitude_wasserstein`: W1 distance between ``|a_k|`` and ``|w_k|`` ([CLW24]).
"""

from flowsim.measure.attention import (
    attention_entropy,
    attention_on_tokens,
    cosine_with,
    last_query_attention,
    phi_alignment,
    principal_angles,
    relative_change,
    reordered_similarity,
    singular_subspace,
)
from flowsim.measure.clusters import Clusters, clusters
from flowsim.measure.distance import SlopeFit, relative_distance, slope_S_w
from flowsim.measure.features import FeatureMap, feature_map, plot_feature_map
from flowsim.measure.rank import effective_rank, singular_value_ratio, trajectory_pca
from flowsim.measure.reduce import LossSpectrum, loss_spectrum, plateau_levels, reduce
from flowsim.measure.similarity import block_order, cosine_similarity, plot_similarity
from flowsim.measure.stages import Stage, loss_stages, plot_stages
from flowsim.measure.wasserstein import amplitude_wasserstein

__all__ = [
    "Clusters",
    "FeatureMap",
    "LossSpectrum",
    "SlopeFit",
    "Stage",
    "amplitude_wasserstein",
    "attention_entropy",
    "attention_on_tokens",
    "block_order",
    "clusters",
    "cosine_similarity",
    "cosine_with",
    "effective_rank",
    "feature_map",
    "last_query_attention",
    "loss_spectrum",
    "loss_stages",
    "phi_alignment",
    "plateau_levels",
    "plot_feature_map",
    "plot_similarity",
    "plot_stages",
    "principal_angles",
    "reduce",
    "relative_change",
    "relative_distance",
    "reordered_similarity",
    "singular_subspace",
    "singular_value_ratio",
    "trajectory_pca",
    "slope_S_w",
]
