"""RoI pooling and RoIAlign: the NumPy loops and the torch autograd Functions against torchvision.ops.

Forward in float64 to the "exact" tolerance, backward against torchvision's backward with a random
upstream gradient, torch.autograd.gradcheck in float64, and adversarial regions: outside the
feature map, flat, reversed, on half-cell coordinates (rounding), on constant inputs (ties).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from cnnbook.detection import (
    boxes_to_rois,
    roi_align,
    roi_align_backward,
    roi_align_forward,
    roi_pool,
    roi_pool_backward,
    roi_pool_forward,
    round_half_away,
)
from helpers import assert_close

FLOAT = torch.float64
N, C, H, W = 2, 3, 9, 11


def make_rois(rng, k=14, scale_to=1.0):
    """(k, 5) rois over an image of H / scale_to x W / scale_to pixels, plus adversarial ones."""
    corners = rng.uniform(-4, np.array([W, H]) / scale_to + 2, size=(k, 2))
    sides = rng.uniform(0, 8 / scale_to, size=(k, 2))
    random = np.column_stack([rng.integers(0, N, k), corners, corners + sides])
    adversarial = np.array([
        [0, 0, 0, W - 1, H - 1],  # the whole map
        [1, 2.5, 1.5, 6.5, 4.5],  # half-cell corners: C's round goes up, torch.round to even
        [0, -3.5, -2.5, 0.5, 1.5],  # partly outside, on the top-left
        [1, W + 3, H + 3, W + 9, H + 9],  # wholly outside: empty bins
        [0, 4, 4, 4, 4],  # a point
        [1, 6, 2, 3, 7],  # x2 < x1
        [0, 1, 1, 1.2, 8],  # a sliver
    ]) / np.array([1, scale_to, scale_to, scale_to, scale_to])
    return np.concatenate([random, adversarial])


def tensors(rng, device, scale_to=1.0):
    x = torch.tensor(rng.normal(size=(N, C, H, W)), dtype=FLOAT, device=device)
    rois = torch.tensor(make_rois(rng, scale_to=scale_to), dtype=FLOAT, device=device)
    return x, rois


def reversed_rois(rois):
    """Which rows have x2 < x1 or y2 < y1."""
    return (rois[:, 3] < rois[:, 1]) | (rois[:, 4] < rois[:, 2])


def test_reversed_regions_pool_to_zero_under_aligned_adaptive_sampling(device, rng):
    # With aligned=True a reversed region has a negative size, so ceil(size / PH) samples is <= 0: no
    # sample, output 0. torchvision's CPU kernel instead sizes a buffer by that negative count and raises
    # "cannot create std::vector larger than max_size()"; we compare with the NumPy loops instead.
    x, rois = tensors(rng, device)
    rois = rois[reversed_rois(rois)]
    assert len(rois) >= 1
    out = roi_align(x, rois, (2, 3), 1.0, -1, True)
    assert torch.all(out == 0)
    reference, _ = roi_align_forward(x.cpu().numpy(), rois.cpu().numpy(), (2, 3), 1.0, -1, True)
    assert_close("roi_align_forward, reversed regions", reference, out)
    with pytest.raises((ValueError, RuntimeError)):  # documents torchvision's behaviour; delete if it is fixed
        torchvision.ops.roi_align(x.cpu(), rois.cpu(), (2, 3), 1.0, -1, True)


ALIGN_CASES = [((2, 3), 1.0, -1, False), ((2, 3), 1.0, -1, True), (4, 0.5, 2, False), (4, 0.5, 0, True),
               ((3, 2), 0.25, 1, True), ((1, 1), 1.0, 3, False)]
POOL_CASES = [((2, 3), 1.0), (4, 0.5), ((3, 2), 0.25), (1, 1.0), ((5, 5), 1.0)]


@pytest.mark.parametrize("output_size, scale, sampling_ratio, aligned", ALIGN_CASES)
def test_roi_align_matches_torchvision(output_size, scale, sampling_ratio, aligned, device, rng):
    x, rois = tensors(rng, device, scale)
    if aligned and sampling_ratio <= 0:
        rois = rois[~reversed_rois(rois)]  # torchvision fails on them (see test_reversed_regions_...)
    x.requires_grad_(True)
    expected = torchvision.ops.roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
    out = roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
    assert out.device == x.device and out.dtype == x.dtype
    assert_close("roi_align", out, expected)
    dout = torch.randn_like(expected)
    (expected_dx,) = torch.autograd.grad(expected, x, dout)
    (dx,) = torch.autograd.grad(out, x, dout)
    assert_close("roi_align backward", dx, expected_dx)
    reference, cache = roi_align_forward(x.detach().cpu().numpy(), rois.cpu().numpy(), output_size, scale,
                                         sampling_ratio, aligned)
    assert_close("roi_align_forward (NumPy)", reference, expected)
    assert_close("roi_align_backward (NumPy)", roi_align_backward(dout.cpu().numpy(), cache), expected_dx)


@pytest.mark.parametrize("output_size, scale", POOL_CASES)
def test_roi_pool_matches_torchvision(output_size, scale, device, rng):
    x, rois = tensors(rng, device, scale)
    x.requires_grad_(True)
    expected = torchvision.ops.roi_pool(x, rois, output_size, scale)
    out = roi_pool(x, rois, output_size, scale)
    assert out.device == x.device and out.dtype == x.dtype
    assert_close("roi_pool", out, expected)
    dout = torch.randn_like(expected)
    (expected_dx,) = torch.autograd.grad(expected, x, dout)
    (dx,) = torch.autograd.grad(out, x, dout)
    assert_close("roi_pool backward", dx, expected_dx)
    reference, cache = roi_pool_forward(x.detach().cpu().numpy(), rois.cpu().numpy(), output_size, scale)
    assert_close("roi_pool_forward (NumPy)", reference, expected)
    assert_close("roi_pool_backward (NumPy)", roi_pool_backward(dout.cpu().numpy(), cache), expected_dx)


def test_roi_pool_rounds_half_cells_away_from_zero(device):
    # x1 = 2.5 * 1 rounds to 3 in torchvision (C's round); torch.round / np.round would give 2
    x = torch.arange(H * W, dtype=FLOAT, device=device).reshape(1, 1, H, W).flip(-1)  # larger to the left
    rois = torch.tensor([[0, 2.5, 0.0, 4.0, 2.0], [0, -1.5, 0.0, 0.0, 1.0]], dtype=FLOAT, device=device)
    expected = torchvision.ops.roi_pool(x, rois, 1, 1.0)
    assert_close("roi_pool at half cells", roi_pool(x, rois, 1, 1.0), expected)
    assert expected[0, 0, 0, 0] == x[0, 0, 2, 3]  # column 3 is the leftmost read: 2.5 went up
    assert [round_half_away(v) for v in (2.5, -2.5, 0.5, -0.5, 2.4999999999999996)] == [3, -3, 1, -1, 2]


def test_roi_pool_ties_go_to_the_first_cell(device):
    x = torch.ones((1, 2, 6, 6), dtype=FLOAT, device=device, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 5, 5], [0, 1, 2, 4, 5]], dtype=FLOAT, device=device)
    expected_x = x.detach().clone().requires_grad_(True)
    dout = torch.randn((2, 2, 2, 2), dtype=FLOAT, device=device)
    (dx,) = torch.autograd.grad(roi_pool(x, rois, 2), x, dout)
    (expected_dx,) = torch.autograd.grad(torchvision.ops.roi_pool(expected_x, rois, 2), expected_x, dout)
    assert_close("roi_pool backward with ties", dx, expected_dx)


def test_roi_pool_skips_nan_and_starts_from_minus_flt_max(device):
    nan = float("nan")
    x = torch.tensor([[[[nan, nan, 1.0], [-1e300, 3.0, nan]]]], dtype=FLOAT, device=device, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 2, 1]], dtype=FLOAT, device=device)
    expected_x = x.detach().clone().requires_grad_(True)
    expected = torchvision.ops.roi_pool(expected_x, rois, 1)  # -FLT_MAX, -FLT_MAX, 3
    out = roi_pool(x, rois, 1)
    assert_close("roi_pool with NaN", out, expected)
    dout = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, dout)
    (expected_dx,) = torch.autograd.grad(expected, expected_x, dout)
    assert_close("roi_pool backward with NaN", dx, expected_dx)
    reference, cache = roi_pool_forward(x.detach().cpu().numpy(), rois.cpu().numpy(), 1)
    assert_close("roi_pool_forward with NaN", reference, expected)
    assert_close("roi_pool_backward with NaN", roi_pool_backward(dout.cpu().numpy(), cache), expected_dx)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_roi_ops_pass_gradcheck(op, device, rng):
    x = torch.tensor(rng.normal(size=(2, 2, 6, 7)), dtype=FLOAT, device=device, requires_grad=True)
    rois = torch.tensor([[0, 0.3, 0.6, 4.2, 5.1], [1, 2.0, 1.0, 6.5, 3.2], [1, -2, -2, 2, 2]], dtype=FLOAT,
                        device=device)
    if op == "roi_pool":
        assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (2, 3), 1.0), (x,))
    else:
        assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 3), 0.8, -1, True), (x,))


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_numpy_backward_matches_numeric_gradients(op, rng):
    from cnnbook.gradcheck import check_gradient, numeric_gradient

    x = rng.normal(size=(2, 2, 5, 6))
    rois = np.array([[0, 0.4, 0.7, 4.1, 3.6], [1, 1.0, 0.0, 5.5, 4.5], [1, -1.0, 2.0, 1.5, 7.0]])
    if op == "roi_pool":
        forward, backward = (lambda t: roi_pool_forward(t, rois, (2, 2), 1.0)), roi_pool_backward
    else:
        forward, backward = (lambda t: roi_align_forward(t, rois, (2, 3), 1.0, 2, True)), roi_align_backward
    out, cache = forward(x)
    dout = rng.normal(size=out.shape)
    check_gradient(f"{op} dx", backward(dout, cache), numeric_gradient(lambda t: forward(t)[0], x, dout))


def test_rois_as_a_list_of_boxes_per_image(device, rng):
    x, _ = tensors(rng, device)
    boxes = [torch.tensor([[1.0, 1.0, 5.0, 6.0], [0.0, 2.0, 3.0, 3.0]], dtype=FLOAT, device=device),
             torch.tensor([[2.0, 0.5, 9.0, 8.0]], dtype=FLOAT, device=device)]
    rois = boxes_to_rois(boxes)
    assert rois[:, 0].tolist() == [0, 0, 1]
    assert_close("roi_align, list of boxes", roi_align(x, boxes, 3, aligned=True), roi_align(x, rois, 3, aligned=True))
    assert_close("roi_pool, list of boxes", roi_pool(x, boxes, 3), torchvision.ops.roi_pool(x, boxes, 3))


def test_roi_ops_run_in_float32(device, rng):
    x, rois = tensors(rng, device)
    x, rois = x.float(), rois.float()
    assert_close("roi_align float32", roi_align(x, rois, 3, 0.5, 2, True),
                 torchvision.ops.roi_align(x, rois, 3, 0.5, 2, True), dtype="float32")
    assert_close("roi_pool float32", roi_pool(x, rois, 3), torchvision.ops.roi_pool(x, rois, 3), dtype="float32")


@given(corners=st.lists(st.tuples(st.integers(0, 1), *[st.floats(-3, 14, width=64)] * 4), min_size=1, max_size=5),
       output_size=st.tuples(st.integers(1, 4), st.integers(1, 4)), sampling_ratio=st.integers(-1, 3),
       aligned=st.booleans(), scale=st.sampled_from([1.0, 0.5, 0.75]))
def test_roi_align_matches_torchvision_on_drawn_regions(corners, output_size, sampling_ratio, aligned, scale):
    x = torch.linspace(-1, 1, N * C * H * W, dtype=FLOAT).reshape(N, C, H, W).sin() * 3
    rois = torch.tensor(corners, dtype=FLOAT)
    if aligned and sampling_ratio <= 0:  # torchvision fails on reversed regions there: order the corners
        low, high = torch.minimum(rois[:, 1:3], rois[:, 3:]), torch.maximum(rois[:, 1:3], rois[:, 3:])
        rois = torch.cat([rois[:, :1], low, high], dim=1)
    assert_close("roi_align", roi_align(x, rois, output_size, scale, sampling_ratio, aligned),
                 torchvision.ops.roi_align(x, rois, output_size, scale, sampling_ratio, aligned))


@given(corners=st.lists(st.tuples(st.integers(0, 1), *[st.floats(-3, 14, width=64)] * 4), min_size=1, max_size=5),
       output_size=st.tuples(st.integers(1, 4), st.integers(1, 4)), scale=st.sampled_from([1.0, 0.5, 0.75]))
def test_roi_pool_matches_torchvision_on_drawn_regions(corners, output_size, scale):
    x = torch.linspace(-1, 1, N * C * H * W, dtype=FLOAT).reshape(N, C, H, W).sin() * 3
    rois = torch.tensor(corners, dtype=FLOAT)
    assert_close("roi_pool", roi_pool(x, rois, output_size, scale),
                 torchvision.ops.roi_pool(x, rois, output_size, scale))


def test_roi_ops_name_the_bad_shapes():
    x = torch.zeros((2, 1, 4, 4), dtype=FLOAT)
    with pytest.raises(ValueError, match=r"rois must have shape \(K, 5\).* got shape \(3, 4\)"):
        roi_align(x, torch.zeros((3, 4), dtype=FLOAT), 2)
    with pytest.raises(ValueError, match=r"x must be a \(N, C, H, W\) tensor, got shape \(1, 4, 4\)"):
        roi_pool(x[0], torch.zeros((1, 5), dtype=FLOAT), 2)
    with pytest.raises(ValueError, match=r"image indices in \[0, 2\) for x of shape \(2, 1, 4, 4\)"):
        roi_pool(x, torch.tensor([[2.0, 0, 0, 1, 1]], dtype=FLOAT), 2)
    with pytest.raises(ValueError, match=r"rois must have shape \(K, 5\)"):
        roi_align_forward(np.zeros((1, 1, 4, 4)), np.zeros((5,)), 2)
    with pytest.raises(ValueError, match=r"dout must have shape \(1, 1, 2, 2\), got \(1, 1, 3, 3\)"):
        roi_pool_backward(np.zeros((1, 1, 3, 3)), roi_pool_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 5)), 2)[1])
