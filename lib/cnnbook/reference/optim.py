"""Optimizers (SGD, SGD with momentum, RMSProp, Adam, AdamW) and learning-rate schedules, in NumPy.

Each optimizer updates one parameter array and is a pure function: it returns
the new weights and the new state and changes neither argument. Pass
``state=None`` on the first step. The updates follow ``torch.optim.SGD``,
``torch.optim.RMSprop``, ``torch.optim.Adam`` and ``torch.optim.AdamW`` operation for operation, so the
same gradients give the same weights (tests check this).

The schedules are pure functions of the epoch (or step) number, giving the
learning rate that ``torch.optim.lr_scheduler`` sets for that epoch, where
``epoch = 0`` is before the first ``scheduler.step()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "sgd",
    "SGDMomentumState",
    "sgd_momentum",
    "RMSPropState",
    "rmsprop",
    "AdamState",
    "adam",
    "adamw",
    "step_lr",
    "exponential_lr",
    "cosine_lr",
    "linear_warmup",
    "warmup_cosine_lr",
]


def _as_float(x) -> np.ndarray:
    """float32/float64 arrays unchanged; anything else (ints, lists) as float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_step(w, dw, name: str, lr: float, weight_decay: float):
    w, dw = _as_float(w), _as_float(dw)
    if w.shape != dw.shape:
        raise ValueError(f"{name}: w and dw must have the same shape, got w {w.shape} and dw {dw.shape}")
    if lr < 0:
        raise ValueError(f"{name}: lr must be >= 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"{name}: weight_decay must be >= 0, got {weight_decay}")
    return w, dw.astype(w.dtype, copy=False)


def _check_state_shape(array, w, field: str, name: str):
    if array is not None and array.shape != w.shape:
        raise ValueError(f"{name}: state.{field} has shape {array.shape}, but w has shape {w.shape}")


# --------------------------------------------------------------------------- SGD


def sgd(w, dw, lr: float, weight_decay: float = 0.0) -> np.ndarray:
    """Plain stochastic gradient descent: ``w - lr * (dw + weight_decay * w)``.

    w: any shape; dw: the gradient of the loss, same shape. Returns the new weights
    (there is no state). Matches ``torch.optim.SGD(lr=lr, weight_decay=weight_decay)``.

    Book: "Training and regularization", section "Momentum and Adam" (``book/training.md``).
    """
    w, dw = _check_step(w, dw, "sgd", lr, weight_decay)
    return w - lr * (dw + weight_decay * w)


@dataclass(frozen=True)
class SGDMomentumState:
    """State of :func:`sgd_momentum`: the velocity (PyTorch's ``momentum_buffer``), w's shape; None before step 1.

    Book: "Training and regularization", section "Momentum and Adam" (``book/training.md``).
    """

    velocity: np.ndarray | None = None


def sgd_momentum(
    w,
    dw,
    state: SGDMomentumState | None,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
):
    """SGD with (heavy-ball or Nesterov) momentum, exactly as ``torch.optim.SGD``.

    w: any shape; dw: same shape; state: a :class:`SGDMomentumState`, or None on the first step.
    Returns ``(new_w, new_state)``. With ``g = dw + weight_decay * w``::

        velocity = g                                        on the first step
        velocity = momentum * velocity + (1 - dampening) * g   afterwards
        update   = g + momentum * velocity   if nesterov else   velocity
        new_w    = w - lr * update

    PyTorch's convention puts lr *outside* the velocity (the velocity is a
    running sum of gradients, not of steps), so changing lr mid-training does
    not rescale past steps; some textbooks write ``v = mu * v - lr * g`` instead,
    which only agrees while lr is constant. Nesterov needs momentum > 0 and no dampening.

    Book: "Training and regularization", section "Momentum and Adam" (``book/training.md``).
    """
    w, dw = _check_step(w, dw, "sgd_momentum", lr, weight_decay)
    if momentum < 0:
        raise ValueError(f"sgd_momentum: momentum must be >= 0, got {momentum}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("sgd_momentum: Nesterov momentum requires momentum > 0 and dampening = 0")
    state = SGDMomentumState() if state is None else state
    _check_state_shape(state.velocity, w, "velocity", "sgd_momentum")

    grad = dw + weight_decay * w if weight_decay != 0 else dw
    if state.velocity is None:
        velocity = grad.copy()  # no history yet: PyTorch starts the buffer at the gradient, not at 0
    else:
        velocity = momentum * state.velocity + (1 - dampening) * grad
    update = grad + momentum * velocity if nesterov else velocity
    return w - lr * update, SGDMomentumState(velocity)


# --------------------------------------------------------------------------- RMSProp


@dataclass(frozen=True)
class RMSPropState:
    """State of :func:`rmsprop`: the running mean of squared gradients (PyTorch's ``square_avg``), w's shape;
    None before step 1.

    Book: "Training and regularization", section "Nesterov momentum and RMSProp" (``book/training.md``).
    """

    square_avg: np.ndarray | None = None


def rmsprop(w, dw, state: RMSPropState | None, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
            weight_decay: float = 0.0):
    """RMSProp, exactly as ``torch.optim.RMSprop`` (no momentum, not centered).

    w: any shape; dw: same shape; state: an :class:`RMSPropState`, or None on the first step.
    Returns ``(new_w, new_state)``. With ``g = dw + weight_decay * w``::

        square_avg = alpha * square_avg + (1 - alpha) * g^2      (square_avg starts at 0)
        new_w      = w - lr * g / (sqrt(square_avg) + eps)

    Each weight's step is divided by the root mean square of its recent
    gradients, so steep and flat directions move at similar speeds; Adam adds
    momentum and a bias correction to the same idea.

    Book: "Training and regularization", section "Nesterov momentum and RMSProp" (``book/training.md``).
    """
    w, dw = _check_step(w, dw, "rmsprop", lr, weight_decay)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"rmsprop: alpha must lie in [0, 1), got {alpha}")
    if not eps >= 0:
        raise ValueError(f"rmsprop: eps must be >= 0, got {eps}")
    state = RMSPropState() if state is None else state
    _check_state_shape(state.square_avg, w, "square_avg", "rmsprop")
    grad = dw + weight_decay * w if weight_decay != 0 else dw
    square_avg = np.zeros_like(w) if state.square_avg is None else state.square_avg
    square_avg = alpha * square_avg + (1 - alpha) * grad * grad
    return w - lr * grad / (np.sqrt(square_avg) + eps), RMSPropState(square_avg)


# --------------------------------------------------------------------------- Adam


@dataclass(frozen=True)
class AdamState:
    """State of :func:`adam` / :func:`adamw`.

    step: how many updates have been made (0 before the first).
    m: running mean of the gradients (PyTorch's ``exp_avg``), w's shape; None before step 1.
    v: running mean of the squared gradients (``exp_avg_sq``), w's shape; None before step 1.

    Book: "Training and regularization", section "Momentum and Adam" (``book/training.md``).
    """

    step: int = 0
    m: np.ndarray | None = None
    v: np.ndarray | None = None


def _adam_step(w, grad, state: AdamState, lr, betas, eps, name):
    beta1, beta2 = betas
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"{name}: betas must lie in [0, 1), got {betas}")
    if not eps >= 0:
        raise ValueError(f"{name}: eps must be >= 0, got {eps}")
    _check_state_shape(state.m, w, "m", name)
    _check_state_shape(state.v, w, "v", name)
    m = np.zeros_like(w) if state.m is None else state.m
    v = np.zeros_like(w) if state.v is None else state.v
    step = state.step + 1

    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    # m and v start at 0, so early averages are biased towards 0; dividing by
    # (1 - beta^step) removes that bias (it tends to 1 as step grows).
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    # PyTorch's order of operations: eps is added *after* the bias correction of v.
    denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
    new_w = w - (lr / bias_correction1) * (m / denom)
    return new_w, AdamState(step, m, v)


