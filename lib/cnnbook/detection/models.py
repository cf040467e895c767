"""Small trainable detectors and segmenters for the synthetic scenes, and the loop that trains them.

- :class:`GridDetector`: a single-stage YOLO-style detector (one box per grid cell) with
  :func:`yolo_targets`, :func:`yolo_loss` and :func:`yolo_activate` (raw output -> the activated grid that
  :func:`cnnbook.detection.decode_yolo_grid` reads), and :func:`detect` for a batch of images;
- :class:`UNet`: a small U-Net whose skip connections can be switched off;
- :class:`FCNHead`: an FCN-16s-style head on a frozen backbone's stride-8 and stride-16 features
  (:func:`mobilenet_v2_features`), upsampled by a transposed convolution initialised to bilinear and a
  final bilinear interpolation;
- :func:`train_steps`: seeded mini-batch Adam over in-memory tensors, with a progress bar.

All models take ``(N, C, S, S)`` images with ``S`` a multiple of 8 and are device-agnostic.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
# The plain text bar, not tqdm.auto's notebook widget: the widget needs JavaScript from a CDN
# that the offline book does not load (see cnnbook.train).
from tqdm.std import tqdm

from .yolo import decode_yolo_grid

__all__ = ["GridDetector", "yolo_targets", "yolo_loss", "yolo_activate", "detect", "UNet", "FCNHead",
           "mobilenet_v2_features", "bilinear_kernel", "train_steps"]


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class GridDetector(nn.Module):
    """A single-stage detector: x (N, in_channels, S, S) -> raw (N, S / 8, S / 8, 5 + num_classes).

    Six 3 x 3 convolutions (three of stride 2, receptive field 55 pixels) and a 1 x 1 head. Each cell
    predicts one box ``(x, y, w, h)``, an objectness and ``num_classes`` class scores, as logits
    (:func:`yolo_activate` turns them into the grid of :func:`cnnbook.detection.decode_yolo_grid`).

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        w = width
        self.num_classes = num_classes
        self.body = nn.Sequential(_conv(in_channels, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w),
                                  _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w), _conv(4 * w, 4 * w))
        self.head = nn.Conv2d(4 * w, 5 + num_classes, 1)

    def forward(self, x):
        return self.head(self.body(x)).permute(0, 2, 3, 1)


def yolo_targets(boxes, labels, image_size: int, grid: int, num_classes: int) -> torch.Tensor:
    """The training target of every cell: (N, grid, grid, 5 + num_classes).

    boxes: list of N arrays (G_i, 4) ``xyxy`` pixels; labels: list of N arrays (G_i,). The cell holding a
    box's centre gets ``(x, y)`` = the centre inside the cell (0 to 1), ``(w, h)`` = the size as a fraction of
    the image, objectness 1 and a one-hot class; every other cell is zero. (Two centres in one cell: the
    later box wins.)

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """
    target = torch.zeros((len(boxes), grid, grid, 5 + num_classes))
    cell = image_size / grid
    for n, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        for (x1, y1, x2, y2), label in zip(np.asarray(image_boxes, float).reshape(-1, 4), image_labels):
            cx, cy = (x1 + x2) / 2 / cell, (y1 + y2) / 2 / cell
            i, j = min(int(cy), grid - 1), min(int(cx), grid - 1)
            target[n, i, j, :5] = torch.tensor([cx - j, cy - i, (x2 - x1) / image_size, (y2 - y1) / image_size, 1.0])
            target[n, i, j, 5:] = 0
            target[n, i, j, 5 + int(label)] = 1
    return target


