"""How good are the boxes and the masks: average precision for detection, IoU for segmentation.

Detection, per class. Sort the class's detections over all images by score
(highest first, ties in order). A detection is a true positive when its best
overlapping ground-truth box in the same image has IoU >= ``iou_threshold``
and that box has not been matched yet; otherwise (too little overlap, or a
duplicate of a matched box) it is a false positive. After the first ``i``
detections, ``precision = TP / i`` and ``recall = TP / (number of ground-truth
boxes)``. Average precision is the area under the precision-recall curve after
making precision non-increasing from the right (PASCAL VOC's all-point
interpolation): ``AP = sum_i (r_i - r_{i-1}) * max_{j >= i} p_j``. (The VOC
devkit counts ``IoU > threshold`` and adds 1 to box widths; here boxes are
continuous, as everywhere in :mod:`cnnbook.detection`.)

Segmentation, from the ``(K, K)`` confusion matrix ``M[true, predicted]`` of
pixel counts (pixels whose target is ``ignore_index`` are left out): pixel
accuracy ``trace(M) / sum(M)``, class IoU ``M[c, c] / (row_c + column_c -
M[c, c])`` (NaN for a class absent from both) and mean IoU over the classes
that are not NaN.
"""

from __future__ import annotations

import numpy as np

from .boxes import box_iou

__all__ = ["match_detections", "average_precision", "mean_average_precision", "confusion_matrix",
           "pixel_accuracy", "class_iou", "mean_iou"]


