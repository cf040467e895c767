"""Activations, dropout, linear, flatten (cnnbook.reference.activations) and losses (cnnbook.reference.losses).

Against torch.nn.functional in float64 and float32, numeric gradients with a
random upstream gradient, statistical properties of dropout, hypothesis over shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from helpers import assert_close
from cnnbook.gradcheck import check_gradient, numeric_gradient, tolerance, worst_element
from cnnbook.reference import (
    dropout_backward,
    dropout_forward,
    flatten_backward,
    flatten_forward,
    gelu_backward,
    gelu_forward,
    l1_penalty,
    l2_penalty,
    leaky_relu_backward,
    leaky_relu_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy,
    tanh_backward,
    tanh_forward,
)

DTYPES = ["float64", "float32"]




def away_from_zero(rng, shape, dtype="float64"):
    """Random values with |x| >= 0.05: central differences across the kink of ReLU would be meaningless."""
    x = rng.standard_normal(shape) * 2
    x = np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + 0.05 * (x == 0), x)
    return x.astype(dtype)


# name -> (forward, backward, torch function)
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward, F.relu),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward, F.leaky_relu),
    "leaky_relu_0.2": (
        lambda x: leaky_relu_forward(x, negative_slope=0.2),
        leaky_relu_backward,
        lambda t: F.leaky_relu(t, negative_slope=0.2),
    ),
    "sigmoid": (sigmoid_forward, sigmoid_backward, torch.sigmoid),
    "tanh": (tanh_forward, tanh_backward, torch.tanh),
    "gelu": (gelu_forward, gelu_backward, F.gelu),
}


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch(rng, name, dtype):
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = (3 * rng.standard_normal((4, 3, 5))).astype(dtype)
    x[0, 0, :3] = [0.0, -0.0, 1e-3]  # include the kink: torch's convention at 0 must match too
    dout = rng.standard_normal(x.shape).astype(dtype)

    out, cache = forward(x)
    dx = backward(dout, cache)
    assert out.dtype == dx.dtype == np.dtype(dtype) and out.shape == dx.shape == x.shape

    xt = torch.tensor(x, requires_grad=True)
    out_t = torch_fn(xt)
    out_t.backward(torch.tensor(dout))
    assert_close(f"{name} out", out, out_t, dtype)
    assert_close(f"{name} dx", dx, xt.grad, dtype)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_numeric_gradient(rng, name):
    forward, backward, _ = ACTIVATIONS[name]
    x = away_from_zero(rng, (3, 4))
    dout = rng.standard_normal(x.shape)
    _, cache = forward(x)
    check_gradient(f"{name} dx", backward(dout, cache), numeric_gradient(lambda v: forward(v)[0], x.copy(), dout))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_stable_for_large_inputs(dtype):
    x = np.array([-1e4, -800.0, -100.0, -30.0, 0.0, 30.0, 100.0, 800.0, 1e4], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, cache = sigmoid_forward(x)
        dx = sigmoid_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert out[0] == 0.0 and out[-1] == 1.0 and out[4] == 0.5
    assert_close("sigmoid", out, torch.sigmoid(torch.tensor(x)), dtype)
    if dtype == "float64":
        # Element by element, not only relative to the largest value: tiny outputs
        # such as sigmoid(-100) = 3.7e-44 keep their full precision.
        expected = torch.sigmoid(torch.tensor(x)).numpy()
        assert np.allclose(out, expected, rtol=1e-14, atol=0), f"{out} vs {expected}"


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    name=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 2**32 - 1),
)
def test_activation_property_over_shapes(shape, name, seed):
    rng = np.random.default_rng(seed)
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = 4 * rng.standard_normal(shape)
    dout = rng.standard_normal(shape)
    out, cache = forward(x)
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch_fn(xt)
    out_t.backward(torch.tensor(dout))
    assert_close(f"{name} out", out, out_t)
    assert_close(f"{name} dx", backward(dout, cache), xt.grad)


# ----------------------------------------------------------------------------- dropout


def test_dropout_preserves_the_mean_in_expectation():
    """E[out] = x. Over M elements the mean error has standard deviation sqrt(p / (1 - p) * mean(x^2) / M);
    we allow 5 of those (a false failure has probability below 1e-6, and the seed is fixed anyway)."""
    p, M = 0.3, 1_000_000
    x = np.random.default_rng(1).uniform(0.5, 1.5, M)
    out, _ = dropout_forward(x, p, training=True, rng=np.random.default_rng(2))
    sigma = np.sqrt(p / (1 - p) * np.mean(x * x) / M)
    assert abs(out.mean() - x.mean()) < 5 * sigma, f"mean moved by {out.mean() - x.mean():.2e}, sigma {sigma:.2e}"
    # And the dropped fraction is p, within 5 standard deviations sqrt(p (1 - p) / M).
    dropped = np.mean(out == 0)
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / M)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
def test_dropout_kept_units_are_scaled_like_torch(rng, p, dtype):
    x = rng.uniform(1.0, 2.0, (20, 30)).astype(dtype)
    out, cache = dropout_forward(x, p, rng=np.random.default_rng(3))
    assert out.dtype == np.dtype(dtype)
    kept = out != 0
    # torch's kept values are x / (1 - p), computed the same way in the same dtype.
    torch.manual_seed(0)
    out_t = F.dropout(torch.tensor(x), p, training=True)
    torch_scale = (out_t[out_t != 0] / torch.tensor(x)[out_t != 0]).numpy()
    our_scale = out[kept] / x[kept]
    assert_close("kept scale", our_scale, np.full(our_scale.shape, torch_scale.mean()), dtype)
    assert_close("kept scale", our_scale, np.full(our_scale.shape, 1 / (1 - p)), dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    dx = dropout_backward(dout, cache)
    assert np.array_equal(dx == 0, ~kept), "gradient flows exactly through the kept units"
    assert_close("dx", dx[kept], dout[kept] / (1 - p), dtype)


def test_dropout_eval_is_the_identity(rng):
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    out, cache = dropout_forward(x, 0.5, training=False)
    assert np.array_equal(out, x)
    assert np.array_equal(dropout_backward(dout, cache), dout)


def test_dropout_seed_reproducibility(rng):
    x = rng.standard_normal((50, 40))
    a, _ = dropout_forward(x, 0.5, rng=np.random.default_rng(7))
    b, _ = dropout_forward(x, 0.5, rng=np.random.default_rng(7))
    c, _ = dropout_forward(x, 0.5, rng=np.random.default_rng(8))
    assert np.array_equal(a, b), "same seed, same mask"
    assert not np.array_equal(a, c), "different seed, different mask"
    # rng=None is seeded too: reproducible, and (as documented) the same mask every call.
    assert np.array_equal(dropout_forward(x, 0.5)[0], dropout_forward(x, 0.5)[0])
    # One generator passed to successive calls gives fresh masks.
    generator = np.random.default_rng(7)
    first, _ = dropout_forward(x, 0.5, rng=generator)
    second, _ = dropout_forward(x, 0.5, rng=generator)
    assert np.array_equal(first, a) and not np.array_equal(first, second)


def test_dropout_numeric_gradient_with_a_fixed_mask(rng):
    x = rng.standard_normal((4, 5))
    dout = rng.standard_normal((4, 5))

    def forward(v):
        return dropout_forward(v, 0.4, rng=np.random.default_rng(11))[0]  # same seed: same mask each call

    _, cache = dropout_forward(x, 0.4, rng=np.random.default_rng(11))
    check_gradient("dropout dx", dropout_backward(dout, cache), numeric_gradient(forward, x.copy(), dout))


# ----------------------------------------------------------------------------- linear and flatten


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(rng, dtype, x_shape, bias):
    out_features = 3
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((out_features, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if bias else None
    dout = rng.standard_normal(x_shape[:-1] + (out_features,)).astype(dtype)

    out, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dout, cache)
    assert out.dtype == dx.dtype == dw.dtype == np.dtype(dtype)

    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    out_t = F.linear(xt, wt, bt)
    out_t.backward(torch.tensor(dout))
    assert_close("out", out, out_t, dtype)
    assert_close("dx", dx, xt.grad, dtype)
    assert_close("dw", dw, wt.grad, dtype)
    if bias:
        assert_close("db", db, bt.grad, dtype)
    else:
        assert db is None


def test_linear_numeric_gradients(rng):
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    dout = rng.standard_normal((2, 3, 5))
    dx, dw, db = linear_backward(dout, linear_forward(x, w, b)[1])
    check_gradient("dx", dx, numeric_gradient(lambda v: linear_forward(v, w, b)[0], x.copy(), dout))
    check_gradient("dw", dw, numeric_gradient(lambda v: linear_forward(x, v, b)[0], w.copy(), dout))
    check_gradient("db", db, numeric_gradient(lambda v: linear_forward(x, w, v)[0], b.copy(), dout))


@given(
    leading=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    in_features=st.integers(1, 5), out_features=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
)
def test_linear_property_over_shapes(leading, in_features, out_features, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(leading) + (in_features,))
    w, b = rng.standard_normal((out_features, in_features)), rng.standard_normal(out_features)
    dout = rng.standard_normal(tuple(leading) + (out_features,))
    out, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(dout, cache)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out_t = F.linear(xt, wt, bt)
    out_t.backward(torch.tensor(dout))
    for name, ours, theirs in [("out", out, out_t), ("dx", dx, xt.grad), ("dw", dw, wt.grad), ("db", db, bt.grad)]:
        assert_close(name, ours, theirs)


@pytest.mark.parametrize("x_shape", [(2, 3, 4, 5), (3, 7), (1, 2, 1, 3), (4,)])
def test_flatten_matches_torch(rng, x_shape):
    x = rng.standard_normal(x_shape)
    out, cache = flatten_forward(x)
    expected = torch.flatten(torch.tensor(x), 1) if len(x_shape) > 1 else torch.tensor(x).reshape(-1, 1)
    assert out.shape == tuple(expected.shape)
    assert_close("flatten", out, expected)
    dout = rng.standard_normal(out.shape)
    dx = flatten_backward(dout, cache)
    # .copy(): flatten returns a *view* of its input (as torch.flatten does), and
    # numeric_gradient would otherwise see its saved f(x + h) change under it.
    check_gradient("flatten dx", dx, numeric_gradient(lambda v: flatten_forward(v)[0].copy(), x.copy(), dout))


# ----------------------------------------------------------------------------- softmax and cross-entropy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax_match_torch(rng, dtype, axis):
    x = (5 * rng.standard_normal((4, 6))).astype(dtype)
    assert_close("softmax", softmax(x, axis=axis), torch.softmax(torch.tensor(x), dim=axis), dtype)
    assert_close("log_softmax", log_softmax(x, axis=axis), torch.log_softmax(torch.tensor(x), dim=axis), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_torch(rng, dtype):
    N, K = 8, 5
    logits = (2 * rng.standard_normal((N, K))).astype(dtype)
    labels = rng.integers(0, K, N)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    assert np.asarray(loss).dtype == dlogits.dtype == np.dtype(dtype)

    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    upstream = 0.7  # a non-unit upstream gradient: the result must scale with it
    (upstream * loss_t).backward()
    assert_close("loss", loss, loss_t, dtype)
    assert_close("dlogits", upstream * dlogits, logits_t.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_for_huge_logits(rng, dtype):
    logits = (1e4 * rng.standard_normal((6, 4))).astype(dtype)
    logits[0] = [1e4, -1e4, 1e4, 0.0]  # ties at the top
    labels = np.array([1, 0, 2, 3, 1, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dlogits = softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()
    assert_close("loss", loss, loss_t, dtype)
    assert_close("dlogits", dlogits, logits_t.grad, dtype)


def test_cross_entropy_numeric_gradient(rng):
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    _, dlogits = softmax_cross_entropy(logits, labels)
    upstream = np.array(1.3)  # the loss is a scalar, so dout is a 0-d array
    numeric = numeric_gradient(lambda v: np.asarray(softmax_cross_entropy(v, labels)[0]), logits.copy(), upstream)
    check_gradient("dlogits", upstream * dlogits, numeric)


def test_cross_entropy_of_uniform_logits_is_log_k():
    """A hand-checked value: equal logits give every class probability 1/K, so the loss is log K."""
    loss, dlogits = softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 3]))
    assert abs(loss - np.log(4)) < 1e-15
    assert np.allclose(dlogits, (np.full((3, 4), 0.25) - np.eye(4)[[0, 1, 3]]) / 3, rtol=0, atol=1e-16)


@given(
    N=st.integers(1, 6), K=st.integers(1, 6), scale=st.sampled_from([0.1, 1.0, 100.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cross_entropy_property_over_shapes(N, K, scale, seed):
    rng = np.random.default_rng(seed)
    logits, labels = scale * rng.standard_normal((N, K)), rng.integers(0, K, N)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    logits_t = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()
    assert_close("loss", loss, loss_t)
    if K > 1:  # with one class the loss is 0 and its gradient identically 0 (torch: round-off)
        assert_close("dlogits", dlogits, logits_t.grad)
    assert np.allclose(dlogits.sum(axis=1), 0.0, atol=1e-12), "each row of softmax - one_hot sums to 0"


# ----------------------------------------------------------------------------- penalties


@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_and_l1_penalties_match_torch(rng, dtype):
    weights = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    weights[1][0] = 0.0  # |w| at 0: subgradient 0, as torch
    weight_decay = 0.03
    tensors = [torch.tensor(w, requires_grad=True) for w in weights]

    penalty, grads = l2_penalty(weights, weight_decay)
    penalty_t = 0.5 * weight_decay * sum((t * t).sum() for t in tensors)
    penalty_t.backward()
    assert_close("l2 penalty", penalty, penalty_t, dtype)
    for i, (g, t) in enumerate(zip(grads, tensors)):
        assert_close(f"l2 grad {i}", g, t.grad, dtype)

    for t in tensors:
        t.grad = None
    penalty, grads = l1_penalty(weights, weight_decay)
    penalty_t = weight_decay * sum(t.abs().sum() for t in tensors)
    penalty_t.backward()
    assert_close("l1 penalty", penalty, penalty_t, dtype)
    for i, (g, t) in enumerate(zip(grads, tensors)):
        assert_close(f"l1 grad {i}", g, t.grad, dtype)


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    ("dropout p = 1", lambda: dropout_forward(np.ones(3), 1.0), "p"),
    ("dropout p < 0", lambda: dropout_forward(np.ones(3), -0.1), "p"),
    ("dropout dout", lambda: dropout_backward(np.ones(4), dropout_forward(np.ones(3), 0.5)[1]), r"\(4,\).*\(3,\)"),
    ("linear in_features", lambda: linear_forward(np.ones((2, 3)), np.ones((4, 5)), np.ones(4)), r"\(2, 3\).*\(4, 5\)"),
    ("linear w rank", lambda: linear_forward(np.ones((2, 3)), np.ones(3)), r"\(3,\)"),
    ("linear bias", lambda: linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), r"\(4,\).*\(3,\)"),
    ("linear dout", lambda: linear_backward(np.ones((2, 5)), linear_forward(np.ones((2, 3)), np.ones((4, 3)))[1]),
     r"\(2, 5\).*\(2, 4\)"),
    ("relu dout", lambda: relu_backward(np.ones((2, 2)), relu_forward(np.ones((2, 3)))[1]), r"\(2, 2\).*\(2, 3\)"),
    ("flatten scalar", lambda: flatten_forward(np.float64(1.0)), r"\(\)"),
    ("flatten dout", lambda: flatten_backward(np.ones((2, 5)), flatten_forward(np.ones((2, 3, 2)))[1]),
     r"\(2, 5\).*\(2, 6\)"),
    ("ce logits rank", lambda: softmax_cross_entropy(np.ones(3), np.array([0])), r"\(3,\)"),
    ("ce label count", lambda: softmax_cross_entropy(np.ones((3, 4)), np.array([0, 1])), r"\(3, 4\).*\(2,\)"),
    ("ce label range", lambda: softmax_cross_entropy(np.ones((2, 4)), np.array([0, 4])), r"\[0, 4\).*\(2, 4\)"),
    ("ce negative label", lambda: softmax_cross_entropy(np.ones((2, 4)), np.array([-1, 0])), r"\[0, 4\)"),
    ("ce float labels", lambda: softmax_cross_entropy(np.ones((2, 4)), np.array([0.0, 1.0])), "integers"),
    ("ce empty batch", lambda: softmax_cross_entropy(np.ones((0, 4)), np.zeros(0, dtype=int)), r"\(0, 4\)"),
    ("l2 bare array", lambda: l2_penalty(np.ones((2, 3)), 0.1), r"\(2, 3\)"),
    ("l1 negative decay", lambda: l1_penalty([np.ones(3)], -0.1), "weight_decay"),
]


@pytest.mark.parametrize("call, pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error_naming_the_shapes(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
