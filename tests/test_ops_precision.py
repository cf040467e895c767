"""cnnbook.ops in float16 and bfloat16, under torch.autocast, and next to in-place layers.

Each defect found in review has a test here that failed before its fix:
max-pool gradients routed to the wrong pixel in low precision, normalization
without affine parameters returning the tensor it saved for backward, the ops
refusing to run under autocast. Low-precision results are compared with
``torch.nn.functional`` in float64 on the same (rounded) inputs, with the
tolerance of :data:`cnnbook.gradcheck.TOLERANCES` for the low-precision dtype.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import cnnbook.ops as ops
from helpers import assert_close

LOW = [torch.float16, torch.bfloat16]


def _autocast_dtypes(device: str) -> list[torch.dtype]:
    """The low-precision dtypes autocast supports on ``device``: bfloat16 on a CPU, both on CUDA."""
    return [torch.bfloat16] if device == "cpu" else LOW


# --------------------------------------------------------------------------- defect 1: max-pool routing

@pytest.mark.parametrize("dtype", [torch.float32, *LOW])
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_backward_routes_every_gradient_to_the_torch_pixel(device, dtype, kernel_size, stride, padding):
    """A 32x32 map: every window's gradient lands on the same pixel as in PyTorch, in every dtype.

    Offsets beyond 256 are not representable in bfloat16 (beyond 2048 in float16);
    computed in the input's dtype they sent 257 of 1,024 gradients astray.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=generator).to(dtype)
    # Small integer upstream gradients: every sum of them is exact in bfloat16, so equality is the test.
    out_size = (32 + 2 * padding - kernel_size) // stride + 1
    dout = torch.randint(-4, 5, (2, 3, out_size, out_size), generator=generator).to(dtype)
    ours = x.clone().to(device).requires_grad_()
    ops.max_pool2d(ours, kernel_size, stride, padding).backward(dout.to(device))
    theirs = x.clone().requires_grad_()
    F.max_pool2d(theirs, kernel_size, stride, padding).backward(dout)
    wrong = (ours.grad.cpu() != theirs.grad).sum().item()
    assert wrong == 0, f"{wrong} of {x.numel()} input gradients differ from PyTorch's in {dtype}"


