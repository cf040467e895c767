"""Tests for cnnbook.shapes: output sizes, parameter and MAC counts, receptive fields, summaries.

Expected values are worked out by hand in the test (with the arithmetic shown)
or taken from PyTorch / torchvision / the papers, never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from hypothesis import assume, given
from hypothesis import strategies as st

from cnnbook.shapes import (
    ModelSummary,
    conv_fits,
    conv_flops,
    conv_macs,
    conv_output_size,
    conv_output_size_exact,
    conv_params,
    depthwise_separable_params,
    depthwise_separable_reduction,
    describe_conv_fit,
    linear_macs,
    linear_params,
    pair,
    pool_output_size,
    receptive_field,
    same_padding,
    same_padding_pair,
    summarize,
    window_output_size,
)



# ------------------------------------------------------------- output sizes


@pytest.mark.parametrize(
    ("size", "kernel", "padding", "stride", "dilation", "expected"),
    [
        (32, 3, 0, 1, 1, 30),  # 32 - 3 + 1
        (32, 3, 1, 1, 1, 32),  # (32 + 2 - 3) / 1 + 1
        (32, 3, 2, 2, 1, 17),  # floor((32 + 4 - 3) / 2) + 1 = 16 + 1
        (7, 3, 0, 1, 1, 5),
        (7, 3, 0, 2, 1, 3),  # (7 - 3) / 2 + 1
        (7, 3, 0, 3, 1, 2),  # floor(4 / 3) + 1
        (10, 3, 0, 1, 2, 6),  # the dilated kernel spans 5: 10 - 5 + 1
        (227, 11, 0, 4, 1, 55),  # AlexNet's first layer
        (224, 7, 3, 2, 1, 112),  # ResNet's stem: floor((224 + 6 - 7) / 2) + 1
        (3, 5, 1, 1, 1, 1),  # a kernel exactly as large as the padded input
    ],
)
def test_conv_output_size_examples(size, kernel, padding, stride, dilation, expected):
    assert conv_output_size(size, kernel, padding, stride, dilation) == expected


@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 7),
    padding=st.integers(0, 3),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_matches_pytorch(size, kernel, padding, stride, dilation):
    fits = dilation * (kernel - 1) + 1 <= size + 2 * padding
    if not fits:
        with pytest.raises(ValueError, match=str(size)):
            conv_output_size(size, kernel, padding, stride, dilation)
        return
    x = torch.zeros(1, 1, size)
    w = torch.zeros(1, 1, kernel)
    expected = F.conv1d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    assert conv_output_size(size, kernel, padding, stride, dilation) == expected
    exact = conv_output_size_exact(size, kernel, padding, stride, dilation)
    assert math.floor(exact) == expected
    assert conv_fits(size, kernel, padding, stride, dilation) == (exact == expected)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((3, 5), r"kernel 5 .*size 3 \+ 2 \* padding 0 = 3"),
        ((5, 3, 0, 1, 3), r"dilation 3: spans 7.*5"),
        ((0, 3), "size must be >= 1, got 0"),
        ((8, 0), "kernel must be >= 1, got 0"),
        ((8, 3, -1), "padding must be >= 0, got -1"),
        ((8, 3, 0, 0), "stride must be >= 1, got 0"),
        ((8, 3, 0, 1, 0), "dilation must be >= 1, got 0"),
        ((8.0, 3), "size must be an int, got 8.0"),
        ((8, True), "kernel must be an int"),
    ],
)
def test_conv_output_size_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args)


def test_conv_output_size_accepts_numpy_integers():
    assert conv_output_size(np.int64(32), np.int32(3), padding=np.int64(1)) == 32


def test_exact_size_and_fit():
    assert conv_output_size_exact(7, 3, stride=3) == pytest.approx(4 / 3 + 1)
    assert conv_output_size_exact(7, 3, stride=2) == 3.0
    assert conv_fits(7, 3, stride=2)
    assert not conv_fits(7, 3, stride=3)
    assert conv_fits(32, 3, padding=1)
    assert not conv_fits(3, 5)  # the kernel is larger than the input


def test_describe_conv_fit_text():
    assert describe_conv_fit(7, 3, stride=3) == "H=7, K=3, stride 3 gives (7 - 3)/3 + 1 = 2.33: does not fit"
    assert describe_conv_fit(7, 3, stride=2) == "H=7, K=3, stride 2 gives (7 - 3)/2 + 1 = 3: fits"
    assert describe_conv_fit(32, 3, padding=1) == "H=32, K=3, padding 1, stride 1 gives (32 + 2*1 - 3)/1 + 1 = 32: fits"
    assert describe_conv_fit(9, 3, dilation=2).startswith("H=9, K=3, dilation 2 (spans 5), stride 1 gives (9 - 5)/1 + 1 = 5")
    assert "larger than the padded input" in describe_conv_fit(3, 5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((32, 2), 16),
        ((7, 2), 3),  # floor((7 - 2) / 2) + 1
        ((7, 2, None, 0, True), 4),  # ceil(5 / 2) + 1
        ((7, 3, 2), 3),  # floor(4 / 2) + 1
        ((6, 3, 2, 0, True), 3),  # ceil(3 / 2) + 1 = 3; the last window starts at 4 < 6
        ((5, 2, 2, 1, True), 3),  # ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 starts at 6 >= 5 + 1: dropped
        ((112, 3, 2, 1), 56),  # ResNet's max pool
    ],
)
def test_pool_output_size_examples(args, expected):
    assert pool_output_size(*args) == expected


@given(
    size=st.integers(1, 30),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 4),
    padding=st.integers(0, 2),
    ceil_mode=st.booleans(),
)
def test_pool_output_size_matches_pytorch(size, kernel, stride, padding, ceil_mode):
    if 2 * padding > kernel or kernel > size + 2 * padding:
        with pytest.raises(ValueError):
            pool_output_size(size, kernel, stride, padding, ceil_mode)
        return
    x = torch.zeros(1, 1, 1, size)
    expected = F.max_pool2d(x, (1, kernel), (1, stride), (0, padding), ceil_mode=ceil_mode).shape[-1]
    assert pool_output_size(size, kernel, stride, padding, ceil_mode) == expected


def test_pool_output_size_rejects_large_padding():
    with pytest.raises(ValueError, match="padding 2 must be at most half the pooling kernel 3"):
        pool_output_size(8, 3, 1, 2)


def test_same_padding():
    assert [same_padding(k) for k in (1, 3, 5, 7)] == [0, 1, 2, 3]
    assert same_padding(3, dilation=2) == 2  # spans 5
    for kernel, dilation in [(3, 1), (5, 1), (3, 3)]:
        assert conv_output_size(17, kernel, same_padding(kernel, dilation), 1, dilation) == 17
    with pytest.raises(ValueError, match="even number.*asymmetric"):
        same_padding(4)


@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4), dilation=st.integers(1, 2))
def test_same_padding_pair_gives_ceil_size(size, kernel, stride, dilation):
    total, before, after = same_padding_pair(size, kernel, stride, dilation)
    assert before + after == total and after - before in (0, 1)
    effective = dilation * (kernel - 1) + 1
    assert (size + total - effective) // stride + 1 == -(-size // stride)
    # Minimal: one row less would give a smaller output (or not fit).
    if total:
        assert size + total - 1 < effective or (size + total - 1 - effective) // stride + 1 < -(-size // stride)


def test_same_padding_pair_example():
    # TensorFlow: 224 input, 3x3 kernel, stride 2 -> output 112 needs (111 * 2 + 3) - 224 = 1 row, after.
    assert same_padding_pair(224, 3, 2) == (1, 0, 1)
    assert same_padding_pair(32, 3, 1) == (2, 1, 1)


# ---------------------------------------------------------- parameter counts


def test_conv_params_examples():
    assert conv_params(3, 10, 5) == 10 * (5 * 5 * 3) + 10 == 760
    assert conv_params(64, 128, 3) == 73_856  # 128 * 64 * 9 + 128
    assert conv_params(3, 6, 5, bias=False) == 450
    assert conv_params(3, 6, (5, 3), bias=False) == 6 * 3 * 15
    assert conv_params(32, 64, 3, groups=4) == 64 * 8 * 9 + 64


@given(
    groups=st.integers(1, 4),
    in_per_group=st.integers(1, 4),
    out_per_group=st.integers(1, 4),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    bias=st.booleans(),
)
def test_conv_params_matches_pytorch(groups, in_per_group, out_per_group, kh, kw, bias):
    layer = nn.Conv2d(groups * in_per_group, groups * out_per_group, (kh, kw), groups=groups, bias=bias)
    expected = sum(p.numel() for p in layer.parameters())
    assert conv_params(groups * in_per_group, groups * out_per_group, (kh, kw), bias, groups) == expected


def test_conv_params_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups=3 must divide both in_channels=8 and out_channels=12"):
        conv_params(8, 12, 3, groups=3)


def test_depthwise_separable_counts():
    # 3x3 depthwise on 32 channels (288 weights + 32 biases), then 1x1 from 32 to 64 (2048 + 64).
    assert depthwise_separable_params(32, 64, 3) == 288 + 32 + 2048 + 64
    assert depthwise_separable_params(32, 64, 3, bias=False) == 288 + 2048
    # 32 * 64 * 9 / (288 + 2048) = 18432 / 2336
    assert depthwise_separable_reduction(32, 64, 3) == pytest.approx(18432 / 2336)
    assert depthwise_separable_reduction(32, 64, 3) == pytest.approx(1 / (1 / 64 + 1 / 9))
    assert depthwise_separable_reduction(512, 512, 3) == pytest.approx(1 / (1 / 512 + 1 / 9))


def test_linear_counts():
    assert linear_params(4096, 128) == 524_416
    assert linear_params(128, 10, bias=False) == 1280
    assert linear_macs(4096, 128) == 4096 * 128


def test_conv_macs_examples():
    # Ten 5x5 filters on a 3x32x32 image, padding 2, stride 1: the output is 10x32x32,
    # each value a dot product of length 5*5*3.
    assert conv_macs(3, 10, 5, 32) == 10 * 32 * 32 * 75 == 768_000
    assert conv_flops(3, 10, 5, 32) == 1_536_000
    assert conv_macs(3, 10, (5, 3), (8, 4)) == 10 * 8 * 4 * (5 * 3 * 3)
    # Depthwise 3x3 on 32 channels at 16x16: one 9-tap dot product per output value.
    assert conv_macs(32, 32, 3, 16, groups=32) == 32 * 16 * 16 * 9


# ----------------------------------------------------------- receptive field


def test_receptive_field_examples():
    assert receptive_field([3, 3, 3]) == 7
    for layers in range(1, 8):
        assert receptive_field([3] * layers) == 1 + 2 * layers
    # conv 3 (s1), pool 2 (s2), conv 3 (s1): 1 + 2 + 1 * 1 + 2 * 2 = 8
    assert receptive_field([3, 2, 3], [1, 2, 1]) == 8
    # AlexNet: conv 11 s4, pool 3 s2 -> 1 + 10 + 2 * 4 = 19
    assert receptive_field([11, 3], [4, 2]) == 19
    # Dilations 1, 2, 4 on 3-tap kernels (WaveNet style): 1 + 2 + 4 + 8 = 15
    assert receptive_field([3, 3, 3], dilations=[1, 2, 4]) == 15
    assert receptive_field([]) == 1


def test_receptive_field_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 kernels, 2 strides"):
        receptive_field([3, 3, 3], [1, 2])


def _empirical_receptive_field(kernels, strides, dilations) -> int:
    """Width of the input region that output 0 of a conv stack depends on, found by backprop.

    All-positive weights and inputs make every path contribute a positive
    amount, so the nonzero support of the input gradient is the receptive field.
    """
    # Crude upper bound (every earlier stride taken as the largest one), so output 0 exists.
    size = 10 + sum(d * (k - 1) * max(strides) ** layer for layer, (k, d) in enumerate(zip(kernels, dilations)))
    x = torch.ones(1, 1, size, dtype=torch.float64, requires_grad=True)
    out = x
    for kernel, stride, dilation in zip(kernels, strides, dilations):
        weight = torch.ones(1, 1, kernel, dtype=torch.float64)
        out = F.conv1d(out, weight, stride=stride, dilation=dilation)
    out[0, 0, 0].backward()
    support = torch.nonzero(x.grad[0, 0])
    assert int(support.min()) == 0
    return int(support.max()) + 1


@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2)),
        min_size=1,
        max_size=4,
    )
)
def test_receptive_field_matches_backprop(layers):
    kernels, strides, dilations = (list(column) for column in zip(*layers))
    expected = _empirical_receptive_field(kernels, strides, dilations)
    assert receptive_field(kernels, strides, dilations) == expected


# ------------------------------------------------------------------ summarize


def _simple_cnn() -> nn.Sequential:
    """The book's simple CNN for 32x32 RGB images and 10 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4096, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def test_summarize_simple_cnn():
    model = _simple_cnn()
    summary = summarize(model, (1, 3, 32, 32))
    assert isinstance(summary, ModelSummary)
    assert summary.total_params == 545_098 == summary.trainable_params
    with_params = [row.params for row in summary.rows if row.params]
    # 3*3*3*32 + 32, 3*3*32*64 + 64, 4096*128 + 128, 128*10 + 10
    assert with_params == [896, 18_496, 524_416, 1_290]
    assert [row.type for row in summary.rows][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    shapes = [row.output_shape for row in summary.rows]
    assert shapes[0] == (1, 32, 32, 32) and shapes[2] == (1, 32, 16, 16) and shapes[6] == (1, 4096)
    assert shapes[-1] == (1, 10)
    # conv1: 32x32 outputs x 32 filters x 27 taps; conv2: 16x16 x 64 x 288; fc: 4096*128 and 128*10
    expected_macs = 32 * 32 * 32 * 27 + 16 * 16 * 64 * 288 + 4096 * 128 + 128 * 10
    assert summary.total_macs == expected_macs
    assert summary.rows[0].macs == 884_736


def test_summarize_text_and_html():
    summary = summarize(_simple_cnn(), (1, 3, 32, 32))
    text = str(summary)
    lines = text.splitlines()
    assert "Output shape" in lines[0] and "Params" in lines[0]
    assert "545,098" in text and "524,416" in text
    assert "Total MACs: 6,128,896 (6.13 M)" in text
    table = [line for line in lines if line.split() and line.split()[0].isdigit()]
    assert len(table) == 11
    # Aligned: the Params column ends at the same position in every row.
    params_end = lines[0].index("Params") + len("Params")
    for line, row in zip(table, summary.rows):
        assert line[:params_end].endswith(f" {row.params:,}"), line
    page = summary._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == 12 and "545,098" in page
    frame = summary.to_dataframe()
    assert frame.shape == (11, 5) and int(frame["Params"].sum()) == 545_098


def test_summarize_grouped_conv_and_shared_module():
    shared = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    summary = summarize(model, (2, 8, 10, 10))
    # Each call: 2 images x 8 channels x 10 x 10 outputs, each a (8/4) * 9 = 18-tap dot product.
    assert [row.macs for row in summary.rows] == [2 * 8 * 100 * 18, 0, 2 * 8 * 100 * 18]
    # Parameters counted once: 8 * 2 * 9 + 8.
    assert [row.params for row in summary.rows] == [152, 0, 0]
    assert summary.total_params == 152


def test_summarize_adds_a_batch_dimension_when_the_model_needs_one():
    summary = summarize(_simple_cnn(), (3, 32, 32))
    assert summary.input_shape == (1, 3, 32, 32)
    assert summary.rows[-1].output_shape == (1, 10)
    assert summary.total_params == 545_098


def test_summarize_names_the_shape_when_the_model_fails():
    with pytest.raises(ValueError, match=r"failed on an input of shape \[1, 3, 16, 16\]"):
        summarize(_simple_cnn(), (1, 3, 16, 16))  # Flatten gives 1024 features, the Linear layer wants 4096


def test_summarize_keeps_training_mode_and_frozen_params():
    model = _simple_cnn()
    model[0].weight.requires_grad_(False)
    model.train()
    summary = summarize(model, (1, 3, 32, 32))
    assert model.training
    assert summary.trainable_params == 545_098 - 864


def test_summarize_transposed_conv_macs():
    model = nn.ConvTranspose2d(4, 6, 3, stride=2)
    summary = summarize(model, (1, 4, 5, 5))
    # Each of the 4 * 5 * 5 input values is multiplied by 6 * 9 weights.
    assert summary.rows[0].macs == 4 * 25 * 54
    assert summary.rows[0].output_shape == (1, 6, 11, 11)


@pytest.mark.parametrize(
    ("name", "expected_params"),
    [
        # The papers' (and torchvision's documented) parameter counts.
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("vgg16", 138_357_544),
        ("mobilenet_v2", 3_504_872),
    ],
)
def test_summarize_torchvision_parameter_counts(name, expected_params):
    # On the meta device the layers get shapes but no memory and no initialisation: fast.
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    summary = summarize(model, (1, 3, 64, 64), device="meta")
    assert summary.total_params == sum(p.numel() for p in model.parameters()) == expected_params
    assert sum(row.params for row in summary.rows) == expected_params


def test_summarize_resnet18_macs():
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None)
    summary = summarize(model, (1, 3, 224, 224), device="meta")
    assert summary.total_macs == pytest.approx(1.814e9, rel=0.01)


