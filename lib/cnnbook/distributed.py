"""Data-parallel training past one process: process groups, sharded loaders, checkpoints that resume exactly.

The pieces :func:`cnnbook.train.fit` uses when it runs under ``torchrun``:

- :func:`init_distributed` reads the environment ``torchrun`` sets (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins
  the process group: NCCL when there is a GPU, gloo on the CPU. Started
  without ``torchrun`` it does nothing and reports one process, so the same
  script runs both ways.
- :func:`distributed_loader` gives each process its own shard of every epoch
  (a ``DistributedSampler``).
- :func:`save_checkpoint` / :func:`load_checkpoint` keep the model, the
  optimizer, the scheduler, the position in the epoch and every random
  generator of every process, so a run killed at any step and resumed ends
  with the same weights as one that never stopped. Every process calls
  :func:`save_checkpoint` (it gathers their generators); only rank 0 writes.
- :func:`linear_scaling_schedule`: the learning rate grows with the global
  batch, reached after a linear warm-up.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistributedContext",
    "init_distributed",
    "shutdown_distributed",
    "is_main_process",
    "distributed_loader",
    "wrap_data_parallel",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "linear_scaling_schedule",
]

CHECKPOINT_FORMAT = "cnnbook-checkpoint-1"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and the device it trains on.

    rank: 0 to world_size - 1 over all machines; local_rank: the index on this
    machine (which GPU). ``is_main`` is true for rank 0, the one that logs and
    writes checkpoints.

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(backend: str | None = None, device=None, timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment; a no-op for a single process.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (``MASTER_ADDR`` and
    ``MASTER_PORT`` are read by ``torch.distributed`` itself). device: ``"cpu"``
    or ``"cuda"`` (default: CUDA when available). backend: default ``"nccl"``
    with CUDA, else ``"gloo"``. With CUDA each process takes the GPU
    ``cuda:LOCAL_RANK``. Without ``WORLD_SIZE`` (or with
    ``WORLD_SIZE=1``) no group is created and the context says rank 0 of 1.
    Calling it again in a process whose group is up returns the same context.

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    world_size = _env_int("WORLD_SIZE")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if device is not None and torch.device(device).type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if world_size is None or world_size == 1:
        return DistributedContext(device=torch.device("cuda" if cuda else "cpu"))
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if rank is None:
        raise ValueError(f"WORLD_SIZE={world_size} is set but RANK is not: start the processes with torchrun")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..{world_size - 1} (WORLD_SIZE={world_size})")
    local_rank = rank if local_rank is None else local_rank
    backend = backend or ("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank, world_size, local_rank, device, dist.get_backend())


def shutdown_distributed() -> None:
    """Leave the process group, if this process is in one (call it once training is over).

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True in rank 0 and in a process that is not part of a group: the process that logs and writes files.

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    return _world()[0] == 0


