"""The transfer-learning experiments of the chapter "Transfer learning" (``book/transfer.md``), in full.

For each task and number of labels per class, every strategy of :func:`cnnbook.transfer.run_strategy`
runs with several seeds (the seed picks the labelled examples and initialises the new layers):

- ``textures``: 64 x 64 patches of scikit-image's brick, grass, gravel and moon photos, test patches
  from held-out regions (:func:`cnnbook.transfer.texture_task`); ImageNet MobileNet v2 at 64 x 64;
- ``faces``: scikit-image's ``lfw_subset``, faces against other crops; MobileNet v2 at 64 x 64;
- ``digits``: scikit-learn's digits drawn like MNIST, from a small CNN pretrained on 4,000 MNIST digits;
- ``fashion``: Fashion-MNIST, ImageNet features (linear probe) against a small CNN from scratch,
  up to 300 labels per class (the negative case).

Every strategy runs at every number of labels, except the costly ``full`` and ``gradual``, which run at
``--finetune-labels`` only (10 per class by default).

The logged run in ``book/data/transfer.json`` was made with exactly this command, on one CPU thread
of a shared 2-core machine (the JSON records the wall-clock time)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/transfer.py --out book/data/transfer.json

``default_device()`` picks CUDA when there is one; ``--tiny`` runs a few steps of everything (the test).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnnbook import transfer
from cnnbook.data import load_fashion_mnist
from cnnbook.models import pretrained
from cnnbook.train import default_device, seed_everything

TASKS = ("textures", "faces", "digits", "fashion")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--strategies", nargs="+", default=list(transfer.STRATEGIES), choices=transfer.STRATEGIES)
    parser.add_argument("--labels", type=int, nargs="+", default=[5, 10, 20], help="labels per class")
    parser.add_argument("--finetune-labels", type=int, nargs="+", default=[10],
                        help="labels per class at which the costly 'full' and 'gradual' strategies run")
    parser.add_argument("--fashion-labels", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--fashion-test", type=int, default=2000, help="Fashion-MNIST test images (the first ones)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run (fashion: at least 4 epochs)")
    parser.add_argument("--input-size", type=int, default=64, help="side of MobileNet v2's input")
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a smoke test: few steps, small Fashion-MNIST subset")
    parser.add_argument("--out", type=Path, default=Path("book/data/transfer.json"))
    return parser.parse_args(argv)


def fashion_task(per_class_max: int, test_size: int):
    """Fashion-MNIST: a pool of the first ``per_class_max`` training images of each class, the first test images."""
    images, labels = load_fashion_mnist("train")
    pool = np.concatenate([np.flatnonzero(labels == c)[:per_class_max] for c in range(10)])
    test_x, test_y = load_fashion_mnist("test", limit=test_size)
    return images[pool], labels[pool], test_x, test_y


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = default_device()
    steps = 3 if args.tiny else args.steps
    started = time.time()
    seed_everything(0)
    mobilenet = pretrained.load_mobilenet_v2_imagenet().to(device)
    to_input = lambda images: transfer.imagenet_input(images, args.input_size)  # noqa: E731
    log = {"command": "OMP_NUM_THREADS=1 .venv/bin/python experiments/transfer.py "
                      + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "device": str(device), "platform": platform.platform(), "torch": torch.__version__, "runs": []}
    cache: dict = {}

    def record(task_name, task, strategy, per_class, seed, backbone, convert, split, run_steps):
        t0 = time.time()
        acc = transfer.run_strategy(strategy, task, per_class, seed, backbone=backbone, to_input=convert,
                                    steps=run_steps, split=split, cache=cache)
        log["runs"].append({"task": task_name, "strategy": strategy, "per_class": per_class, "seed": seed,
                            "accuracy": acc, "seconds": round(time.time() - t0, 2)})
        print(f"[{time.time() - started:7.1f} s] {task_name:<8} {strategy:<11} {per_class:5d}/class seed {seed}: "
              f"accuracy {acc:.3f}", flush=True)

    for task_name in args.tasks:
        if task_name == "fashion":
            labels = [2, 4] if args.tiny else args.fashion_labels
            task = fashion_task(max(labels), 100 if args.tiny else args.fashion_test)
            for per_class in labels:
                run_steps = max(steps, 4 * 10 * per_class // 16) if not args.tiny else steps
                for seed in args.seeds:
                    for strategy in ("scratch", "probe"):
                        record(task_name, task, strategy, per_class, seed, mobilenet, to_input, -2, run_steps)
            continue
        if task_name == "digits":
            source, source_accuracy = transfer.pretrain_mnist(1 if args.tiny else args.mnist_epochs, seed=0)
            log["mnist_source_accuracy"] = source_accuracy
            task, backbone, convert, split = transfer.digits_task(), source.to(device), None, -1
        else:
            task = transfer.texture_task() if task_name == "textures" else transfer.faces_task()
            backbone, convert, split = mobilenet, to_input, -2
        for per_class in args.labels:
            for seed in args.seeds:
                for strategy in args.strategies:
                    if strategy in ("full", "gradual") and per_class not in args.finetune_labels and not args.tiny:
                        continue
                    record(task_name, task, strategy, per_class, seed, backbone, convert, split, steps)
    log["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(log, indent=1) + "\n")
    print(f"wrote {args.out} ({len(log['runs'])} runs, {log['seconds']} s)")
    return log


if __name__ == "__main__":
    main()
