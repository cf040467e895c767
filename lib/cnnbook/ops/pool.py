"""Pooling on torch tensors, forward and backward written out by hand.

A pooling window slides like a convolution's (see :mod:`cnnbook.ops.geometry`)
but has no weights and keeps channels apart::

    x: (N, C, H, W)  ->  out: (N, C, OH, OW),  OH = floor((H + 2 p - d (KH - 1) - 1) / s) + 1

(``ceil`` instead of ``floor`` with ``ceil_mode=True``; the last window must
still start inside the input or its left padding, as in PyTorch.) Max and
average pooling loop over the ``KH * KW`` taps of the window: each tap is one
strided view of the padded input with the output's shape, so the loop is short
and every step is a whole-tensor operation. Adaptive average pooling is two
small matrix products, one per spatial axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .amp import autocast_off, autocast_policy
from ..shapes import pair
from .geometry import Window, make_window, require_4d, symmetric_padding

__all__ = [
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "global_avg_pool2d",
    "MaxPool2dFunction",
    "AvgPool2dFunction",
    "AdaptiveAvgPool2dFunction",
    "GlobalAvgPool2dFunction",
]


def _pool_window(op, x, kernel_size, stride, padding, dilation, ceil_mode) -> Window:
    require_4d(x, op)
    kernel = pair(kernel_size, "kernel_size", 1, op)
    stride = kernel if stride is None or stride == () else pair(stride, "stride", 1, op)
    pads = symmetric_padding(padding, op)
    if any(2 * p > k for k, p in zip(kernel, pads[::2])):
        raise ValueError(
            f"{op}: padding {pads[::2]} must be at most half the kernel size {kernel} (as in PyTorch), "
            f"for x of shape {tuple(x.shape)}"
        )
    return make_window(op, x.shape, kernel, stride, pads, dilation, ceil_mode)


def _taps(padded: torch.Tensor, window: Window):
    """Yield ``(t, view)``: tap number ``t`` and its ``(N, C, OH, OW)`` strided view of ``padded``."""
    for t, (i, j) in enumerate(window.taps):
        rows, columns = window.tap(i, j)
        yield t, padded[:, :, rows, columns]


class MaxPool2dFunction(torch.autograd.Function):
    """Max pooling. x: (N, C, H, W) -> out: (N, C, OH, OW); padding counts as ``-inf``.

    The forward is only a running maximum over the taps, so it stays as cheap
    as possible (inference pays for nothing else). The backward finds the
    winners again from ``(x, out)``: each window's ``dout`` goes to the first
    tap (row-major, as in PyTorch) whose input equals the window's maximum, by
    one ``scatter_add`` into the padded input. A window whose maximum is NaN
    sends its gradient to its first tap (PyTorch: to the NaN).

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        window = _pool_window("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
        out = None
        for _, tap in _taps(_pad_max(x, window), window):
            out = tap.clone(memory_format=torch.contiguous_format) if out is None else torch.maximum(out, tap, out=out)
        ctx.save_for_backward(x, out)
        ctx.window = window
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, out = ctx.saved_tensors
        window = ctx.window
        padded = _pad_max(x, window)
        (n, c, padded_h, padded_w), (sh, sw), (dh, dw), (oh, ow) = (
            padded.shape, window.stride, window.dilation, window.out)
        # For every window, the flat offset (in its padded (Hp, Wp) plane) of the first tap equal to the
        # maximum. Float arithmetic is the fastest elementwise path (much faster than boolean masks and
        # integer fills), but the offsets must be exact: float16/bfloat16 hold integers exactly only up to
        # 2**11 / 2**8, so they are counted in float32 (exact below 2**24 entries per plane) or float64.
        index_dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
        hit = torch.empty(out.shape, dtype=index_dtype, device=out.device)
        unclaimed = torch.ones_like(hit)
        offset = torch.zeros_like(hit)
        for (_, tap), (i, j) in zip(_taps(padded, window), window.taps):
            torch.eq(tap, out, out=hit)
            hit.mul_(unclaimed)
            offset.add_(hit, alpha=i * dh * padded_w + j * dw)
            unclaimed.sub_(hit)
        rows = torch.arange(oh, device=out.device, dtype=index_dtype) * (sh * padded_w)
        columns = torch.arange(ow, device=out.device, dtype=index_dtype) * sw
        index = offset.add_(rows[:, None] + columns[None, :]).to(torch.int64)
        dpadded = torch.zeros((n * c, padded_h * padded_w), dtype=dout.dtype, device=dout.device)
        dpadded.scatter_add_(1, index.view(n * c, oh * ow), dout.reshape(n * c, oh * ow))
        return window.unpad(dpadded.view(n, c, padded_h, padded_w)), None, None, None, None, None


def _pad_max(x: torch.Tensor, window: Window) -> torch.Tensor:
    """x padded with ``-inf``, which never wins a maximum."""
    return F.pad(x, window.pad_arg(), value=float("-inf")) if any(window.padding) else x


def _window_counts(size: int, length: int, kernel: int, stride: int, pad: int, include_pad: bool, like):
    """How many entries each of ``length`` windows covers along one axis (``(length,)`` tensor)."""
    starts = torch.arange(length, device=like.device, dtype=like.dtype) * stride - pad
    ends = torch.clamp(starts + kernel, max=size + pad)
    if not include_pad:
        starts, ends = starts.clamp(min=0), ends.clamp(max=size)
    return ends - starts


class AvgPool2dFunction(torch.autograd.Function):
    """Average pooling. x: (N, C, H, W) -> out: (N, C, OH, OW).

    Each output is the sum of its window divided by ``KH * KW``
    (``count_include_pad=True``: zero padding counts), by the number of
    non-padding entries (``count_include_pad=False``), or by
    ``divisor_override``. The backward spreads ``dout / divisor`` evenly over
    the window.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
        window = _pool_window("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
        padded = F.pad(x, window.pad_arg()) if any(window.padding) else x
        out = None
        for _, tap in _taps(padded, window):
            out = tap.clone(memory_format=torch.contiguous_format) if out is None else out.add_(tap)
        divisor = _divisor(window, padding, count_include_pad, divisor_override, x)
        out.div_(divisor)
        ctx.save_for_backward(divisor if isinstance(divisor, torch.Tensor) else None)
        ctx.divisor = None if isinstance(divisor, torch.Tensor) else divisor
        ctx.window = window
        ctx.x_shape = x.shape
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (divisor,) = ctx.saved_tensors
        divisor = ctx.divisor if divisor is None else divisor
        window = ctx.window
        n, c = ctx.x_shape[:2]
        share = dout / divisor
        dpadded = torch.zeros((n, c, *window.padded_size), dtype=dout.dtype, device=dout.device)
        for _, region in _taps(dpadded, window):
            region.add_(share)
        return window.unpad(dpadded), None, None, None, None, None, None


def _divisor(window: Window, padding, count_include_pad: bool, divisor_override, x):
    """A number when every window has the same divisor, else an ``(OH, OW)`` tensor."""
    if divisor_override is not None:
        if int(divisor_override) <= 0:
            raise ValueError(f"avg_pool2d: divisor_override must be positive, got {divisor_override!r}")
        return int(divisor_override)
    (kh, kw), (ph, pw) = window.kernel, pair(padding, "padding", 0, "avg_pool2d")
    uniform = window.padding == (ph, ph, pw, pw) and (count_include_pad or (ph, pw) == (0, 0))
    if uniform:
        return kh * kw
    rows = _window_counts(window.size[0], window.out[0], kh, window.stride[0], ph, count_include_pad, x)
    columns = _window_counts(window.size[1], window.out[1], kw, window.stride[1], pw, count_include_pad, x)
    return rows[:, None] * columns[None, :]


def _adaptive_matrix(size: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """``(length, size)`` averaging matrix.

    Row ``o`` averages entries ``floor(o size / length)`` up to (not including) ``ceil((o + 1) size / length)``.
    """
    index = torch.arange(length, device=like.device)
    starts = torch.div(index * size, length, rounding_mode="floor")
    ends = torch.div((index + 1) * size + length - 1, length, rounding_mode="floor")
    positions = torch.arange(size, device=like.device)
    inside = (positions[None, :] >= starts[:, None]) & (positions[None, :] < ends[:, None])
    return inside.to(like.dtype) / (ends - starts).to(like.dtype)[:, None]


class AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """Adaptive average pooling. x: (N, C, H, W) -> out: (N, C, OH, OW) for a requested ``(OH, OW)``.

    Output row ``o`` averages input rows ``floor(o H / OH)`` up to (not
    including) ``ceil((o + 1) H / OH)``; the same for columns. A window's mean
    is the mean over its rows of the mean over its columns, so with averaging
    matrices ``A_h: (OH, H)`` and ``A_w: (OW, W)`` the forward is
    ``out = A_h @ x @ A_w^T`` and the backward ``dx = A_h^T @ dout @ A_w``.

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, output_size):
        require_4d(x, "adaptive_avg_pool2d")
        out_h, out_w = _adaptive_size(output_size, x)
        rows = _adaptive_matrix(x.shape[2], out_h, x)
        columns = _adaptive_matrix(x.shape[3], out_w, x)
        ctx.save_for_backward(rows, columns)
        return rows @ x @ columns.T

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        rows, columns = ctx.saved_tensors
        return rows.T @ dout @ columns, None


