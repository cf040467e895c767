"""1-D and transposed convolution in NumPy, built on the 2-D convolution.

A 1-D convolution is a 2-D one on images of height 1. A transposed
convolution is the backward pass of a convolution with respect to its input,
used as a layer: its forward is the ``dx`` computation of
:func:`cnnbook.reference.fast_conv.conv2d_backward`, its backward a plain
convolution. Shapes and conventions as in :mod:`cnnbook.reference.conv`.
"""

from __future__ import annotations

import numpy as np

from ..shapes import pair
from .conv import _check_dout, _conv_arrays, _float_dtype, _fold, _pad, _windows
from .fast_conv import conv2d_backward, conv2d_forward

__all__ = ["conv1d_forward", "conv1d_backward", "conv_transpose2d_forward", "conv_transpose2d_backward"]


def conv1d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution: a 2-D convolution on images of height 1.

    x: (N, C, L); w: (F, C // groups, K); b: (F,) or None.
    Returns ``(out, cache)`` with out: (N, F, L_out),
    ``L_out = floor((L + 2 * padding - dilation * (K - 1) - 1) / stride) + 1``.
    Same result as ``torch.nn.functional.conv1d``.

    Book: "Convolution arithmetic", section "One and three dimensions" (``book/convolution_arithmetic.md``).
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 3 or w.ndim != 3:
        raise ValueError(
            f"conv1d_forward: x must have shape (N, C, L) and w shape (F, C // groups, K), "
            f"got x {x.shape} and w {w.shape}"
        )
    settings = [_single(v, name) for v, name in ((stride, "stride"), (padding, "padding"), (dilation, "dilation"))]
    stride, padding, dilation = ((1, s) for s in settings)
    padding = (0, padding[1])
    try:
        out, cache = conv2d_forward(x[:, :, None, :], w[:, :, None, :], b, stride, padding, dilation, groups)
    except ValueError as error:
        raise ValueError(f"conv1d_forward (x {x.shape}, w {w.shape}): {error}") from None
    return out[:, :, 0, :], cache


def conv1d_backward(dout, cache):
    """Gradients of :func:`conv1d_forward`.

    dout: (N, F, L_out). Returns ``(dx, dw, db)``: dx: (N, C, L), dw: (F, C // groups, K), db: (F,) or None.

    Book: "Convolution arithmetic", section "One and three dimensions" (``book/convolution_arithmetic.md``).
    """
    dx, dw, db = conv2d_backward(np.asarray(dout)[:, :, None, :], cache)
    return dx[:, :, 0, :], dw[:, :, 0, :], db


def _single(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"conv1d_forward: {name} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return value


def conv_transpose2d_forward(x, w, b, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution ("deconvolution"): the backward-to-input of a convolution, used to upsample.

    x: (N, C_in, H, W); w: (C_in, C_out // groups, KH, KW), PyTorch's layout; b: (C_out,) or None.
    Returns ``(out, cache)`` with out: (N, C_out, OH, OW),
    ``OH = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1`` (same for W).
    Each input pixel scatters ``x[n, c, i, j] * w[c]`` onto the output window at
    ``(i * stride, j * stride)``, exactly what :func:`col2im` does; ``output_padding``
    (< stride or < dilation) only adds rows/columns at the bottom/right.
    Same result as ``torch.nn.functional.conv_transpose2d``.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    op = "conv_transpose2d_forward"
    x, w, b, stride, padding, output_padding, dilation, groups = _check_conv_transpose2d(
        x, w, b, stride, padding, output_padding, dilation, groups, op
    )
    batch, in_channels, height, width = x.shape
    kernel = w.shape[2:]
    out_channels = w.shape[1] * groups
    out_size = _transpose_out_size(x.shape, kernel, stride, padding, output_padding, dilation)
    weights = w.reshape(groups, in_channels // groups, -1)
    x_matrix = x.reshape(batch, groups, in_channels // groups, height * width)
    dcolumns = np.matmul(weights.swapaxes(-1, -2), x_matrix)
    dcolumns = dcolumns.reshape((batch, out_channels) + tuple(kernel) + (height, width))
    out = _fold(dcolumns, (batch, out_channels) + out_size, kernel, stride, padding, dilation)
    if b is not None:
        out += b[:, None, None]
    cache = (x, w, b is not None, out.shape, stride, padding, dilation, groups)
    return out, cache


def conv_transpose2d_backward(dout, cache):
    """Gradients of :func:`conv_transpose2d_forward`.

    dout: (N, C_out, OH, OW). Returns ``(dx, dw, db)``: dx: (N, C_in, H, W),
    dw: (C_in, C_out // groups, KH, KW), db: (C_out,) or None.
    The gradient to the input is an ordinary convolution of dout with w.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    x, w, has_bias, out_shape, stride, padding, dilation, groups = cache
    batch, in_channels, height, width = x.shape
    kernel = w.shape[2:]
    op, symbols = "conv_transpose2d_backward", "(N, C_out, OH, OW)"
    dout = _check_dout(dout, out_shape, op, symbols).astype(w.dtype, copy=False)
    # dx is the ordinary convolution of dout: im2col of dout at the input's positions.
    windows = _windows(_pad(dout, padding), kernel, (height, width), stride, dilation)
    columns = np.ascontiguousarray(windows).reshape(batch, groups, -1, height * width)
    weights = w.reshape(groups, in_channels // groups, -1)
    dx = np.matmul(weights, columns).reshape(x.shape)
    x_matrix = x.reshape(batch, groups, in_channels // groups, height * width)
    dw = np.matmul(x_matrix, columns.swapaxes(-1, -2)).sum(axis=0).reshape(w.shape)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def _transpose_out_size(x_shape, kernel, stride, padding, output_padding, dilation) -> tuple[int, int]:
    return tuple(
        (x_shape[2 + a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + output_padding[a] + 1
        for a in (0, 1)
    )


def _check_conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups, op: str):
    x, w, b = _conv_arrays(x, w, b, groups, op, "(N, C_in, H, W)", "(C_in, C_out // groups, KH, KW)")
    stride = pair(stride, "stride", 1, op)
    padding = pair(padding, "padding", 0, op)
    output_padding = pair(output_padding, "output_padding", 0, op)
    dilation = pair(dilation, "dilation", 1, op)
    if x.shape[1] != w.shape[0]:
        raise ValueError(
            f"{op}: channel mismatch: x {x.shape} has C_in={x.shape[1]} channels but w {w.shape} "
            f"(C_in, C_out // groups, KH, KW) has C_in={w.shape[0]}"
        )
    if x.shape[1] % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels C_in={x.shape[1]} of x {x.shape}")
    out_channels = w.shape[1] * groups
    if b is not None and b.shape != (out_channels,):
        raise ValueError(f"{op}: b must have shape (C_out,) = ({out_channels},) for w {w.shape}, got {b.shape}")
    for a, name in ((0, "H"), (1, "W")):
        if output_padding[a] >= max(stride[a], dilation[a]):
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}"
            )
    out_size = _transpose_out_size(x.shape, w.shape[2:], stride, padding, output_padding, dilation)
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: x {x.shape} with w {w.shape}, stride {stride}, padding {padding} gives a non-positive "
            f"output size {out_size}"
        )
    dtype = _float_dtype(x, w, b)
    x = x.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    b = None if b is None else b.astype(dtype, copy=False)
    return x, w, b, stride, padding, output_padding, dilation, int(groups)
