"""Tests for cnnbook.reference.conv: conv2d (im2col and naive), im2col/col2im, conv1d, transposed conv2d.

Oracles: torch.nn.functional (forward, and autograd with a random upstream
gradient for the backward), central-difference numeric gradients, and tiny
inputs worked out by hand in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnbook.reference.fast_conv as conv_module
from helpers import assert_close
from cnnbook.gradcheck import check_gradient, numeric_gradient, tolerance, worst_element
from cnnbook.reference import (
    col2im,
    conv1d_backward,
    conv1d_forward,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    im2col,
)
from cnnbook.shapes import conv_output_size



# ------------------------------------------------------------------ helpers




def torch_reference(op, arrays, dout_seed=1, **settings):
    """Run ``op`` in torch with autograd; return (out, upstream gradient, grads of every array in order).

    ``arrays`` may contain None (no bias); its gradient is then None.
    """
    tensors = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out = op(*tensors, **settings)
    dout = np.random.default_rng(dout_seed).standard_normal(tuple(out.shape)).astype(arrays[0].dtype)
    out.backward(torch.from_numpy(dout))
    grads = [None if t is None else t.grad.numpy() for t in tensors]
    return out.detach().numpy(), dout, grads


def random_conv_inputs(rng, x_shape, w_shape, bias=True, dtype=np.float64):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def check_conv2d_against_torch(x, w, b, dtype="float64", **settings):
    out_expected, dout, grads = torch_reference(F.conv2d, [x, w, b], **settings)
    out, cache = conv2d_forward(x, w, b, **settings)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, out_expected, dtype)
    dx, dw, db = conv2d_backward(dout, cache)
    assert_close("dx", dx, grads[0], dtype)
    assert_close("dw", dw, grads[1], dtype)
    if b is None:
        assert db is None
    else:
        assert_close("db", db, grads[2], dtype)
    assert dx.dtype == dw.dtype == np.dtype(dtype)


# Each case: x shape, w shape, settings. Chosen to cover every code path:
# the GEMM path (plain, grouped, strided, dilated, 1x1), the depthwise path
# (stride 1 and 2, channel multiplier, unequal strides) and odd sizes.
CONV2D_CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), dict()),
    ((2, 3, 8, 8), (5, 3, 3, 3), dict(stride=1, padding=1)),
    ((2, 3, 9, 7), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ((3, 4, 10, 11), (6, 2, 3, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ((2, 6, 5, 5), (6, 2, 1, 1), dict(groups=3)),
    ((2, 5, 6, 7), (3, 5, 1, 1), dict()),  # 1x1: a plain matrix product
    ((2, 5, 6, 7), (3, 5, 1, 1), dict(stride=2, padding=1)),  # 1x1 but strided and padded
    ((2, 4, 9, 8), (4, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise, stride 1
    ((2, 4, 9, 8), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)),  # depthwise, stride 2
    ((2, 3, 8, 9), (6, 1, 3, 2), dict(padding=(1, 0), dilation=2, groups=3)),  # depthwise, multiplier 2
    ((2, 3, 9, 9), (3, 1, 3, 3), dict(stride=(1, 2), groups=3)),  # depthwise, unequal strides
    ((1, 1, 5, 5), (1, 1, 7, 7), dict(padding=1)),  # the kernel fills the padded input
    ((1, 1, 1, 1), (2, 1, 1, 1), dict()),
]


# ----------------------------------------------------------------- conv2d


@pytest.mark.parametrize(("x_shape", "w_shape", "settings"), CONV2D_CASES)
def test_conv2d_matches_torch_float64(rng, x_shape, w_shape, settings):
    x, w, b = random_conv_inputs(rng, x_shape, w_shape)
    check_conv2d_against_torch(x, w, b, **settings)


@pytest.mark.parametrize(("x_shape", "w_shape", "settings"), CONV2D_CASES[:4] + CONV2D_CASES[7:10])
def test_conv2d_matches_torch_float32(rng, x_shape, w_shape, settings):
    x, w, b = random_conv_inputs(rng, x_shape, w_shape, dtype=np.float32)
    check_conv2d_against_torch(x, w, b, dtype="float32", **settings)


@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_without_bias(rng, groups):
    x, w, _ = random_conv_inputs(rng, (2, 3, 6, 6), (3, 3 // groups, 3, 3), bias=False)
    check_conv2d_against_torch(x, w, None, padding=1, groups=groups)


@st.composite
def conv2d_configs(draw, depthwise=False, largest_extra=5):
    """A valid convolution: any sizes for which the (dilated) window fits the padded input.

    Sizes range from the smallest that fits (the window fills the padded input) to ``largest_extra`` more.
    """
    groups = draw(st.integers(1, 4)) if depthwise else draw(st.integers(1, 3))
    in_per_group = 1 if depthwise else draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = []
    for axis in (0, 1):
        smallest = max(1, dilation[axis] * (kernel[axis] - 1) + 1 - 2 * padding[axis])
        size.append(draw(st.integers(smallest, smallest + largest_extra)))
    batch = draw(st.integers(1, 3))
    x_shape = (batch, groups * in_per_group, *size)
    w_shape = (groups * out_per_group, in_per_group, *kernel)
    settings = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x_shape, w_shape, settings


def _expected_out_size(x_shape, w_shape, settings):
    return tuple(
        conv_output_size(x_shape[2 + a], w_shape[2 + a], settings["padding"][a], settings["stride"][a], settings["dilation"][a])
        for a in (0, 1)
    )


@given(conv2d_configs(), st.booleans())
def test_conv2d_property_matches_torch(config, bias):
    x_shape, w_shape, settings = config
    x, w, b = random_conv_inputs(np.random.default_rng(0), x_shape, w_shape, bias=bias)
    out, _ = conv2d_forward(x, w, b, **settings)
    assert out.shape == (x_shape[0], w_shape[0]) + _expected_out_size(x_shape, w_shape, settings)
    check_conv2d_against_torch(x, w, b, **settings)


@given(conv2d_configs(depthwise=True))
def test_depthwise_conv2d_property_matches_torch(config):
    x_shape, w_shape, settings = config
    x, w, b = random_conv_inputs(np.random.default_rng(0), x_shape, w_shape)
    check_conv2d_against_torch(x, w, b, **settings)


@pytest.mark.parametrize(("x_shape", "w_shape", "settings"), [CONV2D_CASES[i] for i in (2, 3, 4, 7, 9, 10)])
def test_conv2d_numeric_gradient(rng, x_shape, w_shape, settings):
    x, w, b = random_conv_inputs(rng, x_shape, w_shape)
    out, cache = conv2d_forward(x, w, b, **settings)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    check_gradient("dx", dx, numeric_gradient(lambda v: conv2d_forward(v, w, b, **settings)[0], x, dout))
    check_gradient("dw", dw, numeric_gradient(lambda v: conv2d_forward(x, v, b, **settings)[0], w, dout))
    check_gradient("db", db, numeric_gradient(lambda v: conv2d_forward(x, w, v, **settings)[0], b, dout))


def test_conv2d_chunked_paths_match_torch(rng, monkeypatch):
    """Real layers are processed a few images (or channels) at a time; force many uneven chunks here."""
    # One image's columns: C * KH * KW * OH * OW float64 = 4 * 9 * 36 * 8 bytes; 2 images per chunk: 2, 2, 1.
    monkeypatch.setattr(conv_module, "COLUMNS_CHUNK_BYTES", 2 * 4 * 9 * 36 * 8)
    # 3 padded 8x8 float64 planes per chunk: 20 (image, channel) planes in chunks of 3, 3, ..., 2
    monkeypatch.setattr(conv_module, "DEPTHWISE_CHUNK_BYTES", 3 * 8 * 8 * 8)
    x, w, b = random_conv_inputs(rng, (5, 4, 6, 6), (3, 4, 3, 3))
    check_conv2d_against_torch(x, w, b, padding=1)
    x, w, b = random_conv_inputs(rng, (5, 4, 6, 6), (8, 1, 3, 3))
    check_conv2d_against_torch(x, w, b, padding=1, groups=4)
    check_conv2d_against_torch(x, w, b, padding=1, stride=2, groups=4)


def test_conv2d_does_not_modify_its_inputs(rng):
    for groups, w_shape in ((1, (4, 4, 3, 3)), (4, (4, 1, 3, 3))):
        x, w, b = random_conv_inputs(rng, (2, 4, 6, 6), w_shape)
        copies = [x.copy(), w.copy(), b.copy()]
        out, cache = conv2d_forward(x, w, b, padding=1, groups=groups)
        dout = rng.standard_normal(out.shape)
        dout_copy = dout.copy()
        conv2d_backward(dout, cache)
        for original, copy in zip([x, w, b, dout], copies + [dout_copy]):
            np.testing.assert_array_equal(original, copy)


def test_conv2d_accepts_views_and_integers(rng):
    x = rng.standard_normal((6, 6, 3, 2)).transpose(3, 2, 0, 1)  # non-contiguous (2, 3, 6, 6)
    w = rng.standard_normal((4, 3, 3, 3))
    check_conv2d_against_torch(x, w, None, padding=1)
    out, _ = conv2d_forward(np.ones((1, 1, 3, 3), dtype=np.int64), np.ones((1, 1, 2, 2), dtype=np.int64), None)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 4.0))


def test_conv2d_hand_checked_difference_filter():
    # w = [[1, 0], [0, -1]] computes x[i, j] - x[i + 1, j + 1]; on x = arange(16) as 4x4,
    # x[i, j] = 4i + j, so every output is (4i + j) - (4(i + 1) + j + 1) = -5.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    out, _ = conv2d_forward(x, w, np.array([0.5]))
    np.testing.assert_array_equal(out, np.full((1, 1, 3, 3), -4.5))


def test_conv2d_hand_checked_box_filter_with_padding():
    # A 3x3 box of ones over a 4x4 map of ones, padded by 1, counts the in-image pixels of each window:
    # 4 at the corners, 6 along the edges, 9 inside.
    out, cache = conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), None, padding=1)
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=float)
    np.testing.assert_array_equal(out[0, 0], expected)
    # With stride 2, the windows start at rows/cols 0 and 2 of the padded map: corner, edge, edge, inside.
    out, _ = conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), None, padding=1, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[4, 6], [6, 9]])
    # Backward with dout = 1: each input pixel is in as many windows as the count above (the map is symmetric).
    dx, dw, db = conv2d_backward(np.ones((1, 1, 4, 4)), cache)
    np.testing.assert_array_equal(dx[0, 0], expected)
    assert db is None
    # dw[kh, kw] sums the inputs that tap (kh, kw) sees: 16 for the centre, 12 on the edges, 9 at the corners.
    np.testing.assert_array_equal(dw[0, 0], [[9, 12, 9], [12, 16, 12], [9, 12, 9]])


def test_depthwise_hand_checked():
    # Two channels, each with its own 1x2 filter: channel 0 sums neighbours, channel 1 takes differences.
    x = np.array([[1.0, 2.0, 4.0], [10.0, 20.0, 40.0]]).reshape(1, 2, 1, 3)
    w = np.array([[1.0, 1.0], [-1.0, 1.0]]).reshape(2, 1, 1, 2)
    out, _ = conv2d_forward(x, w, None, groups=2)
    np.testing.assert_array_equal(out.reshape(2, 2), [[3.0, 6.0], [10.0, 20.0]])


# ------------------------------------------------------------------- naive


@pytest.mark.parametrize(("x_shape", "w_shape", "settings"), CONV2D_CASES)
def test_naive_matches_im2col(rng, x_shape, w_shape, settings):
    x, w, b = random_conv_inputs(rng, x_shape, w_shape)
    out_fast, cache_fast = conv2d_forward(x, w, b, **settings)
    out_naive, cache_naive = conv2d_forward_naive(x, w, b, **settings)
    assert_close("out", out_naive, out_fast)
    dout = rng.standard_normal(out_fast.shape)
    for name, naive, fast in zip(("dx", "dw", "db"), conv2d_backward_naive(dout, cache_naive), conv2d_backward(dout, cache_fast)):
        assert_close(name, naive, fast)


def test_naive_numeric_gradient(rng):
    x, w, b = random_conv_inputs(rng, (2, 4, 5, 6), (4, 2, 3, 2))
    settings = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    out, cache = conv2d_forward_naive(x, w, b, **settings)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward_naive(dout, cache)
    check_gradient("dx", dx, numeric_gradient(lambda v: conv2d_forward_naive(v, w, b, **settings)[0], x, dout))
    check_gradient("dw", dw, numeric_gradient(lambda v: conv2d_forward_naive(x, v, b, **settings)[0], w, dout))
    check_gradient("db", db, numeric_gradient(lambda v: conv2d_forward_naive(x, w, v, **settings)[0], b, dout))


@given(conv2d_configs(largest_extra=2), st.booleans())
def test_naive_property_matches_torch(config, bias):
    x_shape, w_shape, settings = config
    x, w, b = random_conv_inputs(np.random.default_rng(1), x_shape, w_shape, bias=bias)
    out_expected, dout, grads = torch_reference(F.conv2d, [x, w, b], **settings)
    out, cache = conv2d_forward_naive(x, w, b, **settings)
    assert_close("out", out, out_expected)
    dx, dw, db = conv2d_backward_naive(dout, cache)
    assert_close("dx", dx, grads[0])
    assert_close("dw", dw, grads[1])
    assert (db is None) if b is None else True
    if b is not None:
        assert_close("db", db, grads[2])


# ---------------------------------------------------------- im2col, col2im


@pytest.mark.parametrize(
    ("x_shape", "kernel", "settings"),
    [
        ((2, 3, 5, 6), (3, 3), dict()),
        ((2, 3, 7, 6), (2, 3), dict(stride=(2, 1), padding=1, dilation=(1, 2))),
        ((1, 2, 4, 4), 1, dict()),
    ],
)
def test_im2col_and_col2im_match_unfold_and_fold(rng, x_shape, kernel, settings):
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kernel, **settings)
    expected = F.unfold(torch.from_numpy(x), kernel, **settings).numpy()
    assert_close("im2col", cols, expected)
    upstream = rng.standard_normal(cols.shape)
    folded = col2im(upstream, x_shape, kernel, **settings)
    expected = F.fold(torch.from_numpy(upstream), x_shape[2:], kernel, **settings).numpy()
    assert_close("col2im", folded, expected)
    # col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>.
    assert np.sum(cols * upstream) == pytest.approx(np.sum(x * folded), rel=1e-12)


def test_im2col_hand_checked():
    # A 3x3 map, 2x2 windows: 4 windows, each a column of 4 values in row-major tap order.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    cols = im2col(x, 2)
    expected = np.array([[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]], dtype=float)
    np.testing.assert_array_equal(cols[0], expected)
    # col2im of all ones counts how many windows hold each pixel.
    counts = col2im(np.ones_like(cols), x.shape, 2)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


# ------------------------------------------------------------------ conv1d


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "settings"),
    [
        ((2, 3, 11), (4, 3, 3), dict()),
        ((2, 4, 11), (6, 2, 3), dict(stride=2, padding=1, dilation=2, groups=2)),
        ((3, 2, 5), (2, 1, 5), dict(padding=2, groups=2)),
        ((1, 1, 4), (1, 1, 4), dict()),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv1d_matches_torch(rng, x_shape, w_shape, settings, dtype):
    x, w, b = random_conv_inputs(rng, x_shape, w_shape, dtype=np.dtype(dtype))
    out_expected, dout, grads = torch_reference(F.conv1d, [x, w, b], **settings)
    out, cache = conv1d_forward(x, w, b, **settings)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, out_expected, dtype)
    for name, ours, theirs in zip(("dx", "dw", "db"), conv1d_backward(dout, cache), grads):
        assert_close(name, ours, theirs, dtype)


def test_conv1d_numeric_gradient(rng):
    x, w, b = random_conv_inputs(rng, (2, 4, 9), (4, 2, 3))
    settings = dict(stride=2, padding=1, groups=2)
    out, cache = conv1d_forward(x, w, b, **settings)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv1d_backward(dout, cache)
    check_gradient("dx", dx, numeric_gradient(lambda v: conv1d_forward(v, w, b, **settings)[0], x, dout))
    check_gradient("dw", dw, numeric_gradient(lambda v: conv1d_forward(x, v, b, **settings)[0], w, dout))
    check_gradient("db", db, numeric_gradient(lambda v: conv1d_forward(x, w, v, **settings)[0], b, dout))


def test_conv1d_hand_checked():
    # Cross-correlation with [1, 0, -1]: x[i] - x[i + 2] = -2 for x = 1..5.
    out, _ = conv1d_forward(np.array([[[1.0, 2, 3, 4, 5]]]), np.array([[[1.0, 0, -1]]]), None)
    np.testing.assert_array_equal(out, [[[-2.0, -2.0, -2.0]]])


# -------------------------------------------------------- transposed conv2d


def check_conv_transpose2d_against_torch(x, w, b, dtype="float64", **settings):
    out_expected, dout, grads = torch_reference(F.conv_transpose2d, [x, w, b], **settings)
    out, cache = conv_transpose2d_forward(x, w, b, **settings)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, out_expected, dtype)
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    assert_close("dx", dx, grads[0], dtype)
    assert_close("dw", dw, grads[1], dtype)
    if b is None:
        assert db is None
    else:
        assert_close("db", db, grads[2], dtype)


CONV_TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict()),
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((2, 2, 3, 4), (2, 4, 2, 3), dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1))),
    ((1, 3, 4, 4), (3, 2, 3, 3), dict(dilation=2, padding=2, output_padding=1, stride=1)),  # output_padding < dilation
    ((2, 3, 4, 4), (3, 2, 4, 4), dict(stride=2, padding=1)),  # the DCGAN upsampling layer
]


@pytest.mark.parametrize(("x_shape", "w_shape", "settings"), CONV_TRANSPOSE_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv_transpose2d_matches_torch(rng, x_shape, w_shape, settings, dtype):
    x, w, _ = random_conv_inputs(rng, x_shape, w_shape, dtype=np.dtype(dtype))
    b = rng.standard_normal(w_shape[1] * settings.get("groups", 1)).astype(dtype)
    check_conv_transpose2d_against_torch(x, w, b, dtype=dtype, **settings)


@st.composite
def conv_transpose2d_configs(draw):
    groups = draw(st.integers(1, 3))
    in_per_group, out_per_group = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    output_padding = tuple(draw(st.integers(0, max(stride[a], dilation[a]) - 1)) for a in (0, 1))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    # Padding may only crop what the transposed convolution produces.
    padding = []
    for a in (0, 1):
        full = (size[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + output_padding[a] + 1
        padding.append(draw(st.integers(0, min(2, (full - 1) // 2))))
    x_shape = (draw(st.integers(1, 2)), groups * in_per_group, *size)
    w_shape = (groups * in_per_group, out_per_group, *kernel)
    settings = dict(stride=stride, padding=tuple(padding), output_padding=output_padding, dilation=dilation, groups=groups)
    return x_shape, w_shape, settings


@given(conv_transpose2d_configs(), st.booleans())
def test_conv_transpose2d_property_matches_torch(config, bias):
    x_shape, w_shape, settings = config
    rng = np.random.default_rng(0)
    x, w, _ = random_conv_inputs(rng, x_shape, w_shape)
    b = rng.standard_normal(w_shape[1] * settings["groups"]) if bias else None
    check_conv_transpose2d_against_torch(x, w, b, **settings)


def test_conv_transpose2d_numeric_gradient(rng):
    x_shape, w_shape, settings = CONV_TRANSPOSE_CASES[1]
    x, w, _ = random_conv_inputs(rng, (1, 4, 3, 3), w_shape)
    b = rng.standard_normal(6)
    out, cache = conv_transpose2d_forward(x, w, b, **settings)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    check_gradient("dx", dx, numeric_gradient(lambda v: conv_transpose2d_forward(v, w, b, **settings)[0], x, dout))
    check_gradient("dw", dw, numeric_gradient(lambda v: conv_transpose2d_forward(x, v, b, **settings)[0], w, dout))
    check_gradient("db", db, numeric_gradient(lambda v: conv_transpose2d_forward(x, w, v, **settings)[0], b, dout))


def test_conv_transpose2d_hand_checked():
    # A 2x2 kernel of ones with stride 2 turns each input pixel into a 2x2 block.
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out, _ = conv_transpose2d_forward(x, np.ones((1, 1, 2, 2)), None, stride=2)
    expected = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    np.testing.assert_array_equal(out[0, 0], expected)
    # With stride 1 the blocks overlap and add up: a 3x3 map.
    out, _ = conv_transpose2d_forward(x, np.ones((1, 1, 2, 2)), None)
    np.testing.assert_array_equal(out[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "b_shape", "settings", "match"),
    [
        ((3, 8, 8), (4, 3, 3, 3), (4,), {}, r"x must have shape \(N, C, H, W\), got shape \(3, 8, 8\)"),
        ((2, 3, 8, 8), (4, 3, 3), (4,), {}, r"w must have shape .* got shape \(4, 3, 3\)"),
        ((2, 3, 8, 8), (4, 2, 3, 3), (4,), {}, r"channel mismatch: x \(2, 3, 8, 8\) has C=3 .* w \(4, 2, 3, 3\)"),
        ((2, 4, 8, 8), (4, 4, 3, 3), (4,), dict(groups=2), r"channel mismatch.*4 \* 2 = 8"),
        ((2, 3, 8, 8), (4, 1, 3, 3), (4,), dict(groups=2), r"groups=2 must divide .*C=3 of x \(2, 3, 8, 8\)"),
        ((2, 4, 8, 8), (3, 2, 3, 3), (3,), dict(groups=2), r"groups=2 must divide .*F=3 of w \(3, 2, 3, 3\)"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (3,), {}, r"b must have shape \(F,\) = \(4,\) .* got shape \(3,\)"),
        ((2, 3, 4, 4), (4, 3, 7, 3), (4,), dict(padding=1), r"window along H .*kernel 7.*4 \+ 2 \* 1 = 6.*\(2, 3, 4, 4\)"),
        ((2, 3, 4, 4), (4, 3, 3, 3), (4,), dict(dilation=(1, 3)), r"window along W .*dilation 3, spanning 7"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), dict(stride=0), r"stride must be >= 1"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), dict(padding=1.5), r"padding must be an int"),
    ],
)
@pytest.mark.parametrize("forward", [conv2d_forward, conv2d_forward_naive])
def test_conv2d_rejects_bad_input(forward, x_shape, w_shape, b_shape, settings, match):
    with pytest.raises(ValueError, match=match):
        forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape), **settings)


def test_conv2d_backward_rejects_wrong_dout_shape():
    _, cache = conv2d_forward(np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3)), None)
    with pytest.raises(ValueError, match=r"dout must have shape \(N, F, OH, OW\) = \(2, 4, 6, 6\), got \(2, 4, 8, 8\)"):
        conv2d_backward(np.zeros((2, 4, 8, 8)), cache)


def test_conv_transpose2d_backward_rejects_wrong_dout_shape():
    _, cache = conv_transpose2d_forward(np.zeros((2, 3, 4, 4)), np.zeros((3, 2, 3, 3)), None, stride=2)
    with pytest.raises(ValueError, match=r"dout must have shape \(N, C_out, OH, OW\) = \(2, 2, 9, 9\), got \(2, 2, 8, 8\)"):
        conv_transpose2d_backward(np.zeros((2, 2, 8, 8)), cache)


def test_conv1d_rejects_bad_input():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, L\).*x \(2, 3, 8, 8\)"):
        conv1d_forward(np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3)), None)
    with pytest.raises(ValueError, match=r"x \(2, 3, 8\), w \(4, 2, 3\).*channel mismatch"):
        conv1d_forward(np.zeros((2, 3, 8)), np.zeros((4, 2, 3)), None)
    with pytest.raises(ValueError, match=r"window along W .*kernel 9"):
        conv1d_forward(np.zeros((2, 3, 8)), np.zeros((4, 3, 9)), None)


def test_conv_transpose2d_rejects_bad_input():
    with pytest.raises(ValueError, match=r"channel mismatch: x \(2, 3, 4, 4\) has C_in=3 .* w \(4, 2, 3, 3\)"):
        conv_transpose2d_forward(np.zeros((2, 3, 4, 4)), np.zeros((4, 2, 3, 3)), None)
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"):
        conv_transpose2d_forward(np.zeros((2, 3, 4, 4)), np.zeros((3, 2, 3, 3)), None, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"b must have shape \(C_out,\) = \(4,\)"):
        conv_transpose2d_forward(np.zeros((2, 4, 4, 4)), np.zeros((4, 2, 3, 3)), np.zeros(2), groups=2)
    with pytest.raises(ValueError, match=r"groups=3 must divide the input channels C_in=4"):
        conv_transpose2d_forward(np.zeros((2, 4, 4, 4)), np.zeros((4, 2, 3, 3)), None, groups=3)
    with pytest.raises(ValueError, match=r"non-positive output size"):
        conv_transpose2d_forward(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), None, padding=1)


def test_im2col_rejects_bad_input():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\), got shape \(4, 4\)"):
        im2col(np.zeros((4, 4)), 3)
    with pytest.raises(ValueError, match=r"cols must have shape .* = \(1, 9, 4\) .* got shape \(1, 9, 5\)"):
        col2im(np.zeros((1, 9, 5)), (1, 1, 4, 4), 3)