def yolo_loss(raw, target, coord_weight: float = 5.0, noobj_weight: float = 0.5) -> torch.Tensor:
    """YOLO's loss, per image: squared error on the centre and on the square roots of the size (cells with an
    object), binary cross-entropy on the objectness (empty cells weighted ``noobj_weight``) and
    cross-entropy on the class (cells with an object).

    raw: (N, SH, SW, 5 + C) logits; target: as :func:`yolo_targets`. Returns a scalar.

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """
    has_object = target[..., 4] > 0
    xy, wh = torch.sigmoid(raw[..., :2]), torch.sigmoid(raw[..., 2:4])
    box_error = ((xy - target[..., :2]) ** 2).sum(-1) + ((wh.sqrt() - target[..., 2:4].sqrt()) ** 2).sum(-1)
    objectness = F.binary_cross_entropy_with_logits(raw[..., 4], target[..., 4], reduction="none")
    objectness = torch.where(has_object, objectness, noobj_weight * objectness)
    classes = F.cross_entropy(raw[has_object][:, 5:], target[has_object][:, 5:].argmax(-1), reduction="sum")
    total = coord_weight * (box_error * has_object).sum() + objectness.sum() + classes
    return total / len(raw)


def yolo_activate(raw) -> torch.Tensor:
    """Raw detector output (N, SH, SW, 5 + C) -> the activated grid (sigmoid on box and objectness, softmax on
    classes), the input of :func:`cnnbook.detection.decode_yolo_grid` (with ``num_boxes=1``).

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """
    return torch.cat([torch.sigmoid(raw[..., :5]), torch.softmax(raw[..., 5:], dim=-1)], dim=-1)


@torch.no_grad()
def detect(model, images, score_threshold: float = 0.05, iou_threshold: float = 0.5, batch_size: int = 256):
    """Run a :class:`GridDetector` and decode each image: a list of ``(boxes (K, 4), scores (K,), labels (K,))``.

    images: (N, C, S, S) tensor on the model's device. Returns NumPy arrays per image, ``xyxy`` pixels.

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """
    model.eval()
    results = []
    for start in range(0, len(images), batch_size):
        grids = yolo_activate(model(images[start:start + batch_size])).cpu()
        for grid in grids:
            boxes, scores, labels = decode_yolo_grid(grid, images.shape[-2:], 1, model.num_classes,
                                                     score_threshold, iou_threshold)
            results.append((boxes.numpy(), scores.numpy(), labels.numpy()))
    return results


