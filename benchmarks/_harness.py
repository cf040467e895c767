"""Shared machinery of the benchmark scripts: thread settings, timing, markdown tables.

Each script re-launches itself once per thread setting, because NumPy's BLAS
reads ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` only
when it is first imported: the child process gets them in its environment
before anything imports NumPy, and calls ``torch.set_num_threads`` itself.
Nothing here asserts on time; the scripts print tables.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller reference runs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: time cnnbook.ops against cuDNN/PyTorch on the GPU (no NumPy)")
    parser.add_argument("--threads", choices=["1", "all", "both"], default="both",
                        help="one thread, all threads, or both (default; one subprocess each)")
    parser.add_argument("--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median taken)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def thread_count(setting: str) -> int:
    return 1 if setting == "1" else (os.cpu_count() or 1)


def relaunch_per_thread_setting(args: argparse.Namespace) -> bool:
    """In the parent: run this script once per thread setting, each in a fresh process. Returns True if it did."""
    if args.child:
        return False
    settings = ["1", "all"] if args.threads == "both" else [args.threads]
    if args.device == "cuda":
        settings = ["all"]
    passthrough, skip_next = [], False
    for argument in sys.argv[1:]:
        if skip_next or argument == "--child" or argument.startswith("--threads="):
            skip_next = False
            continue
        if argument == "--threads":
            skip_next = True
            continue
        passthrough.append(argument)
    for setting in settings:
        env = dict(os.environ)
        env.update({name: str(thread_count(setting)) for name in THREAD_VARIABLES})
        command = [sys.executable, sys.argv[0], *passthrough, "--threads", setting, "--child"]
        subprocess.run(command, env=env, check=True)
    return True


def setup_child(args: argparse.Namespace):
    """In the child: fix torch's thread count, check the device; returns (torch, threads)."""
    import torch

    threads = thread_count(args.threads)
    torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available; nothing to time.")
        sys.exit(0)
    return torch, threads


def default_repeats(args: argparse.Namespace) -> int:
    return args.repeats or (3 if args.quick else 7)


def median_time(function, repeats: int, warmup: int = 1, synchronize=None) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    if synchronize:
        synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if synchronize:
            synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(functions: dict, repeats: int, warmup: int = 1, synchronize=None) -> dict:
    """Median seconds of each function, timed in rounds (each function once per round, in turn).

    On a shared machine the load drifts during a run; interleaving gives every
    implementation the same conditions, so the ratios between them stay
    meaningful even when the absolute times do not.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            if synchronize:
                synchronize()
            start = time.perf_counter()
            function()
            if synchronize:
                synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def ratio(value: float | None, baseline: float) -> str:
    return "n/a" if value is None else f"{value / baseline:.2f}x"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n#### {title}\n")
    print(format_table(header, rows))
    sys.stdout.flush()


def describe_machine(torch, threads: int, device: str) -> str:
    import numpy as np

    blas = "unknown BLAS"
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]["name"]
    except Exception:  # older NumPy: the description is informational only
        pass
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {os.cpu_count()} cores visible"
    return (f"torch {torch.__version__}, NumPy {np.__version__} ({blas}), {where}, "
            f"threads = {threads} (torch.set_num_threads and the BLAS variables)")


def start(description: str, title: str):
    """The common start of every benchmark's ``main``.

    In the parent process: re-launch once per thread setting and return None.
    In the child: fix the thread count, print the table heading and return
    ``(args, torch, threads, device, repeats, sync)`` where ``sync`` waits for the GPU
    (None on the CPU).
    """
    args = parse_args(description)
    if relaunch_per_thread_setting(args):
        return None
    torch, threads = setup_child(args)
    device, repeats = args.device, default_repeats(args)
    sync = torch.cuda.synchronize if device == "cuda" else None
    print(f"\n### {title}, {describe_machine(torch, threads, device)}; median of {repeats} interleaved rounds "
          "after 1 warm-up")
    return args, torch, threads, device, repeats, sync
