"""Max pooling in NumPy, made fast: the same results as :mod:`cnnbook.reference.pool`.

The readable :func:`cnnbook.reference.pool.max_pool2d_backward` finds every
window's winner again from ``(x, out)``, tap by tap. Here, as in PyTorch, the
forward pass records the winners and the backward pass only scatters ``dout``
onto them:

- the forward computes the running maximum over the ``KH * KW`` taps (as the
  readable version), then one more sweep over the taps, last tap first, writes
  the winning tap into an index array: the first tap in row-major order that
  equals the maximum is written last, so ties go to it, as in PyTorch;
- the backward adds each ``dout`` to its winner with one ``np.add.at`` per
  cache-sized group of channel planes.

**Memory**: the cache holds one ``int32`` per output, the winner's position
``h * W + w`` inside its ``(H, W)`` plane (PyTorch keeps an ``int64`` per
output *and* the input). The readable version keeps ``x`` and ``out``
instead: for a 2x2, stride-2 pooling of float32 maps that is 5 bytes of input
and output per output element against 4 bytes of index here; for float64, 10
against 4. Inference (``max_pool2d_forward(..., need_index=False)``) skips the
index sweep and stores nothing.

``tests/test_reference_pool.py`` checks this module against
``torch.nn.functional.max_pool2d`` (ties, padding, overlapping windows, NaN),
and ``benchmarks/bench_pool.py`` measures it.
"""

from __future__ import annotations

import numpy as np

from .pool import _as_planes, _check_dout, _check_pool, _tap_range

__all__ = ["max_pool2d_forward", "max_pool2d_backward"]

#: Bytes of input the forward works on at a time (a few whole channel planes),
#: so that both sweeps over the taps read them from the CPU cache.
POOL_CHUNK_BYTES = 256 * 2**10


def _real_taps(x_shape, out_size, kernel, stride, padding):
    """``[(t, out_block, x_block)]`` for every tap ``t = kh * KW + kw`` that reads some input, in row-major order.

    The blocks leave out the outputs for which the tap falls in the padding.
    """
    taps = []
    for kh in range(kernel[0]):
        rows = _tap_range(kh, out_size[0], stride[0], padding[0], x_shape[2])
        for kw in range(kernel[1]):
            cols = _tap_range(kw, out_size[1], stride[1], padding[1], x_shape[3])
            if rows is not None and cols is not None:
                taps.append((kh * kernel[1] + kw, (Ellipsis, rows[0], cols[0]), (Ellipsis, rows[1], cols[1])))
    return taps


