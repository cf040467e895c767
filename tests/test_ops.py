"""cnnbook.ops against torch.nn.functional: forward and backward, float64 and float32, CPU and CUDA.

Every comparison runs our op on the ``device`` fixture and PyTorch's on the
CPU, so the CUDA case is checked against the CPU result. Backward passes are
seeded with a random upstream gradient (never ``out.sum()``, which is blind to
errors in normalization layers). Tolerances come from
:func:`cnnbook.gradcheck.tolerance`, the one place they are stated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnbook.ops as ops
from helpers import assert_close

DTYPES = [torch.float64, torch.float32]




def _tensor(rng, shape, dtype, device="cpu", requires_grad=True) -> torch.Tensor:
    values = torch.from_numpy(rng.standard_normal(shape)).to(dtype=dtype, device=device)
    return values.requires_grad_(requires_grad)


def check_against_torch(ours, theirs, inputs, rng, device, dtype) -> None:
    """``ours(*inputs)`` on ``device`` vs ``theirs(*inputs)`` on the CPU: outputs and every input gradient.

    inputs: CPU tensors (or None); the floating ones that require grad are differentiated.
    """
    on_cpu = [t.detach().clone().requires_grad_(t.requires_grad) if t is not None else None for t in inputs]
    on_device = [t.detach().to(device).requires_grad_(t.requires_grad) if t is not None else None for t in inputs]
    expected = theirs(*on_cpu)
    actual = ours(*on_device)
    assert actual.device.type == torch.device(device).type and actual.dtype == dtype
    assert_close("forward", actual, expected, dtype)
    dout = torch.from_numpy(rng.standard_normal(tuple(expected.shape))).to(dtype)
    wanted = [i for i, t in enumerate(on_cpu) if t is not None and t.requires_grad]
    expected_grads = torch.autograd.grad(expected, [on_cpu[i] for i in wanted], dout)
    actual_grads = torch.autograd.grad(actual, [on_device[i] for i in wanted], dout.to(device))
    for i, got, want in zip(wanted, actual_grads, expected_grads):
        assert got.shape == want.shape, f"gradient of input {i}: shape {tuple(got.shape)} != {tuple(want.shape)}"
        assert_close(f"gradient of input {i}", got, want, dtype)


# --------------------------------------------------------------------------- conv2d

# (N, C, H, W, F, (KH, KW), stride, padding, dilation, groups, bias)
CONV_CASES = {
    "basic": (2, 3, 8, 8, 4, (3, 3), 1, 1, 1, 1, True),
    "stride-rect": (2, 3, 9, 7, 5, (3, 2), (2, 1), (1, 0), 1, 1, True),
    "dilation": (2, 2, 9, 9, 3, (3, 3), 1, 2, 2, 1, True),
    "groups": (2, 4, 7, 7, 6, (3, 3), 2, 1, 1, 2, False),
    "depthwise": (2, 4, 8, 8, 4, (3, 3), 1, 1, 1, 4, True),
    "depthwise-x2-stride-dilation": (2, 3, 9, 8, 6, (3, 3), 2, 1, (2, 1), 3, True),
    "pointwise": (2, 8, 5, 5, 4, (1, 1), 1, 0, 1, 1, True),
    "same-even-kernel": (1, 2, 6, 5, 3, (4, 2), 1, "same", 1, 1, True),
    "valid": (1, 2, 6, 5, 3, (3, 3), 1, "valid", 1, 1, False),
    "kernel-as-large-as-padded-input": (1, 1, 3, 3, 2, (5, 5), 1, 1, 1, 1, True),
    "N1-C1": (1, 1, 5, 4, 1, (2, 3), 1, 0, 1, 1, True),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv2d_matches_torch(case, dtype, device, rng):
    n, c, h, w, f, kernel, stride, padding, dilation, groups, bias = CONV_CASES[case]
    inputs = [
        _tensor(rng, (n, c, h, w), dtype),
        _tensor(rng, (f, c // groups, *kernel), dtype),
        _tensor(rng, (f,), dtype) if bias else None,
    ]

    def ours(x, weight, b):
        return ops.conv2d(x, weight, b, stride, padding, dilation, groups)

    def theirs(x, weight, b):
        return F.conv2d(x, weight, b, stride, padding, dilation, groups)

    check_against_torch(ours, theirs, inputs, rng, device, dtype)


@st.composite
def conv_configurations(draw):
    """Any valid convolution: odd sizes, N = 1, C = 1, groups (depthwise too), kernels up to the padded input."""
    groups = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    per_group = 1 if depthwise else draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kernel = []
    for size, pad, dil in zip((h, w), padding, dilation):
        largest = (size + 2 * pad - 1) // dil + 1  # the widest window that still fits the padded input
        kernel.append(draw(st.one_of(st.just(largest), st.integers(1, min(largest, 5)))))
    f = groups * draw(st.integers(1, 2))
    return (n, groups * per_group, h, w, f, tuple(kernel), stride, padding, dilation, groups)


@given(conv_configurations(), st.integers(0, 2**32 - 1), st.booleans())
def test_conv2d_property_matches_torch(configuration, seed, bias):
    n, c, h, w, f, kernel, stride, padding, dilation, groups = configuration
    rng = np.random.default_rng(seed)
    dtype = torch.float64
    inputs = [
        _tensor(rng, (n, c, h, w), dtype),
        _tensor(rng, (f, c // groups, *kernel), dtype),
        _tensor(rng, (f,), dtype) if bias else None,
    ]
    check_against_torch(
        lambda x, weight, b: ops.conv2d(x, weight, b, stride, padding, dilation, groups),
        lambda x, weight, b: F.conv2d(x, weight, b, stride, padding, dilation, groups),
        inputs,
        rng,
        "cpu",
        dtype,
    )


def test_conv2d_skips_gradients_nobody_asked_for(rng, monkeypatch):
    """With x not requiring grad, the backward never runs col2im (the dx half of the work)."""
    calls = []
    original = ops.conv.col2im
    monkeypatch.setattr(ops.conv, "col2im", lambda *args: calls.append(1) or original(*args))
    weight = _tensor(rng, (4, 3, 3, 3), torch.float64)
    for x_requires_grad, expected_calls in ((False, 0), (True, 1)):
        calls.clear()
        x = _tensor(rng, (2, 3, 6, 6), torch.float64, requires_grad=x_requires_grad)
        out = ops.conv2d(x, weight, None, padding=1)
        inputs = [x, weight] if x_requires_grad else [weight]
        grads = torch.autograd.grad(out, inputs, torch.randn(out.shape, dtype=torch.float64))
        assert len(calls) == expected_calls, f"x.requires_grad={x_requires_grad}: col2im ran {len(calls)} times"
        assert grads[-1].shape == weight.shape


# --------------------------------------------------------------------------- pooling

# (x shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = {
    "2x2": ((2, 3, 8, 8), 2, None, 0, 1, False),
    "3x3-s2-p1": ((2, 3, 9, 7), 3, 2, 1, 1, False),
    "3x3-s1-overlap": ((1, 2, 6, 6), 3, 1, 0, 1, False),
    "rect-dilation": ((2, 2, 9, 10), (3, 2), (1, 2), (1, 1), 2, False),
    "ceil-mode": ((2, 2, 8, 7), 3, 2, 1, 1, True),
    "odd-sizes": ((1, 1, 5, 7), 2, 2, 0, 1, False),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(MAX_POOL_CASES), ids=list(MAX_POOL_CASES))
def test_max_pool2d_matches_torch(case, dtype, device, rng):
    shape, kernel, stride, padding, dilation, ceil_mode = MAX_POOL_CASES[case]
    check_against_torch(
        lambda x: ops.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
        lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
        [_tensor(rng, shape, dtype)],
        rng,
        device,
        dtype,
    )


def test_max_pool2d_ties_send_the_gradient_to_the_first_maximum_like_torch(device, rng):
    """After a ReLU many windows are all zeros: the gradient goes to the first one in row-major order."""
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8))).clamp_min(0.5).round().requires_grad_()
    check_against_torch(
        lambda t: ops.max_pool2d(t, 3, 1), lambda t: F.max_pool2d(t, 3, 1), [x], rng, device, torch.float64
    )


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode",
                         [(3, 1, 1, 1, False), (3, 2, 1, 1, True), (2, 1, 1, 1, False), (3, 1, 1, 2, False)])
def test_max_pool2d_ties_in_overlapping_padded_windows_route_exactly_like_torch(kernel, stride, padding, dilation,
                                                                              ceil_mode, device, rng):
    """Values in {0, 1, 2} and integer upstream gradients: the sums are exact, so equality is the test."""
    x = torch.from_numpy(rng.integers(0, 3, (2, 3, 9, 8))).double()
    options = (kernel, stride, padding, dilation, ceil_mode)
    ours, theirs = x.clone().to(device).requires_grad_(), x.clone().requires_grad_()
    expected = F.max_pool2d(theirs, *options)
    dout = torch.from_numpy(rng.integers(-4, 5, tuple(expected.shape))).double()
    ops.max_pool2d(ours, *options).backward(dout.to(device))
    expected.backward(dout)
    assert torch.equal(ours.grad.cpu(), theirs.grad)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1)])
def test_max_pool2d_nan_and_minus_inf_windows_follow_torch(kernel, stride, padding, device, rng):
    """A window holding NaN outputs NaN and sends its gradient to its last NaN; a window of -inf only
    sends it to its first real pixel, never to the (also -inf) padding. As PyTorch."""
    x = torch.from_numpy(rng.standard_normal((2, 2, 7, 7)))
    x[0, 0, 1:4, 1:4] = float("nan")
    x[0, 1, 2, 2] = float("nan")
    x[1, 0] = float("-inf")
    x[1, 1, :3, :3] = float("-inf")
    ours, theirs = x.clone().to(device).requires_grad_(), x.clone().requires_grad_()
    out, expected = ops.max_pool2d(ours, kernel, stride, padding), F.max_pool2d(theirs, kernel, stride, padding)
    assert torch.equal(out.cpu().isnan(), expected.isnan())
    assert torch.equal(out.cpu().nan_to_num(), expected.nan_to_num())
    dout = torch.from_numpy(rng.integers(-4, 5, tuple(expected.shape))).double()
    out.backward(dout.to(device))
    expected.backward(dout)
    assert torch.equal(ours.grad.cpu(), theirs.grad)


def test_max_pool2d_saves_an_int64_index_of_the_output_and_inference_gives_the_same_output(rng):
    """The saved tensor is the winners' positions, PyTorch's layout (one int64 per output), not x or out."""
    x = _tensor(rng, (2, 3, 8, 8), torch.float32)
    out = ops.max_pool2d(x, 3, 2, 1)
    (index,) = out.grad_fn.saved_tensors
    assert index.dtype == torch.int64 and index.shape == out.shape
    torch.testing.assert_close(x.detach().flatten(2).gather(2, index.flatten(2)).view_as(out), out.detach())
    with torch.no_grad():
        assert torch.equal(ops.max_pool2d(x, 3, 2, 1), out.detach())


# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_POOL_CASES = {
    "2x2": ((2, 3, 8, 8), 2, None, 0, False, True, None),
    "3x3-s2-p1": ((2, 3, 9, 7), 3, 2, 1, False, True, None),
    "exclude-pad": ((2, 3, 9, 7), 3, 2, 1, False, False, None),
    "ceil-mode": ((2, 2, 8, 7), 3, 2, 1, True, True, None),
    "ceil-mode-exclude-pad": ((2, 2, 8, 7), (3, 2), 2, (1, 0), True, False, None),
    "divisor-override": ((1, 2, 7, 7), 3, 2, 1, False, True, 5),
    "rect": ((1, 1, 5, 7), (2, 3), (1, 2), 0, False, True, None),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(AVG_POOL_CASES), ids=list(AVG_POOL_CASES))
def test_avg_pool2d_matches_torch(case, dtype, device, rng):
    shape, *arguments = AVG_POOL_CASES[case]
    check_against_torch(
        lambda x: ops.avg_pool2d(x, *arguments),
        lambda x: F.avg_pool2d(x, *arguments),
        [_tensor(rng, shape, dtype)],
        rng,
        device,
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("output_size", [1, 3, (2, 4), (None, 3), (7, 9), (5, 11)], ids=str)
def test_adaptive_avg_pool2d_matches_torch(output_size, dtype, device, rng):
    check_against_torch(
        lambda x: ops.adaptive_avg_pool2d(x, output_size),
        lambda x: F.adaptive_avg_pool2d(x, output_size),
        [_tensor(rng, (2, 3, 7, 9), dtype)],
        rng,
        device,
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_global_avg_pool2d_matches_torch(dtype, device, rng):
    check_against_torch(
        ops.global_avg_pool2d,
        lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
        [_tensor(rng, (3, 4, 5, 6), dtype)],
        rng,
        device,
        dtype,
    )


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batch_norm2d_training_matches_torch_and_updates_running_stats(affine, dtype, device, rng):
    shape = (4, 3, 5, 6)
    gamma, beta = (_tensor(rng, (3,), dtype), _tensor(rng, (3,), dtype)) if affine else (None, None)
    start_mean, start_var = _tensor(rng, (3,), dtype, requires_grad=False), torch.rand(3, dtype=dtype) + 0.5
    ours_stats = [start_mean.clone().to(device), start_var.clone().to(device)]
    torch_stats = [start_mean.clone(), start_var.clone()]
    check_against_torch(
        lambda x, g, b: ops.batch_norm2d(x, *ours_stats, g, b, training=True, momentum=0.3),
        lambda x, g, b: F.batch_norm(x, *torch_stats, g, b, training=True, momentum=0.3),
        [_tensor(rng, shape, dtype) * 3 + 1, gamma, beta],
        rng,
        device,
        dtype,
    )
    assert_close("running_mean", ours_stats[0], torch_stats[0], dtype)
    assert_close("running_var", ours_stats[1], torch_stats[1], dtype)


def test_batch_norm2d_with_a_mean_far_from_zero_and_in_chunks_matches_torch(device, rng, monkeypatch):
    """Mean 10^4, standard deviation 1 (a one-pass E[x^2] - E[x]^2 loses the variance), and the channel
    dot products of the backward forced into uneven chunks of (n, c) rows."""
    import cnnbook.ops.norm as norm_module

    monkeypatch.setattr(norm_module, "CPU_CHUNK_BYTES", 3 * 30 * 8)  # 3 rows of 5 x 6 float64 values
    stats = [torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)]
    ours_stats = [s.clone().to(device) for s in stats]
    check_against_torch(
        lambda x, g, b: ops.batch_norm2d(x, *ours_stats, g, b, training=True),
        lambda x, g, b: F.batch_norm(x, *stats, g, b, training=True),
        [(_tensor(rng, (5, 2, 5, 6), torch.float64) + 1e4).detach().requires_grad_(),
         _tensor(rng, (2,), torch.float64), _tensor(rng, (2,), torch.float64)],
        rng,
        device,
        torch.float64,
    )
    assert_close("running_var", ours_stats[1], stats[1], torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batch_norm2d_evaluation_matches_torch(dtype, device, rng):
    running_mean, running_var = _tensor(rng, (3,), dtype, requires_grad=False), torch.rand(3, dtype=dtype) + 0.5
    check_against_torch(
        lambda x, g, b: ops.batch_norm2d(x, running_mean.to(device), running_var.to(device), g, b, training=False),
        lambda x, g, b: F.batch_norm(x, running_mean, running_var, g, b, training=False),
        [_tensor(rng, (2, 3, 4, 5), dtype), _tensor(rng, (3,), dtype), _tensor(rng, (3,), dtype)],
        rng,
        device,
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalized_shape", [(6,), (4, 5, 6)], ids=str)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_norm_matches_torch(normalized_shape, affine, dtype, device, rng):
    params = [_tensor(rng, normalized_shape, dtype), _tensor(rng, normalized_shape, dtype)] if affine else [None, None]
    check_against_torch(
        lambda x, g, b: ops.layer_norm(x, normalized_shape, g, b),
        lambda x, g, b: F.layer_norm(x, normalized_shape, g, b),
        [_tensor(rng, (3, 4, 5, 6), dtype) * 2 - 1, *params],
        rng,
        device,
        dtype,
    )


# --------------------------------------------------------------------------- relu, linear, dropout


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_relu_matches_torch(dtype, device, rng):
    check_against_torch(ops.relu, F.relu, [_tensor(rng, (3, 4, 5), dtype)], rng, device, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_matches_torch(bias, dtype, device, rng):
    check_against_torch(
        ops.linear,
        F.linear,
        [_tensor(rng, (2, 3, 7), dtype), _tensor(rng, (5, 7), dtype), _tensor(rng, (5,), dtype) if bias else None],
        rng,
        device,
        dtype,
    )


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_is_inverted_dropout_with_rate_p(p, device):
    x = torch.rand(200, 500, dtype=torch.float64, device=device) + 1.0
    x.requires_grad_()
    out = ops.dropout(x, p, generator=torch.Generator(device=device).manual_seed(0))
    kept = out != 0
    assert abs(1 - kept.double().mean().item() - p) < 0.01, "the fraction dropped should be close to p"
    assert_close("survivors are scaled by 1 / (1 - p)", out[kept], x[kept] / (1 - p), torch.float64)
    dout = torch.randn(x.shape, dtype=torch.float64, device=device)
    (dx,) = torch.autograd.grad(out, [x], dout)
    assert_close("dropout backward", dx, dout * kept / (1 - p), torch.float64)


def test_dropout_generator_makes_masks_reproducible_and_eval_is_identity(device):
    x = torch.randn(50, 40, device=device)
    first = ops.dropout(x, 0.5, generator=torch.Generator(device=device).manual_seed(7))
    again = ops.dropout(x, 0.5, generator=torch.Generator(device=device).manual_seed(7))
    other = ops.dropout(x, 0.5, generator=torch.Generator(device=device).manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert ops.dropout(x, 0.5, training=False) is x and ops.dropout(x, 0.0) is x
    assert torch.count_nonzero(ops.dropout(x, 1.0)) == 0


# --------------------------------------------------------------------------- gradcheck of every Function


def _double(rng, *shape, spread=False) -> torch.Tensor:
    """float64 input for gradcheck; ``spread`` makes entries distinct by >= 0.01 (no ties, no kinks)."""
    if spread:
        values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2 + 0.5) * 0.01
        return torch.from_numpy(values.reshape(shape)).requires_grad_()
    return torch.from_numpy(rng.standard_normal(shape)).requires_grad_()


GRADCHECKS = {
    "Conv2dFunction": lambda r: (
        lambda x, w, b: ops.Conv2dFunction.apply(x, w, b, (2, 1), 1, (1, 2), 2),
        (_double(r, 2, 4, 4, 5), _double(r, 4, 2, 3, 2), _double(r, 4)),
    ),
    "DepthwiseConv2dFunction": lambda r: (
        lambda x, w, b: ops.DepthwiseConv2dFunction.apply(x, w, b, 2, 1, 1, 2),
        (_double(r, 2, 2, 5, 5), _double(r, 4, 1, 3, 3), _double(r, 4)),
    ),
    "MaxPool2dFunction": lambda r: (
        lambda x: ops.MaxPool2dFunction.apply(x, 3, 2, 1, 1, True),
        (_double(r, 2, 2, 6, 5, spread=True),),
    ),
    "AvgPool2dFunction": lambda r: (
        lambda x: ops.AvgPool2dFunction.apply(x, 3, 2, 1, True, False, None),
        (_double(r, 2, 2, 6, 5),),
    ),
    "AdaptiveAvgPool2dFunction": lambda r: (
        lambda x: ops.AdaptiveAvgPool2dFunction.apply(x, (3, 2)),
        (_double(r, 2, 2, 5, 7),),
    ),
    "GlobalAvgPool2dFunction": lambda r: (ops.GlobalAvgPool2dFunction.apply, (_double(r, 2, 3, 4, 5),)),
    "BatchNorm2dFunction-train": lambda r: (
        lambda x, g, b: ops.BatchNorm2dFunction.apply(x, None, None, g, b, True, 0.1, 1e-5),
        (_double(r, 3, 2, 3, 4), _double(r, 2), _double(r, 2)),
    ),
    "BatchNorm2dFunction-eval": lambda r: (
        lambda x, g, b: ops.BatchNorm2dFunction.apply(
            x, torch.zeros(2, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64), g, b, False, 0.1, 1e-5
        ),
        (_double(r, 3, 2, 3, 4), _double(r, 2), _double(r, 2)),
    ),
    "LayerNormFunction": lambda r: (
        lambda x, g, b: ops.LayerNormFunction.apply(x, (3, 4), g, b, 1e-5),
        (_double(r, 2, 3, 3, 4), _double(r, 3, 4), _double(r, 3, 4)),
    ),
    "DropoutFunction": lambda r: (
        lambda x: ops.DropoutFunction.apply(x, 0.4, torch.Generator().manual_seed(3)),
        (_double(r, 4, 6),),
    ),
    "ReLUFunction": lambda r: (ops.ReLUFunction.apply, (_double(r, 3, 8, spread=True),)),
    "LinearFunction": lambda r: (ops.LinearFunction.apply, (_double(r, 2, 3, 4), _double(r, 5, 4), _double(r, 5))),
}


@pytest.mark.parametrize("name", list(GRADCHECKS), ids=list(GRADCHECKS))
def test_autograd_function_passes_gradcheck(name, rng):
    function, inputs = GRADCHECKS[name](rng)
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@st.composite
def pool_configurations(draw):
    """Any valid pooling window: odd sizes, padding up to half the kernel, ceil mode."""
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kernel = (draw(st.integers(1, min(h, 4) + 1)), draw(st.integers(1, min(w, 4) + 1)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    kernel = (min(kernel[0], h + 2 * padding[0]), min(kernel[1], w + 2 * padding[1]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel, stride, padding, draw(st.booleans())


@given(pool_configurations(), st.integers(0, 2**32 - 1), st.booleans())
def test_pooling_property_matches_torch(configuration, seed, count_include_pad):
    shape, kernel, stride, padding, ceil_mode = configuration
    rng = np.random.default_rng(seed)
    x = _tensor(rng, shape, torch.float64)
    check_against_torch(
        lambda t: ops.max_pool2d(t, kernel, stride, padding, 1, ceil_mode),
        lambda t: F.max_pool2d(t, kernel, stride, padding, 1, ceil_mode),
        [x], rng, "cpu", torch.float64,
    )
    check_against_torch(
        lambda t: ops.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad),
        lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad),
        [x], rng, "cpu", torch.float64,
    )


@pytest.mark.parametrize("groups", [1, 4], ids=["im2col", "depthwise"])
def test_ops_accept_non_contiguous_inputs(groups, rng):
    """channels_last input and a transposed weight view give the same result as contiguous tensors."""
    x = _tensor(rng, (2, 4, 7, 6), torch.float64, requires_grad=False)
    weight_base = _tensor(rng, (8, 4 // groups, 3, 3), torch.float64, requires_grad=False)
    x_strided = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    weight_strided = weight_base.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    check_against_torch(
        lambda t, w: ops.max_pool2d(ops.conv2d(t, w, None, 1, 1, 1, groups), 2),
        lambda t, w: F.max_pool2d(F.conv2d(t, w, None, 1, 1, 1, groups), 2),
        [x_strided, weight_strided],
        rng,
        "cpu",
        torch.float64,
    )
