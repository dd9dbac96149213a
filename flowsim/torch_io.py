"""Weights to and from the PyTorch ``state_dict`` of the equivalent ``nn.Module`` (torch optional).

The equivalent module of :class:`~flowsim.TwoLayer` (``f(x) = (1/alpha) sum_k a_k
sigma(w_k . x~)``, ``x~ = (x, 1)`` with ``bias=True``) is::

    nn.Sequential(
        nn.Linear(d, m, bias=bias),       # "0.weight" = W[:, :d], "0.bias" = W[:, d]
        Act(),                            # sigma
        nn.Linear(m, 1, bias=False),      # "2.weight" = a[None, :]
        Scale(alpha),                     # no parameters: output divided by alpha
    )

and that of :class:`~flowsim.ThreeLayer` (``f = (1/alpha) sum_k a_k sigma(sum_j W_kj
sigma(v_j . x~) + b_k)``)::

    nn.Sequential(
        nn.Linear(d, m1, bias=bias),      # "0.weight" = V[:, :d], "0.bias" = V[:, d]
        Act(),
        nn.Linear(m1, m2, bias=bias),     # "2.weight" = W[:, :m1], "2.bias" = W[:, m1]
        Act(),
        nn.Linear(m2, 1, bias=False),     # "4.weight" = a[None, :]
        Scale(alpha),
    )

flowsim keeps a neuron's bias as the last column of its weight row (the input is
augmented with a constant 1); PyTorch keeps it apart, in ``Linear.bias``.  The
module returns shape ``(n, 1)`` where ``net.output`` returns ``(n,)``.  An author's
script that multiplies the output by ``alpha_script`` is this module with
``alpha = 1 / alpha_script`` (docs/conventions.md).

Torch is imported only when a function here is called (``pip install flowsim[bench]``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from flowsim.models import ThreeLayer, TwoLayer


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "flowsim.torch_io needs PyTorch: pip install 'flowsim[bench]' (torch==2.13.0)"
        ) from None
    return torch


def _blocks(net) -> list[tuple[str, str, int, int]]:
    """``(flowsim layer, torch prefix, out rows, in columns without the bias)`` per Linear."""
    if isinstance(net, TwoLayer):
        return [("W", "0", net.width, net.input_dim), ("a", "2", 1, net.width)]
    if isinstance(net, ThreeLayer):
        if net.smoothing:
            raise ValueError("a ThreeLayer with smoothing > 0 has no PyTorch counterpart")
        m1, m2 = net.widths
        return [("V", "0", m1, net.input_dim), ("W", "2", m2, m1), ("a", "4", 1, m2)]
    raise TypeError(f"net must be a flowsim TwoLayer or ThreeLayer, got {type(net).__name__}")


def _expected_shapes(net) -> dict[str, tuple[int, ...]]:
    """The state_dict keys of the equivalent module and their shapes."""
    shapes = {}
    for name, prefix, rows, cols in _blocks(net):
        shapes[f"{prefix}.weight"] = (rows, cols)
        if net.bias and name != "a":
            shapes[f"{prefix}.bias"] = (rows,)
    return shapes


def to_state_dict(net, theta) -> OrderedDict:
    """The ``state_dict`` of the equivalent ``nn.Module`` (module docstring) at ``theta``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,)
        flowsim parameters, original units.

    Returns
    -------
    OrderedDict of str to torch.Tensor
        float64 copies (no memory shared with ``theta``): keys ``"0.weight"``,
        ``"0.bias"`` (with ``bias=True``), ``"2.weight"``... as listed in the module
        docstring; loads into :func:`torch_module` ``(net)`` with ``load_state_dict``.
    """
    torch = _torch()
    blocks = _blocks(net)
    layers = net.unpack(net.check_theta(theta))
    out = OrderedDict()
    for name, prefix, rows, cols in blocks:
        array = layers[name].reshape(rows, -1)
        out[f"{prefix}.weight"] = torch.tensor(array[:, :cols], dtype=torch.float64)
        if net.bias and name != "a":
            out[f"{prefix}.bias"] = torch.tensor(array[:, cols], dtype=torch.float64)
    return out


def _as_array(key: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"state_dict[{key!r}] must be a real tensor, got dtype {array.dtype}")
    return array.astype(np.float64)


def from_state_dict(net, state_dict) -> np.ndarray:
    """flowsim's ``theta`` from a ``state_dict`` of the equivalent ``nn.Module``.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    state_dict : mapping of str to tensor or array
        Exactly the keys of :func:`to_state_dict` (float32 tensors are widened to
        float64 exactly).

    Returns
    -------
    theta : ndarray, shape (P,)

    Raises
    ------
    ValueError
        Missing or unexpected keys, or a mis-shaped tensor (the message names them and
        the expected shapes).
    """
    expected = _expected_shapes(net)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not match {net!r}: missing keys {missing}, unexpected keys "
            f"{unexpected}; expected {expected}"
        )
    arrays = {k: _as_array(k, state_dict[k]) for k in expected}
    wrong = {k: arrays[k].shape for k in expected if arrays[k].shape != expected[k]}
    if wrong:
        raise ValueError(
            f"state_dict does not match {net!r}: mis-shaped keys "
            + ", ".join(f"{k!r} has shape {s}, expected {expected[k]}" for k, s in wrong.items())
        )
    layers = {}
    for name, prefix, _, _ in _blocks(net):
        weight = arrays[f"{prefix}.weight"]
        if net.bias and name != "a":
            weight = np.column_stack([weight, arrays[f"{prefix}.bias"]])
        layers[name] = weight[0] if name == "a" else weight
    return net.pack(**layers)


# Registered activations with an exact torch module of the same function.
_TORCH_MODULES = {
    "relu": ("ReLU", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": 0.01}),
    "linear": ("Identity", {}),
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
    "gelu": ("GELU", {}),
    "silu": ("SiLU", {}),
}


def _sqrt(value):
    """``sqrt`` for lambdify: SymPy prints ``sqrt(2)``, which torch.sqrt refuses."""
    torch = _torch()
    return torch.sqrt(value) if isinstance(value, torch.Tensor) else math.sqrt(value)


def _activation_module(act):
    """A torch module computing ``act``: a built-in one where exact, else the SymPy
    expression through ``sympy.lambdify(..., "torch")``."""
    torch = _torch()
    if act.name in _TORCH_MODULES:
        cls, kwargs = _TORCH_MODULES[act.name]
        return getattr(torch.nn, cls)(**kwargs)
    import sympy as sp

    function = sp.lambdify(sp.Symbol("x"), act.expr, modules=[{"sqrt": _sqrt}, "torch"])

    class Expression(torch.nn.Module):
        def __init__(self, text):
            super().__init__()
            self.text = text

        def forward(self, z):
            return function(z) + torch.zeros_like(z)  # a constant expression still broadcasts

        def extra_repr(self):
            return self.text

    return Expression(act.text)


def torch_module(net, theta=None):
    """The equivalent ``nn.Sequential`` (module docstring), in float64.

    Parameters
    ----------
    net : TwoLayer or ThreeLayer
    theta : ndarray, shape (P,), optional
        Load these parameters (:func:`to_state_dict`); default: PyTorch's own
        initialization.

    Returns
    -------
    torch.nn.Sequential
        Input ``(n, d)`` float64, output ``(n, 1)``; its last module divides by
        ``alpha`` and has no parameters.
    """
    torch = _torch()
    nn = torch.nn

    class Scale(nn.Module):
        def __init__(self, alpha):
            super().__init__()
            self.alpha = alpha

        def forward(self, z):
            return z / self.alpha

        def extra_repr(self):
            return f"alpha={self.alpha!r}"

    modules = []
    for name, _, rows, cols in _blocks(net):
        modules.append(nn.Linear(cols, rows, bias=net.bias and name != "a", dtype=torch.float64))
        if name != "a":
            modules.append(_activation_module(net.activation))
    modules.append(Scale(net.alpha))
    module = nn.Sequential(*modules)
    if theta is not None:
        module.load_state_dict(to_state_dict(net, theta))
    return module
