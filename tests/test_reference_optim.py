"""Optimizers and learning-rate schedules (cnnbook.reference.optim) against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import assert_close
from cnnbook.gradcheck import tolerance, worst_element
from cnnbook.reference import (
    AdamState,
    SGDMomentumState,
    adam,
    adamw,
    cosine_lr,
    exponential_lr,
    l2_penalty,
    linear_warmup,
    rmsprop,
    sgd,
    sgd_momentum,
    step_lr,
    warmup_cosine_lr,
)

DTYPES = ["float64", "float32"]
NUM_STEPS = 5




def torch_trajectory(optimizer_class, w0, gradients, **hyperparameters):
    """The weights after each torch.optim step, feeding the given gradients one per step."""
    param = torch.nn.Parameter(torch.tensor(w0))
    optimizer = optimizer_class([param], **hyperparameters)
    weights = []
    for grad in gradients:
        param.grad = torch.tensor(grad)
        optimizer.step()
        weights.append(param.detach().numpy().copy())
    return weights


def problem(rng, dtype="float64", shape=(3, 4)):
    w0 = rng.standard_normal(shape).astype(dtype)
    gradients = [rng.standard_normal(shape).astype(dtype) for _ in range(NUM_STEPS)]
    return w0, gradients


# ----------------------------------------------------------------------------- optimizers vs torch.optim


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_matches_torch(rng, dtype, weight_decay):
    w0, gradients = problem(rng, dtype)
    expected = torch_trajectory(torch.optim.SGD, w0, gradients, lr=0.1, weight_decay=weight_decay)
    w = w0
    for step, grad in enumerate(gradients):
        w = sgd(w, grad, lr=0.1, weight_decay=weight_decay)
        assert w.dtype == np.dtype(dtype)
        assert_close(f"w after step {step + 1}", w, expected[step], dtype)


SGD_SETTINGS = [
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.5, weight_decay=0.01),
    dict(momentum=0.9, weight_decay=0.01, nesterov=True),
    dict(momentum=0.8, dampening=0.3),
    dict(momentum=0.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings_", SGD_SETTINGS, ids=[str(s) for s in SGD_SETTINGS])
def test_sgd_momentum_matches_torch(rng, dtype, settings_):
    w0, gradients = problem(rng, dtype)
    expected = torch_trajectory(torch.optim.SGD, w0, gradients, lr=0.05, **settings_)
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = sgd_momentum(w, grad, state, lr=0.05, **settings_)
        assert w.dtype == np.dtype(dtype)
        assert_close(f"w after step {step + 1}", w, expected[step], dtype)


def test_sgd_momentum_first_step_velocity_is_the_gradient(rng):
    """PyTorch starts the velocity at the first gradient (not at momentum * 0 + gradient scaled otherwise)."""
    w, dw = rng.standard_normal(4), rng.standard_normal(4)
    new_w, state = sgd_momentum(w, dw, None, lr=0.1, momentum=0.9, dampening=0.5)
    assert np.array_equal(state.velocity, dw)  # dampening does not apply on the first step either
    assert np.allclose(new_w, w - 0.1 * dw, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "settings_",
    [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.003, weight_decay=0.1)],
    ids=["defaults", "betas", "weight_decay"],
)
def test_adam_matches_torch(rng, dtype, settings_):
    w0, gradients = problem(rng, dtype)
    expected = torch_trajectory(torch.optim.Adam, w0, gradients, **settings_)
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = adam(w, grad, state, **settings_)
        assert w.dtype == np.dtype(dtype) and state.step == step + 1
        assert_close(f"w after step {step + 1}", w, expected[step], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings_", [dict(), dict(lr=0.01, weight_decay=0.3)], ids=["defaults", "weight_decay"])
def test_adamw_matches_torch(rng, dtype, settings_):
    w0, gradients = problem(rng, dtype)
    expected = torch_trajectory(torch.optim.AdamW, w0, gradients, **settings_)
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = adamw(w, grad, state, **settings_)
        assert_close(f"w after step {step + 1}", w, expected[step], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("settings_", [dict(), dict(lr=0.05, alpha=0.9, eps=1e-6), dict(lr=0.01, weight_decay=0.2)],
                         ids=["defaults", "alpha", "weight_decay"])
def test_rmsprop_matches_torch(rng, dtype, settings_):
    w0, gradients = problem(rng, dtype)
    expected = torch_trajectory(torch.optim.RMSprop, w0, gradients, **settings_)
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = rmsprop(w, grad, state, **settings_)
        assert w.dtype == np.dtype(dtype)
        assert_close(f"w after step {step + 1}", w, expected[step], dtype)


def test_rmsprop_rejects_bad_hyperparameters_and_state(rng):
    w, dw = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\)"):
        rmsprop(w, dw, None, alpha=1.0)
    _, state = rmsprop(w, dw, None)
    with pytest.raises(ValueError, match="square_avg"):
        rmsprop(np.zeros(4), np.zeros(4), state)


def test_adam_first_step_moves_every_weight_by_about_lr(rng):
    """A hand-checked property of bias correction: step 1 is lr * g / (|g| + eps), i.e. lr * sign(g)."""
    w, dw = rng.standard_normal(6), rng.standard_normal(6)
    new_w, _ = adam(w, dw, None, lr=0.01)
    assert np.allclose(w - new_w, 0.01 * np.sign(dw), rtol=1e-6)


@settings(max_examples=15)
@given(
    lr=st.floats(1e-4, 1.0), momentum=st.floats(0.0, 0.99), weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    nesterov=st.booleans(), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1),
)
def test_sgd_momentum_property_matches_torch(lr, momentum, weight_decay, nesterov, shape, seed):
    nesterov = nesterov and momentum > 0
    w0, gradients = problem(np.random.default_rng(seed), shape=tuple(shape))
    expected = torch_trajectory(torch.optim.SGD, w0, gradients, lr=lr, momentum=momentum,
                                weight_decay=weight_decay, nesterov=nesterov)
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = sgd_momentum(w, grad, state, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        assert_close(f"w after step {step + 1}", w, expected[step])


@settings(max_examples=15)
@given(
    lr=st.floats(1e-4, 0.1), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.5, 0.9999),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1),
)
def test_adam_property_matches_torch(lr, beta1, beta2, shape, seed):
    w0, gradients = problem(np.random.default_rng(seed), shape=tuple(shape))
    expected = torch_trajectory(torch.optim.Adam, w0, gradients, lr=lr, betas=(beta1, beta2))
    w, state = w0, None
    for step, grad in enumerate(gradients):
        w, state = adam(w, grad, state, lr=lr, betas=(beta1, beta2))
        assert_close(f"w after step {step + 1}", w, expected[step])


def test_optimizers_do_not_modify_their_arguments(rng):
    w, dw = rng.standard_normal(5), rng.standard_normal(5)
    w_copy, dw_copy = w.copy(), dw.copy()
    _, sgd_state = sgd_momentum(w, dw, None, lr=0.1)
    velocity = sgd_state.velocity.copy()
    sgd_momentum(w, dw, sgd_state, lr=0.1)
    _, adam_state = adam(w, dw, None)
    m, v = adam_state.m.copy(), adam_state.v.copy()
    adam(w, dw, adam_state)
    adamw(w, dw, adam_state)
    sgd(w, dw, lr=0.1)
    assert np.array_equal(w, w_copy) and np.array_equal(dw, dw_copy)
    assert np.array_equal(sgd_state.velocity, velocity)
    assert np.array_equal(adam_state.m, m) and np.array_equal(adam_state.v, v) and adam_state.step == 1


def test_l2_penalty_is_sgd_weight_decay(rng):
    """The documented equivalence: gradient + l2_penalty's gradient, then plain SGD == torch SGD(weight_decay)."""
    w0, gradients = problem(rng)
    weight_decay = 0.2
    expected = torch_trajectory(torch.optim.SGD, w0, gradients, lr=0.1, weight_decay=weight_decay)
    w = w0
    for step, grad in enumerate(gradients):
        _, (penalty_grad,) = l2_penalty([w], weight_decay)
        w = sgd(w, grad + penalty_grad, lr=0.1)
        assert_close(f"w after step {step + 1}", w, expected[step])


