#!/usr/bin/env python
"""The GPU checks in one command: the `cuda` tests, cnnbook.ops against cuDNN, training throughput.

On a CUDA machine (``make bench-gpu``, i.e. ``bash benchmarks/gpu.sh``), in this order:

1. ``pytest -m cuda -q``: every test's CUDA case (the ``device`` fixture's
   ``cuda`` parameter); the book build and the grading sandbox are not set up
   by these tests;
2. ``cnnbook.ops`` against ``torch.nn.functional`` (cuDNN) for convolution, max
   and average pooling and batch norm, forward and backward, batch 64,
   float32 and bfloat16, as time ratios (CUDA events, median of interleaved
   rounds). float32 here is IEEE float32 on both sides: TF32 is switched off
   for cuDNN convolutions and for matrix products during this stage;
3. training throughput (images/s, SGD step included) of ResNet-18, ResNet-50
   and MobileNetV2 from ``cnnbook.models`` beside torchvision's same models
   (``weights=None``), batch 128 at 224 x 224, float32 vs AMP bfloat16 vs AMP
   bfloat16 + channels_last, timed in interleaved rounds after warm-up steps;
   plus ResNet-18 built from the hand-written ops (``layers="cnnbook"``), for
   information.

It writes the tables between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->``
in benchmarks/RESULTS.md (replacing that section only) and everything it
measured to benchmarks/RESULTS-gpu.json. Targets reported as met or missed:
cnnbook.ops conv2d forward + backward within 1.3x of cuDNN and batch norm
within 1.5x (geometric mean over the shapes), the library's models at least
0.95x torchvision's training throughput. Sized to finish in under 6 minutes
on one recent GPU; progress lines carry the time since the start.

Without CUDA it stops at once with a non-zero exit status. ``--dry-run`` runs
every stage on the CPU instead, with tiny sizes (batch 2, 8 x 8 layer inputs,
32 x 32 images, one timed step), float32 and bfloat16 (CPU autocast; plain
NCHW AMP training for MobileNetV2 only, channels_last AMP for every model),
and runs the test stage as ``pytest -m cuda --collect-only -q`` in the
background, which checks the selection without running it (CUDA cases are
skipped on the CPU anyway). It writes to a temporary folder unless --output
is given, and its numbers mean nothing: it exists so that every code path
runs before a GPU is borrowed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import format_table, geometric_mean, milliseconds  # noqa: E402

BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"
DEFAULT_OUTPUT = HERE / "RESULTS.md"
DEFAULT_JSON = HERE / "RESULTS-gpu.json"
COMMAND = "make bench-gpu"

CONV_TARGET = 1.3   # cnnbook.ops conv2d fwd+bwd / cuDNN, geometric mean over the non-depthwise shapes
NORM_TARGET = 1.5   # cnnbook.ops batch_norm2d fwd+bwd / cuDNN, geometric mean over the shapes
TRAIN_TARGET = 0.95  # cnnbook.models images/s / torchvision images/s, every model and mode
BUDGET_SECONDS = 360

TRAIN_MODELS = [("resnet18", "ResNet-18"), ("resnet50", "ResNet-50"), ("mobilenet_v2", "MobileNetV2")]
# (name, autocast to bfloat16, channels_last)
TRAIN_MODES = [("float32", False, False), ("AMP bfloat16", True, False),
               ("AMP bfloat16 + channels_last", True, True)]
OPS_DTYPES = ["float32", "bfloat16"]

# amp_nchw_models: the models trained in plain "AMP bfloat16" (NCHW); None: all of them. The dry run
# keeps MobileNetV2 only: on the CPU, bfloat16 convolution backward in NCHW layout takes seconds a step
# (about 0.3 s per million parameters measured on this project's 2-core machine, at any image size),
# while channels_last bfloat16 is fast, so every model still runs under autocast there.
REAL = dict(ops_batch=64, ops_warmup=2, ops_repeats=7, ops_inner=3, spatial_cap=None,
            train_batch=128, image_size=224, warmup_steps=5, steps=5, rounds=3, tests_timeout=200,
            amp_nchw_models=None)
DRY = dict(ops_batch=2, ops_warmup=1, ops_repeats=1, ops_inner=1, spatial_cap=8,
           train_batch=2, image_size=32, warmup_steps=0, steps=1, rounds=1, tests_timeout=120,
           amp_nchw_models=["mobilenet_v2"])


class Progress:
    """Progress lines with the wall-clock time and the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        print(f"[{stamp} +{self.elapsed():6.1f}s] {message}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, every stage; the test stage only collects "
                             "(pytest -m cuda --collect-only -q); writes to a temporary folder unless --output")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"markdown file whose GPU section is replaced (created if missing); "
                             f"default {DEFAULT_OUTPUT.relative_to(REPO)}, or a temporary file with --dry-run")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"JSON file for every number; default {DEFAULT_JSON.relative_to(REPO)}, "
                             "or next to --output (its name with .json)")
    parser.add_argument("--stages", nargs="+", choices=["tests", "ops", "train"], default=["tests", "ops", "train"],
                        help="stages to run (default: all three)")
    parser.add_argument("--tests-timeout", type=float, default=None,
                        help="seconds before the pytest stage is stopped (default 200; 120 with --dry-run)")
    args = parser.parse_args(argv)
    sizes = dict(DRY if args.dry_run else REAL)
    if args.tests_timeout is not None:
        sizes["tests_timeout"] = args.tests_timeout
    args.sizes = sizes
    if args.output is None:
        if args.dry_run:
            args.output = Path(tempfile.mkdtemp(prefix="cnnbook-bench-gpu-")) / "RESULTS.md"
        else:
            args.output = DEFAULT_OUTPUT
    if args.json is None:
        args.json = DEFAULT_JSON if args.output.resolve() == DEFAULT_OUTPUT else args.output.with_suffix(".json")
    return args


