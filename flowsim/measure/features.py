"""Feature map of a two-layer net with 1D input and bias: orientation and amplitude.

With ``x~ = (x, 1)`` each neuron's input weight is ``(w_k, b_k)``; its
*orientation* is the angle ``theta_k = atan2(b_k, w_k)`` of that vector in the
plane and its *amplitude* is ``A_k = |a_k| sqrt(w_k^2 + b_k^2)``, the pairs
``{(A_k, w_hat_k)}`` plotted in the seed slides and in [LXMZ21] and
[ZZJLZX22]. Condensation shows as the points piling onto a few angles
(at most ``2p`` orientations for multiplicity ``p``, docs/theory.md §5).

References
----------
.. [LXMZ21] Luo, Xu, Ma, Zhang. Phase diagram for two-layer ReLU neural
   networks at infinite-width limit. JMLR 22(71):1-47, 2021. arXiv:2007.07497.
.. [ZZJLZX22] Zhou, Zhou, Jin, Luo, Zhang, Xu. Towards understanding the
   condensation of neural networks at initial training. NeurIPS 2022.
   arXiv:2105.11686.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from flowsim.measure._checks import check_finite


class FeatureMap(NamedTuple):
    """Orientation and amplitude of each neuron (unpacks as ``angles, amplitudes``).

    Attributes
    ----------
    angles : ndarray, shape (m,)
        ``theta_k = atan2(b_k, w_k)`` in [-pi, pi].
    amplitudes : ndarray, shape (m,)
        ``A_k = |a_k| sqrt(w_k^2 + b_k^2)``.
    """

    angles: np.ndarray
    amplitudes: np.ndarray


def feature_map(net, theta) -> FeatureMap:
    """Orientation angle and amplitude of every neuron of a 1D-input net with bias.

    Parameters
    ----------
    net : two-layer model
        Must have ``input_dim == 1``, ``bias`` true, and ``unpack(theta)``
        returning a mapping with ``"a"``, shape (m,), and ``"W"``, shape
        (m, 2), whose column 0 is the input weight ``w_k`` and column 1 the
        bias ``b_k``.
    theta : ndarray, shape (P,)
        Flat parameter vector of ``net``.

    Returns
    -------
    FeatureMap
        ``angles`` (m,) in [-pi, pi] and ``amplitudes`` (m,); a tuple
        ``(angles, amplitudes)``.

    Raises
    ------
    ValueError
        If the net is not 1D-input with bias, or the unpacked parameters have
        the wrong shapes or hold NaN or infinity.

    References
    ----------
    .. [LXMZ21] Luo et al., JMLR 2021, arXiv:2007.07497 (feature maps
       ``(theta_k, A_k)`` across regimes).
    .. [ZZJLZX22] Zhou et al., NeurIPS 2022, arXiv:2105.11686.
    """
    input_dim = getattr(net, "input_dim", None)
    bias = getattr(net, "bias", None)
    if input_dim != 1 or bias is not True:
        raise ValueError(
            "feature_map needs a net with 1D input and bias (input_dim == 1, bias True), "
            f"got input_dim={input_dim!r}, bias={bias!r}"
        )
    params = net.unpack(theta)
    try:
        a = np.asarray(params["a"], dtype=np.float64)
        W = np.asarray(params["W"], dtype=np.float64)
    except (KeyError, TypeError):
        raise ValueError("net.unpack(theta) must return a mapping with keys 'a' and 'W'") from None
    if a.ndim != 1 or W.shape != (a.size, 2):
        raise ValueError(
            f"expected a of shape (m,) and W of shape (m, 2), got {a.shape} and {W.shape}"
        )
    check_finite(a, "a")
    check_finite(W, "W")
    angles = np.arctan2(W[:, 1], W[:, 0])
    amplitudes = np.abs(a) * np.hypot(W[:, 0], W[:, 1])
    return FeatureMap(angles, amplitudes)


def plot_feature_map(angles, amplitudes, ax=None, **scatter_kwargs):
    """Scatter plot of amplitude against orientation, one point per neuron.

    Parameters
    ----------
    angles : array_like, shape (m,)
        Orientations ``theta_k`` in radians, in [-pi, pi].
    amplitudes : array_like, shape (m,)
        Amplitudes ``A_k``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made if omitted.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``label``, ``color``).

    Returns
    -------
    ax : matplotlib.axes.Axes

    References
    ----------
    .. [LXMZ21] Luo et al., JMLR 2021, arXiv:2007.07497.
    """
    angles = np.asarray(angles, dtype=np.float64)
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    if angles.ndim != 1 or amplitudes.shape != angles.shape:
        raise ValueError(
            "angles and amplitudes must be 1D arrays of one length, "
            f"got shapes {angles.shape} and {amplitudes.shape}"
        )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.0, 3.5))
    kwargs = {"s": 12}
    kwargs.update(scatter_kwargs)
    ax.scatter(angles, amplitudes, **kwargs)
    ax.set_xlim(-np.pi, np.pi)
    ax.set_xticks([-np.pi, -np.pi / 2, 0.0, np.pi / 2, np.pi])
    ax.set_xticklabels([r"$-\pi$", r"$-\pi/2$", "0", r"$\pi/2$", r"$\pi$"])
    ax.set_xlabel(r"orientation $\theta = \mathrm{atan2}(b, w)$ (rad)")
    ax.set_ylabel(r"amplitude $A = |a|\,\sqrt{w^2 + b^2}$")
    return ax