def adam(
    w,
    dw,
    state: AdamState | None,
    lr: float = 1e-3,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
):
    """Adam, exactly as ``torch.optim.Adam`` (no amsgrad).

    w: any shape; dw: same shape; state: an :class:`AdamState`, or None on the first step.
    Returns ``(new_w, new_state)``. With ``g = dw + weight_decay * w`` and t the step number (1, 2, ...)::

        m = beta1 * m + (1 - beta1) * g          v = beta2 * v + (1 - beta2) * g^2
        new_w = w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``weight_decay`` here is an L2 penalty added to the gradient (so it is
    rescaled by the adaptive denominator); see :func:`adamw` for decoupled decay.

    Book: "Training and regularization", section "Momentum and Adam" (``book/training.md``).
    """
    w, dw = _check_step(w, dw, "adam", lr, weight_decay)
    grad = dw + weight_decay * w if weight_decay != 0 else dw
    return _adam_step(w, grad, AdamState() if state is None else state, lr, betas, eps, "adam")


def adamw(
    w,
    dw,
    state: AdamState | None,
    lr: float = 1e-3,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
):
    """AdamW (decoupled weight decay), exactly as ``torch.optim.AdamW``.

    w: any shape; dw: same shape; state: an :class:`AdamState`, or None on the first step.
    Returns ``(new_w, new_state)``. First shrink the weights, ``w <- w * (1 - lr * weight_decay)``,
    then take the Adam step of :func:`adam` with the plain gradient ``dw``.
    Unlike Adam's L2 penalty, the decay is not divided by sqrt(v): every weight decays at the same rate.

    Book: "Training and regularization", section "Weight decay is not an L2 penalty for Adam" (``book/training.md``).
    """
    w, dw = _check_step(w, dw, "adamw", lr, weight_decay)
    decayed = w * (1 - lr * weight_decay)
    return _adam_step(decayed, dw, AdamState() if state is None else state, lr, betas, eps, "adamw")


