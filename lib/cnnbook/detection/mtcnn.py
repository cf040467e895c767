"""MTCNN: a face detector that proposes with one small network and refines with two larger ones.

Zhang et al.'s cascade (2016) runs three networks one after the other:

- **P-Net** (proposal), fully convolutional: slid over an image pyramid, it
  scores every 12 x 12 window (stride 2) as face or not and regresses a
  correction of the window's four sides;
- **R-Net** (refine) sees each surviving window cropped to 24 x 24 and scores
  and corrects it again;
- **O-Net** (output) sees 48 x 48 crops and adds five facial landmarks (eyes,
  nose, mouth corners).

Between stages: thresholds on the face probability, non-maximum suppression
(:func:`cnnbook.detection.nms`), the side corrections ``x1 + dx1 * w`` (and
so on for each side) and a squaring of each box around its centre. Crops are
taken with the library's :func:`~cnnbook.detection.roi_align` (so a box that
leaves the image is padded with zeros, the grey of the normalised input).

The architectures below are written here; the weights are the ones that ship
in the PyPI package ``facenet-pytorch==2.6.0`` (``data/pnet.pt``, ``rnet.pt``,
``onet.pt``, plain state dicts), found by path and SHA-256 checked by
:func:`cnnbook.models.pretrained.weights_file`; none of that package's code
is imported. Input images are RGB, normalised as ``(pixel - 127.5) / 128``.
The two fully connected networks flatten their last feature map in
``(W, H, C)`` order, the layout of the Caffe models the weights come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .nms import nms
from .roi import roi_align

__all__ = ["PNet", "RNet", "ONet", "load_mtcnn", "FaceDetections", "detect_faces", "image_pyramid_scales"]


class PNet(nn.Module):
    """P-Net. x: (N, 3, H, W) -> ``(offsets (N, 4, H', W'), face probability (N, H', W'))``.

    ``H' = floor((ceil((H - 2) / 2) - 4))``: three 3 x 3 convolutions (no padding) and one 2 x 2 max pool, so
    output cell ``(i, j)`` sees the 12 x 12 input window at ``(2 i, 2 j)``.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # side offsets

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


def _flatten_caffe(x):
    """(N, C, H, W) -> (N, W * H * C): the order the Caffe weights were trained with."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """R-Net. x: (N, 3, 24, 24) -> ``(offsets (N, 4), face probability (N,))``.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)  # -> (64, 3, 3)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_caffe(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """O-Net. x: (N, 3, 48, 48) -> ``(offsets (N, 4), face probability (N,), landmarks (N, 10))``.

    Landmarks are ``(x_1..x_5, y_1..y_5)`` as fractions of the box's width and height, from its top-left corner.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)  # -> (128, 3, 3)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_caffe(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_3(x)


def load_mtcnn(map_location="cpu"):
    """``(pnet, rnet, onet)`` with facenet-pytorch 2.6.0's weights, loaded ``strict=True``, in eval mode.

    Raises ``FileNotFoundError`` naming ``pip install --no-deps facenet-pytorch==2.6.0`` when the package is missing.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """
    from ..models.pretrained import weights_file

    nets = []
    for name, net in (("mtcnn_pnet", PNet()), ("mtcnn_rnet", RNet()), ("mtcnn_onet", ONet())):
        state_dict = torch.load(weights_file(name), map_location=map_location, weights_only=True)
        net.load_state_dict(state_dict, strict=True)
        nets.append(net.eval())
    return tuple(nets)


