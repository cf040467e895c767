"""Anchors over a feature map, and the Faster R-CNN box code relative to an anchor.

An anchor is a reference box. Every cell ``(i, j)`` of an ``(H, W)`` feature
map whose cells are ``stride`` pixels apart gets ``A = len(aspect_ratios) *
len(sizes)`` anchors centred on the pixel ``(j * stride_w, i * stride_h)``;
an anchor of size ``s`` and aspect ratio ``r = height / width`` has
``w = s / sqrt(r)`` and ``h = s * sqrt(r)`` (area ``s ** 2``), its corners
rounded to whole pixels, as ``torchvision``'s ``AnchorGenerator`` does.

A detector does not predict box corners but a *code* relative to an anchor
``(x_a, y_a, w_a, h_a)`` (centre and size), with weights ``(w_x, w_y, w_w, w_h)``::

    dx = w_x (x - x_a) / w_a     dy = w_y (y - y_a) / h_a
    dw = w_w log(w / w_a)        dh = w_h log(h / h_a)

so the code does not depend on the anchor's scale. Decoding inverts it, with
``dw, dh`` clipped at ``log(1000 / 16)`` so that ``exp`` cannot overflow.
"""

from __future__ import annotations

import math

import numpy as np

from . import _arrays as xp
from .boxes import check_boxes

__all__ = ["grid_anchors", "encode_boxes", "decode_boxes", "BBOX_XFORM_CLIP"]

#: The largest ``dw`` or ``dh`` that :func:`decode_boxes` lets through (torchvision's value).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def grid_anchors(feature_size, stride, sizes, aspect_ratios) -> np.ndarray:
    """All anchors of a feature map, ``xyxy`` in image pixels.

    feature_size: ``(H, W)`` cells; stride: int or ``(stride_h, stride_w)`` pixels per cell;
    sizes: (S,) anchor sizes in pixels; aspect_ratios: (R,) ratios ``height / width``.
    Returns anchors: (H * W * R * S, 4) float64, cell by cell (row-major), within
    a cell ratio by ratio and, within a ratio, size by size.

    Book: "Detection and segmentation", section "Anchors and box codes" (``book/detection.md``).
    """
    height, width = (int(v) for v in feature_size)
    stride_h, stride_w = (stride, stride) if np.isscalar(stride) else stride
    sizes, ratios = np.asarray(sizes, dtype=np.float64), np.asarray(aspect_ratios, dtype=np.float64)
    if sizes.ndim != 1 or ratios.ndim != 1 or np.any(sizes <= 0) or np.any(ratios <= 0):
        raise ValueError(f"grid_anchors: sizes (S,) and aspect_ratios (R,) must be positive 1-D, got shapes "
                         f"{sizes.shape} and {ratios.shape}")
    if height < 0 or width < 0:
        raise ValueError(f"grid_anchors: feature_size must be (H, W) >= 0, got {tuple(feature_size)}")
    half_h = (np.sqrt(ratios)[:, None] * sizes[None, :]).ravel() / 2  # (R * S,)
    half_w = (sizes[None, :] / np.sqrt(ratios)[:, None]).ravel() / 2
    base = np.round(np.stack([-half_w, -half_h, half_w, half_h], axis=1))  # (A, 4), centred on 0
    ys, xs = np.meshgrid(np.arange(height) * stride_h, np.arange(width) * stride_w, indexing="ij")
    centres = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4).astype(np.float64)
    return (centres + base[None, :, :]).reshape(-1, 4)


def _centres(boxes):
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def _check_pair(first, second, names, op: str):
    first = check_boxes(first, op, names[0], ndim=2)
    second = check_boxes(second, op, names[1], ndim=2)
    if xp.shape_of(first) != xp.shape_of(second):
        raise ValueError(f"{op}: {names[0]} {xp.shape_of(first)} and {names[1]} {xp.shape_of(second)} "
                         "must have the same shape (N, 4)")
    return first, second


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """The code ``(dx, dy, dw, dh)`` of each box relative to its anchor.

    boxes, anchors: (N, 4) ``xyxy`` (box ``i`` is coded against anchor ``i``); weights: ``(w_x, w_y, w_w, w_h)``.
    Returns codes: (N, 4). Faster R-CNN uses weights ``(1, 1, 1, 1)`` for the
    region proposals and ``(10, 10, 5, 5)`` for the final boxes.

    Book: "Detection and segmentation", section "Anchors and box codes" (``book/detection.md``).
    """
    boxes, anchors = _check_pair(boxes, anchors, ("boxes", "anchors"), "encode_boxes")
    wx, wy, ww, wh = weights
    x, y, w, h = _centres(boxes)
    xa, ya, wa, ha = _centres(anchors)
    return xp.stack([wx * (x - xa) / wa, wy * (y - ya) / ha, ww * xp.log(w / wa), wh * xp.log(h / ha)], axis=1)


def decode_boxes(codes, anchors, weights=(1.0, 1.0, 1.0, 1.0), clip: float = BBOX_XFORM_CLIP):
    """Boxes from their codes relative to anchors: the inverse of :func:`encode_boxes`.

    codes: (N, 4) ``(dx, dy, dw, dh)``; anchors: (N, 4) ``xyxy``; ``dw / w_w`` and ``dh / w_h`` are clipped at ``clip``.
    Returns boxes: (N, 4) ``xyxy``.

    Book: "Detection and segmentation", section "Anchors and box codes" (``book/detection.md``).
    """
    codes, anchors = _check_pair(codes, anchors, ("codes", "anchors"), "decode_boxes")
    wx, wy, ww, wh = weights
    xa, ya, wa, ha = _centres(anchors)
    x = codes[:, 0] / wx * wa + xa
    y = codes[:, 1] / wy * ha + ya
    dw, dh = codes[:, 2] / ww, codes[:, 3] / wh
    w = xp.exp(dw.clamp(max=clip) if xp.is_torch(dw) else np.minimum(dw, clip)) * wa
    h = xp.exp(dh.clamp(max=clip) if xp.is_torch(dh) else np.minimum(dh, clip)) * ha
    return xp.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], axis=1)
