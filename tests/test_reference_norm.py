"""Normalization layers (cnnbook.reference.norm) against torch.nn.functional, numeric gradients and properties.

Every backward pass is checked with a *random* upstream gradient: with
``dout = ones`` the input gradient of a normalization layer is identically
zero, and a wrong backward goes unseen (``test_ones_dout_is_blind_...`` shows it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

from helpers import assert_close
from cnnbook.gradcheck import check_gradient, numeric_gradient, rel_error, tolerance, worst_element
from cnnbook.reference import (
    BatchNormState,
    batch_norm_backward,
    batch_norm_backward_simple,
    batch_norm_forward,
    group_norm_backward,
    group_norm_forward,
    instance_norm_backward,
    instance_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
    batch_norm2d_backward,
    batch_norm2d_forward,
)

DTYPES = ["float64", "float32"]
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}




def torch_leaf(array) -> torch.Tensor:
    return torch.tensor(array, requires_grad=True)


def batch(rng, shape, dtype="float64"):
    """Data with a non-zero mean and a non-unit scale, so normalization has something to do."""
    return (3.0 * rng.standard_normal(shape) + 1.5).astype(dtype)


def params(rng, shape, dtype="float64"):
    return (1.0 + 0.5 * rng.standard_normal(shape)).astype(dtype), rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- batch norm vs torch


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_train_matches_torch(rng, dtype):
    N, D, momentum = 7, 5, 0.2
    x = batch(rng, (N, D), dtype)
    weight, bias = params(rng, D, dtype)
    dout = rng.standard_normal((N, D)).astype(dtype)
    state = BatchNormState.initial(D, momentum=momentum, dtype=dtype)

    out, cache = batch_norm_forward(x, weight, bias, state, training=True)
    assert out.dtype == np.dtype(dtype)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    running_mean = torch.zeros(D, dtype=TORCH_DTYPE[dtype])
    running_var = torch.ones(D, dtype=TORCH_DTYPE[dtype])
    out_t = F.batch_norm(xt, running_mean, running_var, gt, bt, training=True, momentum=momentum, eps=1e-5)
    out_t.backward(torch.tensor(dout))

    assert_close("out", out, out_t, dtype)
    assert_close("running_mean", state.running_mean, running_mean, dtype)
    assert_close("running_var", state.running_var, running_var, dtype)
    for backward in (batch_norm_backward, batch_norm_backward_simple):
        dx, dweight, dbias = backward(dout, cache)
        assert dx.dtype == np.dtype(dtype)
        assert_close(f"{backward.__name__} dx", dx, xt.grad, dtype)
        assert_close(f"{backward.__name__} dweight", dweight, gt.grad, dtype)
        assert_close(f"{backward.__name__} dbias", dbias, bt.grad, dtype)


def test_batchnorm_running_statistics_and_eval_match_nn_batchnorm1d(rng):
    """Several training steps, then evaluation: running statistics, output and gradients as BatchNorm1d."""
    D, momentum, eps = 4, 0.3, 1e-3
    weight, bias = params(rng, D)
    state = BatchNormState.initial(D, momentum=momentum, eps=eps)
    layer = torch.nn.BatchNorm1d(D, momentum=momentum, eps=eps).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))

    layer.train()
    for step, N in enumerate([5, 8, 3, 6]):  # batches of different sizes: the N / (N - 1) factor changes
        x = batch(rng, (N, D)) + step
        batch_norm_forward(x, weight, bias, state, training=True)
        layer(torch.tensor(x))
        assert_close(f"running_mean after step {step}", state.running_mean, layer.running_mean)
        assert_close(f"running_var after step {step}", state.running_var, layer.running_var)

    layer.eval()
    x = batch(rng, (6, D))
    dout = rng.standard_normal((6, D))
    saved_mean, saved_var = state.running_mean.copy(), state.running_var.copy()
    out, cache = batch_norm_forward(x, weight, bias, state, training=False)
    assert np.array_equal(state.running_mean, saved_mean) and np.array_equal(state.running_var, saved_var)

    xt = torch_leaf(x)
    out_t = layer(xt)
    out_t.backward(torch.tensor(dout))
    assert_close("eval out", out, out_t)
    for backward in (batch_norm_backward, batch_norm_backward_simple):
        dx, dweight, dbias = backward(dout, cache)
        assert_close(f"eval {backward.__name__} dx", dx, xt.grad)
        assert_close(f"eval {backward.__name__} dweight", dweight, layer.weight.grad)
        assert_close(f"eval {backward.__name__} dbias", dbias, layer.bias.grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_spatial_batchnorm_matches_torch(rng, dtype, train):
    N, C, H, W, momentum = 3, 4, 5, 3, 0.1
    x = batch(rng, (N, C, H, W), dtype)
    weight, bias = params(rng, C, dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    running_mean, running_var = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2.0, C).astype(dtype)
    state = BatchNormState(running_mean.copy(), running_var.copy(), momentum=momentum)

    out, cache = batch_norm2d_forward(x, weight, bias, state, training=train)
    dx, dweight, dbias = batch_norm2d_backward(dout, cache)
    assert out.dtype == dx.dtype == np.dtype(dtype)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    running_mean_t, running_var_t = torch.tensor(running_mean), torch.tensor(running_var)
    out_t = F.batch_norm(xt, running_mean_t, running_var_t, gt, bt, training=train, momentum=momentum, eps=1e-5)
    out_t.backward(torch.tensor(dout))

    assert_close("out", out, out_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    assert_close("dweight", dweight, gt.grad, dtype)
    assert_close("dbias", dbias, bt.grad, dtype)
    assert_close("running_mean", state.running_mean, running_mean_t, dtype)
    assert_close("running_var", state.running_var, running_var_t, dtype)


def test_spatial_batchnorm_running_statistics_match_nn_batchnorm2d(rng):
    C = 3
    weight, bias = params(rng, C)
    state = BatchNormState.initial(C, momentum=0.25)
    layer = torch.nn.BatchNorm2d(C, momentum=0.25).double()
    for step in range(3):
        x = batch(rng, (2, C, 3, 4)) * (step + 1)
        batch_norm2d_forward(x, weight, bias, state, training=True)
        layer(torch.tensor(x))
    assert_close("running_mean", state.running_mean, layer.running_mean)
    assert_close("running_var", state.running_var, layer.running_var)


# ----------------------------------------------------------------------------- layer, group, instance norm vs torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "x_shape, normalized_shape",
    [((6, 5), (5,)), ((3, 4, 5, 2), (4, 5, 2)), ((3, 4, 5, 2), (5, 2)), ((2, 3, 7), (7,))],
)
def test_layernorm_matches_torch(rng, dtype, x_shape, normalized_shape):
    x = batch(rng, x_shape, dtype)
    weight, bias = params(rng, normalized_shape, dtype)
    dout = rng.standard_normal(x_shape).astype(dtype)

    out, cache = layer_norm_forward(x, weight, bias, eps=1e-5)
    dx, dweight, dbias = layer_norm_backward(dout, cache)
    assert out.dtype == dx.dtype == np.dtype(dtype)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    out_t = F.layer_norm(xt, normalized_shape, gt, bt, eps=1e-5)
    out_t.backward(torch.tensor(dout))
    assert_close("out", out, out_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    assert_close("dweight", dweight, gt.grad, dtype)
    assert_close("dbias", dbias, bt.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_groups", [1, 2, 6])
def test_groupnorm_matches_torch(rng, dtype, num_groups):
    x = batch(rng, (3, 6, 4, 5), dtype)
    weight, bias = params(rng, 6, dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)

    out, cache = group_norm_forward(x, num_groups, weight, bias, eps=1e-5)
    dx, dweight, dbias = group_norm_backward(dout, cache)
    assert out.dtype == dx.dtype == np.dtype(dtype)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    out_t = F.group_norm(xt, num_groups, gt, bt, eps=1e-5)
    out_t.backward(torch.tensor(dout))
    assert_close("out", out, out_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    assert_close("dweight", dweight, gt.grad, dtype)
    assert_close("dbias", dbias, bt.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instancenorm_matches_torch(rng, dtype):
    x = batch(rng, (2, 3, 5, 4), dtype)
    weight, bias = params(rng, 3, dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)

    out, cache = instance_norm_forward(x, weight, bias)
    dx, dweight, dbias = instance_norm_backward(dout, cache)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    out_t = F.instance_norm(xt, weight=gt, bias=bt, use_input_stats=True, eps=1e-5)
    out_t.backward(torch.tensor(dout))
    assert_close("out", out, out_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    assert_close("dweight", dweight, gt.grad, dtype)
    assert_close("dbias", dbias, bt.grad, dtype)


# ----------------------------------------------------------------------------- numeric gradients (random dout)


def check_all_gradients(forward, backward, inputs: dict, dout, names=None):
    """Numeric gradient of sum(forward(**inputs) * dout) for every input, against backward(dout, cache)."""
    _, cache = forward(**inputs)
    analytic = backward(dout, cache)
    for (name, value), grad in zip(inputs.items(), analytic):
        if names is not None and name not in names:
            continue

        def f(perturbed, name=name):
            return forward(**{**inputs, name: perturbed})[0]

        check_gradient(name, grad, numeric_gradient(f, value.copy(), dout))


@pytest.mark.parametrize("backward", [batch_norm_backward, batch_norm_backward_simple])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_numeric_gradients(rng, backward, train):
    N, D = 5, 4
    running_mean, running_var = rng.standard_normal(D), rng.uniform(0.5, 2.0, D)

    def forward(x, weight, bias):
        # A fresh state per call: every evaluation sees the same running statistics.
        state = BatchNormState(running_mean.copy(), running_var.copy())
        return batch_norm_forward(x, weight, bias, state, training=train)

    weight, bias = params(rng, D)
    inputs = {"x": batch(rng, (N, D)), "weight": weight, "bias": bias}
    check_all_gradients(forward, backward, inputs, rng.standard_normal((N, D)))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_spatial_batchnorm_numeric_gradients(rng, train):
    C = 3

    def forward(x, weight, bias):
        return batch_norm2d_forward(x, weight, bias, BatchNormState(np.full(C, 0.5), np.full(C, 2.0)), train)

    weight, bias = params(rng, C)
    inputs = {"x": batch(rng, (2, C, 3, 2)), "weight": weight, "bias": bias}
    check_all_gradients(forward, batch_norm2d_backward, inputs, rng.standard_normal((2, C, 3, 2)))


@pytest.mark.parametrize("x_shape, normalized_shape", [((4, 5), (5,)), ((2, 3, 2, 3), (3, 2, 3))])
def test_layernorm_numeric_gradients(rng, x_shape, normalized_shape):
    weight, bias = params(rng, normalized_shape)
    inputs = {"x": batch(rng, x_shape), "weight": weight, "bias": bias}
    check_all_gradients(layer_norm_forward, layer_norm_backward, inputs, rng.standard_normal(x_shape))


@pytest.mark.parametrize("num_groups", [1, 2, 4])
def test_groupnorm_numeric_gradients(rng, num_groups):
    def forward(x, weight, bias):
        return group_norm_forward(x, num_groups, weight, bias)

    weight, bias = params(rng, 4)
    inputs = {"x": batch(rng, (2, 4, 3, 2)), "weight": weight, "bias": bias}
    check_all_gradients(forward, group_norm_backward, inputs, rng.standard_normal((2, 4, 3, 2)))


def test_instancenorm_numeric_gradient(rng):
    weight, bias = params(rng, 3)
    inputs = {"x": batch(rng, (2, 3, 2, 3)), "weight": weight, "bias": bias}
    check_all_gradients(instance_norm_forward, instance_norm_backward, inputs, rng.standard_normal((2, 3, 2, 3)))


def test_ones_dout_is_blind_to_a_wrong_batchnorm_backward(rng):
    """Why every gradient check here uses a random dout.

    ``sum(out)`` does not depend on x at all (each column of xhat sums to 0),
    so with dout = ones the true dx is zero. A backward that forgets the path
    through the variance also gives zero for dout = ones, and "passes"; a
    random dout exposes it at once.
    """
    N, D = 6, 3
    x = batch(rng, (N, D))
    weight, bias = params(rng, D)

    def forward(x):
        return batch_norm_forward(x, weight, bias, BatchNormState.initial(D))[0]

    _, cache = batch_norm_forward(x, weight, bias, BatchNormState.initial(D))

    def wrong_dx(dout):
        # Bug: drops the "- xhat * mean(dout * xhat)" term (the variance path).
        return weight * cache["inv_std"] * (dout - dout.mean(axis=0))

    ones = np.ones((N, D))
    numeric_ones = numeric_gradient(forward, x.copy(), ones)
    # The true gradient is 0, so the numeric one is only round-off noise; a
    # relative error of noise against noise means nothing, so compare absolutely.
    assert np.max(np.abs(numeric_ones)) < 1e-7
    assert np.max(np.abs(wrong_dx(ones) - numeric_ones)) < 1e-7, "the wrong backward should pass with ones"

    dout = rng.standard_normal((N, D))
    numeric = numeric_gradient(forward, x.copy(), dout)
    assert rel_error(wrong_dx(dout), numeric) > 1e-2, "a random dout should expose the wrong backward"
    check_gradient("dx", batch_norm_backward(dout, cache)[0], numeric)  # the correct one passes


# ----------------------------------------------------------------------------- properties over shapes


def test_step_by_step_and_simple_batchnorm_backward_agree(rng):
    x = batch(rng, (64, 10))
    weight, bias = params(rng, 10)
    dout = rng.standard_normal((64, 10))
    _, cache = batch_norm_forward(x, weight, bias, BatchNormState.initial(10))
    step_by_step, simple = batch_norm_backward(dout, cache), batch_norm_backward_simple(dout, cache)
    for a, b, name in zip(step_by_step, simple, ["dx", "dweight", "dbias"]):
        assert_close(name, a, b, tol=1e-12)


@given(
    N=st.integers(2, 6), D=st.integers(1, 5), train=st.booleans(), seed=st.integers(0, 2**32 - 1)
)
def test_batchnorm_property_matches_torch_and_backwards_agree(N, D, train, seed):
    rng = np.random.default_rng(seed)
    x = batch(rng, (N, D))
    weight, bias = params(rng, D)
    dout = rng.standard_normal((N, D))
    state = BatchNormState.initial(D)
    out, cache = batch_norm_forward(x, weight, bias, state, training=train)
    step_by_step, simple = batch_norm_backward(dout, cache), batch_norm_backward_simple(dout, cache)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    running_mean, running_var = torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64)
    out_t = F.batch_norm(xt, running_mean, running_var, gt, bt, training=train)
    out_t.backward(torch.tensor(dout))
    assert_close("out", out, out_t)
    for name, a, b, expected in zip(["dx", "dweight", "dbias"], step_by_step, simple, [xt.grad, gt.grad, bt.grad]):
        assert_close(name, a, expected)
        # Not 1e-12 here: with N = 2, xhat is +-1 up to eps and dx is a near-total
        # cancellation, so the two orders of operations differ by ~1e-11 relative.
        assert_close(f"{name} step-by-step vs simple", a, b)
    assert_close("running_var", state.running_var, running_var)


@given(N=st.integers(1, 3), D=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_batchnorm_eval_allows_a_single_sample(N, D, seed):
    """Evaluation uses no batch statistics, so N = 1 is fine (training with N = 1 is a ValueError)."""
    rng = np.random.default_rng(seed)
    x = batch(rng, (N, D))
    weight, bias = params(rng, D)
    state = BatchNormState(rng.standard_normal(D), rng.uniform(0.5, 2, D))
    out, _ = batch_norm_forward(x, weight, bias, state, training=False)
    expected = F.batch_norm(torch.tensor(x), torch.tensor(state.running_mean), torch.tensor(state.running_var),
                            torch.tensor(weight), torch.tensor(bias), training=False)
    assert_close("out", out, expected)


@given(
    N=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(1, 4), W=st.integers(1, 4),
    train=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_spatial_batchnorm_property_matches_torch(N, C, H, W, train, seed):
    if train and N * H * W < 2:
        return  # illegal in training (one value per channel), tested in test_bad_input
    rng = np.random.default_rng(seed)
    x = batch(rng, (N, C, H, W))
    weight, bias = params(rng, C)
    dout = rng.standard_normal(x.shape)
    state = BatchNormState.initial(C)
    out, cache = batch_norm2d_forward(x, weight, bias, state, training=train)
    dx, dweight, dbias = batch_norm2d_backward(dout, cache)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    running_mean, running_var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    out_t = F.batch_norm(xt, running_mean, running_var, gt, bt, training=train)
    out_t.backward(torch.tensor(dout))
    for name, ours, theirs in [("out", out, out_t), ("dx", dx, xt.grad), ("dweight", dweight, gt.grad),
                               ("dbias", dbias, bt.grad), ("running_var", state.running_var, running_var)]:
        assert_close(name, ours, theirs)


@given(
    leading=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    normalized=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_layernorm_property_matches_torch(leading, normalized, seed):
    assume(np.prod(normalized) >= 2)  # groups of one value: test_groups_of_one_value_normalize_to_zero
    rng = np.random.default_rng(seed)
    x_shape, normalized_shape = tuple(leading) + tuple(normalized), tuple(normalized)
    x = batch(rng, x_shape)
    weight, bias = params(rng, normalized_shape)
    dout = rng.standard_normal(x_shape)
    out, cache = layer_norm_forward(x, weight, bias)
    dx, dweight, dbias = layer_norm_backward(dout, cache)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    out_t = F.layer_norm(xt, normalized_shape, gt, bt)
    out_t.backward(torch.tensor(dout))
    for name, ours, theirs in [("out", out, out_t), ("dx", dx, xt.grad), ("dweight", dweight, gt.grad),
                               ("dbias", dbias, bt.grad)]:
        assert_close(name, ours, theirs)


@given(
    N=st.integers(1, 3), num_groups=st.integers(1, 3), channels_per_group=st.integers(1, 3),
    H=st.integers(1, 3), W=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
)
def test_groupnorm_property_matches_torch(N, num_groups, channels_per_group, H, W, seed):
    # Groups of one value: test_groups_of_one_value_normalize_to_zero. Groups of two normalize to exactly
    # -1 and +1 whatever x is, so dx is only the eps term (1e-8 of dout): relative error would measure round-off.
    assume(channels_per_group * H * W >= 3)
    rng = np.random.default_rng(seed)
    C = num_groups * channels_per_group
    x = batch(rng, (N, C, H, W))
    weight, bias = params(rng, C)
    dout = rng.standard_normal(x.shape)
    out, cache = group_norm_forward(x, num_groups, weight, bias)
    dx, dweight, dbias = group_norm_backward(dout, cache)

    xt, gt, bt = torch_leaf(x), torch_leaf(weight), torch_leaf(bias)
    out_t = F.group_norm(xt, num_groups, gt, bt)
    out_t.backward(torch.tensor(dout))
    for name, ours, theirs in [("out", out, out_t), ("dx", dx, xt.grad), ("dweight", dweight, gt.grad),
                               ("dbias", dbias, bt.grad)]:
        assert_close(name, ours, theirs)


@pytest.mark.parametrize(
    "forward, backward, x_shape, param_shape, per_feature_shape, sum_axes",
    [
        (layer_norm_forward, layer_norm_backward, (3, 1), (1,), (1, 1), (0,)),
        (lambda x, g, b: group_norm_forward(x, 2, g, b), group_norm_backward, (3, 2, 1, 1), (2,), (1, 2, 1, 1),
         (0, 2, 3)),
        (instance_norm_forward, instance_norm_backward, (2, 3, 1, 1), (3,), (1, 3, 1, 1), (0, 2, 3)),
    ],
    ids=["layernorm", "groupnorm", "instancenorm"],
)
def test_groups_of_one_value_normalize_to_zero(rng, forward, backward, x_shape, param_shape, per_feature_shape,
                                               sum_axes):
    """A group of one value has xhat = 0 whatever x is: out = bias, dx = 0, dweight = 0.

    (Checked directly rather than against torch: torch returns round-off
    around 1e-15 for these zeros, and any relative error against 0 is 1.)
    """
    weight, bias = params(rng, param_shape)
    dout = rng.standard_normal(x_shape)
    out, cache = forward(batch(rng, x_shape), weight, bias)
    dx, dweight, dbias = backward(dout, cache)
    assert_close("out", out, np.broadcast_to(bias.reshape(per_feature_shape), x_shape))
    assert np.max(np.abs(dx)) < 1e-12 and np.max(np.abs(dweight)) < 1e-12
    assert_close("dbias", dbias, dout.sum(axis=sum_axes))


def test_normalized_output_has_zero_mean_unit_variance(rng):
    """The defining property, checked directly: with weight = 1, bias = 0 each feature is standardized."""
    x = batch(rng, (50, 4))
    out, _ = batch_norm_forward(x, np.ones(4), np.zeros(4), BatchNormState.initial(4, eps=1e-12))
    assert np.allclose(out.mean(axis=0), 0.0, atol=1e-12)
    assert np.allclose(out.var(axis=0), 1.0, atol=1e-9)


# ----------------------------------------------------------------------------- bad input


def _state(D):
    return BatchNormState.initial(D)


BAD_INPUTS = [
    ("x rank", lambda: batch_norm_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3), _state(3)), r"\(2, 3, 4\)"),
    ("weight shape", lambda: batch_norm_forward(np.zeros((4, 3)), np.ones(2), np.zeros(3), _state(3)), r"\(2,\)"),
    ("bias shape", lambda: batch_norm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(5), _state(3)), r"\(5,\)"),
    ("state shape", lambda: batch_norm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), _state(2)), r"\(2,\)"),
    ("N = 1 training", lambda: batch_norm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3), _state(3)), r"\(1, 3\)"),
    ("state arrays", lambda: BatchNormState(np.zeros(3), np.ones(4)), r"\(3,\) and \(4,\)"),
    ("momentum", lambda: BatchNormState(np.zeros(3), np.ones(3), momentum=1.5), "momentum"),
    ("spatial rank", lambda: batch_norm2d_forward(np.zeros((2, 3)), np.ones(3), np.zeros(3), _state(3)),
     r"\(2, 3\)"),
    ("spatial weight", lambda: batch_norm2d_forward(np.zeros((2, 3, 2, 2)), np.ones(2), np.zeros(2), _state(3)),
     r"\(2, 3, 2, 2\)"),
    ("spatial one value", lambda: batch_norm2d_forward(np.zeros((1, 3, 1, 1)), np.ones(3), np.zeros(3),
                                                            _state(3)), r"\(1, 3, 1, 1\)"),
    ("layernorm shape", lambda: layer_norm_forward(np.zeros((2, 3, 4)), np.ones((3,)), np.zeros((3,))), r"\(2, 3, 4\)"),
    ("layernorm bias", lambda: layer_norm_forward(np.zeros((2, 4)), np.ones(4), np.zeros(3)), r"\(3,\)"),
    ("groups", lambda: group_norm_forward(np.zeros((2, 6, 3, 3)), 4, np.ones(6), np.zeros(6)), r"\(2, 6, 3, 3\)"),
    ("groupnorm weight", lambda: group_norm_forward(np.zeros((2, 6, 3, 3)), 3, np.ones(3), np.zeros(3)), r"\(3,\)"),
    ("groupnorm rank", lambda: group_norm_forward(np.zeros(6), 3, np.ones(6), np.zeros(6)), r"\(6,\)"),
    ("instancenorm weight", lambda: instance_norm_forward(np.zeros((2, 3, 2, 2)), np.ones(2), np.zeros(2)), r"\(2,\)"),
    ("dout shape", lambda: batch_norm_backward(np.zeros((4, 2)),
                                              batch_norm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3),
                                                                _state(3))[1]), r"\(4, 2\).*\(4, 3\)"),
]


@pytest.mark.parametrize("call, pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error_naming_the_shapes(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
