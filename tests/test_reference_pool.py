"""Tests for cnnbook.reference.pool: max, average, global average and adaptive average pooling.

Oracles: torch.nn.functional (forward and autograd with a random upstream
gradient), numeric gradients, and small maps pooled by hand in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnbook.reference.pool as pool_module
from helpers import assert_close
from cnnbook.gradcheck import check_gradient, numeric_gradient, tolerance, worst_element
from cnnbook.reference import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from cnnbook.shapes import pool_output_size






def torch_reference(op, x, *args, **kwargs):
    """Forward and input gradient of a torch pooling op, with a random upstream gradient."""
    tensor = torch.tensor(x, requires_grad=True)
    out = op(tensor, *args, **kwargs)
    dout = np.random.default_rng(1).standard_normal(tuple(out.shape)).astype(x.dtype)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), dout, tensor.grad.numpy()


def distinct_values(rng, shape, dtype=np.float64):
    """Random values at least 0.01 apart, so a max is never a near-tie (numeric gradients stay valid)."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) * 0.01 + rng.uniform(0, 0.001)).astype(dtype)


# ---------------------------------------------------------------------- max


def test_maxpool_hand_checked_4x4():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float).reshape(1, 1, 4, 4)
    out, cache = max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(out[0, 0], [[6, 8], [3, 4]])
    # Each window's gradient goes to where its maximum is: 6 at (1, 1), 8 at (1, 3), 3 at (2, 0), 4 at (3, 3).
    dx = max_pool2d_backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), cache)
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[2, 0], expected[3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_pooling_hand_checked_6x6_with_3x3_windows():
    # x[i, j] = 6i + j. Window (a, b) covers rows 3a..3a+2 and columns 3b..3b+2:
    # its maximum is the bottom-right pixel 6(3a + 2) + 3b + 2 and its mean the centre pixel 6(3a + 1) + 3b + 1.
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    out, _ = max_pool2d_forward(x, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[14, 17], [32, 35]])
    out, cache = avg_pool2d_forward(x, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[7, 10], [25, 28]])
    # Average pooling backward: each pixel gets its window's dout / 9.
    dx = avg_pool2d_backward(np.array([[[[9.0, 18.0], [27.0, 36.0]]]]), cache)
    expected = np.kron(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((3, 3)))
    np.testing.assert_allclose(dx[0, 0], expected, rtol=1e-15)


def test_maxpool_ties_go_to_the_first_maximum():
    # All four pixels tie; the gradient goes to the first one in row-major order, as in PyTorch.
    x = np.ones((1, 1, 2, 2))
    out, cache = max_pool2d_forward(x, 2)
    dx = max_pool2d_backward(np.array([[[[5.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[5, 0], [0, 0]])
    # Ties inside overlapping windows, against PyTorch.
    x = np.array([[3, 1, 3, 3], [3, 0, 2, 3], [1, 1, 3, 3]], dtype=float).reshape(1, 1, 3, 4)
    expected_out, dout, expected_dx = torch_reference(F.max_pool2d, x, 2, 1)
    out, cache = max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(max_pool2d_backward(dout, cache), expected_dx)


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding"),
    [
        ((2, 3, 8, 8), 2, None, 0),  # non-overlapping, the usual 2x2
        ((2, 3, 9, 7), 2, None, 0),  # odd sizes: the last row and column are dropped
        ((2, 3, 9, 8), 3, 2, 1),  # overlapping, padded (ResNet's stem pool)
        ((1, 2, 7, 9), (3, 2), (1, 2), (1, 0)),
        ((1, 1, 3, 3), 3, 1, 0),  # the window fills the input
        ((1, 1, 1, 1), 1, None, 0),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_maxpool_matches_torch(rng, x_shape, kernel, stride, padding, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    expected_out, dout, expected_dx = torch_reference(F.max_pool2d, x, kernel, stride, padding)
    out, cache = max_pool2d_forward(x, kernel, stride, padding)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, expected_out, dtype)
    dx = max_pool2d_backward(dout, cache)
    assert dx.dtype == np.dtype(dtype)
    assert_close("dx", dx, expected_dx, dtype)


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    size = tuple(draw(st.integers(max(1, kernel[a] - 2 * padding[a]), 9)) for a in (0, 1))
    x_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), *size)
    return x_shape, kernel, stride, padding


@given(pool_configs(), st.booleans())
def test_maxpool_property_matches_torch(config, with_ties):
    x_shape, kernel, stride, padding = config
    rng = np.random.default_rng(0)
    # Small integers make ties common; they must be routed exactly as PyTorch does.
    x = rng.integers(0, 3, x_shape).astype(float) if with_ties else rng.standard_normal(x_shape)
    expected_out, dout, expected_dx = torch_reference(F.max_pool2d, x, kernel, stride, padding)
    out, cache = max_pool2d_forward(x, kernel, stride, padding)
    assert out.shape[2:] == tuple(pool_output_size(x_shape[2 + a], kernel[a], stride[a], padding[a]) for a in (0, 1))
    assert_close("out", out, expected_out)
    assert_close("dx", max_pool2d_backward(dout, cache), expected_dx)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1), (3, 1, 0)])
