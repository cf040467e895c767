#!/usr/bin/env python
"""Pooling speed: NumPy (cnnbook.reference), cnnbook.ops, torch.nn.functional.

Ratios to torch.nn.functional measured in the same process (< 1 is faster than
PyTorch). The forward is compared twice: the training forward (input requires
grad: PyTorch and cnnbook.ops then record each window's argmax, and the NumPy
max pooling, cnnbook.reference.fast_pool, records it too) against PyTorch's,
and the inference forward (no grad; fast_pool with need_index=False) against
PyTorch's inference forward. Average pooling is the readable
cnnbook.reference.pool. Targets, one thread: the NumPy max-pool inference
forward faster than PyTorch's, the max-pool backward <= 2x (NumPy and cnnbook.ops).

    python benchmarks/bench_pool.py [--quick] [--device cuda] [--threads 1|all|both] [--dtype ...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import (  # noqa: E402
    interleaved_medians,
    milliseconds,
    print_table,
    ratio,
    start,
)

# (label, (N, C, H, W), kernel, stride, padding)
SHAPES = [
    ("64x64x32x32, k2 s2", (64, 64, 32, 32), 2, 2, 0),
    ("8x64x112x112, k3 s2 p1", (8, 64, 112, 112), 3, 2, 1),
    ("8x256x14x14, k2 s2", (8, 256, 14, 14), 2, 2, 0),
    ("64x128x16x16, k3 s1 p1", (64, 128, 16, 16), 3, 1, 1),
]
#: max-pool backward time as a ratio to PyTorch, one thread, every shape (NumPy and cnnbook.ops)
BACKWARD_TARGET = 2.0


def main() -> None:
    started = start(__doc__, "Pooling")
    if started is None:
        return
    args, torch, threads, device, repeats, sync = started
    import numpy as np
    import torch.nn.functional as F

    import cnnbook.ops as ops
    from cnnbook import reference
    from cnnbook.reference import fast_pool

    rng = np.random.default_rng(0)
    kinds = {
        "max": (F.max_pool2d, ops.max_pool2d, fast_pool.max_pool2d_forward, fast_pool.max_pool2d_backward),
        "avg": (F.avg_pool2d, ops.avg_pool2d, reference.avg_pool2d_forward, reference.avg_pool2d_backward),
    }
    for dtype_name in args.dtype:
        summary = {}
        for kind, (theirs, ours, ref_forward, ref_backward) in kinds.items():
            rows = []
            for label, shape, kernel, stride, padding in SHAPES:
                x = rng.standard_normal(shape).astype(dtype_name)
                x_t = torch.from_numpy(x).to(device)
                x_grad = x_t.clone().requires_grad_()
                implementations = {"torch": theirs, "ops": ours}
                outs = {name: fn(x_grad, kernel, stride, padding) for name, fn in implementations.items()}
                dout = rng.standard_normal(tuple(outs["torch"].shape)).astype(dtype_name)
                dout_t = torch.from_numpy(dout).to(device)
                forwards = {name: (lambda fn=fn: fn(x_grad, kernel, stride, padding))
                            for name, fn in implementations.items()}
                inference = {"torch": lambda: theirs(x_t, kernel, stride, padding),
                             "ops": lambda: ours(x_t, kernel, stride, padding)}
                backwards = {name: (lambda o=o: torch.autograd.grad(o, [x_grad], dout_t, retain_graph=True))
                             for name, o in outs.items()}
                if device == "cpu":
                    forwards["numpy"] = lambda: ref_forward(x, kernel, stride, padding)
                    inference["numpy"] = (lambda: ref_forward(x, kernel, stride, padding, need_index=False)) \
                        if kind == "max" else forwards["numpy"]
                    _, cache = ref_forward(x, kernel, stride, padding)
                    backwards["numpy"] = lambda: ref_backward(dout, cache)
                fwd = interleaved_medians(forwards, repeats, synchronize=sync)
                bwd = interleaved_medians(backwards, repeats, synchronize=sync)
                with torch.no_grad():
                    inf = interleaved_medians(inference, repeats, synchronize=sync)
                del outs, backwards
                torch_f, torch_inference, torch_b = fwd["torch"], inf["torch"], bwd["torch"]
                row = [label, milliseconds(torch_f), milliseconds(torch_inference), milliseconds(torch_b)]
                for name in (["numpy"] if device == "cpu" else []) + ["ops"]:
                    row += [ratio(fwd[name], torch_f), ratio(inf[name], torch_inference), ratio(bwd[name], torch_b),
                            ratio(fwd[name] + bwd[name], torch_f + torch_b)]
                    summary.setdefault((kind, name), []).append((inf[name] / torch_inference, bwd[name] / torch_b))
                rows.append(row)
            header = ["shape", "torch fwd ms", "torch fwd no-grad ms", "torch bwd ms"]
            if device == "cpu":
                header += ["NumPy fwd", "NumPy no-grad fwd", "NumPy bwd", "NumPy fwd+bwd"]
            header += ["ops fwd", "ops no-grad fwd", "ops bwd", "ops fwd+bwd"]
            print_table(f"{kind}_pool2d, {dtype_name}, {threads} thread(s), {device}", header, rows)
        print()
        for (kind, name), values in summary.items():
            if kind != "max":
                continue
            worst_inference, worst_backward = (max(v[i] for v in values) for i in (0, 1))
            line = (f"- max_pool2d {name}, {dtype_name}, {threads} thread(s), {device}: worst no-grad forward "
                    f"{worst_inference:.2f}x, worst backward {worst_backward:.2f}x")
            if threads == 1:
                line += ". Targets: "
                if name == "numpy":
                    line += f"no-grad forward < 1x {'met' if worst_inference < 1 else 'MISSED'}, "
                line += f"backward <= {BACKWARD_TARGET}x {'met' if worst_backward <= BACKWARD_TARGET else 'MISSED'}"
            print(line)


if __name__ == "__main__":
    main()