def _plane_chunks(planes: int, plane_bytes: int):
    chunk = max(1, POOL_CHUNK_BYTES // max(plane_bytes, 1))
    for start in range(0, planes, chunk):
        yield slice(start, min(planes, start + chunk))


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, need_index: bool = True):
    """Max pooling that records each window's winner for the backward pass.

    x: (N, C, H, W); kernel_size: KH or (KH, KW); stride: defaults to kernel_size; padding: at most KH // 2
    (padded positions never win). Returns ``(out, cache)`` with out: (N, C, OH, OW), the same values as
    :func:`cnnbook.reference.pool.max_pool2d_forward` and ``torch.nn.functional.max_pool2d``.
    The cache holds ``index``: (N, C, OH, OW) int32, the flat position ``h * W + w`` of each window's
    maximum in its (H, W) plane; the first maximum in row-major order when a window holds it more than
    once, and (as PyTorch) the last NaN when the window holds NaN. With ``need_index=False`` (inference)
    the index is not computed and the cache is None.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    x, kernel, stride, padding, out_size = _check_pool(x, kernel_size, stride, padding, "max_pool2d_forward")
    batch, channels, height, width = x.shape
    x_planes = _as_planes(x)
    planes = x_planes.shape[0]
    padded_size = (height + 2 * padding[0], width + 2 * padding[1])
    # Every tap as a full (OH, OW) view of the padded planes, in row-major order.
    taps = [
        (slice(None), _strided(kh, out_size[0], stride[0]), _strided(kw, out_size[1], stride[1]))
        for kh in range(kernel[0])
        for kw in range(kernel[1])
    ]
    out = np.empty((planes,) + out_size, dtype=x.dtype)
    # The winner's tap t is found as the largest "code" K - t among the taps equal to the maximum
    # (K = KH * KW): the smallest t, i.e. the first maximum in row-major order, as in PyTorch.
    code_dtype = np.uint8 if len(taps) < 2**8 else np.int32
    # int32 holds every position of a plane below 2**31 pixels (all real ones).
    index_dtype = np.int32 if height * width < 2**31 else np.int64
    index = np.empty((planes,) + out_size, dtype=index_dtype) if need_index else None
    chunks = list(_plane_chunks(planes, padded_size[0] * padded_size[1] * x.itemsize))
    chunk = chunks[0].stop
    # The -inf border of a padded buffer is written once; each chunk only fills the interior.
    padded_buffer = np.full((chunk,) + padded_size, -np.inf, dtype=x.dtype) if padding != (0, 0) else None
    if need_index:
        hits = np.empty((chunk,) + out_size, dtype=bool)
        scratch = np.empty((chunk,) + out_size, dtype=code_dtype)
        codes = np.empty((chunk,) + out_size, dtype=code_dtype)
        corner_rows = np.arange(out_size[0]) * stride[0] - padding[0]
        corner_cols = np.arange(out_size[1]) * stride[1] - padding[1]
        corners = (corner_rows[:, None] * width + corner_cols[None, :]).astype(index_dtype)
    for rows in chunks:
        count = rows.stop - rows.start
        if padded_buffer is None:
            padded = x_planes[rows]
        else:
            padded = padded_buffer[:count]
            padded[:, padding[0] : padding[0] + height, padding[1] : padding[1] + width] = x_planes[rows]
        # 1. The running maximum over the taps (NaN propagates, as in PyTorch).
        out_chunk = out[rows]
        np.copyto(out_chunk, padded[taps[0]])
        for view in taps[1:]:
            np.maximum(out_chunk, padded[view], out=out_chunk)
        if not need_index:
            continue
        # 2. The winner: code = max over taps of (K - t) * [tap t equals the maximum]. Whole-array
        #    multiplications of 0/1 bytes run far faster than masked writes (np.copyto(where=...)).
        code_chunk = codes[:count]
        code_chunk.fill(0)
        for t, view in enumerate(taps):
            np.equal(padded[view], out_chunk, out=hits[:count])
            np.multiply(hits[:count], code_dtype(len(taps) - t), out=scratch[:count])
            np.maximum(code_chunk, scratch[:count], out=code_chunk)
        _route_special_windows(x_planes[rows], out_chunk, code_chunk, x.shape, out_size, kernel, stride, padding)
        # From tap t = K - code to the flat position of its pixel in the (H, W) plane.
        kh, kw = np.divmod(len(taps) - code_chunk.astype(index_dtype), kernel[1])
        np.add(kh * width + kw, corners, out=index[rows])
    shape = (batch, channels) + out_size
    if not need_index:
        return out.reshape(shape), None
    overlapping = kernel[0] > stride[0] or kernel[1] > stride[1]
    return out.reshape(shape), (index.reshape(shape), x.shape, x.dtype, overlapping)


def _strided(offset: int, count: int, stride: int) -> slice:
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _route_special_windows(x_chunk, out_chunk, code_chunk, x_shape, out_size, kernel, stride, padding) -> None:
    """Windows whose maximum is NaN or -inf: redo their winner with PyTorch's rule, on real pixels only.

    A NaN maximum equals none of the taps, so the sweep above found no winner:
    PyTorch takes the window's last NaN. A -inf maximum also equals the -inf
    padding: PyTorch takes the first real pixel. Both are rare, so this loop
    over the taps (with the padding cut off) runs only when one occurs.
    """
    special = ~(out_chunk > -np.inf)  # NaN or -inf
    if not special.any():
        return
    taps, count = _real_taps(x_shape, out_size, kernel, stride, padding), kernel[0] * kernel[1]
    minus_inf, nan = out_chunk == -np.inf, np.isnan(out_chunk)
    for t, out_block, x_block in reversed(taps):  # the first real pixel is written last
        np.copyto(code_chunk[out_block], count - t, where=minus_inf[out_block])
    for t, out_block, x_block in taps:  # the last NaN is written last
        np.copyto(code_chunk[out_block], count - t, where=nan[out_block] & np.isnan(x_chunk[x_block]))


def max_pool2d_backward(dout, cache):
    """Gradient of :func:`max_pool2d_forward`: each window's dout is added to its recorded maximum.

    dout: (N, C, OH, OW). Returns dx: (N, C, H, W), equal to
    :func:`cnnbook.reference.pool.max_pool2d_backward` and to PyTorch's (ties and NaN included).
    Overlapping windows may share a winner: ``np.add.at`` adds their gradients (``dx[index] = dout`` would
    keep one); windows that do not overlap use that plain assignment, which is faster.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    if cache is None:
        raise ValueError("max_pool2d_backward: the cache has no index; the forward ran with need_index=False")
    index, x_shape, dtype, overlapping = cache
    dout = _check_dout(dout, index.shape, "max_pool2d_backward").astype(dtype, copy=False)
    planes, plane_size = x_shape[0] * x_shape[1], x_shape[2] * x_shape[3]
    dout_rows, index_rows = dout.reshape(planes, -1), index.reshape(planes, -1)
    dx = np.empty((planes, plane_size), dtype=dtype)
    for rows in _plane_chunks(planes, plane_size * dx.itemsize):
        # Positions in the chunk's flattened planes, as np.intp: indexing casts any other integer type
        # first, which costs more than the scatter itself.
        position = np.add(index_rows[rows], (np.arange(rows.stop - rows.start) * plane_size)[:, None], dtype=np.intp)
        dx_chunk = dx[rows].reshape(-1)  # a view: dx is contiguous
        dx_chunk.fill(0)
        if overlapping:
            np.add.at(dx_chunk, position.reshape(-1), dout_rows[rows].reshape(-1))
        else:  # every pixel lies in one window at most, so it has one gradient at most
            dx_chunk[position.reshape(-1)] = dout_rows[rows].reshape(-1)
    return dx.reshape(x_shape)
