"""Convolution in NumPy, written to be read: explicit loops, and im2col / col2im.

Symbols used in every docstring here, in the book and in the tests:

- ``x: (N, C, H, W)``: N images with C channels of height H and width W;
- ``w: (F, C // groups, KH, KW)``: F filters of KH x KW taps;
- ``b: (F,)`` or ``None``;
- ``out: (N, F, OH, OW)`` with
  ``OH = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1``
  (and the same for OW, :func:`cnnbook.shapes.window_output_size`), exactly as
  ``torch.nn.functional.conv2d``.

Like every layer in :mod:`cnnbook.reference`, a forward returns
``(out, cache)`` and a backward takes ``(dout, cache)`` and returns the
gradients in argument order. ``stride``, ``padding`` and ``dilation`` accept an
int or an ``(along H, along W)`` pair. The layers compute *cross-correlation*
(no kernel flip), as deep-learning libraries do.

This module holds what a student should read: the argument checks, the naive
loops (:func:`conv2d_forward_naive`) and the two data movements that turn a
convolution into one matrix product (:func:`im2col`, :func:`col2im`). The
same convolution made fast (chunked matrix products, a depthwise path) is
:mod:`cnnbook.reference.fast_conv`, checked against the loops here; 1-D and
transposed convolution, built on it, are :mod:`cnnbook.reference.conv_variants`.

Outputs have the dtype of the inputs (NumPy's promotion of ``x``, ``w`` and
``b``, at least float32): float32 stays float32.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import pair, window_output_size

__all__ = ["conv2d_forward_naive", "conv2d_backward_naive", "im2col", "col2im"]


# ---------------------------------------------------------------- arguments


def _float_dtype(*arrays) -> np.dtype:
    """The common floating dtype: float32 stays float32, integers become float64."""
    dtypes = [a.dtype for a in arrays if a is not None]
    dtype = np.result_type(*dtypes)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    return dtype


def _conv_arrays(x, w, b, groups, op: str, x_layout: str, w_layout: str):
    """The checks every 2-D convolution starts with: 4-D x and w, a positive int groups."""
    x, w = np.asarray(x), np.asarray(w)
    b = None if b is None else np.asarray(b)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must have shape {x_layout}, got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: w must have shape {w_layout}, got shape {w.shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return x, w, b


def _check_conv2d(x, w, b, stride, padding, dilation, groups, op: str):
    """Validate conv2d arguments; return arrays in one dtype and the normalised settings.

    Every message names the shapes involved, so a student sees at once which
    argument is wrong.
    """
    x, w, b = _conv_arrays(x, w, b, groups, op, "(N, C, H, W)", "(F, C // groups, KH, KW)")
    stride = pair(stride, "stride", 1, op)
    padding = pair(padding, "padding", 0, op)
    dilation = pair(dilation, "dilation", 1, op)
    channels, filters = x.shape[1], w.shape[0]
    if channels % groups or filters % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide both the input channels C={channels} of x {x.shape} "
            f"and the filters F={filters} of w {w.shape}"
        )
    if w.shape[1] * groups != channels:
        raise ValueError(
            f"{op}: channel mismatch: x {x.shape} has C={channels} channels but w {w.shape} "
            f"expects C = w.shape[1] * groups = {w.shape[1]} * {groups} = {w.shape[1] * groups}"
        )
    if b is not None and b.shape != (filters,):
        raise ValueError(f"{op}: b must have shape (F,) = ({filters},) to match w {w.shape}, got shape {b.shape}")
    _check_window_fits(x.shape, w.shape[2:], stride, padding, dilation, op)
    dtype = _float_dtype(x, w, b)
    x = x.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    b = None if b is None else b.astype(dtype, copy=False)
    return x, w, b, stride, padding, dilation, int(groups)


def _check_window_fits(x_shape, kernel, stride, padding, dilation, op: str) -> None:
    for axis, name in ((0, "H"), (1, "W")):
        size = x_shape[2 + axis]
        span = dilation[axis] * (kernel[axis] - 1) + 1
        if span > size + 2 * padding[axis] or kernel[axis] < 1:
            raise ValueError(
                f"{op}: the window along {name} (kernel {kernel[axis]}, dilation {dilation[axis]}, "
                f"spanning {span}) does not fit the padded input {size} + 2 * {padding[axis]} = "
                f"{size + 2 * padding[axis]}; x has shape {tuple(x_shape)}, kernel size {tuple(kernel)}"
            )


def _check_dout(dout, expected, op: str, symbols: str) -> np.ndarray:
    dout = np.asarray(dout)
    if dout.shape != tuple(expected):
        raise ValueError(f"{op}: dout must have shape {symbols} = {tuple(expected)}, got {dout.shape}")
    return dout


def _conv_out_size(x_shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    return tuple(window_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))


def _pad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """Zero-pad the last two axes (a view of ``x`` when there is no padding)."""
    pad_h, pad_w = padding
    if pad_h == 0 and pad_w == 0:
        return x
    padded = np.zeros(x.shape[:-2] + (x.shape[-2] + 2 * pad_h, x.shape[-1] + 2 * pad_w), dtype=x.dtype)
    padded[..., pad_h : pad_h + x.shape[-2], pad_w : pad_w + x.shape[-1]] = x
    return padded


def _unpad(padded: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    pad_h, pad_w = padding
    return padded[..., pad_h : padded.shape[-2] - pad_h, pad_w : padded.shape[-1] - pad_w]


def _tap_slices(kh: int, kw: int, out_size, stride, dilation) -> tuple[slice, slice]:
    """The positions of the padded input that tap ``(kh, kw)`` reads, one per output pixel."""
    top, left = kh * dilation[0], kw * dilation[1]
    return (
        slice(top, top + stride[0] * (out_size[0] - 1) + 1, stride[0]),
        slice(left, left + stride[1] * (out_size[1] - 1) + 1, stride[1]),
    )


# ------------------------------------------------------------- im2col pair


def _windows(padded: np.ndarray, kernel, out_size, stride, dilation) -> np.ndarray:
    """A read-only view ``(N, C, KH, KW, OH, OW)`` of every window of ``padded``; no copy.

    ``windows[n, c, kh, kw, i, j] = padded[n, c, i * stride + kh * dilation, j * stride + kw * dilation]``.
    The tap axes come before the output axes so that one C-order copy of this
    view is the im2col matrix ``(C * KH * KW, OH * OW)`` of each image.
    """
    s_n, s_c, s_h, s_w = padded.strides
    shape = padded.shape[:2] + tuple(kernel) + tuple(out_size)
    strides = (s_n, s_c, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1])
    return as_strided(padded, shape=shape, strides=strides, writeable=False)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold every window of ``x`` into a column: the matrix that turns convolution into a product.

    x: (N, C, H, W); kernel_size: KH or (KH, KW).
    Returns cols: (N, C * KH * KW, OH * OW), with row ``c * KH * KW + kh * KW + kw``
    and column ``i * OW + j`` holding
    ``x_padded[n, c, i * stride + kh * dilation, j * stride + kw * dilation]``, so that
    ``out[n] = w.reshape(F, -1) @ cols[n]`` for a convolution without groups.
    ``OH = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W).
    Matches ``torch.nn.functional.unfold``.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"im2col: x must have shape (N, C, H, W), got shape {x.shape}")
    kernel = pair(kernel_size, "kernel_size", 1, "im2col")
    stride = pair(stride, "stride", 1, "im2col")
    padding = pair(padding, "padding", 0, "im2col")
    dilation = pair(dilation, "dilation", 1, "im2col")
    _check_window_fits(x.shape, kernel, stride, padding, dilation, "im2col")
    out_size = _conv_out_size(x.shape, kernel, stride, padding, dilation)
    columns = _unfold(x, kernel, out_size, stride, padding, dilation)
    return columns.reshape(x.shape[0], -1, out_size[0] * out_size[1])


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Fold columns back into an image, *adding* the values of overlapping windows.

    cols: (N, C * KH * KW, OH * OW) laid out as :func:`im2col` returns them;
    input_shape: (N, C, H, W) of the image they came from. Returns (N, C, H, W).
    It is the adjoint (transpose) of :func:`im2col`, which is why the backward
    pass of a convolution uses it: each input pixel receives the sum of the
    gradients of every window it took part in. Matches ``torch.nn.functional.fold``.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    cols = np.asarray(cols)
    if len(input_shape) != 4:
        raise ValueError(f"col2im: input_shape must be (N, C, H, W), got {tuple(input_shape)}")
    kernel = pair(kernel_size, "kernel_size", 1, "col2im")
    stride = pair(stride, "stride", 1, "col2im")
    padding = pair(padding, "padding", 0, "col2im")
    dilation = pair(dilation, "dilation", 1, "col2im")
    _check_window_fits(input_shape, kernel, stride, padding, dilation, "col2im")
    out_size = _conv_out_size(input_shape, kernel, stride, padding, dilation)
    batch, channels = input_shape[:2]
    expected = (batch, channels * kernel[0] * kernel[1], out_size[0] * out_size[1])
    if cols.shape != expected:
        raise ValueError(
            f"col2im: cols must have shape (N, C * KH * KW, OH * OW) = {expected} for input_shape "
            f"{tuple(input_shape)} and kernel {kernel}, got shape {cols.shape}"
        )
    columns = cols.reshape((batch, channels) + kernel + out_size)
    return _fold(columns, tuple(input_shape), kernel, stride, padding, dilation)


def _unfold(x, kernel, out_size, stride, padding, dilation) -> np.ndarray:
    """im2col as a contiguous (N, C, KH, KW, OH, OW) array (one copy of the windows)."""
    windows = _windows(_pad(x, padding), kernel, out_size, stride, dilation)
    return np.ascontiguousarray(windows)


def _fold(columns, out_shape, kernel, stride, padding, dilation) -> np.ndarray:
    """col2im on a (N, C, KH, KW, H_in, W_in) array, into an image of ``out_shape`` (N, C, H, W)."""
    batch, channels, height, width = out_shape
    padded = np.empty((batch, channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=columns.dtype)
    _fold_add(columns, padded, stride, dilation)
    return np.ascontiguousarray(_unpad(padded, padding))


def _fold_add(columns, padded, stride, dilation) -> None:
    """col2im on a (n, C, KH, KW, OH, OW) array into ``padded`` (n, C, H_p, W_p), overwritten.

    One strided slice-add per tap instead of ``np.add.at``: within one tap the
    windows touch distinct pixels, so a plain ``+=`` is correct, and KH * KW
    vectorised adds are far faster than a scattered accumulation.
    """
    padded.fill(0)
    out_size = columns.shape[-2:]
    for kh in range(columns.shape[2]):
        for kw in range(columns.shape[3]):
            rows, cols = _tap_slices(kh, kw, out_size, stride, dilation)
            padded[:, :, rows, cols] += columns[:, :, kh, kw]


# ------------------------------------------------------------ naive conv2d


def conv2d_forward_naive(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """The same convolution as :func:`conv2d_forward`, written as explicit loops to read, not to run.

    x: (N, C, H, W); w: (F, C // groups, KH, KW); b: (F,) or None.
    Returns ``(out, cache)``, out: (N, F, OH, OW) with
    ``OH = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W).
    One loop over images, filters and output pixels; the window sum is one dot product.

    Book: "Convolution arithmetic", section "Channels, filters and a batch" (``book/convolution_arithmetic.md``).
    """
    x, w, b, stride, padding, dilation, groups = _check_conv2d(
        x, w, b, stride, padding, dilation, groups, "conv2d_forward_naive"
    )
    batch, filters = x.shape[0], w.shape[0]
    group_channels, group_filters = w.shape[1], filters // groups
    out_size = _conv_out_size(x.shape, w.shape[2:], stride, padding, dilation)
    padded_input = _pad(x, padding)
    out = np.zeros((batch, filters) + out_size, dtype=x.dtype)
    for n in range(batch):
        for f in range(filters):
            first_channel = (f // group_filters) * group_channels
            channels = slice(first_channel, first_channel + group_channels)
            for i in range(out_size[0]):
                for j in range(out_size[1]):
                    rows, cols = _naive_window(i, j, w.shape[2:], stride, dilation)
                    window = padded_input[n, channels, rows, cols]
                    out[n, f, i, j] = np.sum(window * w[f]) + (b[f] if b is not None else 0.0)
    cache = (x, w, b is not None, stride, padding, dilation, groups)
    return out, cache


def conv2d_backward_naive(dout, cache):
    """Gradients of :func:`conv2d_forward_naive` by the same loops.

    dout: (N, F, OH, OW). Returns ``(dx, dw, db)`` with dx: (N, C, H, W),
    dw: (F, C // groups, KH, KW), db: (F,) or None. Each output pixel sends
    ``dout * w`` back to its window of the input and ``dout * window`` to the filter.

    Book: "Convolution arithmetic", section "Channels, filters and a batch" (``book/convolution_arithmetic.md``).
    """
    x, w, has_bias, stride, padding, dilation, groups = cache
    dout = np.asarray(dout, dtype=x.dtype)
    batch, filters = x.shape[0], w.shape[0]
    group_channels, group_filters = w.shape[1], filters // groups
    padded_input = _pad(x, padding)
    dpadded = np.zeros_like(padded_input)
    dw = np.zeros_like(w)
    for n in range(batch):
        for f in range(filters):
            first_channel = (f // group_filters) * group_channels
            channels = slice(first_channel, first_channel + group_channels)
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows, cols = _naive_window(i, j, w.shape[2:], stride, dilation)
                    dw[f] += dout[n, f, i, j] * padded_input[n, channels, rows, cols]
                    dpadded[n, channels, rows, cols] += dout[n, f, i, j] * w[f]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return np.ascontiguousarray(_unpad(dpadded, padding)), dw, db


def _naive_window(i: int, j: int, kernel, stride, dilation) -> tuple[slice, slice]:
    """The rows and columns of the padded input that output pixel (i, j) sees."""
    top, left = i * stride[0], j * stride[1]
    return (
        slice(top, top + dilation[0] * (kernel[0] - 1) + 1, dilation[0]),
        slice(left, left + dilation[1] * (kernel[1] - 1) + 1, dilation[1]),
    )
