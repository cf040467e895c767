#!/usr/bin/env python
"""Convolution speed and memory: NumPy naive and im2col (cnnbook.reference), cnnbook.ops, torch.nn.functional.

Every time is the median of several repeats after a warm-up, printed as a
ratio to torch.nn.functional.conv2d measured in the same process (backward
of PyTorch by autograd). Ratios < 1 are faster than PyTorch.

    python benchmarks/bench_conv.py                 # float32 and float64, one thread and all threads
    python benchmarks/bench_conv.py --quick         # fewer repeats, smaller naive run
    python benchmarks/bench_conv.py --device cuda   # cnnbook.ops vs cuDNN on the GPU
"""

from __future__ import annotations

import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import (  # noqa: E402
    geometric_mean,
    interleaved_medians,
    median_time,
    milliseconds,
    print_table,
    ratio,
    start,
)

# (label, (N, C, H, W), F, kernel, stride, padding, groups)
SHAPES = [
    ("64x3x32x32 -> 32, k3 p1", (64, 3, 32, 32), 32, 3, 1, 1, 1),
    ("64x64x32x32 -> 64, k3 p1", (64, 64, 32, 32), 64, 3, 1, 1, 1),
    ("64x128x16x16 -> 128, k3 p1", (64, 128, 16, 16), 128, 3, 1, 1, 1),
    ("8x64x56x56 -> 64, k3 p1", (8, 64, 56, 56), 64, 3, 1, 1, 1),
    ("8x256x14x14 -> 256, k3 p1", (8, 256, 14, 14), 256, 3, 1, 1, 1),
    ("8x256x14x14 -> 128, k1", (8, 256, 14, 14), 128, 1, 1, 0, 1),
    ("8x64x56x56 -> 128, k3 s2 p1", (8, 64, 56, 56), 128, 3, 2, 1, 1),
    ("8x128x28x28 depthwise k3 p1", (8, 128, 28, 28), 128, 3, 1, 1, 128),
]

# Targets for the NumPy im2col version, fwd+bwd time as a ratio to PyTorch, one thread.
GEOMEAN_TARGET = {"float32": 1.5, "float64": 1.0}
WORST_TARGET = 2.5
DEPTHWISE_TARGET = 5.0

MiB = 2**20