@given(
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    dtype=st.sampled_from([torch.float64, torch.float32, *LOW]),
    transposed=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_max_pool_ties_and_layouts_match_torch(size, kernel, stride, dtype, transposed, seed):
    """Values drawn from {-2..2} (ties in every window), any dtype, contiguous or a transposed view."""
    height, width = size
    if kernel > min(height, width):
        kernel = min(height, width)
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(-2, 3, (2, 2, width, height) if transposed else (2, 2, height, width),
                           generator=generator).to(dtype)
    x = values.transpose(2, 3) if transposed else values  # non-contiguous when transposed
    ours = x.detach().clone().requires_grad_() if not transposed else x.detach().requires_grad_()
    theirs = x.detach().contiguous().requires_grad_()
    out = ops.max_pool2d(ours, kernel, stride)
    expected = F.max_pool2d(theirs, kernel, stride)
    assert torch.equal(out, expected)
    dout = torch.randint(-3, 4, tuple(expected.shape), generator=generator).to(dtype)
    out.backward(dout)
    expected.backward(dout)
    assert torch.equal(ours.grad, theirs.grad)


# --------------------------------------------------------------------------- defect 2: in-place after norm

@pytest.mark.parametrize("build", [
    lambda layers: nn.Sequential(layers.BatchNorm2d(3, affine=False), nn.ReLU(inplace=True)),
    lambda layers: nn.Sequential(layers.LayerNorm((5, 5), elementwise_affine=False), nn.ReLU(inplace=True)),
], ids=["batch_norm", "layer_norm"])
def test_norm_without_affine_feeds_an_inplace_relu(build, device):
    """The output must be a new tensor, not the normalized input saved for backward."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    dout = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    results = []
    for layers, where in ((nn, "cpu"), (ops, device)):
        model = build(layers).to(device=where, dtype=torch.float64)
        inputs = x.clone().to(where).requires_grad_()
        model(inputs).backward(dout.to(where))  # raised "modified by an inplace operation" before the fix
        results.append(inputs.grad)
    assert_close("input gradient", results[1], results[0])


# --------------------------------------------------------------------------- defect 3: autocast

def _cases():
    """(name, our function, torch's function, input shapes): every op of cnnbook.ops."""
    def bn_stats(like):  # running statistics in the parameters' dtype and device, fresh for each call
        return torch.zeros(4, dtype=like.dtype, device=like.device), torch.ones(4, dtype=like.dtype, device=like.device)

    return [
        ("conv2d", lambda x, w, b: ops.conv2d(x, w, b, 1, 1), lambda x, w, b: F.conv2d(x, w, b, 1, 1),
         [(2, 4, 8, 8), (6, 4, 3, 3), (6,)]),
        ("depthwise conv2d", lambda x, w: ops.conv2d(x, w, None, 2, 1, 1, 4),
         lambda x, w: F.conv2d(x, w, None, 2, 1, 1, 4), [(2, 4, 8, 8), (4, 1, 3, 3)]),
        ("linear", ops.linear, F.linear, [(5, 7), (3, 7), (3,)]),
        ("max_pool2d", lambda x: ops.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 4, 8, 8)]),
        ("avg_pool2d", lambda x: ops.avg_pool2d(x, 2), lambda x: F.avg_pool2d(x, 2), [(2, 4, 8, 8)]),
        ("adaptive_avg_pool2d", lambda x: ops.adaptive_avg_pool2d(x, 3),
         lambda x: F.adaptive_avg_pool2d(x, 3), [(2, 4, 8, 8)]),
        ("global_avg_pool2d", ops.global_avg_pool2d, lambda x: x.mean(dim=(2, 3)), [(2, 4, 8, 8)]),
        ("batch_norm2d (training)", lambda x, g, b: ops.batch_norm2d(x, *bn_stats(g), g, b, True),
         lambda x, g, b: F.batch_norm(x, *bn_stats(g), g, b, True), [(3, 4, 5, 5), (4,), (4,)]),
        ("batch_norm2d (eval)", lambda x, g, b: ops.batch_norm2d(x, *bn_stats(g), g, b, False),
         lambda x, g, b: F.batch_norm(x, *bn_stats(g), g, b, False), [(3, 4, 5, 5), (4,), (4,)]),
        ("layer_norm", lambda x, g, b: ops.layer_norm(x, (5, 5), g, b),
         lambda x, g, b: F.layer_norm(x, (5, 5), g, b), [(3, 4, 5, 5), (5, 5), (5, 5)]),
        ("relu", ops.relu, F.relu, [(3, 4, 5)]),
        ("tanh", ops.tanh, torch.tanh, [(3, 4, 5)]),
        ("sigmoid", ops.sigmoid, torch.sigmoid, [(3, 4, 5)]),
        ("silu", ops.silu, F.silu, [(3, 4, 5)]),
        ("relu6", ops.relu6, F.relu6, [(3, 4, 5)]),
        ("gelu", ops.gelu, F.gelu, [(3, 4, 5)]),
    ]


def _inputs(shapes, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(device=device, dtype=dtype) for shape in shapes]


