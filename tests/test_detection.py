"""cnnbook.detection: boxes, NMS, anchors, box codes, YOLO decoding, metrics and synthetic scenes.

Against torchvision.ops (box_convert, box_area, box_iou, nms, batched_nms) and torchvision's
detection utilities (AnchorGenerator, BoxCoder) on random and adversarial boxes, hand-computed
cases written out here, and hypothesis properties that draw values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cnnbook.detection import (
    BBOX_XFORM_CLIP,
    FORMATS,
    average_precision,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    class_iou,
    confusion_matrix,
    decode_boxes,
    decode_yolo_grid,
    encode_boxes,
    grid_anchors,
    make_scenes,
    match_detections,
    mean_average_precision,
    mean_iou,
    nms,
    pixel_accuracy,
)
from helpers import assert_close

FLOAT = torch.float64


def random_boxes(rng, n, low=-20.0, high=120.0, max_side=60.0):
    """(n, 4) xyxy float64 boxes, some flat, some partly outside a 100 x 100 image."""
    corner = rng.uniform(low, high, size=(n, 2))
    sides = rng.uniform(0, max_side, size=(n, 2))
    sides[rng.random(n) < 0.1] = 0.0  # zero-area
    sides[rng.random(n) < 0.1, 0] = 0.0  # flat along x
    return np.concatenate([corner, corner + sides], axis=1)


def adversarial_boxes():
    """Boxes that share edges, nest, coincide, are flat or lie outside the image, as float64 (N, 4)."""
    return np.array([
        [0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20],  # touching edges and a corner
        [0, 0, 10, 10],  # identical to the first
        [2, 2, 8, 8],  # nested
        [5, 5, 5, 5], [5, 5, 5, 5], [3, 3, 3, 9],  # zero-area points and a segment
        [-30, -30, -10, -10], [200, 200, 260, 230],  # outside a 100 x 100 image
        [0, 0, 1e4, 1e4],  # huge
        [0.5, 0.5, 10.5, 10.5],
    ], dtype=np.float64)


box_values = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def xyxy_boxes(draw, min_size=1, max_size=8, min_side=0.0):
    n = draw(st.integers(min_size, max_size))
    corners = draw(hnp.arrays(np.float64, (n, 2), elements=box_values))
    sides = draw(hnp.arrays(np.float64, (n, 2), elements=st.floats(min_side, 50, width=64)))
    return np.concatenate([corners, corners + sides], axis=1)


# ----------------------------------------------------------------------------------------- formats, area, IoU


@pytest.mark.parametrize("in_fmt, out_fmt", list(itertools.permutations(FORMATS, 2)))
def test_box_convert_matches_torchvision(in_fmt, out_fmt, device, rng):
    boxes = torch.tensor(random_boxes(rng, 50), dtype=FLOAT, device=device)
    expected = torchvision.ops.box_convert(boxes, in_fmt, out_fmt)
    assert_close(f"box_convert {in_fmt}->{out_fmt}", box_convert(boxes, in_fmt, out_fmt), expected)
    assert box_convert(boxes, in_fmt, out_fmt).device == boxes.device
    assert_close("box_convert on NumPy", box_convert(boxes.cpu().numpy(), in_fmt, out_fmt), expected)


@given(boxes=xyxy_boxes(), fmt=st.sampled_from(FORMATS[1:]))
def test_box_convert_round_trips(boxes, fmt):
    back = box_convert(box_convert(boxes, "xyxy", fmt), fmt, "xyxy")
    assert_close("xyxy -> fmt -> xyxy", back, boxes)


def test_box_convert_keeps_leading_dimensions():
    boxes = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    assert box_convert(boxes, "xyxy", "cxcywh").shape == (2, 3, 4)


def test_box_area_and_iou_match_torchvision_on_random_and_adversarial_boxes(device, rng):
    boxes = np.concatenate([adversarial_boxes(), random_boxes(rng, 40)])
    tensor = torch.tensor(boxes, dtype=FLOAT, device=device)
    assert_close("box_area", box_area(tensor), torchvision.ops.box_area(tensor))
    iou, expected = box_iou(tensor, tensor[:25]), torchvision.ops.box_iou(tensor, tensor[:25])
    assert iou.shape == (len(boxes), 25) and iou.device == tensor.device
    # two identical flat boxes have union 0: NaN in both (rel_error counts matching NaNs as equal)
    assert torch.equal(torch.isnan(iou), torch.isnan(expected)) and torch.isnan(iou[5, 6])
    assert_close("box_iou", iou, expected)
    assert_close("box_iou on NumPy", box_iou(boxes, boxes[:25]), expected)


def test_touching_boxes_have_iou_zero_and_identical_boxes_one():
    boxes = adversarial_boxes()
    iou = box_iou(boxes[:4], boxes[:4])
    assert iou[0, 1] == 0.0 and iou[0, 2] == 0.0 and iou[1, 2] == 0.0  # an edge, an edge, a corner
    assert iou[0, 3] == 1.0
    assert box_iou(boxes[:1], boxes[4:5])[0, 0] == 36 / 100  # nested: the inner area over the outer


@given(first=xyxy_boxes(min_side=0.5), second=xyxy_boxes(min_side=0.5))
def test_iou_is_symmetric_bounded_and_one_on_the_diagonal(first, second):
    iou = box_iou(first, second)
    assert np.all((iou >= 0) & (iou <= 1 + 1e-12))
    assert_close("IoU symmetric", iou, box_iou(second, first).T)
    assert_close("IoU(b, b)", np.diag(box_iou(first, first)), np.ones(len(first)))


def test_box_functions_name_the_bad_shape():
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 4\), got shape \(3, 5\)"):
        box_iou(np.zeros((2, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\), got shape \(7, 3\)"):
        box_convert(np.zeros((7, 3)), "xyxy", "xywh")
    with pytest.raises(ValueError, match="unknown format 'yxyx'"):
        box_convert(np.zeros((1, 4)), "yxyx", "xywh")
    with pytest.raises(ValueError, match="must both be NumPy arrays or both torch tensors"):
        box_iou(np.zeros((1, 4)), torch.zeros(1, 4))


# ----------------------------------------------------------------------------------------- NMS


def clustered_boxes(rng, n):
    """Boxes in a few clusters, so that many pairs overlap; non-negative coordinates."""
    centres = rng.uniform(20, 80, size=(4, 2))[rng.integers(4, size=n)] + rng.normal(0, 4, size=(n, 2))
    sides = rng.uniform(5, 30, size=(n, 2))
    return np.clip(np.concatenate([centres - sides / 2, centres + sides / 2], axis=1), 0, None)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision(threshold, device, rng):
    boxes = torch.tensor(clustered_boxes(rng, 120), dtype=FLOAT, device=device)
    scores = torch.tensor(rng.random(120), dtype=FLOAT, device=device)
    keep = nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64 and keep.device == boxes.device
    assert torch.equal(keep.cpu(), torchvision.ops.nms(boxes.cpu(), scores.cpu(), threshold))
    numpy_keep = nms(boxes.cpu().numpy(), scores.cpu().numpy(), threshold)
    assert numpy_keep.dtype == np.int64 and np.array_equal(numpy_keep, keep.cpu().numpy())


def test_nms_breaks_ties_in_score_as_torchvision_does(device, rng):
    # Identical scores everywhere, and in groups: torchvision's CPU kernel sorts stably (lower index first).
    boxes = torch.tensor(clustered_boxes(rng, 60), dtype=FLOAT)
    for scores in (torch.full((60,), 0.5, dtype=FLOAT), torch.tensor(rng.integers(0, 4, 60) / 4, dtype=FLOAT)):
        expected = torchvision.ops.nms(boxes, scores, 0.4)
        assert torch.equal(nms(boxes.to(device), scores.to(device), 0.4).cpu(), expected)
    same = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3, dtype=FLOAT)  # identical boxes, identical scores: the first wins
    ones = torch.ones(3, dtype=FLOAT)
    assert nms(same, ones, 0.5).tolist() == torchvision.ops.nms(same, ones, 0.5).tolist() == [0]


def test_nms_on_adversarial_boxes(device):
    boxes = torch.tensor(adversarial_boxes(), dtype=FLOAT, device=device)
    scores = torch.linspace(1, 0.1, len(boxes), dtype=FLOAT, device=device)
    for threshold in (0.0, 0.5):
        expected = torchvision.ops.nms(boxes.cpu(), scores.cpu(), threshold)
        keep = nms(boxes, scores, threshold).cpu()
        assert torch.equal(keep, expected)
        assert 1 in keep and 2 in keep  # touching edges (IoU 0) never suppress, even at threshold 0
        assert 5 in keep and 6 in keep  # identical flat boxes: IoU NaN, no suppression
        assert 3 not in keep  # a duplicate of box 0


def test_nms_of_no_boxes(device):
    keep = nms(torch.zeros((0, 4), dtype=FLOAT, device=device), torch.zeros(0, dtype=FLOAT, device=device), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64


@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_batched_nms_matches_torchvision(threshold, device, rng):
    boxes = torch.tensor(clustered_boxes(rng, 150), dtype=FLOAT)
    classes = torch.tensor(rng.integers(0, 4, 150))
    for scores in (torch.tensor(rng.random(150), dtype=FLOAT), torch.tensor(rng.integers(0, 3, 150) / 3, dtype=FLOAT)):
        expected = torchvision.ops.batched_nms(boxes, scores, classes, threshold)
        keep = batched_nms(boxes.to(device), scores.to(device), classes.to(device), threshold)
        assert torch.equal(keep.cpu(), expected)


def test_batched_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10]] * 3, dtype=np.float64)
    assert np.array_equal(batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), 0.5), [0, 1])


def test_batched_nms_keeps_classes_apart_where_torchvisions_offsets_do_not():
    # torchvision shifts class c's boxes by c * (max coordinate + 1); with negative coordinates the
    # shift can move a box of class 1 exactly onto one of class 0 (here: max coordinate 0, shift 1).
    boxes = torch.tensor([[-10.0, -10.0, 0.0, 0.0], [-11.0, -11.0, -1.0, -1.0]], dtype=FLOAT)
    scores, classes = torch.tensor([0.9, 0.8], dtype=FLOAT), torch.tensor([0, 1])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert torchvision.ops.batched_nms(boxes, scores, classes, 0.5).tolist() == [0]  # documents torchvision


@given(boxes=xyxy_boxes(max_size=12, min_side=0.5), data=st.data())
def test_nms_properties(boxes, data):
    n = len(boxes)
    scores = data.draw(hnp.arrays(np.float64, (n,), elements=st.sampled_from([0.1, 0.5, 0.9, 0.3])))
    classes = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, 2)))
    threshold = data.draw(st.sampled_from([0.1, 0.5, 0.8]))
    keep = batched_nms(boxes, scores, classes, threshold)
    assert np.all(np.diff(scores[keep]) <= 0), "kept boxes are sorted by decreasing score"
    iou = box_iou(boxes, boxes)
    same = classes[:, None] == classes[None, :]
    kept = set(keep.tolist())
    for a, b in itertools.combinations(keep, 2):
        assert not (same[a, b] and iou[a, b] > threshold), "two kept boxes of one class overlap too much"
    rank = {int(i): r for r, i in enumerate(np.argsort(-scores, kind="stable"))}
    for dropped in set(range(n)) - kept:
        assert any(same[k, dropped] and iou[k, dropped] > threshold and rank[k] < rank[dropped] for k in keep)
    shifted = boxes - min(boxes.min(), 0.0)  # torchvision separates classes only for non-negative coordinates
    torch_keep = torchvision.ops.batched_nms(torch.tensor(shifted), torch.tensor(scores), torch.tensor(classes), threshold)
    assert np.array_equal(keep, torch_keep.numpy())


def test_nms_names_the_bad_shape():
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\) = \(3,\) .* got shape \(2,\)"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match=r"idxs must have shape \(N,\) = \(3,\)"):
        batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(4, dtype=int), 0.5)


# ----------------------------------------------------------------------------------------- anchors and box codes


@pytest.mark.parametrize("feature_size, stride, sizes, ratios", [
    ((5, 7), 16, (32, 64, 128), (0.5, 1.0, 2.0)),
    ((3, 4), (8, 12), (33, 45), (0.25, 1.0, 3.0)),
    ((1, 1), 4, (1,), (1.0,)),
])
def test_grid_anchors_match_torchvision(feature_size, stride, sizes, ratios):
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    generator = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    base = generator.generate_anchors(list(sizes), list(ratios), dtype=torch.float64)
    generator.cell_anchors = [base]
    strides = (stride, stride) if isinstance(stride, int) else stride
    expected = generator.grid_anchors([list(feature_size)], [[torch.tensor(s) for s in strides]])[0]
    anchors = grid_anchors(feature_size, stride, sizes, ratios)
    assert anchors.shape == (feature_size[0] * feature_size[1] * len(sizes) * len(ratios), 4)
    assert_close("grid_anchors", anchors, expected)


def test_grid_anchors_are_centred_on_the_cells_with_the_asked_shape():
    anchors = grid_anchors((2, 3), 10, sizes=(40,), aspect_ratios=(1.0, 4.0))
    centres = box_convert(anchors, "xyxy", "cxcywh")
    assert np.array_equal(centres[::2, :2], [[x, y] for y in (0, 10) for x in (0, 10, 20)])
    assert np.array_equal(centres[:2, 2:], [[40, 40], [20, 80]])  # ratio 4 = height / width, area 40 ** 2


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_codes_match_torchvision_box_coder(weights, device, rng):
    from torchvision.models.detection._utils import BoxCoder

    anchors = torch.tensor(random_boxes(rng, 30, max_side=50) + [0, 0, 1, 1], dtype=FLOAT, device=device)
    boxes = torch.tensor(random_boxes(rng, 30, max_side=50) + [0, 0, 1, 1], dtype=FLOAT, device=device)
    coder = BoxCoder(weights)
    codes = encode_boxes(boxes, anchors, weights)
    assert_close("encode_boxes", codes, coder.encode_single(boxes, anchors))
    assert_close("decode_boxes", decode_boxes(codes, anchors, weights), coder.decode_single(codes, anchors))
    wild = torch.tensor(rng.normal(0, 3, size=(30, 4)), dtype=FLOAT, device=device)  # some dw, dh are clipped
    assert_close("decode_boxes, clipped", decode_boxes(wild, anchors, weights), coder.decode_single(wild, anchors))


@given(boxes=xyxy_boxes(min_side=0.5), anchors=xyxy_boxes(min_side=0.5))
def test_decode_inverts_encode(boxes, anchors):
    anchors = np.resize(anchors, boxes.shape)
    codes = encode_boxes(boxes, anchors, (10, 10, 5, 5))
    if np.all(np.abs(codes[:, 2:]) / 5 < BBOX_XFORM_CLIP):
        # scaled by the box size: coordinates up to 150 carry about 1e-14 of absolute round-off
        assert_close("decode(encode(boxes))", decode_boxes(codes, anchors, (10, 10, 5, 5)), boxes)


def test_decode_clips_the_log_size():
    anchor = np.array([[0.0, 0.0, 10.0, 10.0]])
    box = decode_boxes(np.array([[0.0, 0.0, 50.0, 0.0]]), anchor)
    assert_close("clipped width", box[0, 2] - box[0, 0], 10 * 1000 / 16)


def test_box_codes_name_the_bad_shape():
    with pytest.raises(ValueError, match=r"boxes \(3, 4\) and anchors \(2, 4\) must have the same shape"):
        encode_boxes(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"aspect_ratios \(R,\) must be positive"):
        grid_anchors((2, 2), 8, (32,), (0.0,))


# ----------------------------------------------------------------------------------------- YOLO grid


def yolo_output():
    """A 2 x 2 grid, B = 2 boxes per cell, C = 3 classes, for a 64 x 96 (H x W) image."""
    output = np.zeros((2, 2, 2 * 5 + 3))
    # cell (row 1, column 0), box 0: centre at ((0 + .5) / 2 * 96, (1 + .25) / 2 * 64) = (24, 40),
    # size (.25 * 96, .5 * 64) = (24, 32), score .9 * .8 = .72 for class 1 -> (12, 24, 36, 56)
    output[1, 0, 0:5] = [0.5, 0.25, 0.25, 0.5, 0.9]
    output[1, 0, 5:10] = [0.55, 0.25, 0.25, 0.5, 0.5]  # the same object, score .4: suppressed (IoU 0.82)
    output[1, 0, 10:] = [0.1, 0.8, 0.1]
    # cell (0, 1): box 0 scores .05 * .6 (dropped at threshold .1); box 1 is a class-2 object, score .6 * .6
    output[0, 1, 0:5] = [0.5, 0.5, 0.5, 0.5, 0.05]
    output[0, 1, 5:10] = [0.0, 1.0, 0.5, 0.25, 0.6]  # centre ((1 + 0) / 2 * 96, 1 / 2 * 64) = (48, 32), size (48, 16)
    output[0, 1, 10:] = [0.2, 0.2, 0.6]
    return output


def test_decode_yolo_grid_on_a_hand_made_grid(device):
    boxes, scores, labels = decode_yolo_grid(torch.tensor(yolo_output(), device=device), (64, 96), 2, 3, 0.1, 0.5)
    assert boxes.device == torch.device(device) if device == "cpu" else boxes.is_cuda
    assert_close("YOLO boxes", boxes, np.array([[12.0, 24.0, 36.0, 56.0], [24.0, 24.0, 72.0, 40.0]]))
    assert_close("YOLO scores", scores, np.array([0.72, 0.36]))
    assert labels.tolist() == [1, 2]
    numpy_boxes, numpy_scores, numpy_labels = decode_yolo_grid(yolo_output(), (64, 96), 2, 3, 0.1, 0.5)
    assert_close("YOLO on NumPy", numpy_boxes, boxes)
    assert numpy_labels.tolist() == [1, 2] and numpy_labels.dtype == np.int64


def test_decode_yolo_grid_keeps_the_duplicate_when_nms_allows_it():
    _, scores, _ = decode_yolo_grid(yolo_output(), (64, 96), 2, 3, 0.1, iou_threshold=0.9)
    assert_close("scores", scores, np.array([0.72, 0.4, 0.36]))


def test_decode_yolo_grid_names_the_bad_shape():
    with pytest.raises(ValueError, match=r"\(SH, SW, 13\) for B=2, C=3, got shape \(2, 2, 12\)"):
        decode_yolo_grid(np.zeros((2, 2, 12)), (64, 64), 2, 3)


# ----------------------------------------------------------------------------------------- average precision


def hand_case():
    """Two images of one class; five detections whose fate is worked out by hand.

    ground truth: image A: g1 (0, 0, 10, 10), g2 (20, 20, 30, 30); image B: g3 (0, 0, 10, 10)
    by score:  d1 A .9 = g1             -> TP (IoU 1)          precision 1/1  recall 1/3
               d2 B .8 far from g3      -> FP (IoU 0)          precision 1/2  recall 1/3
               d3 A .7 = g2             -> TP                  precision 2/3  recall 2/3
               d4 A .6 (0, 0, 10, 9)    -> FP: g1 already taken (IoU .9)   precision 2/4  recall 2/3
               d5 B .5 (0, 1, 10, 10)   -> TP (IoU .9 with g3) precision 3/5  recall 3/3
    Precision made non-increasing from the right: 1, 1, 2/3, 3/5, 3/5, so
    AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45.
    """
    detections = [
        (np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]], float), np.array([0.9, 0.7, 0.6])),
        (np.array([[50, 50, 60, 60], [0, 1, 10, 10]], float), np.array([0.8, 0.5])),
    ]
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([[0, 0, 10, 10]], float)]
    return detections, truth


def test_average_precision_of_the_hand_computed_case():
    detections, truth = hand_case()
    scores, hits, total = match_detections(detections, truth, 0.5)
    assert scores.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5] and hits.tolist() == [True, False, True, False, True]
    assert total == 3
    assert_close("AP", average_precision(detections, truth, 0.5), 34 / 45)
    # at IoU 0.95 d4 and d5 (IoU .9) both fail: TP, FP, TP, FP, FP; AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert_close("AP at 0.95", average_precision(detections, truth, 0.95), 5 / 9)


def test_average_precision_edge_cases():
    truth = [np.array([[0, 0, 10, 10]], float)]
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], truth) == 0.0  # nothing detected
    assert math.isnan(average_precision([(np.ones((1, 4)), np.ones(1))], [np.zeros((0, 4))]))  # nothing to find
    assert average_precision([(truth[0], np.ones(1))], truth) == 1.0
    # IoU exactly at the threshold counts: (0, 0, 10, 10) vs (0, 0, 10, 5) has IoU 1/2
    assert average_precision([(np.array([[0, 0, 10, 5]], float), np.ones(1))], truth, 0.5) == 1.0


def test_mean_average_precision_over_classes():
    detections, truth = hand_case()
    predictions = [(np.vstack([detections[0][0], [[40, 40, 50, 50]]]), np.append(detections[0][1], 0.3),
                    np.array([0, 0, 0, 1])), (detections[1][0], detections[1][1], np.array([0, 0]))]
    targets = [(np.vstack([truth[0], [[40, 40, 50, 50]]]), np.array([0, 0, 1])), (truth[1], np.array([0]))]
    mean, ap = mean_average_precision(predictions, targets, num_classes=3)
    assert_close("AP per class", ap[:2], np.array([34 / 45, 1.0]))
    assert math.isnan(ap[2])  # class 2 has no ground truth and is left out of the mean
    assert_close("mAP", mean, (34 / 45 + 1) / 2)


@given(data=st.data())
def test_average_precision_properties(data):
    truth = data.draw(xyxy_boxes(min_side=1.0))
    noise = data.draw(hnp.arrays(np.float64, truth.shape, elements=st.floats(-0.1, 0.1)))
    scores = data.draw(hnp.arrays(np.float64, (len(truth),), elements=st.floats(0.01, 1)))
    assert average_precision([(truth[:1] + noise[:1], scores[:1])], [truth[:1]], 0.5) == 1.0  # a near-perfect hit
    ap = average_precision([(truth + noise, scores)], [truth], 0.5)
    assert 0.0 <= ap <= 1.0
    # adding a detection far away, scored lowest, never changes AP (it only adds a point after full recall)
    far = np.vstack([truth + noise, [[1e4, 1e4, 1e4 + 5, 1e4 + 5]]])
    assert_close("AP with a last false positive", average_precision([(far, np.append(scores, 0.0))], [truth]), ap)


def test_average_precision_names_the_bad_shape():
    with pytest.raises(ValueError, match=r"image 0: .* got shapes \(2, 4\), \(3,\), \(1, 4\)"):
        match_detections([(np.zeros((2, 4)), np.zeros(3))], [np.zeros((1, 4))])
    with pytest.raises(ValueError, match="2 images of detections but 1 of ground truth"):
        match_detections([(np.zeros((0, 4)), np.zeros(0))] * 2, [np.zeros((1, 4))])


# ----------------------------------------------------------------------------------------- segmentation metrics


def test_segmentation_metrics_of_a_hand_computed_case(device):
    target = torch.tensor([[0, 0, 1], [1, 2, 255]], device=device)
    predicted = torch.tensor([[0, 1, 1], [1, 2, 0]], device=device)
    # counted pixels: (0->0), (0->1), (1->1), (1->1), (2->2); the 255 pixel is ignored
    matrix = confusion_matrix(predicted, target, 3, ignore_index=255)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert_close("pixel accuracy", pixel_accuracy(predicted, target, 3, 255), 4 / 5)
    # IoU_c = M[c, c] / (row + column - M[c, c]): 1 / (2 + 1 - 1), 2 / (2 + 3 - 2), 1 / 1
    assert_close("class IoU", class_iou(predicted, target, 3, 255), np.array([1 / 2, 2 / 3, 1.0]))
    assert_close("mean IoU", mean_iou(predicted, target, 3, 255), (1 / 2 + 2 / 3 + 1) / 3)


def test_a_class_absent_from_both_maps_is_left_out_of_the_mean():
    target = np.array([[0, 0], [1, 1]])
    iou = class_iou(target, target, 4)
    assert iou[:2].tolist() == [1.0, 1.0] and np.all(np.isnan(iou[2:]))
    assert mean_iou(target, target, 4) == 1.0


label_maps = hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
                        elements=st.integers(0, 3))


@given(target=label_maps, data=st.data())
def test_segmentation_metric_properties(target, data):
    predicted = data.draw(hnp.arrays(np.int64, target.shape, elements=st.integers(0, 3)))
    matrix = confusion_matrix(predicted, target, 4)
    assert matrix.sum() == target.size
    assert np.array_equal(matrix.sum(axis=1), np.bincount(target.ravel(), minlength=4))
    assert pixel_accuracy(target, target, 4) == 1.0 and mean_iou(target, target, 4) == 1.0
    assert_close("IoU symmetric in its arguments", class_iou(predicted, target, 4), class_iou(target, predicted, 4))
    assert_close("accuracy", pixel_accuracy(predicted, target, 4), np.mean(predicted == target))
    # pixels marked ignore_index count for nothing, whatever is predicted there
    ignored = data.draw(hnp.arrays(bool, target.shape))
    marked = np.where(ignored, 255, target)
    if not ignored.all():
        kept = ~ignored
        assert np.array_equal(confusion_matrix(predicted, marked, 4, 255),
                              confusion_matrix(predicted[kept], target[kept], 4))


def test_segmentation_metrics_name_the_bad_input():
    with pytest.raises(ValueError, match=r"predicted \(2, 3\) and target \(3, 2\) differ in shape"):
        confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 2)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\)"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 7), 2)


# ----------------------------------------------------------------------------------------- synthetic scenes

#: make_scenes(6, image_size=64, seed=0, split="test") (the test split loads 10x faster than "train"):
#: fixed by the Fashion-MNIST files (checksummed by cnnbook.data), scikit-image's texture photographs and NumPy's PCG64 generator.
SCENES_SHA256 = "203cfb40a07e755bafe64d078e5cbb87774af152f5745a3967ce840492465cfd"


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(16, image_size=96, seed=3, split="test")


def test_synthetic_scenes_have_a_fixed_checksum():
    first = make_scenes(6, image_size=64, seed=0, split="test")
    assert first.checksum() == make_scenes(6, image_size=64, seed=0, split="test").checksum()
    assert first.checksum() != make_scenes(6, image_size=64, seed=1, split="test").checksum()
    assert first.checksum() == SCENES_SHA256


def test_synthetic_scenes_shapes_and_ranges(scenes):
    assert scenes.images.shape == (16, 1, 96, 96) and scenes.images.dtype == np.float32
    assert scenes.masks.shape == (16, 96, 96) and scenes.masks.dtype == np.int64
    assert 0.0 <= scenes.images.min() and scenes.images.max() <= 1.0
    assert len(scenes.boxes) == len(scenes.labels) == len(scenes) == 16
    assert all(len(b) >= 1 for b in scenes.boxes)  # the first object always fits (84 <= 96)


def test_synthetic_boxes_are_the_tight_boxes_of_the_masks(scenes):
    for boxes, labels, mask in zip(scenes.boxes, scenes.labels, scenes.masks):
        assert boxes.shape == (len(labels), 4) and np.all((labels >= 0) & (labels < 10))
        assert np.all(box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)] == 0), "objects never overlap"
        inside = 0
        for (x1, y1, x2, y2), label in zip(boxes.astype(int), labels):
            region = mask[y1:y2, x1:x2]
            assert set(np.unique(region)) <= {0, label + 1}
            rows, columns = np.nonzero(region)
            assert (rows.min(), columns.min(), rows.max(), columns.max()) == (0, 0, y2 - y1 - 1, x2 - x1 - 1)
            inside += len(rows)
        assert inside == np.count_nonzero(mask), "every mask pixel belongs to a box"


def test_synthetic_objects_are_brighter_than_the_threshold_where_masked(scenes):
    # (1 - v) * background + v > v > threshold wherever the mask is set
    assert np.all(scenes.images[:, 0][scenes.masks > 0] > 0.2)


def test_make_scenes_names_the_bad_argument():
    with pytest.raises(ValueError, match="image_size must be in"):
        make_scenes(1, image_size=16, split="test")
    with pytest.raises(ValueError, match="scales must be whole factors"):
        make_scenes(1, scales=(1.5,), split="test")


@given(data=st.data())
def test_decode_yolo_grid_returns_the_boxes_written_into_the_grid(data):
    # one object per occupied cell, box 0 of B = 2; box 1 has objectness 0 and is dropped
    grid = data.draw(st.integers(1, 4))
    occupied = data.draw(hnp.arrays(bool, (grid, grid)))
    output = np.zeros((grid, grid, 2 * 5 + 3))
    written = []
    for i, j in zip(*np.nonzero(occupied)):
        x, y = data.draw(st.floats(0, 1)), data.draw(st.floats(0, 1))
        w, h = data.draw(st.floats(0.05, 1)), data.draw(st.floats(0.05, 1))
        label, objectness = data.draw(st.integers(0, 2)), data.draw(st.floats(0.5, 1))
        output[i, j, :5] = [x, y, w, h, objectness]
        output[i, j, 10 + label] = 1.0
        cx, cy = (j + x) / grid * 80, (i + y) / grid * 60
        written.append(([cx - w * 40, cy - h * 30, cx + w * 40, cy + h * 30], objectness, label))
    boxes, scores, labels = decode_yolo_grid(output, (60, 80), 2, 3, score_threshold=0.25, iou_threshold=1.0)
    assert len(boxes) == len(written)  # IoU never exceeds 1: nothing suppressed
    order = np.argsort([-s for _, s, _ in written], kind="stable")
    assert_close("boxes", boxes, np.array([written[k][0] for k in order]).reshape(-1, 4))
    assert_close("scores", scores, np.array([written[k][1] for k in order]))
    assert labels.tolist() == [written[k][2] for k in order]


def test_every_public_object_names_a_section_of_the_detection_chapter():
    # test_library_map checks that the section exists; here: every docstring closes with the chapter's Book line.
    import inspect

    import cnnbook.detection as detection
    from test_library_map import BOOK_LINK

    for name in detection.__all__:
        obj = getattr(detection, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            doc = inspect.getdoc(inspect.unwrap(obj)) or ""
            match = BOOK_LINK.search(doc.splitlines()[-1] if doc else "")
            assert match and match["chapter"] == "Detection and segmentation" and match["section"], (
                f"{name}: docstring must end with a Book line naming a section of book/detection.md")
            assert match["path"] == "book/detection.md", name
