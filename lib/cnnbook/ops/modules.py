"""``torch.nn.Module`` layers built on :mod:`cnnbook.ops`.

Each class takes the same constructor arguments as its ``torch.nn`` twin and
holds parameters and buffers with the same names and shapes, initialised the
same way (so, from the same random seed, the same values). A ``state_dict``
saved from a ``torch.nn`` model therefore loads into the same model built from
these layers, and the two compute the same thing; only the arithmetic is ours.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv import conv2d, conv_padding
from .elementwise import dropout, linear, relu
from ..shapes import pair
from .norm import batch_norm2d, layer_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d

__all__ = ["Conv2d", "Linear", "BatchNorm2d", "LayerNorm", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "Dropout", "ReLU"]


def _factory(device, dtype) -> dict:
    return {"device": device, "dtype": dtype}


class Conv2d(nn.Module):
    """2-D convolution layer. x: (N, in_channels, H, W) -> (N, out_channels, OH, OW).

    weight: (out_channels, in_channels // groups, KH, KW); bias: (out_channels,).
    Same arguments as ``torch.nn.Conv2d``; only ``padding_mode="zeros"`` is supported.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: only padding_mode='zeros' is implemented, got {padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", 1, "Conv2d")
        self.stride = pair(stride, "stride", 1, "Conv2d")
        self.dilation = pair(dilation, "dilation", 1, "Conv2d")
        conv_padding(padding, self.kernel_size, self.dilation, self.stride, "Conv2d")  # validate early
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", 0, "Conv2d")
        self.padding_mode = padding_mode
        self.weight = nn.Parameter(
            torch.empty((out_channels, in_channels // groups, *self.kernel_size), **_factory(device, dtype))
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **_factory(device, dtype)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: Kaiming-uniform weights (a = sqrt(5)), bias uniform in +-1/sqrt(fan_in)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Linear(nn.Module):
    """Fully connected layer. x: (*, in_features) -> (*, out_features).

    weight: (out_features, in_features); bias: (out_features,). Same arguments as ``torch.nn.Linear``.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **_factory(device, dtype)))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **_factory(device, dtype)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: Kaiming-uniform weights (a = sqrt(5)), bias uniform in +-1/sqrt(in_features)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BatchNorm2d(nn.Module):
    """Spatial batch normalization. x: (N, num_features, H, W) -> same shape.

    weight (gamma), bias (beta), running_mean, running_var: (num_features,);
    num_batches_tracked: a scalar count. Same arguments as ``torch.nn.BatchNorm2d``:
    ``momentum=None`` makes the running statistics a plain cumulative average;
    ``track_running_stats=False`` uses the batch statistics in evaluation too.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        factory = _factory(device, dtype)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same bookkeeping as torch.nn.BatchNorm2d.forward.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return batch_norm2d(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch_stats, factor,
                            self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class LayerNorm(nn.Module):
    """Layer normalization. x: (*, *normalized_shape) -> same shape.

    weight, bias: normalized_shape. Same arguments as ``torch.nn.LayerNorm``.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        factory = _factory(device, dtype)
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape, **factory))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = nn.Parameter(torch.zeros(shape, **factory))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class MaxPool2d(nn.Module):
    """Max pooling. x: (N, C, H, W) -> (N, C, OH, OW). Same arguments as ``torch.nn.MaxPool2d``
    (``return_indices=True`` is not implemented).

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d: return_indices=True is not implemented")
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(nn.Module):
    """Average pooling. x: (N, C, H, W) -> (N, C, OH, OW). Same arguments as ``torch.nn.AvgPool2d``.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = stride if stride is not None else kernel_size
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(nn.Module):
    """Adaptive average pooling. x: (N, C, H, W) -> (N, C, OH, OW) for ``output_size = (OH, OW)`` or an int.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Dropout(nn.Module):
    """Inverted dropout: x: any shape -> same shape; the identity in ``eval()`` mode.

    p: drop probability. ``inplace`` is accepted for compatibility with
    ``torch.nn.Dropout`` but the output is always a new tensor. ``generator``
    (keyword only, not in ``torch.nn``): a ``torch.Generator`` for reproducible masks.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, p=0.5, inplace=False, *, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is the drop probability and must be in [0, 1], got {p}")
        self.p, self.inplace, self.generator = p, inplace, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class ReLU(nn.Module):
    """ReLU, ``max(x, 0)``: x: any shape -> same shape. ``inplace`` is accepted, the output is always new.

    Book: "Training and regularization", section "The same network from the book's own layers" (``book/training.md``).
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