def main() -> None:
    started = start(__doc__, "Convolution")
    if started is None:
        return
    args, torch, threads, device, repeats, sync = started
    import numpy as np
    import torch.nn.functional as F

    import cnnbook.ops as ops
    from cnnbook import reference

    rng = np.random.default_rng(0)

    for dtype_name in args.dtype:
        rows, summary = [], {"im2col": {}, "ops": {}}
        for label, (n, c, h, w), f, k, stride, padding, groups in SHAPES:
            x = rng.standard_normal((n, c, h, w)).astype(dtype_name)
            weight = (rng.standard_normal((f, c // groups, k, k)) / np.sqrt(c // groups * k * k)).astype(dtype_name)
            bias = rng.standard_normal(f).astype(dtype_name)
            tensors = [torch.from_numpy(a).to(device).requires_grad_() for a in (x, weight, bias)]
            options = dict(stride=stride, padding=padding, groups=groups)
            implementations = {
                "torch": lambda *t: F.conv2d(*t, **options),
                "ops": lambda *t: ops.conv2d(*t, **options),
            }
            out_shape = tuple(F.conv2d(*tensors, **options).shape)
            dout = rng.standard_normal(out_shape).astype(dtype_name)
            dout_t = torch.from_numpy(dout).to(device)
            forwards = {name: (lambda fn=fn: fn(*tensors)) for name, fn in implementations.items()}
            outs = {name: fn(*tensors) for name, fn in implementations.items()}
            backwards = {name: (lambda o=o: torch.autograd.grad(o, tensors, dout_t, retain_graph=True))
                         for name, o in outs.items()}
            if device == "cpu":
                forwards["im2col"] = lambda: reference.conv2d_forward(x, weight, bias, **options)
                _, cache = reference.conv2d_forward(x, weight, bias, **options)
                backwards["im2col"] = lambda: reference.conv2d_backward(dout, cache)
            fwd = interleaved_medians(forwards, repeats, synchronize=sync)
            bwd = interleaved_medians(backwards, repeats, synchronize=sync)
            del outs, backwards
            torch_f, torch_b, ops_f, ops_b = fwd["torch"], bwd["torch"], fwd["ops"], bwd["ops"]
            depthwise = groups == c and groups > 1
            summary["ops"][label] = ((ops_f + ops_b) / (torch_f + torch_b), depthwise)
            if device == "cuda":
                peaks = [_cuda_peak(torch, implementations[name], tensors, dout_t) for name in ("ops", "torch")]
                rows.append([label, milliseconds(torch_f), milliseconds(torch_b), ratio(ops_f, torch_f),
                             ratio(ops_b, torch_b), ratio(ops_f + ops_b, torch_f + torch_b),
                             f"{peaks[0] / MiB:.0f}", f"{peaks[1] / MiB:.0f}"])
                continue
            ref_f, ref_b = fwd["im2col"], bwd["im2col"]
            del cache
            peak = _numpy_peak(lambda: reference.conv2d_backward(dout, reference.conv2d_forward(x, weight, bias,
                                                                                               **options)[1]))
            oh, ow = out_shape[2:]
            columns_bytes = (c // groups) * k * k * groups * n * oh * ow * x.itemsize
            summary["im2col"][label] = ((ref_f + ref_b) / (torch_f + torch_b), depthwise)
            rows.append([label, milliseconds(torch_f), milliseconds(torch_b), ratio(ref_f, torch_f),
                         ratio(ref_b, torch_b), ratio(ref_f + ref_b, torch_f + torch_b), ratio(ops_f, torch_f),
                         ratio(ops_b, torch_b), ratio(ops_f + ops_b, torch_f + torch_b),
                         f"{peak / MiB:.1f}", f"{x.nbytes / MiB:.1f}", f"{columns_bytes / MiB:.1f}"])
        if device == "cuda":
            header = ["shape (N x C x H x W -> F)", "cuDNN fwd ms", "cuDNN bwd ms", "ops fwd", "ops bwd",
                      "ops fwd+bwd", "ops peak MiB", "cuDNN peak MiB"]
        else:
            header = ["shape (N x C x H x W -> F)", "torch fwd ms", "torch bwd ms", "im2col fwd", "im2col bwd",
                      "im2col fwd+bwd", "ops fwd", "ops bwd", "ops fwd+bwd", "im2col peak MiB (fwd+bwd)",
                      "x MiB", "full column buffer MiB"]
        print_table(f"conv2d, {dtype_name}, {threads} thread(s), {device}", header, rows)
        if device == "cpu":
            _naive_table(torch, F, reference, rng, dtype_name, threads, args.quick)
        _print_summary(summary, dtype_name, threads, device)


def _naive_table(torch, F, reference, rng, dtype_name, threads, quick) -> None:
    """The naive loops on the first shape with a reduced batch (they are for reading, not running)."""
    label, (n, c, h, w), f, k, stride, padding, groups = SHAPES[0]
    n = 1 if quick else 2
    x = rng.standard_normal((n, c, h, w)).astype(dtype_name)
    weight = rng.standard_normal((f, c, k, k)).astype(dtype_name)
    bias = rng.standard_normal(f).astype(dtype_name)
    tensors = [torch.from_numpy(a).requires_grad_() for a in (x, weight, bias)]
    out, cache = reference.conv2d_forward_naive(x, weight, bias, stride, padding)
    dout = rng.standard_normal(out.shape).astype(dtype_name)
    dout_t = torch.from_numpy(dout)
    torch_f = median_time(lambda: F.conv2d(*tensors, stride=stride, padding=padding), 20)
    torch_out = F.conv2d(*tensors, stride=stride, padding=padding)
    torch_b = median_time(lambda: torch.autograd.grad(torch_out, tensors, dout_t, retain_graph=True), 20)
    naive_repeats = 1 if quick else 3
    naive_f = median_time(lambda: reference.conv2d_forward_naive(x, weight, bias, stride, padding), naive_repeats, 0)
    naive_b = median_time(lambda: reference.conv2d_backward_naive(dout, cache), naive_repeats, 0)
    shape = f"{n}x{c}x{h}x{w} -> {f}, k{k} p{padding} (batch reduced from {label.split('x')[0]})"
    print_table(f"conv2d NumPy naive loops, {dtype_name}, {threads} thread(s)",
                ["shape", "torch fwd ms", "torch bwd ms", "naive fwd", "naive bwd", "naive fwd+bwd"],
                [[shape, milliseconds(torch_f), milliseconds(torch_b), ratio(naive_f, torch_f),
                  ratio(naive_b, torch_b), ratio(naive_f + naive_b, torch_f + torch_b)]])


def _print_summary(summary, dtype_name, threads, device) -> None:
    print()
    for name, results in summary.items():
        if not results:
            continue
        plain = {label: r for label, (r, depthwise) in results.items() if not depthwise}
        depthwise = {label: r for label, (r, dw) in results.items() if dw}
        worst_label = max(plain, key=plain.get)
        line = (f"- {name} fwd+bwd vs PyTorch, {dtype_name}, {threads} thread(s), {device}: geomean over "
                f"{len(plain)} non-depthwise shapes {geometric_mean(plain.values()):.2f}x; worst "
                f"{plain[worst_label]:.2f}x ({worst_label})")
        for label, r in depthwise.items():
            line += f"; depthwise {r:.2f}x"
        if name == "im2col" and threads == 1:
            geomean_ok = geometric_mean(plain.values()) <= GEOMEAN_TARGET[dtype_name]
            worst_ok = plain[worst_label] <= WORST_TARGET
            depthwise_ok = all(r <= DEPTHWISE_TARGET for r in depthwise.values())
            line += (f". Targets: geomean <= {GEOMEAN_TARGET[dtype_name]}x {'met' if geomean_ok else 'MISSED'}, "
                     f"worst <= {WORST_TARGET}x {'met' if worst_ok else 'MISSED'}, depthwise <= "
                     f"{DEPTHWISE_TARGET}x {'met' if depthwise_ok else 'MISSED'}")
        print(line)
    sys.stdout.flush()


def _numpy_peak(function) -> int:
    """Peak bytes NumPy allocates while ``function`` runs (tracemalloc sees NumPy's allocations)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _cuda_peak(torch, function, tensors, dout) -> int:
    """Peak CUDA bytes allocated beyond the inputs by one forward + backward."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    out = function(*tensors)
    torch.autograd.grad(out, tensors, dout)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - start


if __name__ == "__main__":
    main()
