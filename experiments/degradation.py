"""The degradation experiment of the chapter "ResNet" (``book/resnet.md``): plain and residual nets of 20 and 56 layers.

Trains ``plain20``, ``resnet20``, ``plain56`` and ``resnet56`` from :mod:`cnnbook.models`
(``in_channels=1``) on a seeded subset of Fashion-MNIST, several seeds each, and
logs the training error (averaged over windows of steps, and per epoch) and the
test error after every epoch. The chapter plots the logged curves.

The logged run in ``book/data/degradation.json`` was made with exactly this command, on one CPU
thread of a 2-core machine with little else running (413 s, 7 minutes, of wall-clock time; an earlier
run of seeds 0 and 1 alone, while other jobs kept the load average at 6 to 9, took 23 minutes)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/degradation.py --image-size 14 --train-size 3200 \\
        --test-size 1000 --epochs 2 --batch-size 32 --lr 0.05 --seeds 0 1 2 --window 10 \\
        --out book/data/degradation.json

that is: 3,200 training images (a stratified subset, 320 per class) averaged down to 14 x 14
pixels, 2 epochs of 100 steps, three seeds, and the first 1,000 test images.

The defaults (``--train-size 60000 --epochs 30``) are the full experiment for a
GPU; ``default_device()`` picks CUDA when there is one. Every run is seeded
(:func:`cnnbook.train.seed_everything`), so the same command on the same machine
repeats its numbers; the JSON records the settings, the device, the versions and
each run's wall-clock time.
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
from tqdm import tqdm

from cnnbook import models
from cnnbook.data import load_fashion_mnist, make_loader, train_test_split
from cnnbook.train import default_device, seed_everything

MODEL_NAMES = ("plain20", "resnet20", "plain56", "resnet56")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=60000, help="training images (a stratified subset)")
    parser.add_argument("--test-size", type=int, default=10000, help="test images (the first ones of the test split)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--image-size", type=int, default=28, help="resize the 28 x 28 images (area averaging)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (momentum 0.9, weight decay 1e-4)")
    parser.add_argument("--window", type=int, default=10, help="steps averaged into one point of the training curve")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("book/data/degradation.json"))
    return parser.parse_args(argv)


def load_data(train_size: int, test_size: int, image_size: int = 28):
    """Standardized Fashion-MNIST arrays: a stratified, seeded training subset and the first test images.

    image_size: side of the returned images; other than 28, each image is resized by area averaging
    (14 averages every 2 x 2 block), which makes every step about half as expensive on a CPU.
    """
    images, labels = load_fashion_mnist("train")
    if train_size < len(labels):
        _, _, images, labels = train_test_split(images, labels, test_fraction=train_size / len(labels), seed=0)
    test_images, test_labels = load_fashion_mnist("test", limit=test_size)
    if image_size != 28:
        resize = lambda x: F.interpolate(torch.from_numpy(x), size=(image_size, image_size), mode="area").numpy()  # noqa: E731
        images, test_images = resize(images), resize(test_images)
    mean, std = float(images.mean()), float(images.std())
    standardize = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return standardize(images), labels, standardize(test_images), test_labels


def test_error(model, loader, device) -> float:
    model.eval()
    wrong, count = 0, 0
    with torch.no_grad():
        for images, labels in loader:
            logits = model(images.to(device))
            wrong += (logits.argmax(1) != labels.to(device)).sum().item()
            count += len(labels)
    return wrong / count


def train_one(name: str, seed: int, data, args, device) -> dict:
    """One seeded run; returns its curves and timing."""
    train_images, train_labels, test_images, test_labels = data
    seed_everything(seed)
    model = models.MODELS[name](num_classes=10, in_channels=1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    train_loader = make_loader(train_images, train_labels, batch_size=args.batch_size, shuffle=True, seed=seed)
    test_loader = make_loader(test_images, test_labels, batch_size=500)
    window_errors, window_losses, curve_step, curve_error, curve_loss = [], [], [], [], []
    epoch_train_error, epoch_test_error, step = [], [], 0
    start = time.perf_counter()
    bar = tqdm(total=args.epochs * len(train_loader), desc=f"{name} seed {seed}", unit="step", file=sys.stdout,
               mininterval=30)
    for _ in range(args.epochs):
        model.train()
        wrong, count = 0, 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_wrong = (logits.argmax(1) != labels).sum().item()
            wrong, count, step = wrong + batch_wrong, count + len(labels), step + 1
            window_errors.append(batch_wrong / len(labels))
            window_losses.append(loss.item())
            if len(window_errors) == args.window:
                curve_step.append(step)
                curve_error.append(float(np.mean(window_errors)))
                curve_loss.append(float(np.mean(window_losses)))
                window_errors, window_losses = [], []
            bar.update()
        epoch_train_error.append(wrong / count)
        epoch_test_error.append(test_error(model, test_loader, device))
        bar.set_postfix(train_err=f"{epoch_train_error[-1]:.3f}", test_err=f"{epoch_test_error[-1]:.3f}")
    bar.close()
    seconds = time.perf_counter() - start
    print(f"{name:>8} seed {seed}: train error {epoch_train_error[-1]:.4f}, test error {epoch_test_error[-1]:.4f}, "
          f"{seconds:.0f} s", flush=True)
    return {
        "model": name, "seed": seed, "steps_per_epoch": len(train_loader), "curve_step": curve_step,
        "curve_train_error": curve_error, "curve_train_loss": curve_loss,
        "epoch_train_error": epoch_train_error, "epoch_test_error": epoch_test_error, "seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = default_device()
    data = load_data(args.train_size, args.test_size, args.image_size)
    print(f"device {device}, {len(data[1])} training and {len(data[3])} test images of {data[0].shape[-1]} pixels, "
          f"{len(args.models)} models x {len(args.seeds)} seeds x {args.epochs} epochs", flush=True)
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        for name in args.models:
            runs.append(train_one(name, seed, data, args, device))
            record = {
                "command": "OMP_NUM_THREADS=1 .venv/bin/python experiments/degradation.py " + " ".join(
                    sys.argv[1:] if argv is None else argv),
                "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
                "train_size": len(data[1]), "test_size": len(data[3]),
                "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                "total_seconds": time.perf_counter() - start, "runs": runs,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=1))  # after every run: a stopped job keeps its results
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
