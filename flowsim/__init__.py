"""flowsim: compiled gradient-flow simulation of small-initialization training,
side by side with condensation theory.

>>> import flowsim as fs
>>> net = fs.TwoLayer("tanh", width=100, input_dim=1)
"""

__version__ = "0.1.0"

from flowsim import measure, penalty, theory
from flowsim.activations import Activation, activation
from flowsim.config import RunConfig, run_config
from flowsim.conventions import torch_steps, torch_time
from flowsim.data import make_data
from flowsim.integrate.simulate import (
    METHODS,
    Event,
    escape,
    event,
    loss_above,
    loss_below,
    simulate,
)
from flowsim.integrate.trajectory import Trajectory
from flowsim.models import Attention, ThreeLayer, TokenAttention, TwoLayer, UserModel

__all__ = [
    "METHODS",
    "Activation",
    "Attention",
    "Event",
    "RunConfig",
    "ThreeLayer",
    "TokenAttention",
    "Trajectory",
    "TwoLayer",
    "UserModel",
    "activation",
    "escape",
    "event",
    "loss_above",
    "loss_below",
    "make_data",
    "measure",
    "penalty",
    "run_config",
    "simulate",
    "theory",
    "torch_steps",
    "torch_time",
]
