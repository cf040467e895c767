"""cnnbook.ops: bad input raises ValueError naming the shapes; nothing inside picks a device."""

from __future__ import annotations

import re

import pytest
import torch

import cnnbook.ops as ops




def _zeros(*shape, dtype=torch.float32):
    return torch.zeros(shape, dtype=dtype)


BAD_INPUTS = {
    "conv2d-x-rank": (lambda: ops.conv2d(_zeros(3, 8, 8), _zeros(4, 3, 3, 3)), r"x must be 4-D .*\(3, 8, 8\)"),
    "conv2d-w-rank": (lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3)), r"w must be 4-D .*\(4, 3, 3\)"),
    "conv2d-channels": (
        lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 2, 3, 3)),
        r"\(1, 3, 8, 8\) has C=3 .*\(4, 2, 3, 3\)",
    ),
    "conv2d-groups-divide-C": (
        lambda: ops.conv2d(_zeros(1, 4, 8, 8), _zeros(6, 2, 3, 3), groups=3),
        r"groups=3 must divide .*C=4 .*\(1, 4, 8, 8\)",
    ),
    "conv2d-groups-divide-F": (
        lambda: ops.conv2d(_zeros(1, 4, 8, 8), _zeros(5, 2, 3, 3), groups=2),
        r"groups=2 must divide .*F=5 .*\(5, 2, 3, 3\)",
    ),
    "conv2d-window-too-large": (
        lambda: ops.conv2d(_zeros(1, 1, 4, 4), _zeros(1, 1, 5, 5)),
        r"5x5 window .* larger than the padded input \(4, 4\) .*\(1, 1, 4, 4\)",
    ),
    "conv2d-dilated-window-too-large": (
        lambda: ops.conv2d(_zeros(1, 1, 6, 6), _zeros(1, 1, 3, 3), padding=1, dilation=4),
        r"spans \(9, 9\), larger than the padded input \(8, 8\)",
    ),
    "conv2d-depthwise-window-too-large": (
        lambda: ops.conv2d(_zeros(1, 4, 2, 2), _zeros(4, 1, 3, 3), groups=4),
        r"larger than the padded input \(2, 2\)",
    ),
    "conv2d-bias-shape": (
        lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3, 3), _zeros(3)),
        r"b must have shape \(F,\) = \(4,\).* got \(3,\)",
    ),
    "conv2d-dtype-mix": (
        lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3, 3, dtype=torch.float64)),
        r"x: torch.float32 on cpu, w: torch.float64 on cpu",
    ),
    "conv2d-stride-zero": (lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3, 3), stride=0), r"stride .* >= 1"),
    "conv2d-negative-padding": (
        lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3, 3), padding=-1),
        r"padding .* >= 0",
    ),
    "conv2d-padding-word": (
        lambda: ops.conv2d(_zeros(1, 3, 8, 8), _zeros(4, 3, 3, 3), padding="full"),
        r"'valid' or 'same'",
    ),
    "max_pool2d-rank": (lambda: ops.max_pool2d(_zeros(3, 8, 8), 2), r"4-D .*\(3, 8, 8\)"),
    "max_pool2d-window-too-large": (
        lambda: ops.max_pool2d(_zeros(1, 1, 3, 3), 4),
        r"4x4 window .* larger than the padded input \(3, 3\)",
    ),
    "max_pool2d-padding": (lambda: ops.max_pool2d(_zeros(1, 1, 8, 8), 3, padding=2), r"padding \(2, 2\) .* half"),
    "avg_pool2d-window-too-large": (
        lambda: ops.avg_pool2d(_zeros(2, 3, 5, 2), (2, 3)),
        r"larger than the padded input \(5, 2\) .*\(2, 3, 5, 2\)",
    ),
    "adaptive_avg_pool2d-rank": (lambda: ops.adaptive_avg_pool2d(_zeros(8, 8), 2), r"4-D .*\(8, 8\)"),
    "global_avg_pool2d-rank": (lambda: ops.global_avg_pool2d(_zeros(2, 3, 8)), r"4-D .*\(2, 3, 8\)"),
    "batch_norm2d-channels": (
        lambda: ops.batch_norm2d(_zeros(2, 3, 4, 4), _zeros(4), _zeros(4), training=True),
        r"running_mean must have shape \(C,\) = \(3,\) .*\(2, 3, 4, 4\)",
    ),
    "batch_norm2d-single-value": (
        lambda: ops.batch_norm2d(_zeros(1, 3, 1, 1), None, None, training=True),
        r"more than one value per channel.*\(1, 3, 1, 1\)",
    ),
    "batch_norm2d-eval-without-stats": (
        lambda: ops.batch_norm2d(_zeros(2, 3, 4, 4), None, None, training=False),
        r"needs running_mean and running_var",
    ),
    "layer_norm-shape": (
        lambda: ops.layer_norm(_zeros(2, 3, 4), (3,)),
        r"normalized_shape \(3,\) .*\(2, 3, 4\)",
    ),
    "linear-features": (
        lambda: ops.linear(_zeros(2, 5), _zeros(3, 4)),
        r"x of shape \(2, 5\) and w of shape \(3, 4\)",
    ),
    "dropout-p": (lambda: ops.dropout(_zeros(2, 5), 1.5), r"drop probability .* got 1.5"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_value_error_naming_the_shapes(name):
    call, message = BAD_INPUTS[name]
    with pytest.raises(ValueError) as raised:
        call()
    assert re.search(message, str(raised.value)), f"message {str(raised.value)!r} should match {message!r}"


META_CALLS = {
    "conv2d": lambda x: ops.conv2d(x, _meta(4, 3, 3, 3), _meta(4), 2, 1, 1, 1),
    "conv2d-depthwise": lambda x: ops.conv2d(x, _meta(6, 1, 3, 3), None, 1, 1, 2, 3),
    "max_pool2d": lambda x: ops.max_pool2d(x, 3, 2, 1, 1, True),
    "avg_pool2d": lambda x: ops.avg_pool2d(x, 3, 2, 1, True, False),
    "adaptive_avg_pool2d": lambda x: ops.adaptive_avg_pool2d(x, (3, 5)),
    "global_avg_pool2d": ops.global_avg_pool2d,
    "batch_norm2d": lambda x: ops.batch_norm2d(x, _meta(3, grad=False), _meta(3, grad=False), _meta(3), _meta(3), True),
    "layer_norm": lambda x: ops.layer_norm(x, (8, 8), _meta(8, 8), _meta(8, 8)),
    "dropout": lambda x: ops.dropout(x, 0.3),
    "relu": ops.relu,
    "linear": lambda x: ops.linear(x, _meta(5, 8), _meta(5)),
}


def _meta(*shape, grad=True):
    return torch.empty(shape, device="meta").requires_grad_(grad)


@pytest.mark.parametrize("name", list(META_CALLS), ids=list(META_CALLS))
def test_ops_create_every_tensor_on_the_input_device(name):
    """On the ``meta`` device any tensor made on the CPU by mistake (a missing ``device=``) raises."""
    x = _meta(2, 3, 8, 8)
    out = META_CALLS[name](x)
    assert out.device.type == "meta"
    (dx,) = torch.autograd.grad(out, [x], torch.empty(out.shape, device="meta"))
    assert dx.device.type == "meta" and dx.shape == x.shape