def test_maxpool_numeric_gradient(rng, kernel, stride, padding):
    x = distinct_values(rng, (2, 2, 5, 6))
    out, cache = max_pool2d_forward(x, kernel, stride, padding)
    dout = rng.standard_normal(out.shape)
    numeric = numeric_gradient(lambda v: max_pool2d_forward(v, kernel, stride, padding)[0], x, dout, h=1e-5)
    check_gradient("dx", max_pool2d_backward(dout, cache), numeric)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, None, 0), (3, 2, 1)])
def test_pooling_in_chunks_of_planes_matches_torch(rng, monkeypatch, kernel, stride, padding):
    """Large inputs are pooled a few channel planes at a time; force uneven chunks (3, 3, 3, 1 planes) here."""
    monkeypatch.setattr(pool_module, "POOL_CHUNK_BYTES", 3 * 7 * 6 * 8)
    x = rng.standard_normal((2, 5, 7, 6))
    for forward, backward, op in [
        (max_pool2d_forward, max_pool2d_backward, F.max_pool2d),
        (avg_pool2d_forward, avg_pool2d_backward, F.avg_pool2d),
    ]:
        expected_out, dout, expected_dx = torch_reference(op, x, kernel, stride or kernel, padding)
        out, cache = forward(x, kernel, stride, padding)
        assert_close("out", out, expected_out)
        assert_close("dx", backward(dout, cache), expected_dx)


def test_pooling_accepts_non_contiguous_input(rng):
    x = rng.standard_normal((6, 7, 3, 2)).transpose(3, 2, 0, 1)  # a (2, 3, 6, 7) view
    for forward, backward, op in [
        (max_pool2d_forward, max_pool2d_backward, F.max_pool2d),
        (avg_pool2d_forward, avg_pool2d_backward, F.avg_pool2d),
    ]:
        expected_out, dout, expected_dx = torch_reference(op, np.ascontiguousarray(x), 3, 2, 1)
        out, cache = forward(x, 3, 2, 1)
        assert_close("out", out, expected_out)
        assert_close("dx", backward(dout, cache), expected_dx)


def test_maxpool_default_stride_is_the_kernel(rng):
    x = rng.standard_normal((1, 1, 6, 6))
    out, _ = max_pool2d_forward(x, 3)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 1, 1] == x[0, 0, 3:, 3:].max()


# ------------------------------------------------------------------ average


