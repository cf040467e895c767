"""MTCNN with its pretrained weights, and the small trainable detector and segmenters of the chapter."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnbook.detection import box_iou, decode_yolo_grid
from cnnbook.detection.models import FCNHead, GridDetector, UNet, bilinear_kernel, yolo_activate, yolo_loss, yolo_targets
from cnnbook.detection.mtcnn import detect_faces, image_pyramid_scales, load_mtcnn

needs_facenet = pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None,
                                   reason="MTCNN weights: pip install --no-deps facenet-pytorch==2.6.0")

# The astronaut's face, drawn by eye on a 10-pixel grid over skimage.data.astronaut(): from the left ear
# (x = 180) to the right (x = 270), from the hairline over the forehead (y = 70) to the chin (y = 180).
ASTRONAUT_FACE = np.array([[180.0, 70.0, 270.0, 180.0]])


@pytest.fixture(scope="module")
def nets():
    return load_mtcnn()


@needs_facenet
def test_mtcnn_weights_load_strictly_into_the_librarys_networks(nets):
    pnet, rnet, onet = nets
    # strict=True already ran in load_mtcnn; check the networks' own shapes against the published ones.
    offsets, probability = pnet(torch.zeros(1, 3, 12, 12))
    assert offsets.shape == (1, 4, 1, 1) and probability.shape == (1, 1, 1)
    assert [t.shape for t in rnet(torch.zeros(2, 3, 24, 24))] == [(2, 4), (2,)]
    assert [t.shape for t in onet(torch.zeros(2, 3, 48, 48))] == [(2, 4), (2,), (2, 10)]


@needs_facenet
def test_mtcnn_finds_the_one_face_on_the_astronaut(nets):
    from skimage import data

    faces = detect_faces(data.astronaut(), nets)
    assert len(faces.boxes) == 1, faces.boxes
    assert box_iou(faces.boxes, ASTRONAUT_FACE)[0, 0] > 0.5
    assert faces.scores[0] > 0.99
    eyes_y, mouth_y = faces.landmarks[0, :2, 1], faces.landmarks[0, 3:, 1]
    assert eyes_y.max() < mouth_y.min(), "the eyes must be above the mouth corners"


@needs_facenet
def test_mtcnn_agrees_with_facenet_pytorchs_own_cascade(nets):
    from skimage import data

    try:
        from facenet_pytorch import MTCNN
    except ImportError as error:  # installed with --no-deps: its own code may lack a dependency
        pytest.skip(f"facenet_pytorch's MTCNN does not import without its dependencies: {error}")
    theirs, _ = MTCNN(keep_all=True, device="cpu").detect(data.astronaut())
    ours = detect_faces(data.astronaut(), nets)
    # Crops differ (RoIAlign with zero padding here, clamped area resizing there), so the boxes agree closely,
    # not exactly.
    assert len(theirs) == len(ours.boxes) == 1
    assert box_iou(ours.boxes, np.asarray(theirs, dtype=np.float64))[0, 0] > 0.9


def test_pyramid_scales_by_hand():
    scales = image_pyramid_scales(100, 200, min_face=20, factor=0.5)
    assert scales == pytest.approx([0.6, 0.3, 0.15])  # 100 * 0.075 = 7.5 < 12 stops it
    with pytest.raises(ValueError, match="factor"):
        image_pyramid_scales(100, 100, factor=1.5)


@needs_facenet
def test_detect_faces_names_a_bad_image(nets):
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detect_faces(np.zeros((10, 10)), nets)


def test_yolo_targets_decode_back_to_the_boxes():
    boxes = [np.array([[3.0, 5.0, 31.0, 20.0], [40.0, 33.0, 60.0, 63.0]])]
    labels = [np.array([4, 7])]
    target = yolo_targets(boxes, labels, 64, 8, 10)
    assert target[..., 4].sum() == 2 and target[0, 1, 2, 4] == 1 and target[0, 6, 6, 4] == 1  # centre cells
    decoded, scores, decoded_labels = decode_yolo_grid(target[0], (64, 64), 1, 10, 0.5)
    order = np.argsort(decoded_labels.numpy())
    np.testing.assert_allclose(decoded.numpy()[order], boxes[0], atol=1e-5)
    assert decoded_labels.numpy()[order].tolist() == [4, 7] and np.allclose(scores.numpy(), 1)


def test_yolo_loss_by_hand():
    target = torch.zeros(1, 1, 2, 5 + 2)
    target[0, 0, 0] = torch.tensor([0.5, 0.5, 0.25, 0.25, 1, 0, 1])
    raw = torch.zeros(1, 1, 2, 7)  # sigmoid 0.5 everywhere, uniform class scores
    # object cell: centre error 0, size error 2 (sqrt 0.5 - 0.5)^2, BCE log 2, class CE log 2;
    # empty cell: 0.5 * log 2.
    size_error = 2 * (np.sqrt(0.5) - 0.5) ** 2
    expected = 5 * size_error + np.log(2) + 0.5 * np.log(2) + np.log(2)
    assert float(yolo_loss(raw, target)) == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(yolo_activate(raw)[..., 5:].sum(-1), torch.ones(1, 1, 2))


def test_bilinear_kernel_upsamples_like_interpolate():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    up = F.conv_transpose2d(x, bilinear_kernel(2, 2).double(), stride=2, padding=1)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert up.shape == expected.shape
    torch.testing.assert_close(up[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])


@pytest.mark.parametrize("skips", [True, False])
def test_unet_and_heads_keep_the_input_size(skips):
    assert UNet(num_classes=3, skips=skips)(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 32, 32)
    assert GridDetector()(torch.zeros(2, 1, 64, 64)).shape == (2, 8, 8, 15)
    assert FCNHead()(torch.zeros(2, 96, 4, 4), torch.zeros(2, 32, 8, 8)).shape == (2, 11, 64, 64)


def test_unet_without_skips_ignores_the_encoders_fine_features():
    torch.manual_seed(0)
    with_skips, without = UNet(skips=True).eval(), UNet(skips=False).eval()
    assert with_skips.dec1[0][0].in_channels == 2 * without.dec1[0][0].in_channels
