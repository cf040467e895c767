"""Convolution layers in NumPy: naive loops for reading, im2col for speed.

Symbols used in every docstring here, in the book and in the tests:

- ``x: (N, C, H, W)``: N images with C channels of height H and width W;
- ``w: (F, C // groups, KH, KW)``: F filters of KH x KW taps;
- ``b: (F,)`` or ``None``;
- ``out: (N, F, H_out, W_out)`` with
  ``H_out = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1``
  (and the same for W), exactly as ``torch.nn.functional.conv2d``.

Like every layer in :mod:`cnnbook.reference`, a forward returns
``(out, cache)`` and a backward takes ``(dout, cache)`` and returns the
gradients in argument order. ``stride``, ``padding`` and ``dilation`` accept an
int or an ``(along H, along W)`` pair. The layers compute *cross-correlation*
(no kernel flip), as deep-learning libraries do.

Outputs have the dtype of the inputs (NumPy's promotion of ``x``, ``w`` and
``b``, at least float32): float32 stays float32.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import pair, window_output_size

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_naive",
    "conv2d_backward_naive",
    "im2col",
    "col2im",
    "conv1d_forward",
    "conv1d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


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


def _windows(padded: np.ndarray, kernel, out_size, stride, dilation) -> np.ndarray:
    """A read-only view ``(N, C, KH, KW, H_out, W_out)`` of every window of ``padded``; no copy.

    ``windows[n, c, kh, kw, i, j] = padded[n, c, i * stride + kh * dilation, j * stride + kw * dilation]``.
    The tap axes come before the output axes so that one C-order copy of this
    view is the im2col matrix ``(C * KH * KW, H_out * W_out)`` of each image.
    """
    s_n, s_c, s_h, s_w = padded.strides
    shape = padded.shape[:2] + tuple(kernel) + tuple(out_size)
    strides = (s_n, s_c, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1])
    return as_strided(padded, shape=shape, strides=strides, writeable=False)


# ------------------------------------------------------------- im2col pair


def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold every window of ``x`` into a column: the matrix that turns convolution into a product.

    x: (N, C, H, W); kernel_size: KH or (KH, KW).
    Returns cols: (N, C * KH * KW, H_out * W_out), with row ``c * KH * KW + kh * KW + kw``
    and column ``i * W_out + j`` holding
    ``x_padded[n, c, i * stride + kh * dilation, j * stride + kw * dilation]``, so that
    ``out[n] = w.reshape(F, -1) @ cols[n]`` for a convolution without groups.
    ``H_out = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W).
    Matches ``torch.nn.functional.unfold``.
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

    cols: (N, C * KH * KW, H_out * W_out) laid out as :func:`im2col` returns them;
    input_shape: (N, C, H, W) of the image they came from. Returns (N, C, H, W).
    It is the adjoint (transpose) of :func:`im2col`, which is why the backward
    pass of a convolution uses it: each input pixel receives the sum of the
    gradients of every window it took part in. Matches ``torch.nn.functional.fold``.
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
            f"col2im: cols must have shape (N, C * KH * KW, H_out * W_out) = {expected} for input_shape "
            f"{tuple(input_shape)} and kernel {kernel}, got shape {cols.shape}"
        )
    columns = cols.reshape((batch, channels) + kernel + out_size)
    return _fold(columns, tuple(input_shape), kernel, stride, padding, dilation)


def _conv_out_size(x_shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    return tuple(window_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))


def _unfold(x, kernel, out_size, stride, padding, dilation) -> np.ndarray:
    """im2col as a contiguous (N, C, KH, KW, H_out, W_out) array (one copy of the windows)."""
    windows = _windows(_pad(x, padding), kernel, out_size, stride, dilation)
    return np.ascontiguousarray(windows)


def _fold(columns, out_shape, kernel, stride, padding, dilation) -> np.ndarray:
    """col2im on a (N, C, KH, KW, H_in, W_in) array, into an image of ``out_shape`` (N, C, H, W)."""
    batch, channels, height, width = out_shape
    padded = np.empty((batch, channels, height + 2 * padding[0], width + 2 * padding[1]), dtype=columns.dtype)
    _fold_add(columns, padded, stride, dilation)
    return np.ascontiguousarray(_unpad(padded, padding))


# ----------------------------------------------------------------- conv2d

#: How many bytes of im2col columns :func:`conv2d_forward` builds at a time.
#: Unfolding the whole batch at once needs C * KH * KW times the input's memory
#: (hundreds of MB for a real layer); a few images at a time stay in the CPU
#: cache, which makes the copy and the matrix products that read it faster.
COLUMNS_CHUNK_BYTES = 2 * 2**20


def conv2d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) by im2col and matrix products.

    x: (N, C, H, W); w: (F, C // groups, KH, KW); b: (F,) or None.
    Returns ``(out, cache)`` with out: (N, F, H_out, W_out),
    ``H_out = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W), and
    ``out[n, f, i, j] = b[f] + sum_{c, kh, kw} w[f, c, kh, kw] *
    x_padded[n, g * C // groups + c, i * stride + kh * dilation, j * stride + kw * dilation]``
    where ``g = f // (F // groups)`` is the group of filter f.
    Same result as ``torch.nn.functional.conv2d(x, w, b, stride, padding, dilation, groups)``.

    How: ``out[n] = w.reshape(F, -1) @ im2col(x)[n]`` (per group), computed a
    few images at a time (:data:`COLUMNS_CHUNK_BYTES`); a 1x1 convolution skips
    im2col, and a depthwise one (groups == C) sums KH * KW shifted copies of x instead.
    Raises ``ValueError`` naming the shapes for a wrong rank, a channel mismatch,
    groups that do not divide C and F, a wrong bias shape, or a window larger than the padded input.
    """
    x, w, b, stride, padding, dilation, groups = _check_conv2d(
        x, w, b, stride, padding, dilation, groups, "conv2d_forward"
    )
    out_size = _conv_out_size(x.shape, w.shape[2:], stride, padding, dilation)
    if _is_depthwise(x.shape, groups):
        out = _depthwise_forward(x, w, out_size, stride, padding, dilation)
    else:
        out = _gemm_forward(x, w, out_size, stride, padding, dilation, groups)
    if b is not None:
        out += b[:, None, None]
    # The cache keeps x, not its columns: rebuilding them chunk by chunk in the
    # backward pass is cheaper than keeping KH * KW copies of x in memory.
    cache = (x, w, b is not None, stride, padding, dilation, groups)
    return out, cache


