"""Decoding a YOLO-style grid: one tensor of per-cell predictions -> scored, labelled, de-duplicated boxes.

YOLO (v1) cuts the image into an ``SH x SW`` grid. For every cell ``(i, j)``
the network outputs ``B`` boxes and one set of ``C`` class probabilities::

    output[i, j] = (x_1, y_1, w_1, h_1, o_1,  ...,  x_B, y_B, w_B, h_B, o_B,  p_1, ..., p_C)

``(x, y)`` is the box centre inside its cell (0 to 1 across the cell), ``(w,
h)`` the box size as a fraction of the image, ``o`` the objectness (how sure
the cell is that this box holds an object) and ``p_c`` the probability of
class ``c`` given an object. The values are already activated (sigmoid,
softmax). A box's score is ``o * max_c p_c`` and its label that ``argmax``;
boxes below ``score_threshold`` are dropped and the rest go through per-class
non-maximum suppression.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _arrays as xp
from .nms import batched_nms

__all__ = ["decode_yolo_grid"]


def decode_yolo_grid(output, image_size, num_boxes: int, num_classes: int, score_threshold: float = 0.1,
                     iou_threshold: float = 0.5):
    """Boxes in image coordinates from a YOLO grid output, after thresholding and per-class NMS.

    output: (SH, SW, 5 B + C), NumPy or torch (any device); image_size: ``(H, W)`` pixels;
    num_boxes: B; num_classes: C. Boxes scoring at least ``score_threshold`` are kept before NMS.
    Returns ``(boxes, scores, labels)``: (K, 4) ``xyxy`` pixels, (K,) and (K,) int64,
    highest score first.

    Book: "Detection and segmentation", section "Decoding a YOLO grid" (``book/detection.md``).
    """
    shape = xp.shape_of(output)
    depth = 5 * num_boxes + num_classes
    if len(shape) != 3 or shape[2] != depth or num_boxes < 1 or num_classes < 1:
        raise ValueError(f"decode_yolo_grid: output must have shape (SH, SW, 5 B + C) = (SH, SW, {depth}) "
                         f"for B={num_boxes}, C={num_classes}, got shape {shape}")
    output = xp.as_float(output)
    grid_h, grid_w = shape[:2]
    image_h, image_w = image_size
    predictions = output[:, :, :5 * num_boxes].reshape(grid_h, grid_w, num_boxes, 5)
    probabilities = output[:, :, 5 * num_boxes:]
    if xp.is_torch(output):
        rows = torch.arange(grid_h, dtype=output.dtype, device=output.device)[:, None, None]
        columns = torch.arange(grid_w, dtype=output.dtype, device=output.device)[None, :, None]
        best, labels = probabilities.max(dim=-1)
    else:
        rows, columns = np.arange(grid_h)[:, None, None], np.arange(grid_w)[None, :, None]
        best, labels = probabilities.max(axis=-1), probabilities.argmax(axis=-1)
    centre_x = (columns + predictions[..., 0]) / grid_w * image_w  # (SH, SW, B)
    centre_y = (rows + predictions[..., 1]) / grid_h * image_h
    half_w, half_h = predictions[..., 2] * image_w / 2, predictions[..., 3] * image_h / 2
    boxes = xp.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=-1)
    scores = predictions[..., 4] * best[:, :, None]
    if xp.is_torch(output):
        labels = labels[:, :, None].expand(-1, -1, num_boxes)
    else:
        labels = np.broadcast_to(labels[:, :, None], scores.shape).astype(np.int64)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    confident = scores >= score_threshold
    boxes, scores, labels = boxes[confident], scores[confident], labels[confident]
    keep = batched_nms(boxes, scores, labels, iou_threshold)
    return boxes[keep], scores[keep], labels[keep]
