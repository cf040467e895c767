"""Greedy non-maximum suppression, over all boxes and per class.

Visit the boxes from the highest score down; keep a box unless a box already
kept overlaps it with IoU strictly above ``iou_threshold``. The semantics are
``torchvision.ops.nms``'s: boxes with equal scores are visited in index order
(a stable sort), an IoU equal to the threshold does not suppress, and a pair
of flat boxes (IoU NaN) never suppresses each other.

(torchvision's CUDA kernel and its per-class loop for more than 1,000 boxes
on the CPU sort without that guarantee.)

The IoU matrix is computed once on the boxes' device; the greedy loop, which
is sequential by nature, runs on one ``(N, N)`` boolean matrix on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _arrays as xp
from .boxes import box_iou, check_boxes

__all__ = ["nms", "batched_nms"]


def _check_scores(boxes, scores, op: str, idxs=None):
    boxes = check_boxes(boxes, op, ndim=2)
    for name, values in (("scores", scores), ("idxs", idxs)):
        if values is not None and xp.shape_of(values) != (xp.shape_of(boxes)[0],):
            raise ValueError(f"{op}: {name} must have shape (N,) = ({xp.shape_of(boxes)[0]},) for boxes of shape "
                             f"{xp.shape_of(boxes)}, got shape {xp.shape_of(values)}")
    return boxes


def _greedy(boxes, scores, iou_threshold: float, same_group=None):
    """Indices kept, highest score first. ``same_group``: optional (N, N) bool, which pairs may suppress."""
    if xp.is_torch(boxes):
        order = torch.sort(scores, descending=True, stable=True).indices
    else:
        order = np.argsort(-np.asarray(scores), kind="stable")
    ordered = boxes[order]
    overlaps = box_iou(ordered, ordered) > iou_threshold  # NaN > t is False
    if same_group is not None:
        overlaps = overlaps & same_group[order][:, order]
    overlaps = overlaps.cpu().numpy() if xp.is_torch(overlaps) else overlaps
    suppressed = np.zeros(len(overlaps), dtype=bool)
    kept = []
    for i in range(len(overlaps)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= overlaps[i]
    if xp.is_torch(boxes):
        return order[torch.as_tensor(kept, dtype=torch.int64, device=order.device)]
    return order[np.asarray(kept, dtype=np.int64)].astype(np.int64)


def nms(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression.

    boxes: (N, 4) ``xyxy``; scores: (N,); both NumPy or both torch (one device).
    Returns keep: (K,) int64 indices into ``boxes``, sorted by decreasing score
    (ties: lower index first), as ``torchvision.ops.nms``.

    Book: "Detection and segmentation", section "Non-maximum suppression" (``book/detection.md``).
    """
    boxes = _check_scores(boxes, scores, "nms")
    return _greedy(boxes, scores, iou_threshold)


def batched_nms(boxes, scores, idxs, iou_threshold: float):
    """Non-maximum suppression within each class (or image): boxes with different ``idxs`` never suppress each other.

    boxes: (N, 4) ``xyxy``; scores: (N,); idxs: (N,) integer class labels.
    Returns keep: (K,) int64 indices, sorted by decreasing score (ties: lower
    index first), as ``torchvision.ops.batched_nms``. (torchvision shifts each
    class's boxes apart by ``max coordinate + 1``, which separates classes only
    for non-negative coordinates; here the classes are kept apart by a mask.)

    Book: "Detection and segmentation", section "Non-maximum suppression" (``book/detection.md``).
    """
    boxes = _check_scores(boxes, scores, "batched_nms", idxs)
    same_group = idxs[:, None] == idxs[None, :]
    return _greedy(boxes, scores, iou_threshold, same_group)