# ----------------------------------------------------------------------------- schedules vs torch.optim.lr_scheduler

NUM_EPOCHS = 30
BASE_LR = 0.1


def torch_schedule(make_scheduler, num_epochs=NUM_EPOCHS):
    """The learning rate torch uses in each epoch: read before each scheduler.step()."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(num_epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(rates)


S = torch.optim.lr_scheduler
SCHEDULES = {
    "step_lr": (lambda e: step_lr(BASE_LR, e, step_size=7, gamma=0.5), lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
    "step_lr_default_gamma": (lambda e: step_lr(BASE_LR, e, step_size=10), lambda o: S.StepLR(o, step_size=10)),
    "exponential_lr": (lambda e: exponential_lr(BASE_LR, e, gamma=0.9), lambda o: S.ExponentialLR(o, gamma=0.9)),
    "cosine_lr": (lambda e: cosine_lr(BASE_LR, e, total_epochs=NUM_EPOCHS, min_lr=1e-3),
                  lambda o: S.CosineAnnealingLR(o, T_max=NUM_EPOCHS, eta_min=1e-3)),
    "cosine_lr_past_the_end": (lambda e: cosine_lr(BASE_LR, e, total_epochs=12),
                               lambda o: S.CosineAnnealingLR(o, T_max=12)),
    "linear_warmup": (lambda e: linear_warmup(BASE_LR, e, warmup_steps=8, start_factor=0.1),
                      lambda o: S.LinearLR(o, start_factor=0.1, total_iters=8)),
    "linear_warmup_defaults": (lambda e: linear_warmup(BASE_LR, e, warmup_steps=5), lambda o: S.LinearLR(o)),
    "linear_decay": (lambda e: linear_warmup(BASE_LR, e, warmup_steps=20, start_factor=1.0, end_factor=0.05),
                     lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=20)),
    "warmup_cosine_lr": (
        lambda e: warmup_cosine_lr(BASE_LR, e, warmup_steps=5, total_steps=NUM_EPOCHS, start_factor=0.01, min_lr=1e-4),
        lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, start_factor=0.01, total_iters=5),
             S.CosineAnnealingLR(o, T_max=NUM_EPOCHS - 5, eta_min=1e-4)],
            milestones=[5],
        ),
    ),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_torch(name):
    ours, make_scheduler = SCHEDULES[name]
    expected = torch_schedule(make_scheduler)
    assert_close(name, np.array([ours(epoch) for epoch in range(NUM_EPOCHS)]), expected)


def test_schedule_hand_checked_values():
    assert step_lr(1.0, 0, 3) == 1.0 and step_lr(1.0, 3, 3) == pytest.approx(0.1, rel=1e-15)
    assert cosine_lr(2.0, 5, 10) == pytest.approx(1.0, rel=1e-15)  # half way: the average of 2 and 0
    assert cosine_lr(2.0, 10, 10, min_lr=0.5) == pytest.approx(0.5, rel=1e-15)
    assert linear_warmup(1.0, 0, 4, start_factor=0.2) == pytest.approx(0.2, rel=1e-15)
    assert linear_warmup(1.0, 4, 4, start_factor=0.2) == linear_warmup(1.0, 40, 4, start_factor=0.2) == 1.0


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    ("sgd shapes", lambda: sgd(np.ones((2, 3)), np.ones((3, 2)), 0.1), r"\(2, 3\).*\(3, 2\)"),
    ("sgd lr", lambda: sgd(np.ones(2), np.ones(2), -0.1), "lr"),
    ("momentum shapes", lambda: sgd_momentum(np.ones(2), np.ones(3), None, 0.1), r"\(2,\).*\(3,\)"),
    ("velocity shape", lambda: sgd_momentum(np.ones(2), np.ones(2), SGDMomentumState(np.ones(3)), 0.1),
     r"\(3,\).*\(2,\)"),
    ("nesterov without momentum", lambda: sgd_momentum(np.ones(2), np.ones(2), None, 0.1, momentum=0, nesterov=True),
     "Nesterov"),
    ("adam shapes", lambda: adam(np.ones((2, 2)), np.ones(4), None), r"\(2, 2\).*\(4,\)"),
    ("adam state shape", lambda: adam(np.ones(2), np.ones(2), AdamState(1, np.ones(3), np.ones(3))), r"\(3,\).*\(2,\)"),
    ("adam betas", lambda: adam(np.ones(2), np.ones(2), None, betas=(0.9, 1.0)), "betas"),
    ("adamw weight decay", lambda: adamw(np.ones(2), np.ones(2), None, weight_decay=-1), "weight_decay"),
    ("step_size", lambda: step_lr(0.1, 3, 0), "step_size"),
    ("negative epoch", lambda: exponential_lr(0.1, -1, 0.9), "epoch"),
    ("total_epochs", lambda: cosine_lr(0.1, 1, 0), "total_epochs"),
    ("start_factor", lambda: linear_warmup(0.1, 1, 5, start_factor=0.0), "start_factor"),
    ("warmup longer than run", lambda: warmup_cosine_lr(0.1, 1, 10, 10), "warmup_steps"),
]


@pytest.mark.parametrize("call, pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