def distributed_loader(images, labels, batch_size: int, shuffle: bool = True, seed: int = 0,
                       drop_last: bool = False, transform=None):
    """A loader over arrays that gives this process its shard: ``batch_size`` images per process and step.

    images: (N, ...) array, labels: (N,). A ``DistributedSampler`` permutes the
    N indices with a generator seeded by ``seed + epoch`` (the same on every
    process; :func:`cnnbook.train.fit` calls ``set_epoch``), and rank r takes
    every world_size-th index starting at r. With one process this is a plain
    seeded shuffle, so a single process with batch ``world_size * batch_size``
    sees the same global batches as the group. When N is not a multiple of the
    world size the sampler repeats the first indices to even out the shards
    (or drops the tail with ``drop_last``).

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    from torch.utils.data import DataLoader, DistributedSampler

    from cnnbook.data import make_loader

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dataset = make_loader(images, labels, batch_size, transform=transform).dataset
    rank, world_size = _world()
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def wrap_data_parallel(model: nn.Module, device=None) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when a group of several processes is up; else ``model``.

    The wrapper shares the parameters with ``model`` (train through the
    wrapper, read or save ``model``). On the first call it copies rank 0's
    parameters and buffers to every process; in each backward pass it
    averages the gradients over the processes (an all-reduce, overlapped with
    the backward computation), so every process takes the same optimizer step.
    device: where ``model`` lives (default: its parameters' device).

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel) or _world()[1] == 1:
        return model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def rng_state(loader_generator: torch.Generator | None = None) -> dict:
    """Every random generator a training step may draw from: torch (CPU and the current GPU), NumPy, Python, the loader's.

    Stored as tensors, ints and lists only, so ``torch.load(weights_only=True)``
    can read it back. loader_generator: a ``DataLoader``'s own generator
    (``make_loader`` gives its loaders one), which orders each epoch.

    Book: "ResNet", section "Checkpoints and resuming" (``book/resnet.md``).
    """
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        # This process's GPU only (under torchrun each process owns one), and only once this process has
        # started CUDA: before that nothing has drawn from it, and a process forked from one that uses
        # CUDA must not touch it at all.
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }
    return state


def set_rng_state(state: dict, loader_generator: torch.Generator | None = None) -> None:
    """Put back the generators :func:`rng_state` recorded (the GPU's into the current GPU, when there is one).

    Book: "ResNet", section "Checkpoints and resuming" (``book/resnet.md``).
    """
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if loader_generator is not None and state["loader"] is not None:
        loader_generator.set_state(state["loader"].cpu())


def save_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, *, epoch: int,
                    step_in_epoch: int = 0, extra: dict | None = None, rank_extra: dict | None = None,
                    loader_generator: torch.Generator | None = None) -> Path | None:
    """Write a checkpoint from rank 0; every process of the group must call it (it gathers their states).

    Saved: ``model``'s state dict (the module inside a DDP wrapper), the
    optimizer's and scheduler's, ``epoch`` and ``step_in_epoch`` (the optimizer
    steps already taken in that epoch; 0 means the epoch has not begun),
    the world size, ``extra`` (rank 0's, shared by all) and, for each process,
    its :func:`rng_state` and its ``rank_extra``. The file is written to a
    temporary name, flushed to disk and renamed over ``path``, so a kill
    during the write leaves the previous checkpoint intact. Returns the path
    on rank 0, ``None`` elsewhere.

    Book: "ResNet", section "Checkpoints and resuming" (``book/resnet.md``).
    """
    if epoch < 0 or step_in_epoch < 0:
        raise ValueError(f"epoch and step_in_epoch must be non-negative, got {epoch} and {step_in_epoch}")
    rank, world_size = _world()
    own = {"rng": rng_state(loader_generator), "extra": rank_extra or {}}
    if world_size > 1:
        gathered = [None] * world_size if rank == 0 else None
        dist.gather_object(own, gathered, dst=0)
    else:
        gathered = [own]
    if rank != 0:
        return None
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "world_size": world_size,
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": extra or {},
        "ranks": gathered,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(temporary, "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(path, model: nn.Module, optimizer=None, scheduler=None, *, map_location=None,
                    restore_rng: bool = True, loader_generator: torch.Generator | None = None) -> dict:
    """Load a :func:`save_checkpoint` file into ``model``, ``optimizer`` and ``scheduler``, in every process.

    With restore_rng, this process's generators (and ``loader_generator``)
    return to the state its rank saved. Returns ``{"epoch", "step_in_epoch",
    "extra", "rank_extra", "rng"}`` (the last two: what this rank saved). A
    checkpoint from a different number of processes raises a ``ValueError``:
    the shards and generators of one world size do not map onto another's.

    Book: "ResNet", section "Checkpoints and resuming" (``book/resnet.md``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cnnbook checkpoint (format {CHECKPOINT_FORMAT!r})")
    rank, world_size = _world()
    if checkpoint["world_size"] != world_size:
        raise ValueError(f"{path} was written by {checkpoint['world_size']} processes and this run has "
                         f"{world_size}: resume with the same number of processes")
    _unwrap(model).load_state_dict(checkpoint["model"])
    if optimizer is not None:
        if checkpoint["optimizer"] is None:
            raise ValueError(f"{path} holds no optimizer state")
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        if checkpoint["scheduler"] is None:
            raise ValueError(f"{path} holds no scheduler state")
        scheduler.load_state_dict(checkpoint["scheduler"])
    own = checkpoint["ranks"][rank]
    if restore_rng:
        set_rng_state(own["rng"], loader_generator)
    return {"epoch": checkpoint["epoch"], "step_in_epoch": checkpoint["step_in_epoch"],
            "extra": checkpoint["extra"], "rank_extra": own["extra"], "rng": own["rng"]}


def linear_scaling_schedule(optimizer: torch.optim.Optimizer, base_batch_size: int, global_batch_size: int,
                            warmup_epochs: int = 5) -> torch.optim.lr_scheduler.LambdaLR:
    """The linear scaling rule with gradual warm-up, as an epoch scheduler for :func:`cnnbook.train.fit`.

    ``optimizer``'s learning rates are those tuned for ``base_batch_size``.
    With k = global_batch_size / base_batch_size, epoch e trains at
    ``1 + (k - 1) * e / warmup_epochs`` times them during the warm-up and at k
    times them after it (k = 1: no change). Goyal et al. (2017) warm up over
    5 epochs, step by step; here the rate changes once per epoch.

    Book: "ResNet", section "Training on more than one device" (``book/resnet.md``).
    """
    if base_batch_size < 1 or global_batch_size < 1:
        raise ValueError(f"batch sizes must be at least 1, got base {base_batch_size} and global {global_batch_size}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}")
    factor = global_batch_size / base_batch_size

    def multiplier(epoch: int) -> float:
        if epoch >= warmup_epochs:
            return factor
        return 1 + (factor - 1) * epoch / warmup_epochs

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