@pytest.mark.parametrize(
    ("x_shape", "kernel", "stride", "padding"),
    [
        ((2, 3, 8, 8), 2, None, 0),
        ((2, 3, 9, 7), 3, 2, 1),  # padded zeros count in the mean (count_include_pad=True)
        ((1, 2, 7, 9), (3, 2), (1, 2), (1, 1)),
        ((1, 1, 1, 1), 1, None, 0),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_avgpool_matches_torch(rng, x_shape, kernel, stride, padding, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    expected_out, dout, expected_dx = torch_reference(F.avg_pool2d, x, kernel, stride, padding)
    out, cache = avg_pool2d_forward(x, kernel, stride, padding)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, expected_out, dtype)
    dx = avg_pool2d_backward(dout, cache)
    assert dx.dtype == np.dtype(dtype)
    assert_close("dx", dx, expected_dx, dtype)


@given(pool_configs())
def test_avgpool_property_matches_torch(config):
    x_shape, kernel, stride, padding = config
    x = np.random.default_rng(0).standard_normal(x_shape)
    expected_out, dout, expected_dx = torch_reference(F.avg_pool2d, x, kernel, stride, padding)
    out, cache = avg_pool2d_forward(x, kernel, stride, padding)
    assert_close("out", out, expected_out)
    assert_close("dx", avg_pool2d_backward(dout, cache), expected_dx)


@given(pool_configs())
def test_avgpool_without_padding_in_the_count_matches_torch(config):
    x_shape, kernel, stride, padding = config
    x = np.random.default_rng(0).standard_normal(x_shape)
    expected_out, dout, expected_dx = torch_reference(
        F.avg_pool2d, x, kernel, stride, padding, count_include_pad=False
    )
    out, cache = avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=False)
    assert_close("out", out, expected_out)
    assert_close("dx", avg_pool2d_backward(dout, cache), expected_dx)


def test_avgpool_numeric_gradient(rng):
    x = rng.standard_normal((2, 2, 5, 6))
    out, cache = avg_pool2d_forward(x, 3, 2, 1)
    dout = rng.standard_normal(out.shape)
    numeric = numeric_gradient(lambda v: avg_pool2d_forward(v, 3, 2, 1)[0], x, dout)
    check_gradient("dx", avg_pool2d_backward(dout, cache), numeric)


def test_avgpool_hand_checked_padding_counts_zeros():
    # A 2x2 map of ones, 3x3 window, padding 1, stride 1: every window holds 4 ones and 5 padded zeros.
    out, _ = avg_pool2d_forward(np.ones((1, 1, 2, 2)), 3, 1, 1)
    np.testing.assert_allclose(out[0, 0], np.full((2, 2), 4 / 9), rtol=1e-15)
    # Without counting the padding, every window averages its 4 real ones.
    out, _ = avg_pool2d_forward(np.ones((1, 1, 2, 2)), 3, 1, 1, count_include_pad=False)
    np.testing.assert_array_equal(out[0, 0], np.ones((2, 2)))


# ----------------------------------------------------------- global average


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_global_avgpool_matches_torch(rng, dtype):
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    expected_out, dout, expected_dx = torch_reference(lambda t: F.adaptive_avg_pool2d(t, 1).flatten(1), x)
    out, cache = global_avg_pool2d_forward(x)
    assert out.shape == (3, 4) and out.dtype == np.dtype(dtype)
    assert_close("out", out, expected_out, dtype)
    assert_close("dx", global_avg_pool2d_backward(dout, cache), expected_dx, dtype)


def test_global_avgpool_hand_checked_and_numeric(rng):
    x = np.array([[1.0, 2.0], [3.0, 6.0]]).reshape(1, 1, 2, 2)
    out, cache = global_avg_pool2d_forward(x)
    assert out.tolist() == [[3.0]]  # (1 + 2 + 3 + 6) / 4
    np.testing.assert_array_equal(global_avg_pool2d_backward(np.array([[8.0]]), cache)[0, 0], np.full((2, 2), 2.0))
    x = rng.standard_normal((2, 3, 3, 4))
    out, cache = global_avg_pool2d_forward(x)
    dout = rng.standard_normal(out.shape)
    numeric = numeric_gradient(lambda v: global_avg_pool2d_forward(v)[0], x, dout)
    check_gradient("dx", global_avg_pool2d_backward(dout, cache), numeric)


# --------------------------------------------------------- adaptive average


def test_adaptive_avgpool_hand_checked_overlapping_bins():
    # W = 5 into 3 bins: start floor(5i / 3) = 0, 1, 3; end ceil(5(i + 1) / 3) = 2, 4, 5.
    # Bins [1, 2], [2, 3, 4], [4, 5]: means 1.5, 3, 4.5 (pixel 2 and pixel 4 are each in two bins).
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 1, 1, 5)
    out, cache = adaptive_avg_pool2d_forward(x, (1, 3))
    np.testing.assert_allclose(out[0, 0, 0], [1.5, 3.0, 4.5], rtol=1e-15)
    dx = adaptive_avg_pool2d_backward(np.array([6.0, 6.0, 6.0]).reshape(1, 1, 1, 3), cache)
    # 6/2 from bin 0; 6/2 + 6/3; 6/3; 6/3 + 6/2; 6/2.
    np.testing.assert_allclose(dx[0, 0, 0], [3.0, 5.0, 2.0, 5.0, 3.0], rtol=1e-15)