def _adaptive_size(output_size, x) -> tuple[int, int]:
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(x.shape[2 + a] if s is None else s for a, s in enumerate(output_size))
    out_h, out_w = pair(output_size, "output_size", 1, "adaptive_avg_pool2d")
    return out_h, out_w


class GlobalAvgPool2dFunction(torch.autograd.Function):
    """Global average pooling. x: (N, C, H, W) -> out: (N, C), the mean of each channel's ``H x W`` map.

    Book: "Pooling", section "Global and adaptive average pooling" (``book/pooling.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x):
        require_4d(x, "global_avg_pool2d")
        ctx.x_shape = x.shape
        return x.mean(dim=(2, 3))

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        n, c, h, w = ctx.x_shape
        return (dout / (h * w))[:, :, None, None].expand(n, c, h, w).contiguous()


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> torch.Tensor:
    """Max pooling, like ``torch.nn.functional.max_pool2d``.

    x: (N, C, H, W); kernel_size, stride (default: kernel_size), padding, dilation: int or pair.
    Returns (N, C, OH, OW), ``OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1`` (``ceil`` with
    ``ceil_mode``). Padding, at most half the kernel size, counts as ``-inf``.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    return MaxPool2dFunction.apply(x, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> torch.Tensor:
    """Average pooling, like ``torch.nn.functional.avg_pool2d``.

    x: (N, C, H, W); kernel_size, stride (default: kernel_size), padding: int or pair.
    Returns (N, C, OH, OW), ``OH = floor((H + 2 ph - KH) / sh) + 1`` (``ceil`` with ``ceil_mode``).
    Zero padding counts in the average unless ``count_include_pad=False``.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    return AvgPool2dFunction.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(x, output_size) -> torch.Tensor:
    """Adaptive average pooling, like ``torch.nn.functional.adaptive_avg_pool2d``.

    x: (N, C, H, W); output_size: int or (OH, OW) (``None`` keeps that input size).
    Returns (N, C, OH, OW).

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """
    return AdaptiveAvgPool2dFunction.apply(x, output_size)


def global_avg_pool2d(x) -> torch.Tensor:
    """Global average pooling: x: (N, C, H, W) -> (N, C). Equals ``adaptive_avg_pool2d(x, 1).flatten(1)``.

    Book: "Pooling", section "Global and adaptive average pooling" (``book/pooling.md``).
    """
    return GlobalAvgPool2dFunction.apply(x)
