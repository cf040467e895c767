"""Spatial batch norm in NumPy, made fast: the same results as :mod:`cnnbook.reference.norm`.

The readable :func:`cnnbook.reference.norm.batch_norm2d_forward` moves the
channels last and runs the (N * H * W, C) batch norm on the result; every
step there is a separate whole-array operation with its own temporary. Here
the (N, C, H, W) array is read as N * C contiguous rows of H * W values (row
``n * C + c`` belongs to channel c), a few rows at a time so that they stay in
the CPU cache:

- statistics in one sweep: each row's mean and sum of squared deviations
  (two-pass *within* the cached rows, so no cancellation), combined per
  channel in float64 with Chan's formula
  ``M2 = sum_rows [q_r + L (m_r - mean)^2]`` (L = H * W values per row);
- the output as one multiply-add, ``out = x * scale + shift`` with
  ``scale = weight / sqrt(var + eps)`` and ``shift = bias - mean * scale``;
- the backward as one sweep for the two sums it needs, ``sum(dout)`` and
  ``sum(dout * (x - mean))``, then one multiply-add per element:
  ``dx = a * dout + b * x + c`` with per-channel a, b, c.

The cache keeps x (no copy) and per-channel numbers, where the readable
version keeps two arrays of x's size. ``tests/test_reference_norm.py`` checks
this module against ``torch.nn.functional.batch_norm`` in float64, and
``benchmarks/bench_norm.py`` measures it.
"""

from __future__ import annotations

import numpy as np

from .norm import BatchNormState, _check_4d, _check_dout, _check_params

__all__ = ["batch_norm2d_forward", "batch_norm2d_backward"]

#: Bytes of x (whole rows of H * W values) processed at a time, so that each
#: row is read from memory once per sweep and its temporaries stay in the cache.
ROWS_CHUNK_BYTES = 256 * 2**10


