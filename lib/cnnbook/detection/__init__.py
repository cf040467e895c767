"""Detection and segmentation: boxes, non-maximum suppression, anchors, RoI pooling, metrics, exact data.

Boxes are ``xyxy`` (``x1, y1, x2, y2``, continuous coordinates, no "+ 1")
unless a function says otherwise. Box functions take NumPy arrays or torch
tensors on any device and return the same kind; the RoI operations are torch
``autograd.Function``\\ s checked against NumPy loops and ``torchvision.ops``.

Where to find what:

- :mod:`cnnbook.detection.boxes`          ``box_convert`` (xyxy, xywh, cxcywh), ``box_area``, ``box_iou``
- :mod:`cnnbook.detection.nms`            ``nms`` and per-class ``batched_nms``, torchvision's semantics
- :mod:`cnnbook.detection.anchors`        ``grid_anchors`` over a feature map; ``encode_boxes`` / ``decode_boxes`` (Faster R-CNN's code)
- :mod:`cnnbook.detection.yolo`           ``decode_yolo_grid``: a YOLO ``S x S`` output to boxes, scores and labels
- :mod:`cnnbook.detection.roi_reference`  RoI pooling and RoIAlign in NumPy loops, forward ``(out, cache)`` / backward ``(dout, cache)``
- :mod:`cnnbook.detection.roi`            ``roi_pool`` and ``roi_align`` on torch tensors, hand-written backward
- :mod:`cnnbook.detection.metrics`        average precision, mean AP; confusion matrix, pixel accuracy, class IoU, mean IoU
- :mod:`cnnbook.detection.synthetic`      ``make_scenes``: Fashion-MNIST objects on texture photographs, exact boxes and masks
- :mod:`cnnbook.detection.models`         a YOLO-style ``GridDetector`` (targets, loss, decoding), ``UNet``, ``FCNHead``, ``train_steps``
- :mod:`cnnbook.detection.mtcnn`          MTCNN's P-, R- and O-Net with pretrained weights, and the cascade ``detect_faces``
"""

from .anchors import BBOX_XFORM_CLIP, decode_boxes, encode_boxes, grid_anchors
from .boxes import FORMATS, box_area, box_convert, box_iou
from .metrics import (
    average_precision,
    class_iou,
    confusion_matrix,
    match_detections,
    mean_average_precision,
    mean_iou,
    pixel_accuracy,
)
from .models import (
    FCNHead,
    GridDetector,
    UNet,
    bilinear_kernel,
    detect,
    mobilenet_v2_features,
    train_steps,
    yolo_activate,
    yolo_loss,
    yolo_targets,
)
from .mtcnn import FaceDetections, ONet, PNet, RNet, detect_faces, image_pyramid_scales, load_mtcnn
from .nms import batched_nms, nms
from .roi import RoIAlignFunction, RoIPoolFunction, boxes_to_rois, roi_align, roi_pool
from .roi_reference import roi_align_backward, roi_align_forward, roi_pool_backward, roi_pool_forward, round_half_away
from .synthetic import TEXTURES, Scenes, make_scenes
from .yolo import decode_yolo_grid

__all__ = [
    # boxes
    "box_convert",
    "box_area",
    "box_iou",
    "nms",
    "batched_nms",
    "grid_anchors",
    "encode_boxes",
    "decode_boxes",
    "decode_yolo_grid",
    # regions of interest
    "roi_pool",
    "roi_align",
    "boxes_to_rois",
    "RoIPoolFunction",
    "RoIAlignFunction",
    "roi_pool_forward",
    "roi_pool_backward",
    "roi_align_forward",
    "roi_align_backward",
    "round_half_away",
    # metrics
    "match_detections",
    "average_precision",
    "mean_average_precision",
    "confusion_matrix",
    "pixel_accuracy",
    "class_iou",
    "mean_iou",
    # data
    "make_scenes",
    "Scenes",
    # trainable models
    "GridDetector",
    "yolo_targets",
    "yolo_loss",
    "yolo_activate",
    "detect",
    "UNet",
    "FCNHead",
    "bilinear_kernel",
    "mobilenet_v2_features",
    "train_steps",
    # MTCNN
    "PNet",
    "RNet",
    "ONet",
    "load_mtcnn",
    "detect_faces",
    "FaceDetections",
    "image_pyramid_scales",
    # constants
    "FORMATS",
    "BBOX_XFORM_CLIP",
    "TEXTURES",
]
