"""RoI pooling and RoIAlign in NumPy: readable loops, one region and one output bin at a time.

A region of interest (RoI) is a box on an image; ``rois: (K, 5)`` holds one
per row as ``(batch_index, x1, y1, x2, y2)`` in image pixels, and
``spatial_scale`` (``1 / stride``) maps them onto the feature map ``x: (N, C,
H, W)``. Both operations cut each region into ``PH x PW`` bins and return
``out: (K, C, PH, PW)``, a fixed-size feature for any box size.

- RoI pooling (Fast R-CNN) rounds the region to whole cells and takes the
  maximum over each bin's cells. Rounding is half away from zero (C's
  ``round``, not NumPy's half-to-even), the region is at least one cell, and a
  bin that falls outside the feature map is 0. As in torchvision, NaN cells are
  skipped and the running maximum starts at ``-FLT_MAX`` (the largest float32),
  so a bin holding only NaN or values at or below it gives ``-FLT_MAX`` and no
  gradient.
- RoIAlign (Mask R-CNN) never rounds: each bin averages ``gh x gw`` sampling
  points (``sampling_ratio``, or ``ceil(bin size)`` when it is ``<= 0``),
  each read by bilinear interpolation. ``aligned=True`` shifts the region by
  half a cell so that pixel centres line up; ``aligned=False`` (the original)
  also makes a region at least one cell wide.

Forward returns ``(out, cache)``; backward takes ``(dout, cache)`` and returns ``dx``.
These are the references that :mod:`cnnbook.detection.roi` is checked against.
"""

from __future__ import annotations

import math

import numpy as np

from ..shapes import pair

#: The largest float32, C's ``FLT_MAX``: a RoI-pooling bin starts from ``-FLT_MAX`` (as in torchvision).
FLT_MAX = float(np.finfo(np.float32).max)

__all__ = ["roi_pool_forward", "roi_pool_backward", "roi_align_forward", "roi_align_backward", "round_half_away"]


