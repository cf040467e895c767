"""Pooling layers in NumPy: max, average, global average and adaptive average.

Symbols as in :mod:`cnnbook.reference.conv`: ``x: (N, C, H, W)``, a window of
``KH x KW`` moved by ``stride`` (by default the kernel size, so windows do not
overlap), ``out: (N, C, OH, OW)`` with
``OH = floor((H + 2 * padding - KH) / stride) + 1`` (same for W), as
``torch.nn.functional.max_pool2d`` / ``avg_pool2d`` with ``ceil_mode=False``.

Forward returns ``(out, cache)``; backward takes ``(dout, cache)`` and returns ``dx``.
Pooling has no parameters, and each channel is pooled on its own.

Both window poolings loop over the KH * KW *taps* of the window rather than
over output pixels: tap ``(kh, kw)`` of every window at once is one strided
slice of the input, so a 2x2 pooling is four vectorised operations, and no
padded copy of the input is made (a tap simply skips the outputs whose pixel
falls in the padding). :mod:`cnnbook.reference.fast_pool` is the faster twin of
the max pooling here: its forward records each window's winner, as PyTorch does.
"""

from __future__ import annotations

import numpy as np

from ..shapes import pair, window_output_size

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
]


def _check_pool(x, kernel_size, stride, padding, op: str):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must have shape (N, C, H, W), got shape {x.shape}")
    kernel = pair(kernel_size, "kernel_size", 1, op)
    stride = kernel if stride is None else pair(stride, "stride", 1, op)
    padding = pair(padding, "padding", 0, op)
    for a, name in ((0, "H"), (1, "W")):
        if 2 * padding[a] > kernel[a]:
            raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}")
        if kernel[a] > x.shape[2 + a] + 2 * padding[a]:
            raise ValueError(
                f"{op}: the {kernel[a]}-wide window along {name} does not fit the padded input "
                f"{x.shape[2 + a]} + 2 * {padding[a]}; x has shape {x.shape}, kernel {kernel}"
            )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    out_size = tuple(window_output_size(x.shape[2 + a], kernel[a], stride[a], padding[a]) for a in (0, 1))
    return x, kernel, stride, padding, out_size


def _check_dout(dout, expected, op: str) -> np.ndarray:
    dout = np.asarray(dout)
    if dout.shape != tuple(expected):
        raise ValueError(f"{op}: dout must have shape {tuple(expected)} (the forward's output), got {dout.shape}")
    return dout


