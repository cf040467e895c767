"""The fast NumPy layers (cnnbook.reference.fast_pool, fast_norm) against torch.nn.functional in float64.

They are the speed-tuned twins of the readable cnnbook.reference.pool and
cnnbook.reference.norm (which keep their own tests): every backward pass is
checked with a random upstream gradient, max pooling with ties, overlapping
windows, padding, NaN and -inf, batch norm with a mean far from zero, and both
in uneven cache-sized chunks. Nothing here measures time (benchmarks/ does).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnbook.reference.fast_norm as fast_norm
import cnnbook.reference.fast_pool as fast_pool
from cnnbook.reference import BatchNormState, batch_norm2d_backward, batch_norm2d_forward, max_pool2d_backward
from cnnbook.reference import max_pool2d_forward
from helpers import assert_close


def torch_max_pool(x, kernel, stride, padding, dout):
    tensor = torch.tensor(x, requires_grad=True)
    out = F.max_pool2d(tensor, kernel, stride, padding)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), tensor.grad.numpy()


def pool_dout(rng, x_shape, kernel, stride, padding, dtype="float64"):
    out_shape = F.max_pool2d(torch.zeros(x_shape), kernel, stride, padding).shape
    return rng.standard_normal(tuple(out_shape)).astype(dtype)


# ----------------------------------------------------------------------------- max pooling


MAX_POOL_CASES = [
    ((2, 3, 8, 8), 2, None, 0),  # non-overlapping
    ((2, 3, 9, 7), 2, None, 0),  # the last row and column are dropped
    ((2, 3, 9, 8), 3, 2, 1),  # overlapping, padded (ResNet's stem)
    ((2, 2, 7, 7), 3, 1, 1),  # stride 1: every pixel in up to nine windows
    ((1, 2, 7, 9), (3, 2), (1, 2), (1, 0)),
    ((2, 2, 5, 6), 2, 1, 1),  # padding = kernel / 2: no tap reaches every output
    ((1, 1, 3, 3), 3, 1, 0),
    ((1, 1, 1, 1), 1, None, 0),
]


@pytest.mark.parametrize("x_shape, kernel, stride, padding", MAX_POOL_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_max_pool_matches_torch(rng, x_shape, kernel, stride, padding, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    dout = pool_dout(rng, x_shape, kernel, stride or kernel, padding, dtype)
    expected_out, expected_dx = torch_max_pool(x, kernel, stride or kernel, padding, dout)
    out, cache = fast_pool.max_pool2d_forward(x, kernel, stride, padding)
    dx = fast_pool.max_pool2d_backward(dout, cache)
    assert out.dtype == dx.dtype == np.dtype(dtype)
    assert_close("out", out, expected_out, dtype)
    assert_close("dx", dx, expected_dx, dtype)


@pytest.mark.parametrize("x_shape, kernel, stride, padding", MAX_POOL_CASES)
def test_fast_max_pool_ties_in_overlapping_padded_windows_go_where_torch_sends_them(rng, x_shape, kernel, stride,
                                                                                   padding):
    """Values in {0, 1, 2}: most windows hold their maximum several times, and neighbours share pixels.

    Integer upstream gradients make every sum exact, so the routing must agree
    exactly, pixel by pixel (a gradient sent to the second maximum would show).
    """
    x = rng.integers(0, 3, x_shape).astype(np.float64)
    dout = rng.integers(-4, 5, pool_dout(rng, x_shape, kernel, stride or kernel, padding).shape).astype(np.float64)
    expected_out, expected_dx = torch_max_pool(x, kernel, stride or kernel, padding, dout)
    out, cache = fast_pool.max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(fast_pool.max_pool2d_backward(dout, cache), expected_dx)


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    size = tuple(draw(st.integers(max(1, kernel[a] - 2 * padding[a]), 9)) for a in (0, 1))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), *size), kernel, stride, padding


@given(pool_configs(), st.booleans(), st.integers(0, 2**16))
def test_fast_max_pool_property_matches_torch_and_the_readable_version(config, with_ties, seed):
    x_shape, kernel, stride, padding = config
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, x_shape).astype(float) if with_ties else rng.standard_normal(x_shape)
    dout = rng.integers(-4, 5, pool_dout(rng, x_shape, kernel, stride, padding).shape).astype(float)
    expected_out, expected_dx = torch_max_pool(x, kernel, stride, padding, dout)
    out, cache = fast_pool.max_pool2d_forward(x, kernel, stride, padding)
    dx = fast_pool.max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    _, readable_cache = max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(dx, max_pool2d_backward(dout, readable_cache))


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1)])
def test_fast_max_pool_nan_and_minus_inf_windows_follow_torch(rng, kernel, stride, padding):
    """PyTorch: a window holding NaN outputs NaN and sends its gradient to its *last* NaN; a window of
    -inf only sends it to its first real pixel (never to the padding, also -inf)."""
    x = rng.standard_normal((2, 2, 7, 7))
    x[0, 0, 1:4, 1:4] = np.nan
    x[0, 1, 2, 2] = np.nan
    x[1, 0] = -np.inf
    x[1, 1, :3, :3] = -np.inf
    dout = rng.integers(-4, 5, pool_dout(rng, x.shape, kernel, stride, padding).shape).astype(float)
    expected_out, expected_dx = torch_max_pool(x, kernel, stride, padding, dout)
    out, cache = fast_pool.max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(out, expected_out)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(fast_pool.max_pool2d_backward(dout, cache), expected_dx)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_fast_max_pool_in_uneven_chunks_of_planes_matches_torch(rng, monkeypatch, kernel, stride, padding):
    monkeypatch.setattr(fast_pool, "POOL_CHUNK_BYTES", 3 * 9 * 9 * 8)  # 3 padded planes: chunks of 3, 3, 3, 1
    x = rng.standard_normal((2, 5, 7, 7))
    dout = pool_dout(rng, x.shape, kernel, stride, padding)
    expected_out, expected_dx = torch_max_pool(x, kernel, stride, padding, dout)
    out, cache = fast_pool.max_pool2d_forward(x, kernel, stride, padding)
    assert_close("out", out, expected_out)
    assert_close("dx", fast_pool.max_pool2d_backward(dout, cache), expected_dx)


def test_fast_max_pool_cache_is_an_int32_index_of_the_output_and_inference_keeps_none(rng):
    x = rng.standard_normal((2, 3, 8, 8))[:, :, ::-1]  # a non-contiguous view
    out, cache = fast_pool.max_pool2d_forward(x, 3, 2, 1)
    index = cache[0]
    assert index.dtype == np.int32 and index.shape == out.shape
    assert not any(isinstance(item, np.ndarray) and item.shape == x.shape for item in cache), "x is not kept"
    # The index names the pixel holding the maximum, in the window's (H, W) plane.
    planes = np.ascontiguousarray(x).reshape(6, -1)
    np.testing.assert_array_equal(np.take_along_axis(planes, index.reshape(6, -1), axis=1).reshape(out.shape), out)
    inference_out, inference_cache = fast_pool.max_pool2d_forward(x, 3, 2, 1, need_index=False)
    np.testing.assert_array_equal(inference_out, out)
    assert inference_cache is None
    with pytest.raises(ValueError, match="need_index=False"):
        fast_pool.max_pool2d_backward(np.zeros(out.shape), inference_cache)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3, 4, 4\)"):
        fast_pool.max_pool2d_backward(np.zeros((2, 3, 8, 8)), cache)


# ----------------------------------------------------------------------------- batch norm


def torch_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, dout):
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    stats = torch.tensor(running_mean), torch.tensor(running_var)
    out = F.batch_norm(xt, *stats, wt, bt, training=training, momentum=momentum, eps=1e-5)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()), stats


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("x_shape", [(3, 4, 5, 3), (8, 2, 1, 1), (1, 3, 2, 3)])
def test_fast_batch_norm_matches_torch(rng, dtype, training, x_shape):
    channels = x_shape[1]
    x = (3.0 * rng.standard_normal(x_shape) + 1.5).astype(dtype)
    weight, bias = (1.0 + 0.5 * rng.standard_normal(channels)).astype(dtype), rng.standard_normal(channels).astype(dtype)
    dout = rng.standard_normal(x_shape).astype(dtype)
    running_mean, running_var = rng.standard_normal(channels).astype(dtype), rng.uniform(0.5, 2, channels).astype(dtype)
    state = BatchNormState(running_mean.copy(), running_var.copy(), momentum=0.3)
    out, cache = fast_norm.batch_norm2d_forward(x, weight, bias, state, training)
    grads = fast_norm.batch_norm2d_backward(dout, cache)
    expected_out, expected_grads, stats = torch_batch_norm(x, weight, bias, running_mean, running_var, training, 0.3,
                                                           dout)
    assert out.dtype == np.dtype(dtype) and all(g.dtype == np.dtype(dtype) for g in grads)
    assert_close("out", out, expected_out, dtype)
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, expected_grads):
        assert_close(name, got, want, dtype)
    assert_close("running_mean", state.running_mean, stats[0], dtype)
    assert_close("running_var", state.running_var, stats[1], dtype)


def test_fast_batch_norm_with_a_mean_far_from_zero_matches_torch_and_the_readable_version(rng):
    """Mean 10^4 and standard deviation 1: a one-pass E[x^2] - E[x]^2 would lose most digits here."""
    x = rng.standard_normal((4, 3, 6, 5)) + 1e4
    weight, bias, dout = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(x.shape)
    state = BatchNormState.initial(3)
    out, cache = fast_norm.batch_norm2d_forward(x, weight, bias, state, True)
    grads = fast_norm.batch_norm2d_backward(dout, cache)
    expected_out, expected_grads, stats = torch_batch_norm(x, weight, bias, np.zeros(3), np.ones(3), True, 0.1, dout)
    assert_close("out", out, expected_out)
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, expected_grads):
        assert_close(name, got, want)
    assert_close("running_var", state.running_var, stats[1])
    readable_out, readable_cache = batch_norm2d_forward(x, weight, bias, BatchNormState.initial(3), True)
    assert_close("out vs readable", out, readable_out)
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, batch_norm2d_backward(dout, readable_cache)):
        assert_close(f"{name} vs readable", got, want)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fast_batch_norm_in_uneven_chunks_of_rows_matches_torch(rng, monkeypatch, training):
    monkeypatch.setattr(fast_norm, "ROWS_CHUNK_BYTES", 3 * 20 * 8)  # rows of 4 x 5 float64 values, 3 at a time
    x = rng.standard_normal((5, 2, 4, 5)) * 2 - 1  # 10 rows: chunks of 3, 3, 3, 1
    weight, bias, dout = rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(x.shape)
    state = BatchNormState(np.zeros(2), np.ones(2))
    out, cache = fast_norm.batch_norm2d_forward(x, weight, bias, state, training)
    expected_out, expected_grads, _ = torch_batch_norm(x, weight, bias, np.zeros(2), np.ones(2), training, 0.1, dout)
    assert_close("out", out, expected_out)
    for name, got, want in zip(("dx", "dweight", "dbias"), fast_norm.batch_norm2d_backward(dout, cache),
                               expected_grads):
        assert_close(name, got, want)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: fast_norm.batch_norm2d_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3),
                                                BatchNormState.initial(3)), r"\(N, C, H, W\).*\(2, 3, 4\)"),
        (lambda: fast_norm.batch_norm2d_forward(np.zeros((2, 3, 4, 4)), np.ones(4), np.zeros(4),
                                                BatchNormState.initial(3)), r"shape \(3,\)"),
        (lambda: fast_norm.batch_norm2d_forward(np.zeros((2, 3, 4, 4)), np.ones(3), np.zeros(3),
                                                BatchNormState.initial(4)), "4,"),
        (lambda: fast_norm.batch_norm2d_forward(np.zeros((1, 3, 1, 1)), np.ones(3), np.zeros(3),
                                                BatchNormState.initial(3)), "more than one value"),
    ],
)
def test_fast_batch_norm_rejects_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_fast_batch_norm_backward_rejects_a_wrong_dout_shape(rng):
    _, cache = fast_norm.batch_norm2d_forward(rng.standard_normal((2, 3, 4, 4)), np.ones(3), np.zeros(3),
                                              BatchNormState.initial(3))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\)"):
        fast_norm.batch_norm2d_backward(np.zeros((2, 3, 4, 5)), cache)
