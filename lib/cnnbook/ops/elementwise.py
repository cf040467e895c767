"""ReLU, dropout and the fully connected (linear) layer on torch tensors, forward and backward by hand.

- ``relu(x) = max(x, 0)``; its gradient passes where the output is positive.
- ``dropout``: *inverted* dropout. In training each entry is zeroed with
  probability ``p`` and the survivors are scaled by ``1 / (1 - p)``, so the
  expected output equals ``x`` and evaluation is the identity.
- ``linear(x, w, b) = x @ w.T + b``, x: (*, in_features), w: (out_features, in_features).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .amp import autocast_off, autocast_policy
from .geometry import require_same_kind

__all__ = ["relu", "dropout", "linear", "ReLUFunction", "DropoutFunction", "LinearFunction"]


class ReLUFunction(torch.autograd.Function):
    """ReLU. x: any shape -> out: same shape; ``dx = dout * (out > 0)``.

    Book: "Convolution arithmetic", section "Two convolutions in a row are one convolution" (``book/convolution_arithmetic.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (out,) = ctx.saved_tensors
        return dout * (out > 0)


class DropoutFunction(torch.autograd.Function):
    """Inverted dropout in training mode. x: any shape -> out: same shape.

    ``keep`` is a Bernoulli(1 - p) mask drawn with ``generator`` (on x's device);
    ``out = x * keep / (1 - p)`` and ``dx = dout * keep / (1 - p)``. ``p = 1`` drops everything.

    Book: "Training and regularization", section "Dropout" (``book/training.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, p, generator=None):
        uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
        scaled_mask = (uniform >= p).to(x.dtype).mul_(scale)
        ctx.save_for_backward(scaled_mask)
        return x * scaled_mask

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (scaled_mask,) = ctx.saved_tensors
        return dout * scaled_mask, None, None


class LinearFunction(torch.autograd.Function):
    """Fully connected layer. x: (*, in_features); w: (out_features, in_features); b: (out_features,).

    out = x @ w.T + b: (*, out_features). Backward: ``dx = dout @ w``,
    ``dw = dout^T @ x`` and ``db = dout`` summed over every leading dimension.

    Book: "Convolution arithmetic", section "Convolution is a matrix product" (``book/convolution_arithmetic.md``).
    """

    @staticmethod
    @autocast_policy("lower")
    def forward(ctx, x, w, b=None):
        _check_linear(x, w, b)
        out = x @ w.T
        if b is not None:
            out.add_(b)
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        rows = dout.reshape(-1, dout.shape[-1])
        dx = dout @ w if need_dx else None
        dw = rows.T @ x.reshape(-1, x.shape[-1]) if need_dw else None
        db = rows.sum(dim=0) if need_db and ctx.has_bias else None
        return dx, dw, db


def _check_linear(x, w, b) -> None:
    op = "linear"
    require_same_kind(op, x=x, w=w, b=b)
    if w.dim() != 2 or x.dim() < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{op}: need x of shape (*, in_features) and w of shape (out_features, in_features) with matching "
            f"in_features; got x of shape {tuple(x.shape)} and w of shape {tuple(w.shape)}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"{op}: b must have shape (out_features,) = ({w.shape[0]},), got {tuple(b.shape)}")


def relu(x) -> torch.Tensor:
    """ReLU, ``max(x, 0)`` elementwise. x: any shape -> same shape.

    Book: "Convolution arithmetic", section "Two convolutions in a row are one convolution" (``book/convolution_arithmetic.md``).
    """
    return ReLUFunction.apply(x)


def dropout(x, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout, like ``torch.nn.functional.dropout``. x: any shape -> same shape.

    p: the probability of *dropping* an entry, ``0 <= p <= 1``. training=False (or
    p = 0) returns x unchanged. generator: a ``torch.Generator`` on x's device, to
    make the mask reproducible (the global generator when None).

    Book: "Training and regularization", section "Dropout" (``book/training.md``).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p is the drop probability and must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    return DropoutFunction.apply(x, p, generator)


def linear(x, w, b=None) -> torch.Tensor:
    """Fully connected layer, like ``torch.nn.functional.linear``.

    x: (*, in_features); w: (out_features, in_features); b: (out_features,) or None.
    Returns (*, out_features).

    Book: "Convolution arithmetic", section "Convolution is a matrix product" (``book/convolution_arithmetic.md``).
    """
    return LinearFunction.apply(x, w, b)