class UNet(nn.Module):
    """A three-level U-Net: x (N, in_channels, S, S) -> logits (N, num_classes, S, S).

    Encoder: two 3 x 3 convolutions per level, 2 x 2 max pooling between levels (widths ``w, 2w, 4w``).
    Decoder: a 2 x 2 transposed convolution of stride 2 doubles the size, then (``skips=True``) the encoder's
    feature map of that size is concatenated before two 3 x 3 convolutions. With ``skips=False`` the
    decoder sees only the upsampled coarse map (the same convolutions, half the input channels replaced by
    nothing), so the two variants differ only in the skip connections.

    Book: "Detection and segmentation", section "A small U-Net, with and without its skips" (``book/detection.md``).
    """

    def __init__(self, num_classes: int = 11, in_channels: int = 1, width: int = 8, skips: bool = True):
        super().__init__()
        w, self.skips = width, skips
        self.down1 = nn.Sequential(_conv(in_channels, w), _conv(w, w))
        self.down2 = nn.Sequential(_conv(w, 2 * w), _conv(2 * w, 2 * w))
        self.bottom = nn.Sequential(_conv(2 * w, 4 * w), _conv(4 * w, 4 * w))
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = nn.Sequential(_conv(4 * w if skips else 2 * w, 2 * w), _conv(2 * w, 2 * w))
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = nn.Sequential(_conv(2 * w if skips else w, w), _conv(w, w))
        self.classify = nn.Conv2d(w, num_classes, 1)

    def forward(self, x):
        skip1 = self.down1(x)
        skip2 = self.down2(F.max_pool2d(skip1, 2))
        y = self.up2(self.bottom(F.max_pool2d(skip2, 2)))
        y = self.dec2(torch.cat([skip2, y], 1) if self.skips else y)
        y = self.up1(y)
        y = self.dec1(torch.cat([skip1, y], 1) if self.skips else y)
        return self.classify(y)


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights (channels, channels, 2 f - f % 2, 2 f - f % 2) that make a transposed convolution of stride
    ``f`` (padding ``(f - 1) // 2 + ...`` as in :class:`FCNHead`) upsample each channel bilinearly.

    Book: "Detection and segmentation", section "Upsampling: transposed convolution and bilinear interpolation" (``book/detection.md``).
    """
    size = 2 * factor - factor % 2
    centre = (size - 1) / 2 if size % 2 else factor - 0.5
    ramp = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - centre) / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


class FCNHead(nn.Module):
    """An FCN-16s head: stride-16 features (N, C16, S/16, S/16) and stride-8 features (N, C8, S/8, S/8) ->
    logits (N, num_classes, S, S).

    A 1 x 1 convolution scores the classes on each map; the stride-16 scores are upsampled x2 by a
    transposed convolution initialised to bilinear (:func:`bilinear_kernel`), added to the stride-8 scores,
    and the sum is upsampled x8 by bilinear interpolation.

    Book: "Detection and segmentation", section "An FCN head on pretrained MobileNetV2 features" (``book/detection.md``).
    """

    def __init__(self, channels16: int = 96, channels8: int = 32, num_classes: int = 11, hidden: int = 64):
        super().__init__()
        self.score16 = nn.Sequential(nn.Conv2d(channels16, hidden, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden, num_classes, 1))
        self.score8 = nn.Conv2d(channels8, num_classes, 1)
        self.up2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        with torch.no_grad():
            self.up2.weight.copy_(bilinear_kernel(num_classes, 2))

    def forward(self, features16, features8):
        scores = self.up2(self.score16(features16)) + self.score8(features8)
        return F.interpolate(scores, scale_factor=8, mode="bilinear", align_corners=False)


@torch.no_grad()
def mobilenet_v2_features(backbone, images, batch_size: int = 64):
    """The stride-8 (after ``features[6]``) and stride-16 (after ``features[13]``) maps of a MobileNetV2.

    backbone: :func:`cnnbook.models.pretrained.load_mobilenet_v2_imagenet` (eval mode); images: (N, 1 or 3,
    S, S) in [0, 1] (grey is repeated over RGB and normalised with ImageNet's mean and std).
    Returns ``(features16 (N, 96, S/16, S/16), features8 (N, 32, S/8, S/8))``.

    Book: "Detection and segmentation", section "An FCN head on pretrained MobileNetV2 features" (``book/detection.md``).
    """
    from ..models.pretrained import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(images.device)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(images.device)
    out16, out8 = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].expand(-1, 3, -1, -1)
        x = (x - mean) / std
        for index, block in enumerate(backbone.features[:14]):
            x = block(x)
            if index == 6:
                out8.append(x)
        out16.append(x)
    return torch.cat(out16), torch.cat(out8)


def train_steps(model, loss_fn, inputs, targets, epochs: int, batch_size: int = 32, lr: float = 3e-3,
                seed: int = 0, progress: bool = True, desc: str = "training", on_epoch=None):
    """Seeded mini-batch Adam (cosine learning rate) over in-memory tensors; returns the loss of every step.

    inputs: a tensor (N, ...) or a tuple of tensors passed as ``model(*inputs)``; targets: (N, ...);
    ``loss_fn(output, target_batch)`` -> scalar; ``on_epoch(epoch)``, if given, is called (model in eval
    mode) after every epoch.

    Book: "Detection and segmentation", section "A single-stage detector trained on exact scenes" (``book/detection.md``).
    """
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(targets) // batch_size)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    losses = []
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress, mininterval=5, file=sys.stdout)
    model.train()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(targets), generator=generator).to(targets.device)
        for start in range(0, len(targets), batch_size):
            batch = order[start:start + batch_size]
            loss = loss_fn(model(*(x[batch] for x in inputs)), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
        model.eval()
        if on_epoch is not None:
            on_epoch(epoch)
    bar.close()
    return losses
