#!/usr/bin/env python
"""Depthwise-separable against standard convolution: MAC reduction beside the measured speed-up.

For each shape (C = F channels, H = W, 3x3 kernels, "same" padding) it times a
standard convolution, the depthwise one, the pointwise one and the pair, with
``torch.nn.functional.conv2d`` and with ``cnnbook.ops.conv2d`` (forward only),
and prints the MAC reduction ``1 / (1/F + 1/K^2)`` beside the speed-up actually
measured, plus the depthwise layer's share of the pair's MACs and of its time.
The chapter "Efficient and modern CNNs" explains the gap: a depthwise
convolution is memory-bound.

    python benchmarks/bench_depthwise.py [--quick] [--device cuda] [--threads 1|all|both] [--dtype ...]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import interleaved_medians, milliseconds, print_table, start  # noqa: E402

#: (batch N, channels C = F, size H = W): MobileNet-like widths at their resolutions.
SHAPES = [(8, 32, 112), (8, 64, 56), (8, 128, 56), (8, 256, 28), (8, 512, 14), (8, 1024, 7)]


def main() -> None:
    started = start(__doc__, "Depthwise-separable vs standard 3x3 convolution (forward)")
    if started is None:
        return
    args, torch, threads, device, repeats, sync = started
    import torch.nn.functional as F

    import cnnbook.ops as ops
    from cnnbook.shapes import conv_macs, depthwise_separable_reduction

    generator = torch.Generator().manual_seed(0)
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        rows = []
        for batch, channels, size in SHAPES[:4] if args.quick else SHAPES:
            def tensor(*shape):
                return torch.randn(*shape, generator=generator, dtype=dtype).to(device)

            x = tensor(batch, channels, size, size)
            standard, depthwise, pointwise = (tensor(channels, channels, 3, 3), tensor(channels, 1, 3, 3),
                                              tensor(channels, channels, 1, 1))
            row = [f"{batch} x {channels} x {size} x {size}",
                   f"{depthwise_separable_reduction(channels, channels, 3):.2f}x"]
            depthwise_mac_share = conv_macs(channels, channels, 3, size, groups=channels) / (
                conv_macs(channels, channels, 3, size, groups=channels) + conv_macs(channels, channels, 1, size))
            for conv in (F.conv2d, ops.conv2d):
                functions = {
                    "standard": lambda conv=conv: conv(x, standard, None, 1, 1),
                    "depthwise": lambda conv=conv: conv(x, depthwise, None, 1, 1, 1, channels),
                    "pointwise": lambda conv=conv: conv(x, pointwise),
                    "pair": lambda conv=conv: conv(conv(x, depthwise, None, 1, 1, 1, channels), pointwise),
                }
                with torch.no_grad():
                    times = interleaved_medians(functions, repeats, synchronize=sync)
                share = times["depthwise"] / (times["depthwise"] + times["pointwise"])
                row += [milliseconds(times["standard"]), milliseconds(times["pair"]),
                        f"{times['standard'] / times['pair']:.2f}x", f"{depthwise_mac_share:.0%} / {share:.0%}"]
            rows.append(row)
        header = ["N x C x H x W", "MAC reduction",
                  "torch standard ms", "torch pair ms", "torch speed-up", "torch dw share MACs / time",
                  "ops standard ms", "ops pair ms", "ops speed-up", "ops dw share MACs / time"]
        print_table(f"3x3 standard vs depthwise + pointwise, {dtype_name}, {threads} thread(s), {device}",
                    header, rows)


if __name__ == "__main__":
    main()