def _numpy(value, dtype=None):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def match_detections(detections, ground_truths, iou_threshold: float = 0.5):
    """Greedy matching of one class's detections to its ground truth, highest score first.

    detections: list over images of ``(boxes (P_i, 4), scores (P_i,))``; ground_truths: list over
    images of boxes (G_i, 4); all ``xyxy``.
    Returns ``(scores, is_true_positive, number_of_ground_truths)``: (P,) scores in decreasing order,
    (P,) bool, and ``sum_i G_i``.

    Book: "Detection and segmentation", section "Average precision" (``book/detection.md``).
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"match_detections: {len(detections)} images of detections but "
                         f"{len(ground_truths)} of ground truth")
    rows = []  # (score, image, detection index)
    overlaps = []
    for image, ((boxes, scores), truth) in enumerate(zip(detections, ground_truths)):
        boxes, scores, truth = _numpy(boxes, float), _numpy(scores, float), _numpy(truth, float)
        if boxes.shape != (len(scores), 4) or truth.ndim != 2 or truth.shape[1] != 4:
            raise ValueError(f"match_detections: image {image}: boxes (P, 4), scores (P,) and ground truth "
                             f"(G, 4) expected, got shapes {boxes.shape}, {scores.shape}, {truth.shape}")
        overlaps.append(box_iou(boxes, truth) if len(truth) else np.zeros((len(boxes), 0)))
        rows += [(score, image, i) for i, score in enumerate(scores)]
    rows.sort(key=lambda row: -row[0])  # stable: ties keep image, then detection order
    taken = [np.zeros(len(_numpy(truth).reshape(-1, 4)), dtype=bool) for truth in ground_truths]
    hits = np.zeros(len(rows), dtype=bool)
    for n, (_, image, i) in enumerate(rows):
        if overlaps[image].shape[1] == 0:
            continue
        best = int(np.argmax(overlaps[image][i]))
        if overlaps[image][i, best] >= iou_threshold and not taken[image][best]:
            taken[image][best] = hits[n] = True
    total = sum(len(t) for t in taken)
    return np.array([row[0] for row in rows], dtype=float), hits, total


def average_precision(detections, ground_truths, iou_threshold: float = 0.5) -> float:
    """VOC all-point interpolated average precision of one class.

    Arguments as :func:`match_detections`. Returns AP in [0, 1]; NaN when the class has no ground truth.

    Book: "Detection and segmentation", section "Average precision" (``book/detection.md``).
    """
    _, hits, total = match_detections(detections, ground_truths, iou_threshold)
    if total == 0:
        return float("nan")
    true_positives = np.cumsum(hits)
    recall = np.concatenate([[0.0], true_positives / total])
    precision = true_positives / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    return float(np.sum(np.diff(recall) * envelope))


def mean_average_precision(predictions, targets, num_classes: int, iou_threshold: float = 0.5):
    """Mean over classes of :func:`average_precision`.

    predictions: list over images of ``(boxes (P_i, 4), scores (P_i,), labels (P_i,))``;
    targets: list over images of ``(boxes (G_i, 4), labels (G_i,))``; labels in ``[0, num_classes)``.
    Returns ``(mAP, ap)``: the mean over classes with ground truth, and ap: (num_classes,) (NaN: no ground truth).

    Book: "Detection and segmentation", section "Average precision" (``book/detection.md``).
    """
    if len(predictions) != len(targets):
        raise ValueError(f"mean_average_precision: {len(predictions)} images of predictions, {len(targets)} of targets")
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        detections = [(_numpy(b, float).reshape(-1, 4)[_numpy(l) == c], _numpy(s, float)[_numpy(l) == c])
                      for b, s, l in predictions]
        truth = [_numpy(b, float).reshape(-1, 4)[_numpy(l) == c] for b, l in targets]
        ap[c] = average_precision(detections, truth, iou_threshold)
    present = ~np.isnan(ap)
    return (float(ap[present].mean()) if present.any() else float("nan")), ap


def confusion_matrix(predicted, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """Pixel counts ``M[true, predicted]``.

    predicted, target: integer label maps of one shape, e.g. (N, H, W), NumPy or torch.
    Pixels whose target equals ``ignore_index`` are not counted. Returns (K, K) int64, K = num_classes.

    Book: "Detection and segmentation", section "Semantic segmentation and mean IoU" (``book/detection.md``).
    """
    predicted, target = _numpy(predicted), _numpy(target)
    if predicted.shape != target.shape:
        raise ValueError(f"confusion_matrix: predicted {predicted.shape} and target {target.shape} differ in shape")
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, dtype=bool)
    predicted, target = predicted[keep].astype(np.int64), target[keep].astype(np.int64)
    for name, labels in (("predicted", predicted), ("target", target)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} labels must lie in [0, {num_classes}) "
                             f"(or be ignore_index={ignore_index}), got {labels.min()}..{labels.max()}")
    return np.bincount(target * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def pixel_accuracy(predicted, target, num_classes: int, ignore_index: int | None = None) -> float:
    """Fraction of counted pixels labelled correctly (NaN when none is counted).

    predicted, target: label maps of one shape. Returns a float in [0, 1].

    Book: "Detection and segmentation", section "Semantic segmentation and mean IoU" (``book/detection.md``).
    """
    matrix = confusion_matrix(predicted, target, num_classes, ignore_index)
    return float(np.trace(matrix) / matrix.sum()) if matrix.sum() else float("nan")


def class_iou(predicted, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """IoU of every class between the predicted and the true masks.

    predicted, target: label maps of one shape. Returns (K,) float64, NaN for a class in neither.

    Book: "Detection and segmentation", section "Semantic segmentation and mean IoU" (``book/detection.md``).
    """
    matrix = confusion_matrix(predicted, target, num_classes, ignore_index).astype(np.float64)
    intersection = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def mean_iou(predicted, target, num_classes: int, ignore_index: int | None = None) -> float:
    """Mean of :func:`class_iou` over the classes present in the prediction or the target.

    predicted, target: label maps of one shape. Returns a float in [0, 1] (NaN when nothing is counted).

    Book: "Detection and segmentation", section "Semantic segmentation and mean IoU" (``book/detection.md``).
    """
    iou = class_iou(predicted, target, num_classes, ignore_index)
    return float(np.nanmean(iou)) if not np.all(np.isnan(iou)) else float("nan")
