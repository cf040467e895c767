"""Element-wise activations, inverted dropout, the linear (fully connected) layer and flatten.

Calling convention: ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients in argument order``. Element-wise
functions accept any shape and return the input's shape and dtype (float32 or
float64; integer input is computed in float64).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf as _erf  # NumPy has no erf; SciPy's is vectorised and accurate to a few ulp

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "gelu_forward",
    "gelu_backward",
    "DEFAULT_DROPOUT_SEED",
    "dropout_forward",
    "dropout_backward",
    "linear_forward",
    "linear_backward",
    "flatten_forward",
    "flatten_backward",
]


def _as_float(x) -> np.ndarray:
    """float32/float64 arrays unchanged; anything else (ints, lists) as float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_dout(dout, expected_shape: tuple, name: str) -> np.ndarray:
    dout = _as_float(dout)
    if dout.shape != expected_shape:
        raise ValueError(f"{name}: dout has shape {dout.shape}, but the forward output had shape {expected_shape}")
    return dout


# --------------------------------------------------------------------------- activations


def relu_forward(x):
    """Rectified linear unit: ``out = max(x, 0)``. x: any shape -> out: same shape.

    Book: "Training and regularization", section "Initialization" (``book/training.md``).
    """
    x = _as_float(x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Backward of :func:`relu_forward`: ``dx = dout * (x > 0)`` (0 at x = 0, as PyTorch).

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x = cache
    dout = _check_dout(dout, x.shape, "relu_backward")
    return dout * (x > 0)


def leaky_relu_forward(x, negative_slope: float = 0.01):
    """Leaky ReLU: ``out = x`` where x > 0, ``negative_slope * x`` elsewhere. x: any shape -> same shape.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x = _as_float(x)
    return np.where(x > 0, x, negative_slope * x).astype(x.dtype, copy=False), (x, negative_slope)


def leaky_relu_backward(dout, cache):
    """Backward of :func:`leaky_relu_forward`: ``dx = dout`` where x > 0, ``negative_slope * dout`` elsewhere.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x, negative_slope = cache
    dout = _check_dout(dout, x.shape, "leaky_relu_backward")
    return np.where(x > 0, dout, negative_slope * dout).astype(dout.dtype, copy=False)


def sigmoid_forward(x):
    """Logistic sigmoid ``out = 1 / (1 + exp(-x))``, without overflow for any x. x: any shape -> same shape.

    ``exp(-x)`` overflows for x below about -710 (float64); so we only ever
    exponentiate ``-|x|`` (at most 1) and use ``sigmoid(x) = z / (1 + z)`` with
    ``z = exp(x)`` on the negative side, which is the same function.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x = _as_float(x)
    z = np.exp(-np.abs(x))  # in (0, 1]
    out = np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(x.dtype, copy=False)
    return out, out


def sigmoid_backward(dout, cache):
    """Backward of :func:`sigmoid_forward`: ``dx = dout * out * (1 - out)``; the cache is the output.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    out = cache
    dout = _check_dout(dout, out.shape, "sigmoid_backward")
    return dout * out * (1 - out)


def tanh_forward(x):
    """Hyperbolic tangent ``out = tanh(x)``. x: any shape -> same shape.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x = _as_float(x)
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """Backward of :func:`tanh_forward`: ``dx = dout * (1 - out^2)``; the cache is the output.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    out = cache
    dout = _check_dout(dout, out.shape, "tanh_backward")
    return dout * (1 - out * out)





def gelu_forward(x):
    """Gaussian error linear unit, exact form (``torch.nn.functional.gelu`` default, ``approximate='none'``).

    ``out = x * Phi(x)`` with ``Phi(x) = (1 + erf(x / sqrt(2))) / 2`` the
    standard normal cumulative distribution. x: any shape -> same shape.
    (The tanh approximation is not implemented.)

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x = _as_float(x)
    x64 = x.astype(np.float64, copy=False)
    cdf = 0.5 * (1.0 + _erf(x64 / math.sqrt(2.0)))
    return (x64 * cdf).astype(x.dtype, copy=False), (x, cdf)


def gelu_backward(dout, cache):
    """Backward of :func:`gelu_forward`: ``dx = dout * (Phi(x) + x * phi(x))``, phi the normal density.

    Book: "Why convolutions", section "Nonlinearity: activation functions" (``book/why_convolutions.md``).
    """
    x, cdf = cache
    dout = _check_dout(dout, x.shape, "gelu_backward")
    x64 = x.astype(np.float64, copy=False)
    pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
    return (dout * (cdf + x64 * pdf)).astype(dout.dtype, copy=False)


# --------------------------------------------------------------------------- dropout

#: Seed used by :func:`dropout_forward` when no ``rng`` is given.
DEFAULT_DROPOUT_SEED = 0


def dropout_forward(x, p: float, training: bool = True, rng=None):
    """Inverted dropout, as ``torch.nn.functional.dropout``.

    x: any shape; p: probability of *dropping* (zeroing) each element, 0 <= p < 1.
    Returns ``out`` of x's shape and dtype, and a cache for :func:`dropout_backward`.

    Training: each element is kept with probability 1 - p and the kept ones are
    scaled by 1 / (1 - p), so ``E[out] = x``: the next layer sees the same
    expected input in training and evaluation, and evaluation is simply the
    identity (``out`` is ``x`` itself, no copy).

    rng: a ``np.random.Generator`` (or an int seed). With ``rng=None`` a new
    generator seeded with :data:`DEFAULT_DROPOUT_SEED` is made on every call,
    so results are reproducible but *every call drops the same elements*: in a
    training loop, create one generator and pass it each time.

    Book: "Training and regularization", section "Dropout" (``book/training.md``).
    """
    x = _as_float(x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_forward: p (the probability of dropping) must lie in [0, 1), got {p}")
    if not training:
        return x, {"mask": None, "shape": x.shape}
    rng = np.random.default_rng(DEFAULT_DROPOUT_SEED if rng is None else rng)
    keep = rng.random(x.shape) >= p  # True with probability 1 - p
    # Store the scale in the mask, so forward and backward are one multiplication.
    mask = (keep / (1.0 - p)).astype(x.dtype)
    return x * mask, {"mask": mask, "shape": x.shape}


def dropout_backward(dout, cache):
    """Backward of :func:`dropout_forward`: ``dx = dout * mask`` (mask 0 or 1 / (1 - p)); identity in evaluation.

    Book: "Training and regularization", section "Dropout" (``book/training.md``).
    """
    dout = _check_dout(dout, cache["shape"], "dropout_backward")
    return dout if cache["mask"] is None else dout * cache["mask"]


# --------------------------------------------------------------------------- linear and flatten


def linear_forward(x, w, b=None):
    """Fully connected layer, PyTorch's layout (``torch.nn.functional.linear``).

    x: (N, ..., in_features); w: (out_features, in_features); b: (out_features,) or None.
    Returns ``out: (N, ..., out_features)`` with ``out = x @ w.T + b`` (the
    leading dims are carried along: every row vector is transformed alike).

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    x, w = _as_float(x), _as_float(w)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear_forward: x of shape {x.shape} must end in in_features = w.shape[1] "
            f"for w of shape (out_features, in_features) = {w.shape}"
        )
    dtype = x.dtype
    w = w.astype(dtype, copy=False)
    out = x @ w.T
    if b is not None:
        b = np.asarray(b)
        if b.shape != (w.shape[0],):
            raise ValueError(f"linear_forward: b must have shape (out_features,) = ({w.shape[0]},), got {b.shape}")
        out = out + b.astype(dtype, copy=False)
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """Backward of :func:`linear_forward`.

    dout: (N, ..., out_features). Returns ``dx: (N, ..., in_features)``,
    ``dw: (out_features, in_features)`` and ``db: (out_features,)`` (None when
    the forward pass had no bias)::

        dx = dout @ w,   dw = sum over rows of dout^T x,   db = sum over rows of dout

    Book: "Training and regularization", section "Weight penalties: L2, L1 and weight decay" (``book/training.md``).
    """
    x, w, has_bias = cache
    dout = _check_dout(dout, x.shape[:-1] + (w.shape[0],), "linear_backward")
    # Every leading index (n, ...) is one row vector; stack them all as rows.
    dout_rows = dout.reshape(-1, w.shape[0])
    x_rows = x.reshape(-1, w.shape[1])
    dx = dout @ w
    dw = dout_rows.T @ x_rows
    db = dout_rows.sum(axis=0) if has_bias else None
    return dx, dw, db


def flatten_forward(x):
    """Flatten every sample to a vector (``torch.flatten(x, 1)``): x: (N, ...) -> (N, prod(...)).

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    x = _as_float(x)
    if x.ndim < 1:
        raise ValueError(f"flatten_forward: expected x of shape (N, ...), got a scalar of shape {x.shape}")
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    """Backward of :func:`flatten_forward`: dout (N, prod(...)) reshaped back to x's shape (N, ...).

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    shape = cache
    dout = _as_float(dout)
    expected = (shape[0], math.prod(shape[1:]))
    if dout.shape != expected:
        raise ValueError(f"flatten_backward: dout has shape {dout.shape}, but the forward output had shape {expected}")
    return dout.reshape(shape)
