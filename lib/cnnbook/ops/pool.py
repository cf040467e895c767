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

    The forward is a running maximum over the taps. When x requires a
    gradient it also records, as PyTorch does, each window's winner: the
    flat position ``h * W + w`` of the first tap (row-major, PyTorch's tie
    rule) equal to the window's maximum, or of the window's last NaN (PyTorch's
    NaN rule). The backward is then one ``scatter_add`` of ``dout`` onto those
    positions. **Memory**: the saved index is one int64 per output (PyTorch's
    own layout); neither ``x`` nor ``out`` is kept. Inference saves nothing.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        window = _pool_window("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
        taps = _max_pool_taps(x, window)
        out = None
        for _, tap in taps:
            out = tap.clone(memory_format=torch.contiguous_format) if out is None else torch.maximum(out, tap, out=out)
        ctx.window = window
        ctx.x_shape = x.shape
        ctx.save_for_backward(_winners(x, taps, out, window) if ctx.needs_input_grad[0] else None)
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        (index,) = ctx.saved_tensors
        n, c, h, w = ctx.x_shape
        dx = torch.zeros((n * c, h * w), dtype=dout.dtype, device=dout.device)
        dx.scatter_add_(1, index.view(n * c, -1), dout.reshape(n * c, -1))
        return dx.view(n, c, h, w), None, None, None, None, None


def _max_pool_taps(x: torch.Tensor, window: Window) -> list:
    """``[(t, view)]``: every tap of the ``-inf``-padded input as an ``(N, C, OH, OW)`` view, row-major.

    On a CPU, an elementwise op over a view that steps ``sw > 1`` entries
    from one column to the next runs several times slower than over
    contiguous rows. So for a column stride ``sw > 1`` the padded input is
    first copied once into its ``sw`` column phases (``phase[r][:, :, h, q]``
    is padded column ``q * sw + r``), in which every tap's rows are contiguous.
    """
    padded = _pad_max(x, window)
    stride_w = window.stride[1]
    if stride_w == 1 or x.device.type != "cpu":
        return list(_taps(padded, window))
    n, c, padded_h, padded_w = padded.shape
    extra = -padded_w % stride_w  # a whole number of phases; the extra columns are never read
    if extra:
        padded = F.pad(padded, (0, extra), value=float("-inf"))
    phases = padded.reshape(n, c, padded_h, -1, stride_w).permute(0, 1, 4, 2, 3).contiguous()
    (sh, _), (dh, dw), (oh, ow) = window.stride, window.dilation, window.out
    views = []
    for t, (i, j) in enumerate(window.taps):
        phase, start = (j * dw) % stride_w, (j * dw) // stride_w
        views.append((t, phases[:, :, phase, i * dh : i * dh + sh * (oh - 1) + 1 : sh, start : start + ow]))
    return views


def _winners(x: torch.Tensor, taps: list, out: torch.Tensor, window: Window) -> torch.Tensor:
    """(N, C, OH, OW) int64: the flat position in its (H, W) plane of each window's winning tap.

    The taps are visited last first, and every tap equal to the window's
    maximum overwrites the window's entry with its pixel's offset from the
    window's top-left corner: the first such tap in row-major order writes last
    and stays. The overwrite is ``offset.lerp_(tap_offset, hit)`` with ``hit``
    0 or 1: float arithmetic is the fastest elementwise path here (much faster
    than boolean masks or integer fills), and the offsets are integers, exact
    in float32 below ``2**24`` (else float64 is used).
    """
    (dh, dw), width = window.dilation, window.size[1]
    offsets = [i * dh * width + j * dw for i, j in window.taps]
    exact_in_float32 = max(offsets) < 2**24 and out.dtype != torch.float64
    offset_dtype = torch.float32 if exact_in_float32 else torch.float64
    hit = torch.empty(out.shape, dtype=offset_dtype, device=out.device)
    winner = torch.zeros_like(hit)
    for t, tap in reversed(taps):
        torch.eq(tap, out, out=hit)
        winner.lerp_(torch.tensor(float(offsets[t]), dtype=offset_dtype, device=out.device), hit)
    # A NaN or -inf maximum somewhere (or just an overflowing sum)? Meta tensors have no values to look at.
    if out.device.type != "meta" and not bool(torch.isfinite(out.sum())):
        _special_windows(x, out, winner, window, offsets)
    (sh, sw), (oh, ow), (top, _, left, _) = window.stride, window.out, window.padding
    corner_rows = torch.arange(oh, device=out.device) * sh - top
    corner_columns = torch.arange(ow, device=out.device) * sw - left
    return winner.to(torch.int64).add_(corner_rows[:, None] * width + corner_columns[None, :])


def _special_windows(x: torch.Tensor, out: torch.Tensor, winner: torch.Tensor, window: Window, offsets) -> None:
    """Windows whose maximum is NaN or -inf: their winner by PyTorch's rule, among real pixels only.

    A NaN maximum equals none of the taps (no offset was written): PyTorch takes the
    window's last NaN. A -inf maximum also equals the -inf padding: PyTorch takes
    the window's first real pixel. Both are rare; this loop runs only when one occurs.
    """
    minus_inf, nan = out == float("-inf"), torch.isnan(out)
    real_taps = list(_real_taps(window))
    for t, out_block, x_block in reversed(real_taps):  # the first real pixel is written last
        winner[out_block].masked_fill_(minus_inf[out_block], offsets[t])
    for t, out_block, x_block in real_taps:  # the last NaN is written last
        winner[out_block].masked_fill_(nan[out_block] & torch.isnan(x[x_block]), offsets[t])


def _real_taps(window: Window):
    """Yield ``(t, out_block, x_block)``: each tap's outputs that read a real (not padded) pixel, and those pixels."""
    (top, _, left, _), (height, width) = window.padding, window.size
    for t, (i, j) in enumerate(window.taps):
        ranges = []
        for offset, out_len, stride, pad, size in ((i * window.dilation[0], window.out[0], window.stride[0], top,
                                                     height),
                                                    (j * window.dilation[1], window.out[1], window.stride[1], left,
                                                     width)):
            first = max(0, -((offset - pad) // stride))  # the first output whose tap lies inside the input
            last = min(out_len - 1, (size - 1 + pad - offset) // stride)
            ranges.append(None if last < first else (slice(first, last + 1),
                                                      slice(first * stride + offset - pad,
                                                            (last * stride + offset - pad) + 1, stride)))
        if None not in ranges:
            (out_rows, x_rows), (out_columns, x_columns) = ranges
            yield t, (Ellipsis, out_rows, out_columns), (Ellipsis, x_rows, x_columns)


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
