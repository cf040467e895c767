"""The longer runs of the chapter "Detection and segmentation" (``book/detection.md``).

On synthetic scenes from :func:`cnnbook.detection.make_scenes` (64 x 64, objects enlarged 1 or 2 times,
training scenes from Fashion-MNIST's training split, test scenes from its test split), trains

- ``detector``: :class:`cnnbook.detection.models.GridDetector`, scored after every epoch with mean
  average precision at IoU 0.5 on the test scenes;
- ``unet``: :class:`~cnnbook.detection.models.UNet` with and without its skip connections on the
  object/background masks, scored with mean IoU after every epoch;
- ``fcn``: :class:`~cnnbook.detection.models.FCNHead` on frozen ImageNet MobileNetV2 features, on the 11-class
  masks (background and the ten classes), scored with mean IoU after every epoch.

The chapter runs the same code for fewer scenes and epochs and plots this script's log,
``book/data/detection.json``, beside its own numbers. The log was made with::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/detection.py --out book/data/detection.json

on one CPU thread (the defaults; 1,344 s of wall-clock time on a 2-core machine shared with other jobs; the
JSON records the time of every part). Everything is
seeded, so the command repeats its numbers on the same machine; ``--device cuda`` runs it on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnbook.detection import make_scenes, mean_average_precision, mean_iou
from cnnbook.detection.models import (FCNHead, GridDetector, UNet, detect, mobilenet_v2_features, train_steps,
                                      yolo_loss, yolo_targets)
from cnnbook.train import seed_everything

PARTS = ("detector", "unet", "fcn")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=4000, help="training scenes (detector and FCN)")
    parser.add_argument("--unet-train-size", type=int, default=2000, help="training scenes of the two U-Nets")
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--detector-epochs", type=int, default=12)
    parser.add_argument("--unet-epochs", type=int, default=4)
    parser.add_argument("--fcn-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=10, help="steps averaged into one point of a loss curve")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("book/data/detection.json"))
    return parser.parse_args(argv)


def windowed(losses, window: int) -> list[float]:
    """Mean loss over consecutive windows of ``window`` steps."""
    usable = len(losses) // window * window
    return np.asarray(losses[:usable]).reshape(-1, window).mean(axis=1).round(5).tolist() if usable else []


def run_detector(args, train, test, device):
    seed_everything(args.seed)
    model = GridDetector().to(device)
    images, test_images = torch.as_tensor(train.images, device=device), torch.as_tensor(test.images, device=device)
    targets = yolo_targets(train.boxes, train.labels, args.image_size, args.image_size // 8, 10).to(device)
    truth = list(zip(test.boxes, test.labels))
    scores, per_class = [], []

    def score(epoch):
        map50, ap = mean_average_precision(detect(model, test_images), truth, 10)
        scores.append(map50)
        per_class[:] = ap.round(4).tolist()
        print(f"detector epoch {epoch + 1}: test mAP@0.5 {map50:.3f}", flush=True)

    losses = train_steps(model, yolo_loss, images, targets, args.detector_epochs, batch_size=32, lr=3e-3,
                         seed=args.seed, desc="detector", on_epoch=score)
    return {"loss": windowed(losses, args.window), "test_map50": scores, "final_ap_per_class": per_class}


def run_unets(args, train, test, device):
    images, test_images = torch.as_tensor(train.images, device=device), torch.as_tensor(test.images, device=device)
    masks = torch.as_tensor(train.masks > 0, device=device).long()
    result = {}
    for skips in (True, False):
        seed_everything(args.seed)
        model = UNet(num_classes=2, skips=skips).to(device)
        scores = []

        def score(epoch, model=model, skips=skips, scores=scores):
            with torch.no_grad():
                predicted = torch.cat([model(test_images[i:i + 100]).argmax(1) for i in range(0, len(test_images), 100)])
            scores.append(mean_iou(predicted, test.masks > 0, 2))
            print(f"U-Net skips={skips} epoch {epoch + 1}: test mIoU {scores[-1]:.3f}", flush=True)

        losses = train_steps(model, F.cross_entropy, images, masks, args.unet_epochs, batch_size=16, lr=1e-2,
                             seed=args.seed, desc=f"U-Net skips={skips}", on_epoch=score)
        result["with_skips" if skips else "without_skips"] = {"loss": windowed(losses, args.window), "test_miou": scores}
    return result


def run_fcn(args, train, test, device):
    from cnnbook.models.pretrained import load_mobilenet_v2_imagenet

    backbone = load_mobilenet_v2_imagenet().to(device)
    features = mobilenet_v2_features(backbone, torch.as_tensor(train.images, device=device))
    test_features = mobilenet_v2_features(backbone, torch.as_tensor(test.images, device=device))
    masks = torch.as_tensor(train.masks, device=device)
    seed_everything(args.seed)
    model = FCNHead().to(device)
    scores = []

    def score(epoch):
        with torch.no_grad():
            predicted = model(*test_features).argmax(1)
        scores.append(mean_iou(predicted, test.masks, 11))
        print(f"FCN epoch {epoch + 1}: test mIoU {scores[-1]:.3f}", flush=True)

    losses = train_steps(model, F.cross_entropy, features, masks, args.fcn_epochs, batch_size=32, lr=3e-3,
                         seed=args.seed, desc="FCN", on_epoch=score)
    return {"loss": windowed(losses, args.window), "test_miou": scores}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.time()
    size = max(args.train_size, args.unet_train_size)
    train = make_scenes(size, image_size=args.image_size, scales=(1, 2), seed=args.seed)
    test = make_scenes(args.test_size, image_size=args.image_size, scales=(1, 2), seed=args.seed + 1, split="test")
    print(f"{size} training and {args.test_size} test scenes of {args.image_size} x {args.image_size} "
          f"({time.time() - started:.0f} s)", flush=True)
    log = {"command": "OMP_NUM_THREADS=1 .venv/bin/python experiments/detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "device": str(device), "python": platform.python_version(), "torch": torch.__version__,
           "train_checksum": train.checksum(), "seconds": {}}
    runs = {"detector": run_detector, "unet": run_unets, "fcn": run_fcn}
    for part in args.parts:
        start = time.time()
        subset = _head(train, args.unet_train_size if part == "unet" else args.train_size)
        log[part] = runs[part](args, subset, test, device)
        log["seconds"][part] = round(time.time() - start, 1)
    log["seconds"]["total"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(log, indent=1) + "\n")
    print(f"wrote {args.out} ({log['seconds']['total']:.0f} s)")
    return log


def _head(scenes, n: int):
    """The first ``n`` scenes."""
    return type(scenes)(scenes.images[:n], scenes.boxes[:n], scenes.labels[:n], scenes.masks[:n])


if __name__ == "__main__":
    main()
