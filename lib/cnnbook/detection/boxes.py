"""Boxes: the three formats, areas and pairwise intersection over union.

A box is four numbers in one of three formats (the names of
``torchvision.ops.box_convert``):

- ``"xyxy"``:   ``(x1, y1, x2, y2)``, the top-left and bottom-right corners;
- ``"xywh"``:   ``(x1, y1, w, h)``, the top-left corner, width and height;
- ``"cxcywh"``: ``(cx, cy, w, h)``, the centre, width and height.

Coordinates are continuous (a box from x = 0 to x = 10 is 10 wide, no
"+ 1"). Every function takes NumPy arrays or torch tensors on any device and
returns the same kind; ``boxes: (..., 4)`` means any leading shape.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as xp

__all__ = ["FORMATS", "box_convert", "box_area", "box_iou"]

#: The box formats :func:`box_convert` knows.
FORMATS = ("xyxy", "xywh", "cxcywh")


def check_boxes(boxes, op: str, name: str = "boxes", ndim: int | None = None):
    """``boxes`` as a floating array or tensor of shape ``(..., 4)``; ValueError naming the shape otherwise."""
    shape = xp.shape_of(boxes)
    if len(shape) == 0 or shape[-1] != 4 or (ndim is not None and len(shape) != ndim):
        wanted = "(N, 4)" if ndim == 2 else "(..., 4)"
        raise ValueError(f"{op}: {name} must have shape {wanted}, got shape {shape}")
    return xp.as_float(boxes)


def box_convert(boxes, in_fmt: str, out_fmt: str):
    """Convert boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``.

    boxes: (..., 4) in ``in_fmt``. Returns (..., 4) in ``out_fmt`` (a new array or tensor).
    Goes through ``xyxy``: ``x2 = x1 + w``, ``x1 = cx - w / 2``, ``cx = (x1 + x2) / 2``, ``w = x2 - x1``.

    Book: "Detection and segmentation", section "Boxes and intersection over union" (``book/detection.md``).
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in FORMATS:
            raise ValueError(f"box_convert: unknown format {fmt!r}; known: {FORMATS}")
    boxes = check_boxes(boxes, "box_convert")
    a, b, c, d = (boxes[..., i] for i in range(4))
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    # now (a, b, c, d) = (x1, y1, x2, y2)
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return xp.stack([a, b, c, d], axis=-1)


def box_area(boxes):
    """Areas of ``xyxy`` boxes: ``(x2 - x1) * (y2 - y1)``.

    boxes: (..., 4), ``x1 <= x2`` and ``y1 <= y2`` (a flat box has area 0). Returns (...).

    Book: "Detection and segmentation", section "Boxes and intersection over union" (``book/detection.md``).
    """
    boxes = check_boxes(boxes, "box_area")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    boxes1: (N, 4), boxes2: (M, 4), both NumPy or both torch on one device.
    Returns iou: (N, M), ``iou[i, j] = |b1_i ∩ b2_j| / (|b1_i| + |b2_j| - |b1_i ∩ b2_j|)``.
    The intersection's sides are clamped at 0, so boxes that only touch along
    an edge have IoU 0. Two flat (zero-area) boxes have union 0 and IoU NaN,
    as in ``torchvision.ops.box_iou``.

    Book: "Detection and segmentation", section "Boxes and intersection over union" (``book/detection.md``).
    """
    boxes1 = check_boxes(boxes1, "box_iou", "boxes1", ndim=2)
    boxes2 = check_boxes(boxes2, "box_iou", "boxes2", ndim=2)
    if xp.is_torch(boxes1) != xp.is_torch(boxes2):
        raise ValueError("box_iou: boxes1 and boxes2 must both be NumPy arrays or both torch tensors")
    top_left = xp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = xp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    sides = xp.clip_min(bottom_right - top_left, 0.0)
    intersection = sides[..., 0] * sides[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 for flat boxes: NaN, as in torchvision
        return intersection / union
