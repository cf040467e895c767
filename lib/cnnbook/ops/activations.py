"""Smooth and clipped activations on torch tensors, forward and backward by hand.

Each is a ``torch.autograd.Function`` (no autograd inside) with an ``nn.Module``
wrapper named and constructed as its ``torch.nn`` twin. The derivatives:

- ``tanh``:    ``out = tanh(x)``,             ``dx = dout * (1 - out^2)``
- ``sigmoid``: ``out = 1 / (1 + e^-x)``,      ``dx = dout * out * (1 - out)``
- ``silu``:    ``out = x * sigmoid(x)``,      ``dx = dout * s * (1 + x (1 - s))`` with ``s = sigmoid(x)``
- ``relu6``:   ``out = min(max(x, 0), 6)``,   ``dx = dout * (0 < x < 6)``
- ``gelu``:    ``out = x * Phi(x)``,          ``dx = dout * (Phi(x) + x * phi(x))``
  (``Phi``, ``phi``: the standard normal CDF and density; the exact GELU, not the tanh approximation)

All map x: any shape -> the same shape, in x's dtype, under ``torch.autocast`` too (policy ``"input"``,
as autocast runs these activations in the dtype it is given).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .amp import autocast_off, autocast_policy

__all__ = [
    "tanh", "sigmoid", "silu", "relu6", "gelu",
    "TanhFunction", "SigmoidFunction", "SiLUFunction", "ReLU6Function", "GELUFunction",
    "Tanh", "Sigmoid", "SiLU", "ReLU6", "GELU",
]


class TanhFunction(torch.autograd.Function):
    """Hyperbolic tangent. x: any shape -> out: same shape; ``dx = dout * (1 - out^2)``."""

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        out = torch.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (out,) = ctx.saved_tensors
        return dout * (1 - out * out)


class SigmoidFunction(torch.autograd.Function):
    """Logistic sigmoid. x: any shape -> out: same shape; ``dx = dout * out * (1 - out)``."""

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        out = torch.sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (out,) = ctx.saved_tensors
        return dout * out * (1 - out)


class SiLUFunction(torch.autograd.Function):
    """SiLU (swish), ``x * sigmoid(x)``. x: any shape -> same shape; ``dx = dout * s (1 + x (1 - s))``."""

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        gate = torch.sigmoid(x)
        ctx.save_for_backward(x, gate)
        return x * gate

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, gate = ctx.saved_tensors
        return dout * gate * (1 + x * (1 - gate))


class ReLU6Function(torch.autograd.Function):
    """ReLU6, ``min(max(x, 0), 6)``. x: any shape -> same shape; the gradient passes where ``0 < x < 6``."""

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (x,) = ctx.saved_tensors
        return dout * ((x > 0) & (x < 6))


class GELUFunction(torch.autograd.Function):
    """Exact GELU, ``x * Phi(x)``. x: any shape -> same shape; ``dx = dout * (Phi(x) + x phi(x))``."""

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, cdf = ctx.saved_tensors
        density = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return dout * (cdf + x * density)


def tanh(x) -> torch.Tensor:
    """``tanh(x)`` elementwise. x: any shape -> same shape.

    Book: "Training and regularization", section "Initialization" (``book/training.md``).
    """
    return TanhFunction.apply(x)


def sigmoid(x) -> torch.Tensor:
    """``1 / (1 + exp(-x))`` elementwise. x: any shape -> same shape.

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    return SigmoidFunction.apply(x)


def silu(x) -> torch.Tensor:
    """``x * sigmoid(x)`` elementwise (swish). x: any shape -> same shape.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    return SiLUFunction.apply(x)


def relu6(x) -> torch.Tensor:
    """``min(max(x, 0), 6)`` elementwise. x: any shape -> same shape.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    return ReLU6Function.apply(x)


def gelu(x) -> torch.Tensor:
    """Exact GELU ``x * Phi(x)`` elementwise. x: any shape -> same shape.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    return GELUFunction.apply(x)


class _Elementwise(nn.Module):
    """An activation layer; ``inplace`` is accepted as in ``torch.nn``, the output is always a new tensor."""

    function = None

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).function.apply(x)


class Tanh(_Elementwise):
    """``tanh(x)``: x: any shape -> same shape. As ``torch.nn.Tanh``.

    Book: "Why convolutions", section "Saturation and vanishing gradients" (``book/why_convolutions.md``).
    """

    function = TanhFunction

    def __init__(self):
        super().__init__()


class Sigmoid(_Elementwise):
    """``sigmoid(x)``: x: any shape -> same shape. As ``torch.nn.Sigmoid``.

    Book: "Why convolutions", section "Saturation and vanishing gradients" (``book/why_convolutions.md``).
    """

    function = SigmoidFunction

    def __init__(self):
        super().__init__()


class SiLU(_Elementwise):
    """``x * sigmoid(x)``: x: any shape -> same shape. As ``torch.nn.SiLU``.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """

    function = SiLUFunction


class ReLU6(_Elementwise):
    """``min(max(x, 0), 6)``: x: any shape -> same shape. As ``torch.nn.ReLU6``.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """

    function = ReLU6Function


class GELU(nn.Module):
    """Exact GELU: x: any shape -> same shape. As ``torch.nn.GELU`` (only ``approximate="none"``).

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate != "none":
            raise NotImplementedError(f"GELU: only approximate='none' is implemented, got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return GELUFunction.apply(x)
