"""Data-parallel training (cnnbook.distributed and fit under a process group), on the CPU with gloo.

Most tests fork their worker processes from this one (torch is already imported,
so a worker starts in well under a second) and set the same environment
variables torchrun sets; one slow test launches the experiment script with
torchrun itself. Expected weights come from a plain loop written here, never
from ``fit``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from cnnbook import data, distributed, train

REPO = Path(__file__).resolve().parents[1]
SIZE, PER_RANK_BATCH, SEED = 256, 16, 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank, world_size, port, function, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    # The CPU and gloo even on a GPU machine: a forked child cannot use CUDA once the parent has started it.
    context = distributed.init_distributed(device="cpu", timeout_s=60)
    try:
        function(context, *args)
    finally:
        distributed.shutdown_distributed()


def _warm_up():
    """Import here, once, what the first optimizer and DDP import lazily (torch._dynamo: seconds), so
    that the forked workers inherit it instead of importing it each."""
    from torch.nn.parallel import DistributedDataParallel  # noqa: F401

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def _launch(function, *args, world_size=2, deadline_s=120):
    """Run function(context, *args) in world_size forked processes joined by gloo, as torchrun would."""
    _warm_up()
    processes = mp.start_processes(_worker, args=(world_size, _free_port(), function, args), nprocs=world_size,
                                   join=False, start_method="fork")
    start = time.monotonic()
    while not processes.join(timeout=1):
        if time.monotonic() - start > deadline_s:
            for process in processes.processes:
                process.kill()
            pytest.fail(f"the {world_size} workers did not finish within {deadline_s} s")


def _digits():
    images, labels = data.load_digits()
    return images[:SIZE].astype(np.float64), labels[:SIZE]


def _mlp(dropout=0.0):
    train.seed_everything(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10)).double()


def _sgd(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


def _train_shards(context, out, batch_size, epochs):
    images, labels = _digits()
    net = _mlp()
    optimizer, scheduler = _sgd(net)
    loader = distributed.distributed_loader(images, labels, batch_size, shuffle=True, seed=SEED)
    history = train.fit(net, loader, optimizer, epochs, scheduler=scheduler, device="cpu", progress=False)
    if context.is_main:
        torch.save({"model": net.state_dict(), "history": history.train_loss}, out)


def _plain_loop(batch_size, epochs):
    """The reference: one process, batches of the global size in DistributedSampler's documented order."""
    images, labels = (torch.from_numpy(array) for array in _digits())
    net = _mlp()
    optimizer, scheduler = _sgd(net)
    for epoch in range(epochs):
        order = torch.randperm(SIZE, generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, SIZE, batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(net(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return net.state_dict()


def _assert_same_weights(actual, expected, rtol, atol):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=f"parameter {name}")


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    """DDP averages the gradients of two shards of 16: the same steps as one process with batches of 32."""
    epochs = 2
    _launch(_train_shards, tmp_path / "ddp.pt", PER_RANK_BATCH, epochs)
    ddp = torch.load(tmp_path / "ddp.pt")
    expected = _plain_loop(2 * PER_RANK_BATCH, epochs)
    _assert_same_weights(ddp["model"], expected, rtol=1e-10, atol=1e-12)
    # The same call without a process group: fit with a one-process DistributedSampler.
    _train_shards(distributed.DistributedContext(), tmp_path / "one.pt", 2 * PER_RANK_BATCH, epochs)
    one = torch.load(tmp_path / "one.pt")
    _assert_same_weights(one["model"], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ddp["history"], one["history"], rtol=1e-10)
    # Training moved the weights far beyond the tolerance: the comparison can fail.
    assert (expected["1.weight"] - _mlp().state_dict()["1.weight"]).abs().max() > 1e-2


def _noisy_flip(image):
    """An augmentation drawing from NumPy's and Python's generators, so a resume must restore both."""
    image = image + 0.05 * torch.from_numpy(np.random.standard_normal(tuple(image.shape)))
    return image.flip(-1) if random.random() < 0.5 else image


def _train_with_checkpoints(context, out, checkpoint, kill_at_step=None, epochs=3, loader_kind="distributed"):
    images, labels = _digits()
    net = _mlp(dropout=0.3)
    optimizer, scheduler = _sgd(net)
    # Each rank's own dropout masks and augmentations: its generators are seeded by its rank.
    torch.manual_seed(100 + context.rank)
    np.random.seed(100 + context.rank)
    random.seed(100 + context.rank)
    if loader_kind == "distributed":
        loader = distributed.distributed_loader(images, labels, PER_RANK_BATCH, seed=SEED, transform=_noisy_flip)
    else:
        loader = data.make_loader(images, labels, PER_RANK_BATCH, shuffle=True, seed=SEED, transform=_noisy_flip)

    def kill(epoch, step_in_epoch, global_step):
        if context.is_main and global_step == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    history = train.fit(net, loader, optimizer, epochs, scheduler=scheduler, device="cpu", progress=False,
                        checkpoint=checkpoint, checkpoint_every=3, on_step=kill)
    if context.is_main:
        torch.save({"model": net.state_dict(), "history": history}, out)


def _assert_runs_identical(resumed_file, reference_file):
    resumed, reference = torch.load(resumed_file, weights_only=False), torch.load(reference_file, weights_only=False)
    for name, weights in reference["model"].items():
        assert torch.equal(resumed["model"][name], weights), f"{name} differs after the resume"
    assert resumed["history"] == reference["history"]


@pytest.mark.slow
def test_two_processes_killed_mid_epoch_resume_to_the_same_weights(tmp_path):
    """8 steps an epoch, a checkpoint every 3 steps and after each epoch; rank 0 is SIGKILLed after global step 13.

    Step 13 is step 5 of epoch 1, so the run resumes from step 3 of epoch 1 and must
    replay that epoch's order, dropout masks and augmentations exactly."""
    _launch(_train_with_checkpoints, tmp_path / "reference.pt", tmp_path / "reference.ckpt")
    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(mp.ProcessExitedException) as killed:
        _launch(_train_with_checkpoints, tmp_path / "never.pt", checkpoint, 13)
    assert killed.value.error_index == 0 and killed.value.exit_code == -signal.SIGKILL
    assert not (tmp_path / "never.pt").exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["world_size"]) == (1, 3, 2)
    assert len(saved["ranks"]) == 2
    assert not torch.equal(saved["ranks"][0]["rng"]["torch"], saved["ranks"][1]["rng"]["torch"])
    _launch(_train_with_checkpoints, tmp_path / "resumed.pt", checkpoint)
    _assert_runs_identical(tmp_path / "resumed.pt", tmp_path / "reference.pt")


def _fork_one(function, *args):
    """function(context, *args) in one forked process without a process group (killing it spares pytest)."""
    process = mp.get_context("fork").Process(target=function, args=(distributed.DistributedContext(), *args))
    process.start()
    process.join(120)
    return process.exitcode


def test_one_process_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    """Without a process group, with make_loader's own seeded generator ordering the epochs."""
    _warm_up()
    _train_with_checkpoints(distributed.DistributedContext(), tmp_path / "reference.pt", tmp_path / "reference.ckpt",
                            loader_kind="plain")
    checkpoint = tmp_path / "run.ckpt"
    # 16 steps an epoch: killed after step 7 of epoch 1, the last checkpoint is that of step 6.
    exit_code = _fork_one(_train_with_checkpoints, tmp_path / "never.pt", checkpoint, 23, 3, "plain")
    assert exit_code == -signal.SIGKILL
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["step_in_epoch"], saved["world_size"]) == (1, 6, 1)
    _train_with_checkpoints(distributed.DistributedContext(), tmp_path / "resumed.pt", checkpoint, loader_kind="plain")
    _assert_runs_identical(tmp_path / "resumed.pt", tmp_path / "reference.pt")
    # Started again after it finished, the run trains no further and returns the same history.
    _train_with_checkpoints(distributed.DistributedContext(), tmp_path / "again.pt", checkpoint, loader_kind="plain")
    _assert_runs_identical(tmp_path / "again.pt", tmp_path / "reference.pt")