@dataclass
class FaceDetections:
    """The faces found by :func:`detect_faces`, and what each stage of the cascade kept.

    boxes: (K, 4) ``xyxy`` pixels; scores: (K,) O-Net's face probability; landmarks: (K, 5, 2) ``(x, y)`` pixels
    (left eye, right eye, nose, left and right mouth corner). stages: stage name -> ``(boxes (M, 4), scores (M,))``
    after that stage: ``"P-Net windows"`` (all scales, over the threshold, before any NMS), ``"P-Net after NMS"``
    (within and across scales, shifted and squared), ``"R-Net"``, ``"O-Net"``. scales: the pyramid's scales.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    stages: dict = field(default_factory=dict)
    scales: list = field(default_factory=list)


def image_pyramid_scales(height: int, width: int, min_face: float = 20.0, factor: float = 0.709) -> list[float]:
    """The scales at which P-Net's 12-pixel window sees faces of ``min_face`` pixels and up.

    The first scale is ``12 / min_face``; each next one is ``factor`` times the last, while the shorter side,
    scaled, is still at least 12 pixels. Returns the list of scales.

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """
    if min_face <= 0 or not 0 < factor < 1:
        raise ValueError(f"image_pyramid_scales: need min_face > 0 and 0 < factor < 1, got {min_face}, {factor}")
    scales, scale = [], 12.0 / min_face
    while min(height, width) * scale >= 12:
        scales.append(scale)
        scale *= factor
    return scales


def _square(boxes):
    """Each box grown to a square around its centre (side: its longer side)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def _shift_sides(boxes, offsets):
    """MTCNN's regression: each side moves by its offset times the box's width (x) or height (y)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _crops(image, boxes, size: int, chunk: int = 16):
    """(K, 3, size, size) RoIAlign crops of ``image`` (1, 3, H, W) inside ``boxes`` (K, 4), in chunks to bound memory."""
    pieces = [roi_align(image, [boxes[i:i + chunk]], size, sampling_ratio=-1, aligned=True)
              for i in range(0, len(boxes), chunk)]
    return torch.cat(pieces) if pieces else image.new_zeros((0, 3, size, size))


@torch.no_grad()
def detect_faces(image, nets=None, min_face: float = 20.0, factor: float = 0.709, thresholds=(0.6, 0.7, 0.7),
                 nms_thresholds=(0.5, 0.7, 0.7, 0.7)) -> FaceDetections:
    """Run the MTCNN cascade on one RGB image.

    image: (H, W, 3) uint8 (or float in [0, 255]); nets: ``(pnet, rnet, onet)`` (default :func:`load_mtcnn`);
    thresholds: face probabilities P-Net, R-Net and O-Net must exceed; nms_thresholds: IoU thresholds of the
    four suppressions (within a scale, across scales, after R-Net, after O-Net).
    Returns :class:`FaceDetections`, highest score first. (The original's last suppression divides the
    intersection by the smaller box instead of the union; here every suppression is the library's IoU NMS.)

    Book: "Detection and segmentation", section "MTCNN: a cascade that proposes, then refines" (``book/detection.md``).
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"detect_faces: need an RGB image of shape (H, W, 3), got shape {array.shape}")
    pnet, rnet, onet = nets if nets is not None else load_mtcnn()
    height, width = array.shape[:2]
    pixels = torch.as_tensor(array, dtype=torch.float32).permute(2, 0, 1)[None]
    normalised = (pixels - 127.5) / 128
    stages, scales = {}, image_pyramid_scales(height, width, min_face, factor)

    # Stage 1: P-Net over the pyramid; a cell (i, j) at scale s is the window (2j, 2i, 2j + 12, 2i + 12) / s.
    found, windows = [], []  # per scale: (boxes, scores, offsets) after NMS; (boxes, scores) before
    for scale in scales:
        resized = torch.nn.functional.interpolate(pixels, size=(int(height * scale + 1), int(width * scale + 1)),
                                                  mode="area")
        offsets, probability = pnet((resized - 127.5) / 128)
        rows, columns = torch.nonzero(probability[0] > thresholds[0], as_tuple=True)
        corners = torch.stack([columns, rows], dim=1).to(torch.float32) * 2
        boxes = torch.cat([corners, corners + 12], dim=1) / scale
        scores, offsets = probability[0, rows, columns], offsets[0][:, rows, columns].T
        windows.append((boxes, scores))
        keep = nms(boxes, scores, nms_thresholds[0])
        found.append((boxes[keep], scores[keep], offsets[keep]))
    stages["P-Net windows"] = tuple(torch.cat(parts).numpy() for parts in zip(*windows)) if windows else (
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    boxes, scores, offsets = (torch.cat(parts) for parts in zip(*found)) if found else (torch.zeros(0, 4),) * 3
    keep = nms(boxes, scores, nms_thresholds[1])
    boxes, scores = _square(_shift_sides(boxes[keep], offsets[keep])), scores[keep]
    stages["P-Net after NMS"] = (boxes.numpy().copy(), scores.numpy().copy())

    # Stage 2: R-Net on 24 x 24 crops.
    offsets, probability = rnet(_crops(normalised, boxes, 24)) if len(boxes) else (torch.zeros(0, 4),) * 2
    passed = probability > thresholds[1]
    boxes, scores, offsets = boxes[passed], probability[passed], offsets[passed]
    keep = nms(boxes, scores, nms_thresholds[2])
    boxes, scores = _square(_shift_sides(boxes[keep], offsets[keep])), scores[keep]
    stages["R-Net"] = (boxes.numpy().copy(), scores.numpy().copy())

    # Stage 3: O-Net on 48 x 48 crops, with landmarks.
    if len(boxes):
        offsets, probability, marks = onet(_crops(normalised, boxes, 48))
    else:
        offsets, probability, marks = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 10)
    passed = probability > thresholds[2]
    boxes, scores, offsets, marks = boxes[passed], probability[passed], offsets[passed], marks[passed]
    size = boxes[:, 2:] - boxes[:, :2]
    landmarks = torch.stack([boxes[:, None, 0] + marks[:, :5] * size[:, None, 0],
                             boxes[:, None, 1] + marks[:, 5:] * size[:, None, 1]], dim=2)
    boxes = _shift_sides(boxes, offsets)
    keep = nms(boxes, scores, nms_thresholds[3])
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    stages["O-Net"] = (boxes.numpy().copy(), scores.numpy().copy())
    return FaceDetections(boxes.numpy(), scores.numpy(), landmarks.numpy(), stages, scales)
