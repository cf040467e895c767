"""cnnbook.ops against the NumPy reference (cnnbook.reference), float64, on every device.

The torch ops and the NumPy layers are two independent implementations of the
same formulas; agreeing with each other (and each with torch.nn.functional)
is what lets a chapter use either.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnbook.ops as ops
import cnnbook.reference as reference
from cnnbook.gradcheck import tolerance, worst_element

TOL = tolerance("float64")




def _ours(function, arrays, dout, device):
    """Run ``function`` on torch copies of ``arrays`` (None kept), return the output and input gradients as NumPy."""
    tensors = [None if a is None else torch.from_numpy(a).to(device).requires_grad_() for a in arrays]
    out = function(*tensors)
    present = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(out, present, torch.from_numpy(dout).to(device))
    return out.detach().cpu().numpy(), [g.cpu().numpy() for g in grads]


def _assert_all_close(pairs) -> None:
    for what, actual, expected in pairs:
        report = worst_element(actual, expected)
        assert report.error <= TOL, f"{what}: {report}"


CONV_CASES = {
    "im2col": ((2, 4, 7, 6), (6, 2, 3, 3), dict(stride=2, padding=1, dilation=1, groups=2)),
    "depthwise": ((2, 3, 7, 6), (6, 1, 3, 3), dict(stride=1, padding=1, dilation=2, groups=3)),
    "pointwise": ((2, 5, 4, 4), (3, 5, 1, 1), dict(stride=1, padding=0, dilation=1, groups=1)),
}


@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv2d_matches_numpy_reference(case, device, rng):
    x_shape, w_shape, options = CONV_CASES[case]
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    expected, cache = reference.conv2d_forward(x, w, b, **options)
    dout = rng.standard_normal(expected.shape)
    expected_grads = reference.conv2d_backward(dout, cache)
    actual, actual_grads = _ours(lambda *t: ops.conv2d(*t, **options), [x, w, b], dout, device)
    _assert_all_close([("out", actual, expected)] + list(zip(("dx", "dw", "db"), actual_grads, expected_grads)))


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_matches_numpy_reference(pool, device, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    forward, backward = {
        "max": (reference.max_pool2d_forward, reference.max_pool2d_backward),
        "avg": (reference.avg_pool2d_forward, reference.avg_pool2d_backward),
    }[pool]
    ours = {"max": ops.max_pool2d, "avg": ops.avg_pool2d}[pool]
    expected, cache = forward(x, 3, 2, 1)
    dout = rng.standard_normal(expected.shape)
    actual, (dx,) = _ours(lambda t: ours(t, 3, 2, 1), [x], dout, device)
    _assert_all_close([("out", actual, expected), ("dx", dx, backward(dout, cache))])


def test_adaptive_avg_pool_matches_numpy_reference(device, rng):
    x = rng.standard_normal((2, 3, 7, 9))
    expected, cache = reference.adaptive_avg_pool2d_forward(x, (3, 4))
    dout = rng.standard_normal(expected.shape)
    actual, (dx,) = _ours(lambda t: ops.adaptive_avg_pool2d(t, (3, 4)), [x], dout, device)
    _assert_all_close([("out", actual, expected), ("dx", dx, reference.adaptive_avg_pool2d_backward(dout, cache))])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm2d_matches_numpy_reference(training, device, rng):
    x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.random(3) + 0.5
    state = reference.BatchNormState(running_mean.copy(), running_var.copy(), momentum=0.1, eps=1e-5)
    expected, cache = reference.batch_norm2d_forward(x, weight, bias, state, training=training)
    dout = rng.standard_normal(expected.shape)
    expected_grads = reference.batch_norm2d_backward(dout, cache)
    stats = [torch.from_numpy(running_mean.copy()).to(device), torch.from_numpy(running_var.copy()).to(device)]
    actual, actual_grads = _ours(
        lambda t, g, b: ops.batch_norm2d(t, *stats, g, b, training=training, momentum=0.1, eps=1e-5),
        [x, weight, bias],
        dout,
        device,
    )
    _assert_all_close(
        [("out", actual, expected)]
        + list(zip(("dx", "dweight", "dbias"), actual_grads, expected_grads))
        + [("running_mean", stats[0].cpu().numpy(), state.running_mean),
           ("running_var", stats[1].cpu().numpy(), state.running_var)]
    )


def test_layer_norm_matches_numpy_reference(device, rng):
    x, weight, bias = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    expected, cache = reference.layer_norm_forward(x, weight, bias)
    dout = rng.standard_normal(expected.shape)
    actual, actual_grads = _ours(lambda t, g, b: ops.layer_norm(t, (4, 5), g, b), [x, weight, bias], dout, device)
    expected_grads = reference.layer_norm_backward(dout, cache)
    _assert_all_close([("out", actual, expected)] + list(zip(("dx", "dweight", "dbias"), actual_grads, expected_grads)))


def test_im2col_columns_hold_the_windows(rng):
    """Column ``(n, oh, ow)`` of ``im2col`` is window ``(oh, ow)`` of image n, flattened as (C, KH, KW)."""
    from cnnbook.ops.geometry import make_window

    x = torch.from_numpy(rng.standard_normal((2, 3, 5, 6)))
    window = make_window("im2col", x.shape, (2, 3), (2, 1), (0, 0, 0, 0), 1)
    cols = ops.im2col(x, window)
    oh, ow = window.out
    for n, i, j in [(0, 0, 0), (1, 1, 2), (1, oh - 1, ow - 1)]:
        expected = x[n, :, 2 * i : 2 * i + 2, j : j + 3].reshape(-1)
        assert torch.equal(cols[0, :, (n * oh + i) * ow + j], expected)
    assert np.isclose(
        float((ops.col2im(cols, window, 2, 3) * x).sum()), float((cols * cols).sum())
    ), "col2im must be the adjoint of im2col: <col2im(c), x> == <c, im2col(x)>"
