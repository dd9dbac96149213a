"""Network models: flat parameter vectors, compiled loss and gradient, initialization."""

from flowsim.models.attention import Attention
from flowsim.models.three_layer import ThreeLayer
from flowsim.models.two_layer import TwoLayer

__all__ = ["Attention", "ThreeLayer", "TwoLayer"]