def test_summarize_meta_matches_cpu():
    model = _simple_cnn()
    cpu = summarize(model, (2, 3, 32, 32))
    with torch.device("meta"):
        meta_model = _simple_cnn()
    meta = summarize(meta_model, (2, 3, 32, 32), device="meta")
    assert cpu.rows == meta.rows


@given(
    size=st.integers(1, 20), kernel=st.integers(1, 5), stride=st.integers(1, 4),
    before=st.integers(0, 2), after=st.integers(0, 2), dilation=st.integers(1, 3), ceil_mode=st.booleans(),
)
def test_window_output_size_is_torchs_rule(size, kernel, stride, before, after, dilation, ceil_mode):
    """The one output-size formula, against PyTorch: conv2d (floor, asymmetric padding) and max-pool (ceil)."""
    span = dilation * (kernel - 1) + 1
    assume(span <= size + before + after)
    x = torch.zeros(1, 1, 1, size + before + after)  # asymmetric padding applied by hand
    expected = torch.nn.functional.conv2d(x, torch.zeros(1, 1, 1, kernel), stride=stride, dilation=(1, dilation))
    assert window_output_size(size, kernel, stride, (before, after), dilation) == expected.shape[-1]
    if 2 * before <= kernel and dilation == 1:
        pooled = torch.nn.functional.max_pool2d(torch.zeros(1, 1, 1, size), (1, kernel), (1, stride), (0, before),
                                                ceil_mode=ceil_mode)
        assert window_output_size(size, kernel, stride, before, 1, ceil_mode) == pooled.shape[-1]


def test_pair_parses_ints_and_pairs_and_names_what_is_wrong():
    assert pair(3, "stride", 1) == (3, 3) and pair((2, 5), "stride", 1) == (2, 5)
    assert pair(np.int64(2), "padding") == (2, 2)
    with pytest.raises(ValueError, match=r"conv2d: stride must be >= 1, got 0"):
        pair(0, "stride", 1, "conv2d")
    with pytest.raises(ValueError, match=r"padding must be an int or a pair of ints \(along H, along W\)"):
        pair((1, 2, 3), "padding")
    for bad in (True, 1.5, "2"):
        with pytest.raises(ValueError, match="kernel_size must be an int"):
            pair(bad, "kernel_size", 1)
