"""Data-parallel training with ``torchrun``, from the chapter "ResNet" (``book/resnet.md``, "Training on more than one device").

The same file runs as one process or as many::

    python experiments/ddp_train.py --epochs 2
    torchrun --standalone --nproc_per_node=2 experiments/ddp_train.py --epochs 2

Each process trains on its shard of every epoch (``--batch-size`` images per
process and step; the global batch is that times the number of processes),
``DistributedDataParallel`` averages the gradients, and rank 0 alone prints
progress and writes the checkpoint, the final weights and the history.
``--lr`` is the rate for a global batch of ``--base-batch-size``; it is scaled
linearly to the actual global batch, reached after ``--warmup-epochs``
(:func:`cnnbook.distributed.linear_scaling_schedule`).

With ``--checkpoint PATH`` a checkpoint is written after every epoch (and every
``--checkpoint-every`` steps), and an existing one is resumed: run the same
command again after a crash (or give ``torchrun --max-restarts=3`` to do it
automatically). The resumed run ends with the same weights as an uninterrupted
one. Resume with the same number of processes. ``--kill-after-step K`` makes
rank 0 kill itself (SIGKILL) after its K-th optimizer step, to try this out
(only in a run that did not start from a checkpoint, so a restart finishes)::

    torchrun --standalone --nproc_per_node=2 --max-restarts=1 experiments/ddp_train.py --model mlp \
        --dropout 0.2 --checkpoint runs/mlp.ckpt --checkpoint-every 20 --kill-after-step 150

Networks: ``mlp`` (no batch norm: one process with the global batch computes the
same steps), ``resnet20`` and ``plain20`` (batch norm normalizes each process's
batch on its own; on GPUs ``--sync-batch-norm`` uses the global batch).
Data: the first ``--train-size`` Fashion-MNIST training images (optionally
averaged down to ``--image-size``) or scikit-learn's 8 x 8 digits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook import distributed, models
from cnnbook.data import load_digits, load_fashion_mnist
from cnnbook.train import fit, seed_everything


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("fashion_mnist", "digits"), default="fashion_mnist")
    parser.add_argument("--train-size", type=int, default=3200, help="training images (the first ones)")
    parser.add_argument("--image-size", type=int, default=14, help="Fashion-MNIST: average 28 x 28 down to this")
    parser.add_argument("--model", choices=("mlp", "resnet20", "plain20"), default="resnet20")
    parser.add_argument("--dropout", type=float, default=0.0, help="mlp: dropout before the last layer")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="images per process and step")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate for --base-batch-size")
    parser.add_argument("--base-batch-size", type=int, default=32, help="global batch that --lr was tuned for")
    parser.add_argument("--warmup-epochs", type=int, default=0)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--sync-batch-norm", action="store_true", help="convert batch norm to SyncBatchNorm (GPUs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when there is a GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file: written by rank 0, resumed when present")
    parser.add_argument("--checkpoint-every", type=int, help="also checkpoint every N optimizer steps")
    parser.add_argument("--kill-after-step", type=int, help="rank 0 kills itself after this global step")
    parser.add_argument("--weights-out", type=Path, help="rank 0 saves the final state dict here")
    parser.add_argument("--history-out", type=Path, help="rank 0 writes the history and settings here (JSON)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def load_data(args) -> tuple[np.ndarray, np.ndarray]:
    """The training images (N, C, H, W), standardized, in ``args.dtype``, and their labels."""
    if args.data == "digits":
        images, labels = load_digits()
    else:
        images, labels = load_fashion_mnist("train", limit=args.train_size)
        if args.image_size != images.shape[-1]:
            images = F.adaptive_avg_pool2d(torch.from_numpy(images), args.image_size).numpy()
    images, labels = images[: args.train_size], labels[: args.train_size]
    images = (images - images.mean()) / images.std()
    return images.astype(args.dtype), labels


def build_model(args, image_shape) -> nn.Module:
    """The network, initialized from ``args.seed`` (rank 0's copy is broadcast to the others anyway)."""
    seed_everything(args.seed)
    channels, height, width = image_shape
    if args.model == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 64), nn.ReLU(),
                            nn.Dropout(args.dropout), nn.Linear(64, 10))
    else:
        net = models.MODELS[args.model](in_channels=channels)
    if args.sync_batch_norm:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    return net.to(getattr(torch, args.dtype))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    context = distributed.init_distributed(device=args.device)
    try:
        images, labels = load_data(args)
        net = build_model(args, images.shape[1:])
        seed_everything(args.seed + context.rank)  # each rank its own dropout masks (the weights come from rank 0)
        loader = distributed.distributed_loader(images, labels, args.batch_size, shuffle=True, seed=args.seed)
        global_batch = args.batch_size * context.world_size
        optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay)
        scheduler = distributed.linear_scaling_schedule(optimizer, args.base_batch_size, global_batch,
                                                        args.warmup_epochs)
        if context.is_main:
            print(f"{context.world_size} process(es), backend {context.backend or 'none'}, device {context.device}, "
                  f"{len(images):,} images, global batch {global_batch}, "
                  f"peak lr {args.lr * global_batch / args.base_batch_size:g}", flush=True)

        fresh_run = args.checkpoint is None or not args.checkpoint.exists()  # a resumed run is not killed again

        def kill_after(epoch, step_in_epoch, global_step):
            if fresh_run and context.is_main and global_step == args.kill_after_step:
                os.kill(os.getpid(), signal.SIGKILL)

        history = fit(net, loader, optimizer, args.epochs, scheduler=scheduler, device=context.device,
                      progress=not args.quiet, description=f"rank 0 of {context.world_size}",
                      checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                      on_step=kill_after if args.kill_after_step is not None else None)
        if context.is_main:
            for epoch, (loss, accuracy, lr) in enumerate(zip(history.train_loss, history.train_accuracy,
                                                              history.learning_rate)):
                print(f"epoch {epoch + 1}: lr {lr:.4g}, training loss {loss:.4f}, accuracy {accuracy:.4f}")
            if args.weights_out is not None:
                args.weights_out.parent.mkdir(parents=True, exist_ok=True)
                torch.save(net.state_dict(), args.weights_out)
            if args.history_out is not None:
                settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
                record = {"command": " ".join(sys.argv), "world_size": context.world_size,
                          "backend": context.backend, "device": str(context.device), "settings": settings,
                          "train_loss": history.train_loss, "train_accuracy": history.train_accuracy,
                          "learning_rate": history.learning_rate}
                args.history_out.parent.mkdir(parents=True, exist_ok=True)
                args.history_out.write_text(json.dumps(record, indent=1) + "\n")
        return net, history
    finally:
        distributed.shutdown_distributed()


if __name__ == "__main__":
    main()
