#!/usr/bin/env python
"""Batch-norm speed (training mode, running statistics updated): NumPy, cnnbook.ops, PyTorch.

Ratios to torch.nn.functional.batch_norm measured in the same process (< 1 is
faster than PyTorch), plus the evaluation-mode forward. "NumPy" is the fast
module cnnbook.reference.fast_norm; the readable cnnbook.reference.norm (the
chapter's code) computes the same numbers more slowly and is not timed here.
Target (one thread, float32): fwd+bwd <= 1.5x for NumPy and for cnnbook.ops.

    python benchmarks/bench_norm.py [--quick] [--device cuda] [--threads 1|all|both] [--dtype ...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import (  # noqa: E402
    geometric_mean,
    interleaved_medians,
    milliseconds,
    print_table,
    ratio,
    start,
)

SHAPES = [(64, 64, 32, 32), (8, 64, 56, 56), (8, 256, 14, 14), (64, 128, 16, 16)]
#: fwd+bwd time as a ratio to PyTorch, one thread, every shape (NumPy and cnnbook.ops)
TARGET = 1.5


def main() -> None:
    started = start(__doc__, "Batch norm")
    if started is None:
        return
    args, torch, threads, device, repeats, sync = started
    import numpy as np
    import torch.nn.functional as F

    import cnnbook.ops as ops
    from cnnbook import reference
    from cnnbook.reference import fast_norm

    rng = np.random.default_rng(0)
    for dtype_name in args.dtype:
        rows, totals = [], {}
        for shape in SHAPES:
            channels = shape[1]
            x = (rng.standard_normal(shape) * 2 + 1).astype(dtype_name)
            gamma = rng.standard_normal(channels).astype(dtype_name)
            beta = rng.standard_normal(channels).astype(dtype_name)
            dout = rng.standard_normal(shape).astype(dtype_name)
            inputs = [torch.from_numpy(a).to(device).requires_grad_() for a in (x, gamma, beta)]
            dout_t = torch.from_numpy(dout).to(device)

            def stats():
                return (torch.zeros(channels, dtype=inputs[0].dtype, device=device),
                        torch.ones(channels, dtype=inputs[0].dtype, device=device))

            implementations = {"torch": F.batch_norm, "ops": ops.batch_norm2d}
            running = {name: stats() for name in implementations}
            forwards, evaluations, backwards = {}, {}, {}
            for name, fn in implementations.items():
                forwards[name] = lambda fn=fn, r=running[name]: fn(inputs[0], *r, *inputs[1:], True)
                evaluations[name] = lambda fn=fn, r=running[name]: fn(inputs[0].detach(), *r, *inputs[1:], False)
                out = fn(inputs[0], *running[name], *inputs[1:], True)
                backwards[name] = lambda o=out: torch.autograd.grad(o, inputs, dout_t, retain_graph=True)
            if device == "cpu":
                state = reference.BatchNormState.initial(channels, dtype=x.dtype)
                forwards["numpy"] = lambda: fast_norm.batch_norm2d_forward(x, gamma, beta, state, True)
                evaluations["numpy"] = lambda: fast_norm.batch_norm2d_forward(x, gamma, beta, state, False)
                _, cache = fast_norm.batch_norm2d_forward(x, gamma, beta, state, True)
                backwards["numpy"] = lambda: fast_norm.batch_norm2d_backward(dout, cache)
            fwd = interleaved_medians(forwards, repeats, synchronize=sync)
            bwd = interleaved_medians(backwards, repeats, synchronize=sync)
            with torch.no_grad():
                evl = interleaved_medians(evaluations, repeats, synchronize=sync)
            del backwards
            row = [" x ".join(map(str, shape)), milliseconds(fwd["torch"]), milliseconds(bwd["torch"]),
                   milliseconds(evl["torch"])]
            for name in (["numpy"] if device == "cpu" else []) + ["ops"]:
                row += [ratio(fwd[name], fwd["torch"]), ratio(bwd[name], bwd["torch"]),
                        ratio(fwd[name] + bwd[name], fwd["torch"] + bwd["torch"]), ratio(evl[name], evl["torch"])]
            rows.append(row)
            for name in (["numpy"] if device == "cpu" else []) + ["ops"]:
                totals.setdefault(name, []).append((fwd[name] + bwd[name]) / (fwd["torch"] + bwd["torch"]))
        header = ["shape", "torch train fwd ms", "torch bwd ms", "torch eval fwd ms"]
        if device == "cpu":
            header += ["NumPy fwd", "NumPy bwd", "NumPy fwd+bwd", "NumPy eval"]
        header += ["ops fwd", "ops bwd", "ops fwd+bwd", "ops eval"]
        print_table(f"batch_norm2d, {dtype_name}, {threads} thread(s), {device}", header, rows)
        print()
        for name, values in totals.items():
            verdict = f"; target <= {TARGET}x {'met' if max(values) <= TARGET else 'MISSED'}" if threads == 1 else ""
            print(f"- {name} fwd+bwd vs PyTorch, {dtype_name}, {threads} thread(s), {device}: worst {max(values):.2f}x, "
                  f"geomean {geometric_mean(values):.2f}x{verdict}")


if __name__ == "__main__":
    main()