def round_half_away(value: float) -> int:
    """Round to the nearest integer, halves away from zero (C's ``round``): 2.5 -> 3, -2.5 -> -3.

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    magnitude = abs(value)
    whole = math.floor(magnitude)
    whole += magnitude - whole >= 0.5  # exact: no "+ 0.5" that could round up first
    return int(math.copysign(whole, value))


def check_rois(x, rois, output_size, op: str):
    """Validate ``x: (N, C, H, W)`` and ``rois: (K, 5)``; return them as float64 arrays and ``(PH, PW)``."""
    x, rois = np.asarray(x, dtype=np.float64), np.asarray(rois, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must have shape (N, C, H, W), got shape {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (K, 5) = (batch_index, x1, y1, x2, y2), got shape {rois.shape}")
    batch = rois[:, 0]
    if np.any((batch < 0) | (batch >= x.shape[0]) | (batch != np.floor(batch))):
        raise ValueError(f"{op}: rois[:, 0] must be image indices in [0, {x.shape[0]}) for x of shape {x.shape}")
    return x, rois, pair(output_size, "output_size", 1, op)


def roi_pool_forward(x, rois, output_size, spatial_scale: float = 1.0):
    """RoI max pooling (as ``torchvision.ops.roi_pool``).

    x: (N, C, H, W); rois: (K, 5) ``(batch_index, x1, y1, x2, y2)``; output_size: PH or (PH, PW).
    Returns ``(out, cache)``, out: (K, C, PH, PW).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    x, rois, (ph_count, pw_count) = check_rois(x, rois, output_size, "roi_pool_forward")
    height, width = x.shape[2:]
    out = np.zeros((len(rois), x.shape[1], ph_count, pw_count))
    argmax = np.full(out.shape, -1, dtype=np.int64)  # flat index h * W + w of each bin's maximum
    for k, (b, *corners) in enumerate(rois):
        x1, y1, x2, y2 = (round_half_away(v * spatial_scale) for v in corners)
        bin_h, bin_w = max(y2 - y1 + 1, 1) / ph_count, max(x2 - x1 + 1, 1) / pw_count
        for ph in range(ph_count):
            h0 = min(max(math.floor(ph * bin_h) + y1, 0), height)
            h1 = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
            for pw in range(pw_count):
                w0 = min(max(math.floor(pw * bin_w) + x1, 0), width)
                w1 = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue  # an empty bin: 0, and no gradient
                window = x[int(b), :, h0:h1, w0:w1].reshape(x.shape[1], -1)
                window = np.where(np.isnan(window), -np.inf, window)  # NaN never wins
                best = np.argmax(window, axis=1)  # the first maximum in row-major order
                value = window[np.arange(x.shape[1]), best]
                won = value > -FLT_MAX  # torchvision starts from -FLT_MAX, which only a larger value beats
                out[k, :, ph, pw] = np.where(won, value, -FLT_MAX)
                argmax[k, :, ph, pw] = np.where(won, (h0 + best // (w1 - w0)) * width + w0 + best % (w1 - w0), -1)
    return out, (x.shape, rois[:, 0].astype(np.int64), argmax)


def roi_pool_backward(dout, cache):
    """Gradient of :func:`roi_pool_forward`: each bin's ``dout`` goes to the cell that held its maximum.

    dout: (K, C, PH, PW). Returns dx: (N, C, H, W).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    x_shape, batch, argmax = cache
    dout = np.asarray(dout, dtype=np.float64)
    if dout.shape != argmax.shape:
        raise ValueError(f"roi_pool_backward: dout must have shape {argmax.shape}, got {dout.shape}")
    dx = np.zeros((x_shape[0], x_shape[1], x_shape[2] * x_shape[3]))
    k, c, ph, pw = np.nonzero(argmax >= 0)
    np.add.at(dx, (batch[k], c, argmax[k, c, ph, pw]), dout[k, c, ph, pw])
    return dx.reshape(x_shape)


def _linear_taps(position: float, size: int):
    """Linear interpolation along one axis: ``[(index, weight), ...]``, with torchvision's border rules.

    A point more than one cell outside ``[0, size - 1]`` reads nothing; a point
    just outside reads the border cell.
    """
    if position < -1.0 or position > size:
        return []
    position = max(position, 0.0)
    low = int(position)
    if low >= size - 1:
        return [(size - 1, 1.0)]
    fraction = position - low
    return [(low, 1.0 - fraction), (low + 1, fraction)]


def _roi_align_samples(roi, output_size, spatial_scale, sampling_ratio, aligned):
    """For one region: ``[(ph, pw, y, x), ...]`` sampling points and the count each bin is divided by."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * spatial_scale - offset for v in roi)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    (ph_count, pw_count) = output_size
    bin_h, bin_w = roi_h / ph_count, roi_w / pw_count
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_count)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_count)
    samples = [(ph, pw, y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h, x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w)
               for ph in range(ph_count) for pw in range(pw_count)
               for iy in range(max(grid_h, 0)) for ix in range(max(grid_w, 0))]
    return samples, max(grid_h * grid_w, 1)


def roi_align_forward(x, rois, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                      aligned: bool = False):
    """RoIAlign (as ``torchvision.ops.roi_align``): each bin is the mean of bilinearly interpolated samples.

    x: (N, C, H, W); rois: (K, 5) ``(batch_index, x1, y1, x2, y2)``; output_size: PH or (PH, PW).
    Returns ``(out, cache)``, out: (K, C, PH, PW).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    x, rois, size = check_rois(x, rois, output_size, "roi_align_forward")
    height, width = x.shape[2:]
    out = np.zeros((len(rois), x.shape[1], *size))
    taps = []  # (k, ph, pw, row, column, weight): everything the backward needs
    for k, (b, *corners) in enumerate(rois):
        samples, count = _roi_align_samples(corners, size, spatial_scale, sampling_ratio, aligned)
        for ph, pw, y, x_ in samples:
            for row, weight_y in _linear_taps(y, height):
                for column, weight_x in _linear_taps(x_, width):
                    weight = weight_y * weight_x / count
                    out[k, :, ph, pw] += weight * x[int(b), :, row, column]
                    taps.append((k, ph, pw, row, column, weight))
    return out, (x.shape, rois[:, 0].astype(np.int64), out.shape, taps)


def roi_align_backward(dout, cache):
    """Gradient of :func:`roi_align_forward`: each sample sends ``dout * weight`` to its four cells.

    dout: (K, C, PH, PW). Returns dx: (N, C, H, W).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    x_shape, batch, out_shape, taps = cache
    dout = np.asarray(dout, dtype=np.float64)
    if dout.shape != out_shape:
        raise ValueError(f"roi_align_backward: dout must have shape {out_shape}, got {dout.shape}")
    dx = np.zeros(x_shape)
    for k, ph, pw, row, column, weight in taps:
        dx[batch[k], :, row, column] += weight * dout[k, :, ph, pw]
    return dx