def _leaf(tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


@pytest.mark.parametrize("name, ours, theirs, shapes", _cases(), ids=[case[0] for case in _cases()])
def test_ops_follow_autocast_like_torch(name, ours, theirs, shapes, device):
    """Under autocast each op returns the dtype torch's op returns, the same values, and gradients
    in each input's dtype (float32 parameters get float32 gradients)."""
    for autocast_dtype in _autocast_dtypes(device):
        # The input of a layer under autocast is often already low precision (a conv's output).
        for x_dtype in (torch.float32, autocast_dtype):
            inputs = _inputs(shapes, torch.float32, device)
            inputs[0] = inputs[0].to(x_dtype)
            mine, reference = _leaf(inputs), _leaf(inputs)
            with torch.autocast(device, dtype=autocast_dtype):
                out = ours(*mine)
                expected = theirs(*reference)
            assert out.dtype == expected.dtype, f"{name}: {out.dtype} under autocast, torch gives {expected.dtype}"
            assert_close(f"{name} output", out, expected, dtype=autocast_dtype)
            dout = torch.randn(expected.shape, device=device).to(expected.dtype)
            grads = torch.autograd.grad(out, mine, dout)
            expected_grads = torch.autograd.grad(expected, reference, dout)
            for i, (got, want) in enumerate(zip(grads, expected_grads)):
                assert got.dtype == want.dtype == mine[i].dtype, f"{name}: gradient {i} in {got.dtype}"
                assert_close(f"{name} gradient {i}", got, want, dtype=autocast_dtype)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name, ours, theirs, shapes", _cases(), ids=[case[0] for case in _cases()])
def test_ops_in_low_precision_match_float64(name, ours, theirs, shapes, dtype, device):
    """All inputs in float16/bfloat16: the result is torch's float64 result on the same rounded inputs."""
    inputs = _inputs(shapes, dtype, device)
    mine = _leaf(inputs)
    reference = _leaf([t.cpu().to(torch.float64) for t in inputs])
    out = ours(*mine)
    expected = theirs(*reference)
    assert out.dtype == dtype
    assert_close(f"{name} output", out, expected, dtype=dtype)
    dout = torch.randn(expected.shape, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(out, mine, dout.to(device))
    expected_grads = torch.autograd.grad(expected, reference, dout.to(torch.float64))
    for i, (got, want) in enumerate(zip(grads, expected_grads)):
        assert got.dtype == dtype
        assert_close(f"{name} gradient {i}", got, want, dtype=dtype)


def test_batch_norm_keeps_float32_running_stats_under_autocast(device):
    """A low-precision input updates float32 running statistics in place, as torch's layer does."""
    for autocast_dtype in _autocast_dtypes(device):
        ours, theirs = ops.BatchNorm2d(4).to(device), nn.BatchNorm2d(4).to(device)
        x = torch.randn(8, 4, 5, 5, device=device)
        with torch.autocast(device, dtype=autocast_dtype):
            ours(x.to(autocast_dtype))
            theirs(x.to(autocast_dtype))
        for key in ("running_mean", "running_var"):
            assert ours.state_dict()[key].dtype == torch.float32
            assert_close(key, ours.state_dict()[key], theirs.state_dict()[key], dtype=autocast_dtype)


def test_small_network_trains_one_step_under_autocast_like_torch(device):
    """conv -> batch norm -> in-place ReLU -> pool -> linear, built twice from one state_dict."""
    def build(layers):
        # No conv bias before batch norm (as in ResNets): its gradient is zero up to round-off.
        return nn.Sequential(layers.Conv2d(3, 8, 3, padding=1, bias=False), layers.BatchNorm2d(8), nn.ReLU(inplace=True),
                             layers.MaxPool2d(2), nn.Flatten(), layers.Linear(8 * 4 * 4, 10))

    torch.manual_seed(0)
    theirs = build(nn).to(device)
    ours = build(ops).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 8, 8, device=device)
    labels = torch.tensor([0, 1, 2, 3], device=device)
    for autocast_dtype in _autocast_dtypes(device):
        losses, grads = [], []
        for model in (ours, theirs):
            model.zero_grad()
            with torch.autocast(device, dtype=autocast_dtype):
                loss = F.cross_entropy(model(x), labels)
            loss.backward()
            losses.append(loss.item())
            grads.append([p.grad for p in model.parameters()])
        assert_close("loss", losses[0], losses[1], dtype=autocast_dtype)
        for (key, _), got, want in zip(ours.named_parameters(), *grads):
            assert got.dtype == torch.float32
            assert_close(f"gradient of {key}", got, want, dtype=autocast_dtype)


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(3, 7), st.integers(3, 7)),
    filters=st.integers(1, 3), kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
    dtype=st.sampled_from([torch.float64, torch.float32, *LOW]),
    layout=st.sampled_from(["contiguous", "channels_last", "transposed"]),
    seed=st.integers(0, 2**16),
)
def test_conv2d_any_dtype_and_layout_matches_float64(shape, filters, kernel, stride, padding, dtype, layout, seed):
    """Small-integer values (exact products in every dtype), any memory layout, against torch in float64."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randint(-3, 4, (n, c, w, h) if layout == "transposed" else shape, generator=generator).to(dtype)
    x = {"contiguous": x, "channels_last": x.contiguous(memory_format=torch.channels_last),
         "transposed": x.transpose(2, 3)}[layout]
    weight = torch.randint(-2, 3, (filters, c, kernel, kernel), generator=generator).to(dtype)
    ours, theirs = x.detach().requires_grad_(), x.detach().double().requires_grad_()
    out = ops.conv2d(ours, weight, None, stride, padding)
    expected = F.conv2d(theirs, weight.double(), None, stride, padding)
    assert out.dtype == dtype
    assert_close("forward", out, expected, dtype=dtype)
    dout = torch.randint(-2, 3, tuple(expected.shape), generator=generator).to(dtype)
    out.backward(dout)
    expected.backward(dout.double())
    assert_close("dx", ours.grad, theirs.grad, dtype=dtype)
