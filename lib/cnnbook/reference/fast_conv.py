"""Convolution in NumPy, made fast: the same results as the loops in :mod:`cnnbook.reference.conv`.

Shapes and symbols as there. :func:`conv2d_forward` computes
``out[n] = w.reshape(F, -1) @ im2col(x)[n]`` per group, a few images at a
time so the column buffer stays in the CPU cache; a 1x1 convolution needs no
im2col, and a depthwise convolution (``groups == C``), where a matrix product
has nothing to share, multiplies and adds ``KH * KW`` shifted copies of the
input instead. None of this changes the arithmetic a reader must understand,
only how fast NumPy does it: ``tests/test_reference_conv.py`` checks every path
against the naive loops and ``torch.nn.functional.conv2d``, and
``benchmarks/bench_conv.py`` measures the speed.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .conv import _check_conv2d, _check_dout, _conv_out_size, _fold_add, _pad, _tap_slices, _unpad, _windows

__all__ = ["conv2d_forward", "conv2d_backward"]


#: How many bytes of im2col columns :func:`conv2d_forward` builds at a time.
#: Unfolding the whole batch at once needs C * KH * KW times the input's memory
#: (hundreds of MB for a real layer); a few images at a time stay in the CPU
#: cache, which makes the copy and the matrix products that read it faster.
COLUMNS_CHUNK_BYTES = 2 * 2**20


def conv2d_forward(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) by im2col and matrix products.

    x: (N, C, H, W); w: (F, C // groups, KH, KW); b: (F,) or None.
    Returns ``(out, cache)`` with out: (N, F, OH, OW),
    ``OH = floor((H + 2 * padding - dilation * (KH - 1) - 1) / stride) + 1`` (same for W), and
    ``out[n, f, i, j] = b[f] + sum_{c, kh, kw} w[f, c, kh, kw] *
    x_padded[n, g * C // groups + c, i * stride + kh * dilation, j * stride + kw * dilation]``
    where ``g = f // (F // groups)`` is the group of filter f.
    Same result as ``torch.nn.functional.conv2d(x, w, b, stride, padding, dilation, groups)``.

    How: ``out[n] = w.reshape(F, -1) @ im2col(x)[n]`` (per group), computed a
    few images at a time (:data:`COLUMNS_CHUNK_BYTES`); a 1x1 convolution skips
    im2col, and a depthwise one (groups == C) sums KH * KW shifted copies of x instead.
    Raises ``ValueError`` naming the shapes for a wrong rank, a channel mismatch,
    groups that do not divide C and F, a wrong bias shape, or a window larger than the padded input.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
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

    dout: (N, F, OH, OW), the upstream gradient; cache: from the forward.
    Returns ``(dx, dw, db)``: dx: (N, C, H, W), dw: (F, C // groups, KH, KW),
    db: (F,) or None when the forward had no bias.
    Per image and group: ``dw += dout[n] @ cols[n]^T``, ``dx[n] = col2im(w^T @ dout[n])``,
    ``db = dout`` summed over N, OH and OW.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    x, w, has_bias, stride, padding, dilation, groups = cache
    out_size = _conv_out_size(x.shape, w.shape[2:], stride, padding, dilation)
    dout = _check_dout(dout, (x.shape[0], w.shape[0]) + out_size, "conv2d_backward", "(N, F, OH, OW)")
    dout = dout.astype(w.dtype, copy=False)
    if _is_depthwise(x.shape, groups):
        dx, dw = _depthwise_backward(dout, x, w, stride, padding, dilation)
    else:
        dx, dw = _gemm_backward(dout, x, w, out_size, stride, padding, dilation, groups)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def _is_depthwise(x_shape, groups: int) -> bool:
    return groups > 1 and groups == x_shape[1]


def _is_pointwise(kernel, stride, padding, dilation) -> bool:
    return tuple(kernel) == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _column_chunks(x, kernel, out_size, stride, padding, dilation, groups):
    """Yield ``(first_image, columns)``: im2col of a few images at a time, (n, groups, C // groups * KH * KW, P).

    P = OH * OW. The buffers are reused from one chunk to the next, so a
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
    # out viewed as (planes, multiplier, OH, OW): plane n*C + c feeds filters c*m .. c*m + m - 1
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
    the positions with j >= OW are computed and thrown away.
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
        """View (n, length) as (n, OH, OW), skipping the thrown-away positions."""
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