def conv2d_backward(dout, cache):
    """Gradients of :func:`conv2d_forward`.

    dout: (N, F, H_out, W_out), the upstream gradient; cache: from the forward.
    Returns ``(dx, dw, db)``: dx: (N, C, H, W), dw: (F, C // groups, KH, KW),
    db: (F,) or None when the forward had no bias.
    Per image and group: ``dw += dout[n] @ cols[n]^T``, ``dx[n] = col2im(w^T @ dout[n])``,
    ``db = dout`` summed over N, H_out and W_out.
    """
    x, w, has_bias, stride, padding, dilation, groups = cache
    out_size = _conv_out_size(x.shape, w.shape[2:], stride, padding, dilation)
    dout = _check_dout(dout, (x.shape[0], w.shape[0]) + out_size, "conv2d_backward", "(N, F, H_out, W_out)")
    dout = dout.astype(w.dtype, copy=False)
    if _is_depthwise(x.shape, groups):
        dx, dw = _depthwise_backward(dout, x, w, stride, padding, dilation)
    else:
        dx, dw = _gemm_backward(dout, x, w, out_size, stride, padding, dilation, groups)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def _check_dout(dout, expected, op: str, symbols: str) -> np.ndarray:
    dout = np.asarray(dout)
    if dout.shape != tuple(expected):
        raise ValueError(f"{op}: dout must have shape {symbols} = {tuple(expected)}, got {dout.shape}")
    return dout


def _is_depthwise(x_shape, groups: int) -> bool:
    return groups > 1 and groups == x_shape[1]