def refuse_without_cuda(torch) -> None:
    if torch.cuda.is_available():
        return
    build = (f"built for CUDA {torch.version.cuda}" if torch.version.cuda
             else "a CPU-only build of torch: install a CUDA build")
    sys.stderr.write(
        f"bench_gpu: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, {build}).\n"
        f"This benchmark needs an NVIDIA GPU; nothing was measured and {DEFAULT_OUTPUT.name} is unchanged.\n"
        "To exercise every stage on the CPU instead: bash benchmarks/gpu.sh --dry-run\n")
    sys.exit(2)


# --------------------------------------------------------------------------- stage 1: pytest -m cuda

class PytestStage:
    """``pytest -m cuda`` in a subprocess (its own process group, so a timeout stops all of it)."""

    def __init__(self, dry_run: bool, timeout: float, echo: bool) -> None:
        self.command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
        if dry_run:
            self.command.append("--collect-only")
        self.dry_run, self.timeout, self.echo = dry_run, timeout, echo
        self.lines: list[str] = []

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "lib"), env.get("PYTHONPATH")]))
        if self.dry_run:
            env.setdefault("OMP_NUM_THREADS", "1")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.echo:
                print("    " + line, end="", flush=True)

    def finish(self) -> dict:
        timed_out = False
        remaining = max(1.0, self.timeout - (time.perf_counter() - self.started))
        try:
            returncode = self.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                returncode = self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                returncode = self.process.wait()
        self.reader.join(timeout=10)
        seconds = time.perf_counter() - self.started
        summary, counts = _pytest_summary(self.lines)
        problems = [line for line in self.lines if re.match(r"^(FAILED|ERROR) ", line)]
        if timed_out:
            status = f"stopped after {self.timeout:.0f} s (timeout)"
        elif self.dry_run:
            status = (f"collected {counts.get('collected', 0)} (collect-only)" if returncode == 0
                      else f"collection FAILED (exit {returncode})")
        else:
            status = "all passed" if returncode == 0 else f"FAILED (exit {returncode})"
        return {"command": " ".join(["python"] + self.command[1:]), "returncode": returncode,
                "timed_out": timed_out, "seconds": seconds, "summary": summary, "counts": counts,
                "status": status, "ok": returncode == 0 and not timed_out, "problems": problems[:50],
                "tail": self.lines[-40:]}


