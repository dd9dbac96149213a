"""Gaussian initialization shared by the models."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from flowsim._memory import over_limit


def resolve_stds(names, scale, betas) -> dict[str, float]:
    given = {k: v for k, v in betas.items() if v is not None}
    if scale is not None and given:
        raise ValueError("give either scale or per-layer betas, not both")
    if scale is None and not given:
        raise ValueError(
            "initialization needs a scale: give scale=..., the per-layer betas "
            "(beta1=..., beta2=...), or (two-layer) gamma=... and gamma_prime=..."
        )
    if scale is None and len(given) != len(betas):
        missing = [k for k, v in betas.items() if v is None]
        raise ValueError(f"missing initialization scale for layer(s) {missing}")
    stds = {}
    for name in names:
        value = scale if scale is not None else betas[name]
        value = float(value)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"initialization scale for layer {name!r} must be > 0, got {value}")
        stds[name] = value
    return stds


def layer_stds(names, scale) -> dict[str, float]:
    """The standard deviation of each layer ``names``: ``scale`` one number for all, or a
    mapping with one per layer (a ValueError names unknown or missing layers)."""
    if not isinstance(scale, Mapping):
        return resolve_stds(names, scale, {})
    unknown = set(scale) - set(names)
    if unknown:
        raise ValueError(f"scale: unknown layers {sorted(unknown)}; layers are {list(names)}")
    return resolve_stds(names, None, {k: scale.get(k) for k in names})


def draw_init(seed, layers, stds) -> dict[str, np.ndarray]:
    """Draw each layer N(0, std^2) from ``numpy.random.default_rng(seed)``, in layer order."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (numpy.random.default_rng), got {seed!r}")
    n_params = sum(math.prod(shape) for _, shape in layers)
    # the drawn layers, their flat copy in theta and a scaled copy: three vectors of P doubles
    reason = over_limit(3 * 8 * n_params, f"{n_params} parameters (three vectors of 8 bytes)")
    if reason:
        raise ValueError(f"cannot initialize the network: {reason}")
    rng = np.random.default_rng(int(seed))
    return {name: stds[name] * rng.standard_normal(shape) for name, shape in layers}