# --------------------------------------------------------------------------- learning-rate schedules


def _check_epoch(epoch: int, name: str, what: str = "epoch"):
    if epoch < 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {epoch}")


def step_lr(base_lr: float, epoch: int, step_size: int, gamma: float = 0.1) -> float:
    """Step decay: multiply by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``).

    ``lr = base_lr * gamma ** (epoch // step_size)``; epoch = 0, 1, 2, ...

    Book: "Training and regularization", section "Learning-rate schedules" (``book/training.md``).
    """
    _check_epoch(epoch, "step_lr")
    if step_size < 1:
        raise ValueError(f"step_lr: step_size must be >= 1, got {step_size}")
    return base_lr * gamma ** (epoch // step_size)


def exponential_lr(base_lr: float, epoch: int, gamma: float) -> float:
    """Exponential decay every epoch (``torch.optim.lr_scheduler.ExponentialLR``): ``lr = base_lr * gamma ** epoch``.

    Book: "Training and regularization", section "Learning-rate schedules" (``book/training.md``).
    """
    _check_epoch(epoch, "exponential_lr")
    return base_lr * gamma**epoch


def cosine_lr(base_lr: float, epoch: int, total_epochs: int, min_lr: float = 0.0) -> float:
    """Cosine annealing from ``base_lr`` down to ``min_lr`` (``torch.optim.lr_scheduler.CosineAnnealingLR``).

    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2``
    (PyTorch's ``T_max`` is ``total_epochs``, ``eta_min`` is ``min_lr``).
    At ``epoch = total_epochs`` the rate is ``min_lr``; past it the cosine rises
    again, exactly as PyTorch's does, so set total_epochs to the length of the run.

    Book: "Training and regularization", section "Learning-rate schedules" (``book/training.md``).
    """
    _check_epoch(epoch, "cosine_lr")
    if total_epochs < 1:
        raise ValueError(f"cosine_lr: total_epochs must be >= 1, got {total_epochs}")
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2


def linear_warmup(
    base_lr: float, step: int, warmup_steps: int, start_factor: float = 1.0 / 3, end_factor: float = 1.0
) -> float:
    """Linear ramp of the learning rate (``torch.optim.lr_scheduler.LinearLR``, same defaults).

    The factor goes linearly from ``start_factor`` at step 0 to ``end_factor``
    at ``step = warmup_steps`` and stays there::

        lr = base_lr * (start_factor + (end_factor - start_factor) * min(step, warmup_steps) / warmup_steps)

    For warm-up, use a small start_factor (e.g. 0.01) and end_factor = 1.
    PyTorch requires 0 < start_factor <= 1 and 0 <= end_factor <= 1; so do we.

    Book: "Training and regularization", section "Learning-rate schedules" (``book/training.md``).
    """
    _check_epoch(step, "linear_warmup", "step")
    if warmup_steps < 1:
        raise ValueError(f"linear_warmup: warmup_steps must be >= 1, got {warmup_steps}")
    if not (0 < start_factor <= 1 and 0 <= end_factor <= 1):
        raise ValueError(
            f"linear_warmup: need 0 < start_factor <= 1 and 0 <= end_factor <= 1, got {start_factor}, {end_factor}"
        )
    progress = min(step, warmup_steps) / warmup_steps
    return base_lr * (start_factor + (end_factor - start_factor) * progress)


def warmup_cosine_lr(
    base_lr: float, step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.01, min_lr: float = 0.0
) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine annealing until ``total_steps``.

    ``linear_warmup(base_lr, step, warmup_steps, start_factor)`` for step < warmup_steps, then
    ``cosine_lr(base_lr, step - warmup_steps, total_steps - warmup_steps, min_lr)``.
    Equivalent to PyTorch's ``SequentialLR([LinearLR(start_factor, total_iters=warmup_steps),
    CosineAnnealingLR(T_max=total_steps - warmup_steps, eta_min=min_lr)], milestones=[warmup_steps])``.

    Book: "Training and regularization", section "Learning-rate schedules" (``book/training.md``).
    """
    if not 0 < warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine_lr: need 0 < warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
    if step < warmup_steps:
        return linear_warmup(base_lr, step, warmup_steps, start_factor)
    return cosine_lr(base_lr, step - warmup_steps, total_steps - warmup_steps, min_lr)