def _row_chunks(rows: int, row_bytes: int):
    step = max(1, ROWS_CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def batch_norm2d_forward(x, weight, bias, state: BatchNormState, training: bool = True):
    """Spatial batch normalization (``torch.nn.BatchNorm2d``), fast; same contract as the readable one.

    x: (N, C, H, W); weight, bias: (C,); state: :class:`~cnnbook.reference.norm.BatchNormState`
    with (C,) statistics. Returns ``out: (N, C, H, W)`` and a cache for :func:`batch_norm2d_backward`.
    Training normalizes each channel with its mean and biased variance over (N, H, W) and updates
    ``state`` in place (running variance with the unbiased variance, as PyTorch); evaluation uses the
    running statistics. Equal, up to round-off, to :func:`cnnbook.reference.norm.batch_norm2d_forward`.

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """
    x = _check_4d(x, "batch_norm2d_forward")
    batch, channels, height, width = x.shape
    weight, bias = _check_params(weight, bias, (channels,), x.shape, x.dtype, "batch_norm2d_forward")
    if state.running_mean.shape != (channels,):
        raise ValueError(
            f"batch_norm2d_forward: state holds running statistics of shape {state.running_mean.shape}, "
            f"but x of shape {x.shape} has {channels} channels"
        )
    count = batch * height * width
    if training and count < 2:
        raise ValueError(
            f"batch_norm2d_forward: training needs more than one value per channel, got x of shape {x.shape}"
        )
    rows = np.ascontiguousarray(x).reshape(batch * channels, height * width)
    if training:
        mean, var = _channel_statistics(rows, batch, channels)
        momentum, stats_dtype = state.momentum, np.result_type(state.running_mean.dtype, x.dtype)
        state.running_mean = ((1 - momentum) * state.running_mean + momentum * mean).astype(stats_dtype)
        state.running_var = ((1 - momentum) * state.running_var + momentum * var * (count / (count - 1))).astype(
            stats_dtype
        )
    else:
        mean, var = state.running_mean.astype(np.float64), state.running_var.astype(np.float64)
    inv_std = 1.0 / np.sqrt(var + state.eps)
    scale = weight.astype(np.float64) * inv_std
    shift = bias.astype(np.float64) - mean * scale
    out = np.empty_like(rows)
    per_row = _per_row(batch, x.dtype, scale, shift)
    for block in _row_chunks(rows.shape[0], rows.shape[1] * x.itemsize):
        row_scale, row_shift = (values[block, None] for values in per_row)
        np.multiply(rows[block], row_scale, out=out[block])
        out[block] += row_shift
    cache = {"mode": "train" if training else "eval", "rows": rows, "mean": mean, "inv_std": inv_std,
             "weight": weight, "shape": x.shape}
    return out.reshape(x.shape), cache


def _per_row(batch: int, dtype, *per_channel):
    """Per-channel (C,) float64 values as (N * C,) values of x's dtype, one per row ``n * C + c``."""
    return [np.tile(values.astype(dtype), batch) for values in per_channel]


def _channel_statistics(rows: np.ndarray, batch: int, channels: int):
    """Per-channel mean and biased variance (float64, (C,)) of the (N * C, L) rows, in one sweep."""
    length = rows.shape[1]
    row_mean = np.empty(rows.shape[0], dtype=np.float64)
    row_sum = np.empty(rows.shape[0], dtype=np.float64)
    row_m2 = np.empty(rows.shape[0], dtype=np.float64)
    scratch = None
    for block in _row_chunks(rows.shape[0], length * rows.itemsize):
        values = rows[block]
        sums = values.sum(axis=1)
        means = sums / length  # each row's centre, rounded to x's dtype
        if scratch is None:
            scratch = np.empty_like(values)
        centered = np.subtract(values, means[:, None], out=scratch[: values.shape[0]])
        row_m2[block] = np.vecdot(centered, centered)
        row_mean[block], row_sum[block] = means, sums
    row_mean, row_sum, row_m2 = (a.reshape(batch, channels) for a in (row_mean, row_sum, row_m2))
    count = batch * length
    mean = row_sum.sum(axis=0) / count
    # Chan et al.: sum (x - mean)^2 = sum_rows [q_r + 2 (m_r - mean) d_r + L (m_r - mean)^2], where q_r is the
    # row's sum of squares about its centre m_r and d_r = sum (x - m_r) (zero but for m_r's rounding).
    offset = row_mean - mean
    deviation = row_sum - length * row_mean
    m2 = (row_m2 + 2 * offset * deviation + length * offset**2).sum(axis=0)
    return mean, np.maximum(m2, 0.0) / count


def batch_norm2d_backward(dout, cache):
    """Backward pass of :func:`batch_norm2d_forward`: ``dx``, ``dweight``, ``dbias`` as the readable one.

    dout: (N, C, H, W); returns ``dx: (N, C, H, W)``, ``dweight: (C,)``, ``dbias: (C,)``.
    With M = N * H * W values per channel and xhat = (x - mean) * inv_std::

        dbias = sum(dout),   dweight = inv_std * sum(dout * (x - mean))
        dx = weight * inv_std * (dout - dbias / M - xhat * dweight / M)    (training)
        dx = weight * inv_std * dout                                        (evaluation)

    the closed form of :func:`cnnbook.reference.norm.batch_norm_backward_simple`, computed as
    ``dx = a * dout + b * x + c`` (per-channel a, b, c) with one sweep for the sums and one for dx.

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """
    shape = cache["shape"]
    dout = _check_dout(dout, shape, "batch_norm2d_backward")
    rows, mean, inv_std, weight = cache["rows"], cache["mean"], cache["inv_std"], cache["weight"]
    batch, channels = shape[:2]
    dtype = rows.dtype
    dout_rows = np.ascontiguousarray(dout, dtype=dtype).reshape(rows.shape)
    (row_mean,) = _per_row(batch, dtype, mean)
    row_dsum = np.empty(rows.shape[0], dtype=np.float64)
    row_dot = np.empty(rows.shape[0], dtype=np.float64)
    chunks = list(_row_chunks(rows.shape[0], rows.shape[1] * rows.itemsize))
    scratch = np.empty((chunks[0].stop, rows.shape[1]), dtype=dtype)
    for block in chunks:
        centered = np.subtract(rows[block], row_mean[block, None], out=scratch[: block.stop - block.start])
        row_dsum[block] = dout_rows[block].sum(axis=1)
        row_dot[block] = np.vecdot(dout_rows[block], centered)
    dbias = row_dsum.reshape(batch, channels).sum(axis=0)
    dot = row_dot.reshape(batch, channels).sum(axis=0)
    dweight = dot * inv_std
    a = weight.astype(np.float64) * inv_std
    dx = np.empty_like(rows)
    if cache["mode"] == "eval":  # constant statistics: a per-channel scale
        (row_a,) = _per_row(batch, dtype, a)
        for block in chunks:
            np.multiply(dout_rows[block], row_a[block, None], out=dx[block])
    else:
        count = rows.size // channels
        b = -a * inv_std * dweight / count  # times (x - mean): the path through the variance
        c = -a * dbias / count - b * mean  # the path through the mean, and b's share of -mean
        row_a, row_b, row_c = _per_row(batch, dtype, a, b, c)
        for block in chunks:
            product = np.multiply(rows[block], row_b[block, None], out=scratch[: block.stop - block.start])
            np.multiply(dout_rows[block], row_a[block, None], out=dx[block])
            dx[block] += product
            dx[block] += row_c[block, None]
    return dx.reshape(shape), dweight.astype(dtype), dbias.astype(dtype)