def _pytest_summary(lines: list[str]) -> tuple[str, dict]:
    """The final summary line of pytest -q and its counts (passed, failed, ..., or collected)."""
    for line in reversed(lines):
        text = line.strip().strip("=").strip()
        collected = re.match(r"(\d+)(?:/(\d+))? tests? collected", text)
        if collected:
            counts = {"collected": int(collected.group(1))}
            if collected.group(2):
                counts["total"] = int(collected.group(2))
            deselected = re.search(r"(\d+) deselected", text)
            if deselected:
                counts["deselected"] = int(deselected.group(1))
            return text, counts
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)", text)
        if found and re.search(r" in [\d.]+s", text):
            counts = {}
            for number, word in found:
                word = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[word] = int(number)
            return text, counts
        if re.match(r"no tests ran", text):
            return text, {}
    return "(no summary line)", {}


# --------------------------------------------------------------------------- timing

def interleaved_seconds(torch, functions: dict, device: str, warmup: int, repeats: int, inner: int) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds of ``inner`` calls.

    On CUDA with CUDA events around the ``inner`` calls (the GPU's time, launch
    gaps included); on the CPU with ``time.perf_counter``.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(_time_calls(torch, function, device, inner) / inner)
    return {name: statistics.median(values) for name, values in times.items()}


def _time_calls(torch, function, device: str, calls: int) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            function()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return time.perf_counter() - started


def bfloat16_supported(torch, device: str) -> bool:
    """CPU autocast always has bfloat16; a GPU needs it natively (Ampere or later), not emulated."""
    if device != "cuda":
        return True
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation argument
        return torch.cuda.is_bf16_supported()


class Float32Precision:
    """IEEE float32 (no TF32) for cuDNN convolutions and matrix products inside the block; restored after."""

    def __init__(self, torch, precision: str = "ieee") -> None:
        self.torch, self.precision = torch, precision

    def __enter__(self):
        backends = self.torch.backends
        self.saved = (backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision)
        backends.cudnn.conv.fp32_precision = self.precision
        backends.cuda.matmul.fp32_precision = self.precision
        return self

    def __exit__(self, *exc):
        backends = self.torch.backends
        backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision = self.saved
        return False