def _is_pointwise(kernel, stride, padding, dilation) -> bool:
    return tuple(kernel) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _column_chunks(x, kernel, out_size, stride, padding, dilation, groups):
    """Yield ``(first_image, columns)``: im2col of a few images at a time, (n, groups, C // groups * KH * KW, P).

    P = H_out * W_out. The buffers are reused from one chunk to the next, so a
    consumer must be done with one chunk before asking for the next.
    """
    batch, channels, height, width = x.shape
    positions = out_size[0] * out_size[1]
    image_bytes = channels * kernel[0] * kernel[1] * positions * x.itemsize
    chunk = int(max(1, min(batch, COLUMNS_CHUNK_BYTES // max(image_bytes, 1))))
    padded_shape = (chunk, channels, height + 2 * padding[0], width + 2 * padding[1])
    padded_input = np.zeros(padded_shape, dtype=x.dtype) if padding != (0, 0) else None
    columns = np.empty((chunk, channels) + tuple(kernel) + tuple(out_size), dtype=x.dtype)
    for start in range(0, batch, chunk):
        images = x[start : start + chunk]
        n = images.shape[0]
        if padded_input is not None:
            # Only the interior is written: the zero border stays from the allocation.
            padded_input[:n, :, padding[0] : padding[0] + height, padding[1] : padding[1] + width] = images
            images = padded_input[:n]
        np.copyto(columns[:n], _windows(images, kernel, out_size, stride, dilation))
        yield start, columns[:n].reshape(n, groups, -1, positions)


def _gemm_forward(x, w, out_size, stride, padding, dilation, groups):
    """out[n, g] = w[g] @ cols[n, g], as a batched matrix product per chunk of images."""
    batch, channels = x.shape[:2]
    filters, kernel = w.shape[0], w.shape[2:]
    positions = out_size[0] * out_size[1]
    weights = w.reshape(groups, filters // groups, -1)
    out = np.empty((batch, groups, filters // groups, positions), dtype=x.dtype)
    if _is_pointwise(kernel, stride, padding, dilation):
        # A 1x1 convolution already is a matrix product: x itself is the column matrix.
        np.matmul(weights, x.reshape(batch, groups, channels // groups, positions), out=out)
    else:
        for start, columns in _column_chunks(x, kernel, out_size, stride, padding, dilation, groups):
            np.matmul(weights, columns, out=out[start : start + columns.shape[0]])
    return out.reshape((batch, filters) + tuple(out_size))


def _gemm_backward(dout, x, w, out_size, stride, padding, dilation, groups):
    batch, channels, height, width = x.shape
    filters, kernel = w.shape[0], w.shape[2:]
    dout_matrix = dout.reshape(batch, groups, filters // groups, -1)
    weights_t = w.reshape(groups, filters // groups, -1).swapaxes(-1, -2)
    if _is_pointwise(kernel, stride, padding, dilation):
        x_matrix = x.reshape(batch, groups, channels // groups, -1)
        dw = np.matmul(dout_matrix, x_matrix.swapaxes(-1, -2)).sum(axis=0)
        return np.matmul(weights_t, dout_matrix).reshape(x.shape), dw.reshape(w.shape)
    dx = np.empty(x.shape, dtype=x.dtype)
    dw = np.zeros((groups, filters // groups, weights_t.shape[1]), dtype=x.dtype)
    dpadded = None
    for start, columns in _column_chunks(x, kernel, out_size, stride, padding, dilation, groups):
        n = columns.shape[0]
        dout_chunk = dout_matrix[start : start + n]
        # dw sums one (F, C*KH*KW) product per image: small next to the columns.
        dw += np.matmul(dout_chunk, columns.swapaxes(-1, -2)).sum(axis=0)
        dcolumns = np.matmul(weights_t, dout_chunk).reshape((n, channels) + tuple(kernel) + tuple(out_size))
        if dpadded is None:
            dpadded = np.empty((columns.shape[0], channels, height + 2 * padding[0], width + 2 * padding[1]), x.dtype)
        _fold_add(dcolumns, dpadded[:n], stride, dilation)
        dx[start : start + n] = _unpad(dpadded[:n], padding)
    return dx, dw.reshape(w.shape)


def _fold_add(columns, padded, stride, dilation) -> None:
    """col2im on a (n, C, KH, KW, H_out, W_out) array into ``padded`` (n, C, H_p, W_p), overwritten.

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


#: How many bytes of padded input the depthwise convolution processes at a
#: time (a few hundred (image, channel) planes), so that its buffers stay in
#: the CPU cache while each NumPy call still has enough work to be efficient.
DEPTHWISE_CHUNK_BYTES = 1 * 2**20


def _depthwise_forward(x, w, out_size, stride, padding, dilation):
    """groups == C: each channel has its own filters, so there is no large matrix product to build.

    A per-tap multiply-accumulate (KH * KW vectorised operations over many
    (image, channel) planes at once, each plane scaled by its own filter tap)
    beats both im2col (C tiny matrix products per image) and loops over pixels.
    """
    if stride[0] != stride[1]:
        return _depthwise_strided_forward(x, w, out_size, stride, padding, dilation)
    plan = _FlatDepthwise(x.shape, w.shape, stride[0], padding, dilation, x.dtype)
    # out viewed as (planes, multiplier, H_out, W_out): plane n*C + c feeds filters c*m .. c*m + m - 1
    out = np.empty((plan.planes, plan.multiplier) + tuple(out_size), dtype=x.dtype)
    total = np.empty((plan.chunk, plan.length), dtype=x.dtype)
    for rows in plan.chunks():
        padded = plan.padded(x, rows)
        for j in range(plan.multiplier):
            _accumulate_taps(padded, plan.taps(w, rows, j), plan, total[: padded.shape[0]])
            out[rows, j] = plan.as_image(total[: padded.shape[0]])
    return out.reshape((x.shape[0], w.shape[0]) + tuple(out_size))


def _depthwise_backward(dout, x, w, stride, padding, dilation):
    if stride[0] != stride[1]:
        return _depthwise_strided_backward(dout, x, w, stride, padding, dilation)
    plan = _FlatDepthwise(x.shape, w.shape, stride[0], padding, dilation, x.dtype)
    dout_planes = dout.reshape((plan.planes, plan.multiplier) + dout.shape[2:])
    dx = np.empty((plan.planes, plan.height, plan.width), dtype=x.dtype)
    # d(loss)/d(tap) of every plane; summed over the images at the end
    dtaps = np.empty((plan.planes, plan.multiplier, len(plan.shifts)), dtype=x.dtype)
    # dout laid out like the forward's flat output; the thrown-away positions stay zero.
    dout_flat = np.zeros((plan.chunk, plan.length), dtype=x.dtype)
    dpadded = np.empty((plan.chunk, plan.padded_size[0] * plan.padded_size[1]), dtype=x.dtype)
    scratch = np.empty((plan.chunk, plan.length), dtype=x.dtype)
    for rows in plan.chunks():
        padded = plan.padded(x, rows)
        count = padded.shape[0]
        dpadded[:count] = 0
        for j in range(plan.multiplier):
            plan.as_image(dout_flat[:count])[...] = dout_planes[rows, j]
            taps = plan.taps(w, rows, j)
            for tap, shift in enumerate(plan.shifts):
                window = plan.window(shift)
                dtaps[rows, j, tap] = np.einsum("rl,rl->r", dout_flat[:count], padded[:, window])
                np.multiply(dout_flat[:count], taps[:, tap : tap + 1], out=scratch[:count])
                dpadded[:count, window] += scratch[:count]
        dx[rows] = plan.interior(dpadded[:count])
    batch, channels = x.shape[:2]
    dw = dtaps.reshape(batch, channels * plan.multiplier, len(plan.shifts)).sum(axis=0)
    return dx.reshape(x.shape), dw.reshape(w.shape).astype(x.dtype, copy=False)


def _accumulate_taps(padded, taps, plan, total) -> None:
    """``total[r] = sum_t taps[r, t] * padded[r, window of tap t]``: one weight per plane and tap."""
    scratch = plan.scratch[: total.shape[0]]
    for tap, shift in enumerate(plan.shifts):
        product = total if tap == 0 else scratch
        np.multiply(padded[:, plan.window(shift)], taps[:, tap : tap + 1], out=product)
        if tap:
            total += scratch


class _FlatDepthwise:
    """Depthwise convolution on flattened padded planes, many (image, channel) planes at a time.

    The input is viewed as ``N * C`` planes (plane ``n * C + c`` is channel c of
    image n). With a padded plane flattened to one row of length H_p * W_p,
    output pixel (i, j) reads, for tap (kh, kw), position
    ``stride * (i * W_p + j) + shift`` with ``shift = kh * dilation * W_p + kw * dilation``:
    every tap is one (strided) slice of the rows, and one tap of one plane has
    one scalar weight. These long slices make NumPy's element-wise loops fast;
    the positions with j >= W_out are computed and thrown away.
    """

    def __init__(self, x_shape, w_shape, stride, padding, dilation, dtype):
        self.batch, self.channels, self.height, self.width = x_shape
        self.planes = self.batch * self.channels
        self.multiplier = w_shape[0] // self.channels
        self.stride, self.padding = stride, padding
        self.padded_size = (self.height + 2 * padding[0], self.width + 2 * padding[1])
        kernel = w_shape[2:]
        self.out_size = _conv_out_size(x_shape, kernel, (stride, stride), padding, dilation)
        pitch = self.padded_size[1]
        self.length = (self.out_size[0] - 1) * pitch + self.out_size[1]
        self.shifts = [
            kh * dilation[0] * pitch + kw * dilation[1] for kh in range(kernel[0]) for kw in range(kernel[1])
        ]
        plane_bytes = self.padded_size[0] * pitch * np.dtype(dtype).itemsize
        self.chunk = int(max(1, min(self.planes, DEPTHWISE_CHUNK_BYTES // plane_bytes)))
        self.padded_rows = np.zeros((self.chunk,) + self.padded_size, dtype=dtype)
        self.scratch = np.empty((self.chunk, self.length), dtype=dtype)
        self._plane_taps = None

    def chunks(self):
        """Yield slices of the N * C planes."""
        for start in range(0, self.planes, self.chunk):
            yield slice(start, min(self.planes, start + self.chunk))

    def taps(self, w, rows: slice, j: int) -> np.ndarray:
        """(planes in ``rows``, KH * KW): filter j of each plane's channel, tap by tap."""
        if self._plane_taps is None:
            per_channel = w.reshape(self.channels, self.multiplier, -1)
            # plane n * C + c uses channel c's filters: tile over the images once
            self._plane_taps = np.tile(per_channel, (self.batch, 1, 1))
        return self._plane_taps[rows, j]

    def window(self, shift: int) -> slice:
        """The positions of a flat padded row that the tap at ``shift`` reads, one per (flat) output."""
        return slice(shift, shift + self.stride * (self.length - 1) + 1, self.stride)

    def padded(self, x, rows: slice) -> np.ndarray:
        """Planes ``rows`` of x, zero-padded and flattened to (n, H_p * W_p), in a reused buffer."""
        pad_h, pad_w = self.padding
        planes = x.reshape(self.planes, self.height, self.width)[rows]
        buffer = self.padded_rows[: planes.shape[0]]
        buffer[:, pad_h : pad_h + self.height, pad_w : pad_w + self.width] = planes
        return buffer.reshape(planes.shape[0], -1)

    def as_image(self, flat: np.ndarray) -> np.ndarray:
        """View (n, length) as (n, H_out, W_out), skipping the thrown-away positions."""
        step = flat.strides[1]
        return as_strided(flat, (flat.shape[0],) + self.out_size, (flat.strides[0], self.padded_size[1] * step, step))

    def interior(self, flat_padded: np.ndarray) -> np.ndarray:
        planes = flat_padded.reshape((flat_padded.shape[0],) + self.padded_size)
        pad_h, pad_w = self.padding
        return planes[:, pad_h : pad_h + self.height, pad_w : pad_w + self.width]


def _depthwise_strided_forward(x, w, out_size, stride, padding, dilation):
    """Depthwise convolution for unequal strides: one strided slice of the whole batch per tap."""
    batch, channels = x.shape[:2]
    multiplier = w.shape[0] // channels
    padded_input = _pad(x, padding)
    taps = w.reshape(channels, multiplier, w.shape[2], w.shape[3])
    out = np.zeros((batch, channels, multiplier) + tuple(out_size), dtype=x.dtype)
    for kh in range(w.shape[2]):
        for kw in range(w.shape[3]):
            rows, cols = _tap_slices(kh, kw, out_size, stride, dilation)
            out += padded_input[:, :, None, rows, cols] * taps[None, :, :, kh, kw, None, None]
    return out.reshape((batch, channels * multiplier) + tuple(out_size))


def _depthwise_strided_backward(dout, x, w, stride, padding, dilation):
    batch, channels = x.shape[:2]
    multiplier = w.shape[0] // channels
    out_size = dout.shape[2:]
    dout = dout.reshape((batch, channels, multiplier) + out_size)
    padded_input = _pad(x, padding)
    taps = w.reshape(channels, multiplier, w.shape[2], w.shape[3])
    dpadded = np.zeros(padded_input.shape, dtype=x.dtype)
    dtaps = np.empty(taps.shape, dtype=x.dtype)
    for kh in range(w.shape[2]):
        for kw in range(w.shape[3]):
            rows, cols = _tap_slices(kh, kw, out_size, stride, dilation)
            window = padded_input[:, :, None, rows, cols]
            dtaps[:, :, kh, kw] = np.einsum("ncmhw,ncmhw->cm", dout, np.broadcast_to(window, dout.shape))
            dpadded[:, :, rows, cols] += np.einsum("ncmhw,cm->nchw", dout, taps[:, :, kh, kw])
    return np.ascontiguousarray(_unpad(dpadded, padding)), dtaps.reshape(w.shape)


# ------------------------------------------------------------ naive conv2d


def conv2d_forward_naive(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """The same convolution as :func:`conv2d_forward`, written as explicit loops to read, not to run.

    x: (N, C, H, W); w: (F, C // groups, KH, KW); b: (F,) or None.
    Returns ``(out, cache)``, out: (N, F, H_out, W_out) with
    ``H_out = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W).
    One loop over images, filters and output pixels; the window sum is one dot product.
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

    dout: (N, F, H_out, W_out). Returns ``(dx, dw, db)`` with dx: (N, C, H, W),
    dw: (F, C // groups, KH, KW), db: (F,) or None. Each output pixel sends
    ``dout * w`` back to its window of the input and ``dout * window`` to the filter.
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


# ----------------------------------------------------------------- conv1d


def conv1d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution: a 2-D convolution on images of height 1.

    x: (N, C, L); w: (F, C // groups, K); b: (F,) or None.
    Returns ``(out, cache)`` with out: (N, F, L_out),
    ``L_out = floor((L + 2 * padding - dilation * (K - 1) - 1) / stride) + 1``.
    Same result as ``torch.nn.functional.conv1d``.
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
    """
    dx, dw, db = conv2d_backward(np.asarray(dout)[:, :, None, :], cache)
    return dx[:, :, 0, :], dw[:, :, 0, :], db


def _single(value, name: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"conv1d_forward: {name} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return value


# ------------------------------------------------------ transposed conv2d


def conv_transpose2d_forward(x, w, b, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution ("deconvolution"): the backward-to-input of a convolution, used to upsample.

    x: (N, C_in, H, W); w: (C_in, C_out // groups, KH, KW), PyTorch's layout; b: (C_out,) or None.
    Returns ``(out, cache)`` with out: (N, C_out, H_out, W_out),
    ``H_out = (H - 1) * stride - 2 * padding + dilation * (KH - 1) + output_padding + 1`` (same for W).
    Each input pixel scatters ``x[n, c, i, j] * w[c]`` onto the output window at
    ``(i * stride, j * stride)``, exactly what :func:`col2im` does; ``output_padding``
    (< stride or < dilation) only adds rows/columns at the bottom/right.
    Same result as ``torch.nn.functional.conv_transpose2d``.
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

    dout: (N, C_out, H_out, W_out). Returns ``(dx, dw, db)``: dx: (N, C_in, H, W),
    dw: (C_in, C_out // groups, KH, KW), db: (C_out,) or None.
    The gradient to the input is an ordinary convolution of dout with w.
    """
    x, w, has_bias, out_shape, stride, padding, dilation, groups = cache
    batch, in_channels, height, width = x.shape
    kernel = w.shape[2:]
    op, symbols = "conv_transpose2d_backward", "(N, C_out, H_out, W_out)"
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
