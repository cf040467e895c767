"""Softmax, softmax cross-entropy and weight penalties (L2, L1).

Losses return ``(loss, gradient)`` directly rather than ``(out, cache)``: a loss
is the end of the graph, so its backward pass needs no upstream gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "l2_penalty", "l1_penalty"]


def _as_float(x) -> np.ndarray:
    """float32/float64 arrays unchanged; anything else (ints, lists) as float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def log_softmax(x, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` computed stably: ``x - max - log(sum(exp(x - max)))`` along ``axis``.

    x: any shape -> same shape. Subtracting the maximum first (the
    *log-sum-exp trick*) changes nothing mathematically (softmax is shift
    invariant) but makes the largest exponent exp(0) = 1, so nothing overflows,
    even for logits of magnitude 1e4 where ``exp(x)`` itself is infinite.

    Book: "Training and regularization", section "Weight penalties: L2, L1 and weight decay" (``book/training.md``).
    """
    x = _as_float(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed stably (see :func:`log_softmax`).

    x: any shape -> same shape; the values along ``axis`` are positive and sum to 1.

    Book: "Normalization", section "Why the gradient check needs a random upstream gradient" (``book/normalization.md``).
    """
    x = _as_float(x)
    exps = np.exp(x - x.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over a batch, and its gradient (``torch.nn.functional.cross_entropy``).

    logits: (N, K) unnormalized class scores; labels: (N,) integers in [0, K).
    Returns ``loss`` (a scalar of the logits' dtype) and ``dlogits: (N, K)``::

        loss = -(1 / N) * sum_n log softmax(logits[n])[labels[n]]
        dlogits = (softmax(logits) - one_hot(labels)) / N

    Stable for logits of any magnitude (computed through :func:`log_softmax`).

    Book: "Training and regularization", section "Weight penalties: L2, L1 and weight decay" (``book/training.md``).
    """
    logits = _as_float(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0] or logits.shape[0] == 0:
        raise ValueError(
            f"softmax_cross_entropy: expected logits of shape (N, K) and labels of shape (N,) with N >= 1, "
            f"got logits {logits.shape} and labels {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}")
    N, K = logits.shape
    if labels.min() < 0 or labels.max() >= K:
        raise ValueError(
            f"softmax_cross_entropy: labels must lie in [0, {K}) for logits of shape {logits.shape}, "
            f"got values from {labels.min()} to {labels.max()}"
        )
    log_probs = log_softmax(logits, axis=1)
    rows = np.arange(N)
    loss = -log_probs[rows, labels].mean()
    dlogits = np.exp(log_probs)  # softmax, reusing the stable log-probabilities
    dlogits[rows, labels] -= 1
    dlogits /= N
    return loss, dlogits


def _check_penalty_inputs(weights, weight_decay: float, name: str) -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise ValueError(
            f"{name}: weights must be a sequence (list or tuple) of arrays, e.g. [w1, w2]; "
            f"got {type(weights).__name__}" + (f" of shape {weights.shape}" if hasattr(weights, "shape") else "")
        )
    if weight_decay < 0:
        raise ValueError(f"{name}: weight_decay must be >= 0, got {weight_decay}")
    return [_as_float(w) for w in weights]


def l2_penalty(weights: Sequence, weight_decay: float):
    """L2 weight penalty ("weight decay") and its gradient.

    weights: a sequence of arrays of any shapes, e.g. ``[w1, w2]`` (usually
    the weights only, not the biases); weight_decay: lambda >= 0.
    Returns ``penalty`` (a scalar) and ``grads``, a list with one array per weight::

        penalty = (lambda / 2) * sum_i ||w_i||^2,     grads[i] = lambda * w_i

    The 1/2 makes the gradient exactly ``lambda * w``, which is what
    ``torch.optim.SGD(weight_decay=lambda)`` adds to each gradient: adding this
    penalty to the loss and using ``weight_decay=lambda`` in SGD are the same
    update (the same holds for ``torch.optim.Adam``'s weight_decay, but *not*
    for AdamW, whose decay is applied to the weights outside the adaptive step).

    Book: "Training and regularization", section "Weight penalties: L2, L1 and weight decay" (``book/training.md``).
    """
    weights = _check_penalty_inputs(weights, weight_decay, "l2_penalty")
    penalty = 0.5 * weight_decay * sum(np.sum(w * w) for w in weights)
    grads = [weight_decay * w for w in weights]
    return penalty, grads


def l1_penalty(weights: Sequence, weight_decay: float):
    """L1 weight penalty and its (sub)gradient.

    weights: a sequence of arrays of any shapes; weight_decay: lambda >= 0.
    Returns ``penalty`` (a scalar) and ``grads``, one array per weight::

        penalty = lambda * sum_i sum |w_i|,     grads[i] = lambda * sign(w_i)

    |w| has no derivative at 0; like PyTorch we use 0 there. The gradient does
    not shrink with w, which is why L1 pushes small weights all the way to zero.

    Book: "Training and regularization", section "Weight penalties: L2, L1 and weight decay" (``book/training.md``).
    """
    weights = _check_penalty_inputs(weights, weight_decay, "l1_penalty")
    penalty = weight_decay * sum(np.sum(np.abs(w)) for w in weights)
    grads = [weight_decay * np.sign(w) for w in weights]
    return penalty, grads