def _tap_range(offset: int, out_len: int, stride: int, pad: int, in_len: int):
    """Along one axis, which outputs tap ``offset`` of the window reads inside the input, and where.

    Output i reads input ``i * stride + offset - pad``; positions that fall in the
    padding are skipped instead of padding a copy of x. Returns
    ``(outputs, inputs)`` as two slices, or None when the tap only sees padding.
    """
    first = max(0, -((offset - pad) // stride))  # ceil((pad - offset) / stride)
    last = min(out_len - 1, (in_len - 1 + pad - offset) // stride)
    if last < first:
        return None
    start = first * stride + offset - pad
    return slice(first, last + 1), slice(start, start + (last - first) * stride + 1, stride)


def _taps(x_shape, out_size, kernel, stride, padding):
    """Yield ``(out_block, x_block)`` index tuples for every tap (kh, kw), in row-major order."""
    for kh in range(kernel[0]):
        rows = _tap_range(kh, out_size[0], stride[0], padding[0], x_shape[2])
        for kw in range(kernel[1]):
            cols = _tap_range(kw, out_size[1], stride[1], padding[1], x_shape[3])
            if rows is not None and cols is not None:
                yield (Ellipsis, rows[0], cols[0]), (Ellipsis, rows[1], cols[1])


def _reaches_every_output(out_block, out_size) -> bool:
    rows, cols = out_block[1:]
    return (rows.start, rows.stop, cols.start, cols.stop) == (0, out_size[0], 0, out_size[1])


#: Bytes of input that pooling works on at a time: a few whole channel planes, so
#: that the KH * KW taps read them from the CPU cache rather than from memory.
POOL_CHUNK_BYTES = 256 * 2**10


def _plane_chunks(x_shape, itemsize: int):
    """Slices over the N * C channel planes of an (N, C, H, W) array, a cache-sized group at a time."""
    planes = x_shape[0] * x_shape[1]
    chunk = max(1, POOL_CHUNK_BYTES // (x_shape[2] * x_shape[3] * itemsize))
    for start in range(0, planes, chunk):
        yield slice(start, min(planes, start + chunk))


def _as_planes(array: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N * C, H, W)."""
    return array.reshape((-1,) + array.shape[2:])


# ---------------------------------------------------------------------- max


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling: the largest value of each KH x KW window.

    x: (N, C, H, W); kernel_size: KH or (KH, KW); stride: defaults to kernel_size; padding: at most KH // 2
    (padded positions are never the maximum, as if they held -inf).
    Returns ``(out, cache)`` with out: (N, C, OH, OW), ``OH = floor((H + 2 * padding - KH) / stride) + 1``.
    Same result as ``torch.nn.functional.max_pool2d(x, kernel_size, stride, padding)``.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    x, kernel, stride, padding, out_size = _check_pool(x, kernel_size, stride, padding, "max_pool2d_forward")
    taps = list(_taps(x.shape, out_size, kernel, stride, padding))
    # Start from a tap that reaches every output (tap (0, 0) without padding), else from -inf.
    whole = next((tap for tap in taps if _reaches_every_output(tap[0], out_size)), None)
    others = [tap for tap in taps if tap is not whole]
    x_planes = _as_planes(x)
    out = np.empty((x_planes.shape[0],) + out_size, dtype=x.dtype)
    for planes in _plane_chunks(x.shape, x.itemsize):
        x_chunk, out_chunk = x_planes[planes], out[planes]
        if whole is None:
            out_chunk.fill(-np.inf)
        else:
            np.copyto(out_chunk, x_chunk[whole[1]])
        for out_block, x_block in others:
            np.maximum(out_chunk[out_block], x_chunk[x_block], out=out_chunk[out_block])
    out = out.reshape(x.shape[:2] + out_size)
    # Backward finds the winners again from (x, out): the forward stays KH * KW maximum operations.
    return out, (x, out, kernel, stride, padding)


def max_pool2d_backward(dout, cache):
    """Gradient of :func:`max_pool2d_forward`: each window's dout goes to its maximum.

    dout: (N, C, OH, OW). Returns dx: (N, C, H, W). When a window holds
    the maximum more than once, the first one in row-major order receives the
    gradient, as in PyTorch (the gradient of max is not unique there).

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    x, out, kernel, stride, padding = cache
    dout = _check_dout(dout, out.shape, "max_pool2d_backward").astype(x.dtype, copy=False)
    taps = list(_taps(x.shape, out.shape[2:], kernel, stride, padding))
    overlapping = kernel[0] > stride[0] or kernel[1] > stride[1]
    x_planes, out_planes, dout_planes = _as_planes(x), _as_planes(out), _as_planes(dout)
    dx = np.zeros(x_planes.shape, dtype=x.dtype)
    for planes in _plane_chunks(x.shape, x.itemsize):
        x_chunk, out_chunk, dout_chunk, dx_chunk = x_planes[planes], out_planes[planes], dout_planes[planes], dx[planes]
        unclaimed = np.ones(out_chunk.shape, dtype=bool)  # windows whose maximum has not been found yet
        contribution = np.empty(out_chunk.shape, dtype=x.dtype) if overlapping else None
        for out_block, x_block in taps:
            winner = x_chunk[x_block] == out_chunk[out_block]
            winner &= unclaimed[out_block]
            unclaimed[out_block] ^= winner  # winner is a subset of unclaimed: this clears it
            # Multiplying by the 0/1 mask is much faster than a masked add (np.add(..., where=)).
            if overlapping:
                np.multiply(dout_chunk[out_block], winner, out=contribution[out_block])
                dx_chunk[x_block] += contribution[out_block]
            else:
                # Each pixel lies in one window at most, so this tap's slice of dx is written once.
                np.multiply(dout_chunk[out_block], winner, out=dx_chunk[x_block])
    return dx.reshape(x.shape)


# ------------------------------------------------------------------ average


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling: the mean of each KH x KW window.

    x: (N, C, H, W); kernel_size: KH or (KH, KW); stride: defaults to kernel_size; padding: at most KH // 2.
    Returns ``(out, cache)`` with out: (N, C, OH, OW), ``OH = floor((H + 2 * padding - KH) / stride) + 1``.
    With ``count_include_pad`` (the default, as in PyTorch) padded zeros count in
    the mean, so the divisor is always KH * KW; otherwise it is the number of
    real pixels in the window. Same result as
    ``torch.nn.functional.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=...)``.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    x, kernel, stride, padding, out_size = _check_pool(x, kernel_size, stride, padding, "avg_pool2d_forward")
    taps = list(_taps(x.shape, out_size, kernel, stride, padding))
    x_planes = _as_planes(x)
    out = np.zeros((x_planes.shape[0],) + out_size, dtype=x.dtype)
    for planes in _plane_chunks(x.shape, x.itemsize):
        x_chunk, out_chunk = x_planes[planes], out[planes]
        for out_block, x_block in taps:
            out_chunk[out_block] += x_chunk[x_block]
    divisor = _window_sizes(x.shape, out_size, kernel, stride, padding, count_include_pad, x.dtype)
    out /= divisor
    return out.reshape(x.shape[:2] + out_size), (x.shape, divisor, kernel, stride, padding)


def avg_pool2d_backward(dout, cache):
    """Gradient of :func:`avg_pool2d_forward`: each window's dout, divided by its divisor, goes to all its pixels.

    dout: (N, C, OH, OW). Returns dx: (N, C, H, W).

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    x_shape, divisor, kernel, stride, padding = cache
    out_size = tuple((x_shape[2 + a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in (0, 1))
    dout = _check_dout(dout, x_shape[:2] + out_size, "avg_pool2d_backward").astype(divisor.dtype, copy=False)
    share = _as_planes(dout / divisor)
    dx = np.zeros((x_shape[0] * x_shape[1],) + tuple(x_shape[2:]), dtype=divisor.dtype)
    for planes in _plane_chunks(x_shape, divisor.itemsize):
        share_chunk, dx_chunk = share[planes], dx[planes]
        for out_block, x_block in _taps(x_shape, out_size, kernel, stride, padding):
            dx_chunk[x_block] += share_chunk[out_block]
    return dx.reshape(x_shape)


def _window_sizes(x_shape, out_size, kernel, stride, padding, count_include_pad: bool, dtype) -> np.ndarray:
    """The divisor of every window: KH * KW (a 0-d array), or the number of real pixels, (OH, OW)."""
    if count_include_pad:
        return np.asarray(kernel[0] * kernel[1], dtype=dtype)
    counts = []
    for axis in (0, 1):
        count = np.zeros(out_size[axis], dtype=dtype)
        for offset in range(kernel[axis]):
            taps = _tap_range(offset, out_size[axis], stride[axis], padding[axis], x_shape[2 + axis])
            if taps is not None:
                count[taps[0]] += 1
        counts.append(count)
    return np.outer(*counts)


# ----------------------------------------------------------- global average


def global_avg_pool2d_forward(x):
    """Global average pooling: one number per channel, the mean over all H x W positions.

    x: (N, C, H, W). Returns ``(out, cache)`` with out: (N, C).
    Same as ``x.mean(axis=(2, 3))`` and ``torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)``.

    Book: "Pooling", section "Global and adaptive average pooling" (``book/pooling.md``).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d_forward: x must have shape (N, C, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x.mean(axis=(2, 3)), (x.shape, x.dtype)


def global_avg_pool2d_backward(dout, cache):
    """Gradient of :func:`global_avg_pool2d_forward`: dout / (H * W) spread over every position.

    dout: (N, C). Returns dx: (N, C, H, W).

    Book: "Pooling", section "Global and adaptive average pooling" (``book/pooling.md``).
    """
    x_shape, dtype = cache
    dout = _check_dout(dout, x_shape[:2], "global_avg_pool2d_backward").astype(dtype, copy=False)
    share = dout / (x_shape[2] * x_shape[3])
    return np.ascontiguousarray(np.broadcast_to(share[:, :, None, None], x_shape))


# --------------------------------------------------------- adaptive average


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's bins: output i averages input ``floor(i * size / out)`` up to ``ceil((i + 1) * size / out)``."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(size: int, out: int, dtype) -> np.ndarray:
    """(out, size) matrix whose row i averages bin i: pooling along one axis is a matrix product."""
    matrix = np.zeros((out, size), dtype=dtype)
    for i, (start, end) in enumerate(_adaptive_bins(size, out)):
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling: average bins chosen so that the output is ``output_size`` whatever H, W are.

    x: (N, C, H, W); output_size: OH or (OH, OW).
    Returns ``(out, cache)`` with out: (N, C, OH, OW); ``out[..., i, j]`` is the mean of
    rows ``floor(i * H / OH)`` to ``ceil((i + 1) * H / OH) - 1`` and the matching columns (bins
    may overlap when H is not a multiple of OH). Same as ``torch.nn.functional.adaptive_avg_pool2d``.
    The bins are separable, so ``out = A_h @ x @ A_w^T`` with an averaging matrix per axis.

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """
    op = "adaptive_avg_pool2d_forward"
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must have shape (N, C, H, W), got shape {x.shape}")
    out_size = pair(output_size, "output_size", 1, op)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    rows = _averaging_matrix(x.shape[2], out_size[0], x.dtype)
    cols = _averaging_matrix(x.shape[3], out_size[1], x.dtype)
    out = rows @ x @ cols.T
    return out, (x.shape, rows, cols)


def adaptive_avg_pool2d_backward(dout, cache):
    """Gradient of :func:`adaptive_avg_pool2d_forward`: ``dx = A_h^T @ dout @ A_w``.

    dout: (N, C, OH, OW). Returns dx: (N, C, H, W).

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """
    x_shape, rows, cols = cache
    expected = x_shape[:2] + (rows.shape[0], cols.shape[0])
    dout = _check_dout(dout, expected, "adaptive_avg_pool2d_backward").astype(rows.dtype, copy=False)
    return rows.T @ dout @ cols


from ._renamed import module_getattr as _module_getattr  # noqa: E402  (old names, with a warning)

__getattr__ = _module_getattr(globals(), __name__)