def fp32_settings(torch) -> dict:
    try:
        return {"cudnn_conv": torch.backends.cudnn.conv.fp32_precision,
                "matmul": torch.backends.cuda.matmul.fp32_precision}
    except AttributeError:  # older torch: the legacy flags
        return {"cudnn_conv_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}


# --------------------------------------------------------------------------- stage 2: cnnbook.ops vs cuDNN

def _scaled(height: int, width: int, cap: int | None) -> tuple[int, int]:
    return (height, width) if cap is None else (min(height, cap), min(width, cap))


def ops_stage(torch, device: str, sizes: dict, log, dtypes: list[str], errors: dict) -> list[dict]:
    import torch.nn.functional as F

    import bench_conv
    import bench_norm
    import bench_pool
    import cnnbook.ops as ops

    batch, cap = sizes["ops_batch"], sizes["spatial_cap"]
    timing = dict(device=device, warmup=sizes["ops_warmup"], repeats=sizes["ops_repeats"], inner=sizes["ops_inner"])
    generator = torch.Generator().manual_seed(0)

    def tensor(shape, dtype, scale=1.0, grad=True):
        value = (torch.randn(shape, generator=generator) * scale).to(device=device, dtype=dtype)
        return value.requires_grad_(grad)

    def measure(op, label, dtype_name, implementations, inputs, depthwise=False):
        """Forward (training, graph recorded) and backward (autograd.grad of a random upstream gradient)."""
        outs = {name: fn() for name, fn in implementations.items()}
        dout = torch.randn(tuple(outs["torch"].shape), generator=generator).to(device=device,
                                                                                dtype=outs["torch"].dtype)
        backwards = {name: (lambda o=o: torch.autograd.grad(o, inputs, dout, retain_graph=True))
                     for name, o in outs.items()}
        fwd = interleaved_seconds(torch, implementations, **timing)
        bwd = interleaved_seconds(torch, backwards, **timing)
        del outs, backwards
        return {"op": op, "shape": label, "dtype": dtype_name, "depthwise": depthwise,
                "torch_fwd_s": fwd["torch"], "torch_bwd_s": bwd["torch"],
                "ops_fwd_s": fwd["ops"], "ops_bwd_s": bwd["ops"],
                "ratio_fwd": fwd["ops"] / fwd["torch"], "ratio_bwd": bwd["ops"] / bwd["torch"],
                "ratio_fwd_bwd": (fwd["ops"] + bwd["ops"]) / (fwd["torch"] + bwd["torch"])}

    rows = []
    for dtype_name in dtypes:
        try:
            dtype = getattr(torch, dtype_name)
            log(f"ops: conv2d, {dtype_name}, {len(bench_conv.SHAPES)} shapes")
            for _, (_, c, h, w), f, k, stride, padding, groups in bench_conv.SHAPES:
                h, w = _scaled(h, w, cap)
                x, weight = tensor((batch, c, h, w), dtype), tensor((f, c // groups, k, k), dtype,
                                                                    1 / math.sqrt(c // groups * k * k))
                bias = tensor((f,), dtype)
                options = dict(stride=stride, padding=padding, groups=groups)
                depthwise = groups == c and groups > 1
                label = f"{batch}x{c}x{h}x{w} -> {f}, k{k} s{stride} p{padding}" + (" depthwise" if depthwise else "")
                implementations = {"torch": lambda: F.conv2d(x, weight, bias, **options),
                                   "ops": lambda: ops.conv2d(x, weight, bias, **options)}
                rows.append(measure("conv2d", label, dtype_name, implementations, [x, weight, bias], depthwise))
            for kind, theirs, ours in (("max_pool2d", F.max_pool2d, ops.max_pool2d),
                                       ("avg_pool2d", F.avg_pool2d, ops.avg_pool2d)):
                log(f"ops: {kind}, {dtype_name}, {len(bench_pool.SHAPES)} shapes")
                for _, (_, c, h, w), kernel, stride, padding in bench_pool.SHAPES:
                    h, w = _scaled(h, w, cap)
                    x = tensor((batch, c, h, w), dtype)
                    label = f"{batch}x{c}x{h}x{w}, k{kernel} s{stride} p{padding}"
                    implementations = {"torch": lambda t=theirs: t(x, kernel, stride, padding),
                                       "ops": lambda o=ours: o(x, kernel, stride, padding)}
                    rows.append(measure(kind, label, dtype_name, implementations, [x]))
            log(f"ops: batch_norm2d (training: batch statistics, running statistics updated), {dtype_name}, "
                f"{len(bench_norm.SHAPES)} shapes")
            for _, c, h, w in bench_norm.SHAPES:
                h, w = _scaled(h, w, cap)
                # as under autocast: x in the low-precision dtype, parameters and running statistics in float32
                x = (tensor((batch, c, h, w), torch.float32, grad=False) * 2 + 1).to(dtype).requires_grad_()
                gamma, beta = tensor((c,), torch.float32), tensor((c,), torch.float32)
                running = {name: (torch.zeros(c, device=device), torch.ones(c, device=device))
                           for name in ("torch", "ops")}
                label = f"{batch}x{c}x{h}x{w}" + ("" if dtype_name == "float32" else " (parameters float32)")
                implementations = {"torch": lambda r=running["torch"]: F.batch_norm(x, *r, gamma, beta, True),
                                   "ops": lambda r=running["ops"]: ops.batch_norm2d(x, *r, gamma, beta, True)}
                rows.append(measure("batch_norm2d", label, dtype_name, implementations, [x, gamma, beta]))
        except Exception:  # reported; the other dtype still runs
            errors[f"ops {dtype_name}"] = _failure(log, f"ops {dtype_name}")
    return rows


def ops_summaries(rows: list[dict]) -> list[dict]:
    summaries = []
    for op, target in (("conv2d", CONV_TARGET), ("max_pool2d", None), ("avg_pool2d", None),
                       ("batch_norm2d", NORM_TARGET)):
        for dtype_name in OPS_DTYPES:
            selected = [r for r in rows if r["op"] == op and r["dtype"] == dtype_name and not r["depthwise"]]
            if not selected:
                continue
            ratios = [r["ratio_fwd_bwd"] for r in selected]
            worst = max(selected, key=lambda r: r["ratio_fwd_bwd"])
            depthwise = [r["ratio_fwd_bwd"] for r in rows if r["op"] == op and r["dtype"] == dtype_name
                         and r["depthwise"]]
            geomean = geometric_mean(ratios)
            summaries.append({"op": op, "dtype": dtype_name, "shapes": len(selected), "geomean": geomean,
                              "worst": worst["ratio_fwd_bwd"], "worst_shape": worst["shape"],
                              "depthwise": depthwise[0] if depthwise else None, "target": target,
                              "met": None if target is None else geomean <= target})
    return summaries


# --------------------------------------------------------------------------- stage 3: training throughput

def train_stage(torch, device: str, sizes: dict, log, errors: dict, bfloat16: bool = True) -> list[dict]:
    import torchvision

    import cnnbook.models as models

    batch, size = sizes["train_batch"], sizes["image_size"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((batch, 3, size, size), generator=generator).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    rows = []
    for name, title in TRAIN_MODELS:
        torch.manual_seed(0)
        bases = {"cnnbook": models.MODELS[name](num_classes=1000)}
        torch.manual_seed(0)
        bases["torchvision"] = getattr(torchvision.models, name)(weights=None, num_classes=1000)
        if name == "resnet18":
            torch.manual_seed(0)
            bases["cnnbook, layers=cnnbook"] = models.MODELS[name](num_classes=1000, layers="cnnbook")
        for mode, amp, channels_last in TRAIN_MODES:
            if amp and not bfloat16:
                continue
            if amp and not channels_last and sizes["amp_nchw_models"] is not None \
                    and name not in sizes["amp_nchw_models"]:
                log(f"train: {title}, {mode}: skipped in the dry run (slow CPU bfloat16 NCHW backward)")
                continue
            sources = [s for s in bases if not (channels_last and s == "cnnbook, layers=cnnbook")]
            log(f"train: {title}, {mode}, batch {batch} at {size}x{size}: {', '.join(sources)}")
            try:
                result = _throughput(torch, {s: bases[s] for s in sources}, images, labels, amp, channels_last,
                                     device, sizes)
            except Exception:  # reported; the other models and modes still run
                errors[f"train {title}, {mode}"] = _failure(log, f"train {title}, {mode}")
                continue
            row = {"model": name, "title": title, "mode": mode, "batch": batch, "image_size": size,
                   "timed_steps": sizes["steps"] * sizes["rounds"], "warmup_steps": sizes["warmup_steps"]}
            for source, (images_per_s, loss) in result.items():
                row[f"{source} images/s"] = images_per_s
                row[f"{source} final loss"] = loss
            row["ratio"] = row["cnnbook images/s"] / row["torchvision images/s"]
            if "cnnbook, layers=cnnbook images/s" in row:
                row["ops ratio"] = row["cnnbook, layers=cnnbook images/s"] / row["torchvision images/s"]
            row["met"] = row["ratio"] >= TRAIN_TARGET
            rows.append(row)
            log(f"train: {title}, {mode}: " + ", ".join(f"{s} {v[0]:.1f} images/s" for s, v in result.items()))
        del bases
    return rows


def _throughput(torch, bases: dict, images, labels, amp: bool, channels_last: bool, device: str,
                sizes: dict) -> dict:
    """images/s of a training step (forward, loss, backward, SGD step) per model, timed in interleaved rounds."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = images.contiguous(memory_format=memory_format)
    steps, losses = {}, {}
    for source, base in bases.items():
        model = copy.deepcopy(base).to(device=device, memory_format=memory_format).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(model=model, optimizer=optimizer, loss_fn=loss_fn, source=source):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model(x), labels)
            loss.backward()
            optimizer.step()
            losses[source] = loss

        steps[source] = step
    for step in steps.values():
        for _ in range(sizes["warmup_steps"]):
            step()
    seconds = {source: 0.0 for source in steps}
    for _ in range(sizes["rounds"]):
        for source, step in steps.items():
            seconds[source] += _time_calls(torch, step, device, sizes["steps"])
    count = images.shape[0] * sizes["steps"] * sizes["rounds"]
    result = {source: (count / seconds[source], float(losses[source].detach().float())) for source in steps}
    steps.clear()  # frees the models (each step holds its own) before the cache is emptied
    losses.clear()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------- report

def _failure(log, stage: str) -> str:
    text = traceback.format_exc()
    log(f"{stage}: FAILED\n{text}")
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.empty_cache()
    return text.strip().splitlines()[-1]


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _met(value) -> str:
    return "n/a" if value is None else ("met" if value else "MISSED")


def render(results: dict) -> str:
    """The markdown section, markers included."""
    meta, dry = results["meta"], results["dry_run"]
    lines = [BEGIN, f"## GPU: `{COMMAND}` (`bash benchmarks/gpu.sh`)", ""]
    if dry:
        lines += ["**DRY RUN on the CPU** (`bash benchmarks/gpu.sh --dry-run`): tiny sizes, one timed step; "
                  "the numbers below only show that every stage runs and mean nothing about speed.", ""]
    lines += [f"Measured {meta['date']} on {meta['device']}; torch {meta['torch']} (CUDA {meta['cuda']}, "
              f"cuDNN {meta['cudnn']}), torchvision {meta['torchvision']}, commit {meta['commit']}; "
              f"whole run {results['wall_seconds']:.0f} s.", ""]
    lines += ["### Targets", "",
              format_table(["target", "measured", "limit", "status"], _target_rows(results)), ""]
    tests = results.get("tests")
    if tests:
        lines += [f"### Tests: `{tests['command']}`", "",
                  f"{tests['status']}: {tests['summary']} ({tests['seconds']:.0f} s)."]
        if tests["problems"]:
            lines += ["", "```", *tests["problems"], "```"]
        lines.append("")
    ops_rows = results.get("ops")
    if ops_rows:
        s = results["sizes"]
        clock = "`time.perf_counter`" if dry else "CUDA events"
        lines += ["### `cnnbook.ops` against cuDNN (`torch.nn.functional`)", "",
                  f"Batch {s['ops_batch']}. Times: median of {s['ops_repeats']} interleaved round(s) of "
                  f"{s['ops_inner']} call(s) after {s['ops_warmup']} warm-up call(s), {clock}. Ratios are "
                  "`cnnbook.ops` time / PyTorch time (below 1 is faster). Forward as in training (graph "
                  "recorded); backward is `torch.autograd.grad` of a random upstream gradient. float32 is IEEE "
                  "float32 on both sides (TF32 off for this stage).", ""]
        for op in ("conv2d", "max_pool2d", "avg_pool2d", "batch_norm2d"):
            for dtype_name in OPS_DTYPES:
                selected = [r for r in ops_rows if r["op"] == op and r["dtype"] == dtype_name]
                if not selected:
                    continue
                table = [[r["shape"], milliseconds(r["torch_fwd_s"]), milliseconds(r["torch_bwd_s"]),
                          _ratio(r["ratio_fwd"]), _ratio(r["ratio_bwd"]), _ratio(r["ratio_fwd_bwd"])]
                         for r in selected]
                lines += [f"#### {op}, {dtype_name}", "",
                          format_table(["shape", "torch fwd ms", "torch bwd ms", "ops fwd", "ops bwd",
                                        "ops fwd+bwd"], table), ""]
        summary = [[f"`{s['op']}`", s["dtype"], _ratio(s["geomean"]), f"{_ratio(s['worst'])} ({s['worst_shape']})",
                    "" if s["depthwise"] is None else _ratio(s["depthwise"]),
                    "" if s["target"] is None else f"<= {s['target']}x", _met(s["met"])]
                   for s in results["ops_summary"]]
        lines += ["#### Summary: forward + backward, `cnnbook.ops` / PyTorch", "",
                  format_table(["op", "dtype", "geomean (non-depthwise)", "worst", "depthwise", "target", "status"],
                               summary), ""]
    train = results.get("train")
    if train:
        first = train[0]
        lines += ["### Training throughput: `cnnbook.models` beside torchvision", "",
                  f"Images/s of a whole training step (forward, cross-entropy, backward, SGD with momentum), "
                  f"batch {first['batch']} at {first['image_size']}x{first['image_size']}, random data already "
                  f"on the device; {first['warmup_steps']} warm-up step(s) per model, then "
                  f"{first['timed_steps']} timed step(s) in {results['sizes']['rounds']} round(s) alternating "
                  "between the models. "
                  + ("" if dry else "`torch.backends.cudnn.benchmark` on; float32 uses PyTorch's default "
                     f"precision settings ({_settings_text(results['meta']['fp32_precision_training'])}). ")
                  + "torchvision's models are built with `weights=None`.", ""]
        table = [[r["title"], r["mode"], f"{r['cnnbook images/s']:.1f}", f"{r['torchvision images/s']:.1f}",
                  _ratio(r["ratio"]), _met(r["met"])] for r in train]
        lines += [format_table(["model", "mode", "cnnbook images/s", "torchvision images/s",
                                "cnnbook / torchvision", f">= {TRAIN_TARGET}x"], table), ""]
        ops_table = [[r["title"], r["mode"], f"{r['cnnbook, layers=cnnbook images/s']:.1f}",
                      f"{r['torchvision images/s']:.1f}", _ratio(r["ops ratio"])]
                     for r in train if "ops ratio" in r]
        if ops_table:
            lines += ["Built from the book's hand-written layers (`layers=\"cnnbook\"`, `cnnbook.ops`), for "
                      "information (no target; channels_last not measured):", "",
                      format_table(["model", "mode", "layers=cnnbook images/s", "torchvision images/s",
                                    "ratio"], ops_table), ""]
    if not results.get("bfloat16", True):
        lines += ["This GPU has no native bfloat16: the bfloat16 ops and the AMP training modes were left out.", ""]
    for stage, error in results.get("errors", {}).items():
        lines += [f"**{stage} FAILED**: `{error}`", ""]
    lines += [f"Every number: `{results['json_name']}`.", END]
    return "\n".join(lines)


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{key} = {value}" for key, value in settings.items())


def _target_rows(results: dict) -> list[list[str]]:
    rows = []
    tests = results.get("tests")
    if tests:
        rows.append([f"`{tests['command']}`", tests["summary"], "all pass" + (" (collected only)"
                                                                               if results["dry_run"] else ""),
                     "met" if tests["ok"] else "MISSED"])
    for s in results.get("ops_summary", []):
        if s["target"] is not None:
            rows.append([f"`cnnbook.ops.{s['op']}` fwd+bwd / cuDNN, {s['dtype']} (geomean of {s['shapes']} shapes)",
                         _ratio(s["geomean"]), f"<= {s['target']}x", _met(s["met"])])
    train = results.get("train")
    if train:
        worst = min(train, key=lambda r: r["ratio"])
        rows.append([f"`cnnbook.models` / torchvision training images/s (worst of {len(train)}: {worst['title']}, "
                     f"{worst['mode']})", _ratio(worst["ratio"]), f">= {TRAIN_TARGET}x", _met(worst["met"])])
    return rows


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers (markers included) with ``section``; append it if they are missing."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + (" (with local changes)" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metadata(torch, device: str) -> dict:
    import platform

    import torchvision

    if device == "cuda":
        name = torch.cuda.get_device_name()
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        where = f"{name} ({memory:.0f} GiB)"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, " \
                f"{torch.get_num_threads()} torch thread(s))"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "device": where,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
            "torchvision": torchvision.__version__, "python": platform.python_version(), "commit": _commit()}


def _finite_json(value):
    """NaN and infinity as strings (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    log = Progress()
    sizes = args.sizes
    log(f"{'DRY RUN on the CPU' if args.dry_run else 'CUDA'}: stages {', '.join(args.stages)}; "
        f"output {args.output}, {args.json}")
    results = {"dry_run": args.dry_run, "sizes": sizes, "json_name": args.json.name, "stages": args.stages}
    tests = None
    if "tests" in args.stages:
        tests = PytestStage(args.dry_run, sizes["tests_timeout"], echo=not args.dry_run)
    if tests is not None and args.dry_run:  # collection only: it overlaps the CPU stages
        log(f"tests: {' '.join(tests.command[1:])} (in the background)")
        tests.start()
    import torch

    if not args.dry_run:
        refuse_without_cuda(torch)
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)
    device = "cpu" if args.dry_run else "cuda"
    results["meta"] = metadata(torch, device)
    log(f"device: {results['meta']['device']}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    if tests is not None and not args.dry_run:  # on the GPU the benchmarks must not share it with the tests
        log(f"tests: {' '.join(tests.command[1:])}")
        tests.start()
        results["tests"] = tests.finish()
        log(f"tests: {results['tests']['status']}: {results['tests']['summary']}")
    results["errors"] = {}
    results["bfloat16"] = bfloat16_supported(torch, device)
    if not results["bfloat16"]:
        log("this GPU has no native bfloat16: the bfloat16 ops and the AMP training modes are left out")
    dtypes = OPS_DTYPES if results["bfloat16"] else ["float32"]
    if "ops" in args.stages:
        try:
            with Float32Precision(torch) if device == "cuda" else contextlib.nullcontext():
                results["ops"] = ops_stage(torch, device, sizes, log, dtypes, results["errors"])
            results["ops_summary"] = ops_summaries(results["ops"])
            for s in results["ops_summary"]:
                log(f"ops: {s['op']} {s['dtype']}: fwd+bwd geomean {s['geomean']:.2f}x of PyTorch"
                    + ("" if s["target"] is None else f" (target <= {s['target']}x: {_met(s['met'])})"))
        except Exception:  # a failed stage is reported; the others still run
            results["errors"]["ops"] = _failure(log, "ops")
    results["meta"]["fp32_precision_training"] = fp32_settings(torch)
    if "train" in args.stages:
        results["train"] = train_stage(torch, device, sizes, log, results["errors"], results["bfloat16"])
    if tests is not None and args.dry_run:
        results["tests"] = tests.finish()
        log(f"tests: {results['tests']['status']}: {results['tests']['summary']}")
    results["wall_seconds"] = log.elapsed()
    results["targets"] = [{"target": row[0], "measured": row[1], "limit": row[2], "status": row[3]}
                          for row in _target_rows(results)]
    write_section(args.output, render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_finite_json(results), indent=2) + "\n")
    for target in results["targets"]:
        log(f"target: {target['target']}: {target['measured']} ({target['limit']}): {target['status']}")
    over = "" if results["wall_seconds"] <= BUDGET_SECONDS or args.dry_run else \
        f" (over the {BUDGET_SECONDS} s budget)"
    log(f"done in {results['wall_seconds']:.0f} s{over}: wrote {args.output} and {args.json}")
    return 0 if (tests is None or results["tests"]["ok"]) and not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