def _watch_writes(context, watched, report_dir):
    """Train with a checkpoint and a progress bar while an audit hook records every write under ``watched``."""
    events = []

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writes and str(path).startswith(str(watched)):
                events.append(f"open {path}")
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.truncate") and str(args[0]).startswith(str(watched)):
            events.append(f"{event} {args[0]}")

    sys.addaudithook(hook)
    sys.stdout = sys.stderr = output = io.StringIO()
    images, labels = _digits()
    net = _mlp()
    optimizer, scheduler = _sgd(net)
    loader = distributed.distributed_loader(images, labels, PER_RANK_BATCH, seed=SEED)
    train.fit(net, loader, optimizer, 2, scheduler=scheduler, device="cpu", description="watched run",
              checkpoint=watched / "run.ckpt", checkpoint_every=4)
    report = {"events": events, "output": output.getvalue()}
    (report_dir / f"rank{context.rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_only_rank_zero_writes_checkpoints_and_shows_progress(tmp_path):
    watched, reports = tmp_path / "run", tmp_path / "reports"
    reports.mkdir()
    _launch(_watch_writes, watched, reports)
    rank0, rank1 = (json.loads((reports / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert rank1 == {"events": [], "output": ""}
    # Rank 0 wrote 3 checkpoints an epoch (after steps 4 and 8 of 8, and after the epoch), each to a
    # temporary name that it then renamed.
    assert sum(event.startswith("os.rename") for event in rank0["events"]) == 6
    assert "watched run" in rank0["output"] and "2/2" in rank0["output"]


def test_init_distributed_without_torchrun_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = distributed.init_distributed(device="cpu")
    assert (context.rank, context.world_size, context.is_main, context.backend) == (0, 1, True, None)
    assert context.device == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'meta'"):
        distributed.init_distributed(device="meta")
    assert not torch.distributed.is_initialized() and distributed.is_main_process()


@pytest.mark.parametrize("environment, message", [
    ({"WORLD_SIZE": "2"}, "RANK is not"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK=2 is outside 0\.\.1"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
])
def test_init_distributed_names_a_bad_environment(monkeypatch, environment, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        distributed.init_distributed()


def test_linear_scaling_schedule_warms_up_to_k_times_the_rate():
    net = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    schedule = distributed.linear_scaling_schedule(optimizer, base_batch_size=32, global_batch_size=128,
                                                   warmup_epochs=2)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(rates, [0.1, 0.25, 0.4, 0.4])
    with pytest.raises(ValueError, match="batch sizes"):
        distributed.linear_scaling_schedule(optimizer, 0, 128)


def test_checkpoint_round_trip_and_a_different_world_size_is_refused(tmp_path):
    net = _mlp()
    optimizer, scheduler = _sgd(net)
    net(torch.ones(4, 1, 8, 8, dtype=torch.float64)).sum().backward()
    optimizer.step()
    scheduler.step()
    np.random.seed(5)
    path = distributed.save_checkpoint(tmp_path / "sub" / "a.ckpt", net, optimizer, scheduler, epoch=2,
                                       step_in_epoch=7, extra={"note": "x"})
    expected_draw = np.random.rand()
    fresh = _mlp()
    fresh_optimizer, fresh_scheduler = _sgd(fresh)
    state = distributed.load_checkpoint(path, fresh, fresh_optimizer, fresh_scheduler)
    assert (state["epoch"], state["step_in_epoch"], state["extra"]) == (2, 7, {"note": "x"})
    assert np.random.rand() == expected_draw
    _assert_same_weights(fresh.state_dict(), net.state_dict(), rtol=0, atol=0)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert fresh_optimizer.state_dict()["state"][0]["momentum_buffer"].equal(
        optimizer.state_dict()["state"][0]["momentum_buffer"])
    tampered = torch.load(path, weights_only=True)
    tampered["world_size"] = 2
    torch.save(tampered, path)
    with pytest.raises(ValueError, match="written by 2 processes and this run has 1"):
        distributed.load_checkpoint(path, fresh)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        distributed.load_checkpoint(tmp_path / "missing.ckpt", fresh)


def test_fit_checks_its_checkpoint_arguments():
    net = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="checkpoint_every=5 needs a checkpoint path"):
        train.fit(net, [], torch.optim.SGD(net.parameters(), lr=0.1), epochs=1, checkpoint_every=5)


def _load_script():
    spec = importlib.util.spec_from_file_location("ddp_train", REPO / "experiments" / "ddp_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_torchrun_launches_the_script_and_matches_one_process(tmp_path):
    """The real launcher: ``python -m torch.distributed.run --standalone --nproc_per_node=2`` on 127.0.0.1."""
    settings = ["--data", "digits", "--model", "mlp", "--train-size", "256", "--epochs", "2", "--dtype", "float64",
                "--lr", "0.1", "--base-batch-size", "32", "--device", "cpu", "--quiet"]
    environment = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "--log-dir", str(tmp_path / "logs"), "--redirects", "3", str(REPO / "experiments" / "ddp_train.py"),
               *settings, "--batch-size", "16", "--checkpoint", str(tmp_path / "run.ckpt"), "--checkpoint-every", "3",
               "--weights-out", str(tmp_path / "ddp.pt"), "--history-out", str(tmp_path / "history.json")]
    finished = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    logs = {path.parent.name + "/" + path.name: path.read_text() for path in (tmp_path / "logs").rglob("*.log")}
    assert logs.get("1/stdout.log") == "" and logs.get("1/stderr.log") == "", logs
    assert "2 process(es), backend gloo" in logs["0/stdout.log"]
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["world_size"] == 2 and len(record["train_loss"]) == 2
    threads = torch.get_num_threads()
    try:
        single, _ = _load_script().main([*settings, "--batch-size", "32"])
    finally:
        torch.set_num_threads(threads)
    _assert_same_weights(torch.load(tmp_path / "ddp.pt"), single.state_dict(), rtol=1e-10, atol=1e-12)


def test_an_early_stopped_run_started_again_stays_stopped_with_the_best_weights(tmp_path):
    images, labels = _digits()

    def run():
        net = _mlp()
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        history = train.fit(net, data.make_loader(images[:32], labels[:32], 8, shuffle=True), optimizer, 30,
                            val_loader=data.make_loader(images[128:], labels[128:], 128), device="cpu",
                            patience=2, progress=False, checkpoint=tmp_path / "run.ckpt")
        return net, history

    first_net, first = run()
    assert len(first.train_loss) < 30, "the set-up must stop early for this test to mean anything"
    assert first.best_epoch == int(np.argmin(first.val_loss))
    second_net, second = run()
    assert second == first
    _assert_same_weights(second_net.state_dict(), first_net.state_dict(), rtol=0, atol=0)