@pytest.mark.parametrize(
    ("x_shape", "output_size"),
    [
        ((2, 3, 8, 8), 4),  # divides evenly: plain 2x2 average pooling
        ((2, 3, 7, 10), (3, 4)),  # overlapping bins
        ((1, 2, 3, 5), (5, 7)),  # larger output than input: bins repeat pixels
        ((2, 3, 7, 7), 1),  # global average pooling
        ((1, 1, 1, 1), 2),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adaptive_avgpool_matches_torch(rng, x_shape, output_size, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    expected_out, dout, expected_dx = torch_reference(F.adaptive_avg_pool2d, x, output_size)
    out, cache = adaptive_avg_pool2d_forward(x, output_size)
    assert out.dtype == np.dtype(dtype)
    assert_close("out", out, expected_out, dtype)
    dx = adaptive_avg_pool2d_backward(dout, cache)
    assert dx.dtype == np.dtype(dtype)
    assert_close("dx", dx, expected_dx, dtype)


@given(
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 8),
    st.integers(1, 8),
)
def test_adaptive_avgpool_property_matches_torch(batch, channels, height, width, out_height, out_width):
    x = np.random.default_rng(0).standard_normal((batch, channels, height, width))
    expected_out, dout, expected_dx = torch_reference(F.adaptive_avg_pool2d, x, (out_height, out_width))
    out, cache = adaptive_avg_pool2d_forward(x, (out_height, out_width))
    assert_close("out", out, expected_out)
    assert_close("dx", adaptive_avg_pool2d_backward(dout, cache), expected_dx)


def test_adaptive_avgpool_numeric_gradient(rng):
    x = rng.standard_normal((2, 2, 7, 5))
    out, cache = adaptive_avg_pool2d_forward(x, (3, 2))
    dout = rng.standard_normal(out.shape)
    numeric = numeric_gradient(lambda v: adaptive_avg_pool2d_forward(v, (3, 2))[0], x, dout)
    check_gradient("dx", adaptive_avg_pool2d_backward(dout, cache), numeric)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize("forward", [max_pool2d_forward, avg_pool2d_forward])
def test_window_pooling_rejects_bad_input(forward):
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\), got shape \(4, 4\)"):
        forward(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match=r"window along W does not fit .* 3 \+ 2 \* 0; x has shape \(1, 1, 8, 3\)"):
        forward(np.zeros((1, 1, 8, 3)), 4)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        forward(np.zeros((1, 1, 8, 8)), 3, 1, 2)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
        forward(np.zeros((1, 1, 8, 8)), 0)


def test_pool_backward_rejects_wrong_dout_shape():
    _, cache = max_pool2d_forward(np.zeros((2, 3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3, 4, 4\) .* got \(2, 3, 8, 8\)"):
        max_pool2d_backward(np.zeros((2, 3, 8, 8)), cache)
    _, cache = avg_pool2d_forward(np.zeros((2, 3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3, 4, 4\)"):
        avg_pool2d_backward(np.zeros((2, 3, 4)), cache)


def test_global_and_adaptive_pooling_reject_bad_input():
    with pytest.raises(ValueError, match=r"got shape \(3, 8, 8\)"):
        global_avg_pool2d_forward(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=r"got shape \(3, 8, 8\)"):
        adaptive_avg_pool2d_forward(np.zeros((3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"output_size must be >= 1"):
        adaptive_avg_pool2d_forward(np.zeros((1, 3, 8, 8)), (2, 0))
