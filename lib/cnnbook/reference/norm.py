"""Normalization layers: batch norm, spatial batch norm, layer norm, group norm, instance norm.

Every layer here computes the same two lines, only over different axes::

    xhat = (x - mean) / sqrt(var + eps)      # mean and *biased* variance over the axes
    out  = weight * xhat + bias               # a learned scale and shift per feature

=====================  ================  =========================  ==============
layer                  x                 statistics over            weight, bias
=====================  ================  =========================  ==============
batch norm             (N, D)            N, per feature             (D,)
spatial batch norm     (N, C, H, W)      N, H, W, per channel       (C,)
layer norm             (N, *S)           S, per sample              S
group norm             (N, C, H, W)      C/G channels, H, W,        (C,)
                                         per sample and group
instance norm          (N, C, H, W)      H, W, per sample+channel   (C,)
=====================  ================  =========================  ==============

Names follow ``torch.nn``: ``weight`` is the learned scale that papers and the
book's formulas call gamma (``γ``), and ``bias`` the learned shift they call
beta (``β``); ``training`` selects batch or running statistics, as
``torch.nn.functional.batch_norm``'s argument of that name.

Batch norm alone uses statistics of the *batch*, so it behaves differently in
training and evaluation and keeps running averages (:class:`BatchNormState`).

Calling convention: ``forward(...) -> (out, cache)``,
``backward(dout, cache) -> (dx, dweight, dbias)``. Output dtype = input dtype
(float32 or float64; integer input is computed in float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BatchNormState",
    "batch_norm_forward",
    "batch_norm_backward",
    "batch_norm_backward_simple",
    "batch_norm2d_forward",
    "batch_norm2d_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
    "instance_norm_forward",
    "instance_norm_backward",
]


# --------------------------------------------------------------------------- helpers


def _as_float(x) -> np.ndarray:
    """float32/float64 arrays unchanged; anything else (ints, lists) as float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _check_params(weight, bias, expected_shape: tuple, x_shape: tuple, dtype, name: str):
    """weight and bias must both have ``expected_shape``; returned in the dtype of x."""
    weight, bias = np.asarray(weight), np.asarray(bias)
    if weight.shape != expected_shape or bias.shape != expected_shape:
        raise ValueError(
            f"{name}: weight and bias must have shape {expected_shape} for x of shape {x_shape}, "
            f"got weight {weight.shape} and bias {bias.shape}"
        )
    return weight.astype(dtype, copy=False), bias.astype(dtype, copy=False)


def _check_dout(dout, expected_shape: tuple, name: str) -> np.ndarray:
    dout = _as_float(dout)
    if dout.shape != expected_shape:
        raise ValueError(f"{name}: dout has shape {dout.shape}, but the forward output had shape {expected_shape}")
    return dout


def _normalize(x: np.ndarray, axes: tuple, eps: float):
    """xhat = (x - mean) / sqrt(var + eps) over ``axes``; returns (xhat, inv_std) with inv_std keeping dims."""
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)  # biased: divide by the count
    inv_std = 1.0 / np.sqrt(var + eps)
    return centered * inv_std, inv_std


def _normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axes: tuple) -> np.ndarray:
    """Gradient through ``xhat = (x - mean) * inv_std`` with mean and variance over ``axes``.

    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)): the two
    subtracted means are what flows back through the mean and the variance
    (see :func:`batch_norm_backward` for the derivation, step by step).
    """
    mean_dxhat = dxhat.mean(axis=axes, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


# --------------------------------------------------------------------------- batch norm


@dataclass
class BatchNormState:
    """Running statistics of a batch-norm layer, with PyTorch's conventions.

    running_mean: (D,) (or (C,) for spatial batch norm), starts at 0.
    running_var: (D,), starts at 1.
    momentum: weight of the *new* batch in the running average (PyTorch's
        meaning, the opposite of Keras'):
        ``running = (1 - momentum) * running + momentum * batch_statistic``.
        PyTorch's ``momentum=None`` (a cumulative average) is not supported.
    eps: added to the variance before the square root.

    The running variance is updated with the *unbiased* batch variance
    (divide by N - 1), while the batch itself is normalized with the *biased*
    one (divide by N), exactly as ``torch.nn.BatchNorm1d`` does.

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """

    running_mean: np.ndarray
    running_var: np.ndarray
    momentum: float = 0.1
    eps: float = 1e-5

    def __post_init__(self):
        self.running_mean = _as_float(self.running_mean)
        self.running_var = _as_float(self.running_var)
        if self.running_mean.ndim != 1 or self.running_mean.shape != self.running_var.shape:
            raise ValueError(
                "BatchNormState: running_mean and running_var must be 1-D of the same shape (D,), "
                f"got {self.running_mean.shape} and {self.running_var.shape}"
            )
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNormState: momentum must lie in [0, 1], got {self.momentum}")
        if not self.eps > 0.0:
            raise ValueError(f"BatchNormState: eps must be positive, got {self.eps}")

    @classmethod
    def initial(cls, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float64) -> BatchNormState:
        """A fresh state for ``num_features`` features: running mean 0, running variance 1 (as PyTorch)."""
        return cls(np.zeros(num_features, dtype=dtype), np.ones(num_features, dtype=dtype), momentum, eps)


def _check_batch_norm_inputs(x, weight, bias, state: BatchNormState, name: str):
    x = _as_float(x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected x of shape (N, D), got shape {x.shape}")
    num_features = x.shape[1]
    weight, bias = _check_params(weight, bias, (num_features,), x.shape, x.dtype, name)
    if state.running_mean.shape != (num_features,):
        raise ValueError(
            f"{name}: state holds running statistics of shape {state.running_mean.shape}, "
            f"but x of shape {x.shape} has {num_features} features"
        )
    return x, weight, bias


def batch_norm_forward(x, weight, bias, state: BatchNormState, training: bool = True):
    """Batch normalization of a batch of feature vectors (``torch.nn.BatchNorm1d``).

    x: (N, D); weight: (D,); bias: (D,); state: :class:`BatchNormState` with (D,) statistics.
    Returns ``out: (N, D)`` and a cache for :func:`batch_norm_backward`.

    Training (``training=True``), per feature d over the N samples::

        mean = sum_n x[n, d] / N,   var = sum_n (x[n, d] - mean)^2 / N
        out[n, d] = weight[d] * (x[n, d] - mean) / sqrt(var + eps) + bias[d]

    and **updates state in place** (its arrays are replaced, not written into):
    ``running_mean <- (1 - momentum) * running_mean + momentum * mean`` and
    ``running_var  <- (1 - momentum) * running_var + momentum * var * N / (N - 1)``.
    Needs N >= 2, like PyTorch: with one sample the unbiased variance is
    undefined (and the normalized output would be exactly bias).

    Evaluation (``training=False``): the same formula with ``running_mean`` and
    ``running_var`` in place of the batch statistics; the state is not changed.

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    x, weight, bias = _check_batch_norm_inputs(x, weight, bias, state, "batch_norm_forward")
    if not training:
        return _batch_norm_eval_forward(x, weight, bias, state)
    N = x.shape[0]
    if N < 2:
        raise ValueError(
            f"batch_norm_forward: training needs more than one value per feature, got x of shape {x.shape} "
            "(the unbiased variance for the running statistics is undefined for N = 1)"
        )
    # Named intermediates, one per node of the computational graph that
    # batch_norm_backward walks back through.
    mean = x.sum(axis=0) / N  # (D,)
    centered = x - mean  # (N, D)
    squared = centered**2  # (N, D)
    var = squared.sum(axis=0) / N  # (D,), biased
    std = np.sqrt(var + state.eps)  # (D,)
    inv_std = 1.0 / std  # (D,)
    xhat = centered * inv_std  # (N, D)
    out = weight * xhat + bias  # (N, D)

    momentum = state.momentum
    unbiased_var = var * (N / (N - 1))
    state.running_mean = (1 - momentum) * state.running_mean + momentum * mean
    state.running_var = (1 - momentum) * state.running_var + momentum * unbiased_var

    cache = {
        "mode": "train",
        "centered": centered,
        "std": std,
        "inv_std": inv_std,
        "xhat": xhat,
        "weight": weight,
    }
    return out, cache


def _batch_norm_eval_forward(x, weight, bias, state: BatchNormState):
    # Copy the running statistics into the cache (via inv_std): the state may
    # change before backward is called.
    running_mean = state.running_mean.astype(x.dtype, copy=False)
    inv_std = 1.0 / np.sqrt(state.running_var.astype(x.dtype, copy=False) + state.eps)
    xhat = (x - running_mean) * inv_std
    out = weight * xhat + bias
    return out, {"mode": "eval", "inv_std": inv_std, "xhat": xhat, "weight": weight}


def _batch_norm_eval_backward(dout, cache):
    # In evaluation mode mean and variance are constants: the layer is an
    # affine map per feature, so the gradient is just a per-feature scale.
    dbias = dout.sum(axis=0)
    dweight = (dout * cache["xhat"]).sum(axis=0)
    dx = dout * cache["weight"] * cache["inv_std"]
    return dx, dweight, dbias


def batch_norm_backward(dout, cache):
    """Backward pass of :func:`batch_norm_forward`, node by node through the computational graph.

    dout: (N, D), the upstream gradient; cache: from :func:`batch_norm_forward`.
    Returns ``dx: (N, D)``, ``dweight: (D,)``, ``dbias: (D,)``.

    The forward pass computed, in order::

        mean = sum(x) / N;  centered = x - mean;  squared = centered^2
        var = sum(squared) / N;  std = sqrt(var + eps);  inv_std = 1 / std
        xhat = centered * inv_std;  out = weight * xhat + bias

    and each line below is the chain rule for one of those nodes, in reverse.
    A node used twice (``centered`` feeds both ``squared`` and ``xhat``; ``x``
    feeds both ``mean`` and ``centered``) *adds* the gradients of its uses.
    :func:`batch_norm_backward_simple` gives the same result in one formula.
    In evaluation mode (the cache records it) the statistics are constants and
    ``dx = dout * weight / sqrt(running_var + eps)``.

    Book: "Normalization", section "The backward pass, node by node" (``book/normalization.md``).
    """
    dout = _check_dout(dout, cache["xhat"].shape, "batch_norm_backward")
    if cache["mode"] == "eval":
        return _batch_norm_eval_backward(dout, cache)
    centered, std, inv_std, xhat, weight = (cache[k] for k in ("centered", "std", "inv_std", "xhat", "weight"))
    N = dout.shape[0]

    # out = weight * xhat + bias
    dbias = dout.sum(axis=0)  # bias is broadcast over the N rows: sum
    dweight = (dout * xhat).sum(axis=0)
    dxhat = dout * weight  # (N, D)
    # xhat = centered * inv_std
    dinv_std = (dxhat * centered).sum(axis=0)  # (D,): inv_std was broadcast over N
    dcentered = dxhat * inv_std  # first of centered's two uses
    # inv_std = 1 / std
    dstd = -dinv_std / std**2
    # std = sqrt(var + eps)
    dvar = dstd * 0.5 / std
    # var = sum(squared) / N: every element of the column gets dvar / N
    dsquared = np.broadcast_to(dvar / N, dout.shape)
    # squared = centered^2: second use of centered
    dcentered = dcentered + 2.0 * centered * dsquared
    # centered = x - mean
    dmean = -dcentered.sum(axis=0)  # (D,)
    dx = dcentered.copy()  # first of x's two uses
    # mean = sum(x) / N: second use of x
    dx += dmean / N
    return dx, dweight, dbias


def batch_norm_backward_simple(dout, cache):
    """Backward pass of :func:`batch_norm_forward` as one closed-form expression.

    dout: (N, D); cache: from :func:`batch_norm_forward`.
    Returns ``dx: (N, D)``, ``dweight: (D,)``, ``dbias: (D,)``, equal to
    :func:`batch_norm_backward` up to round-off. Summing the graph's paths by hand gives::

        dx = (weight * inv_std / N) * (N * dout - sum_n(dout) - xhat * sum_n(dout * xhat))

    ``sum_n(dout)`` is exactly ``dbias`` and ``sum_n(dout * xhat)`` is exactly
    ``dweight``: the input gradient reuses the parameter gradients.
    In evaluation mode, ``dx = dout * weight * inv_std``.

    Book: "Normalization", section "The backward pass in closed form" (``book/normalization.md``).
    """
    dout = _check_dout(dout, cache["xhat"].shape, "batch_norm_backward_simple")
    if cache["mode"] == "eval":
        return _batch_norm_eval_backward(dout, cache)
    xhat, inv_std, weight = cache["xhat"], cache["inv_std"], cache["weight"]
    N = dout.shape[0]
    dbias = dout.sum(axis=0)
    dweight = (dout * xhat).sum(axis=0)
    dx = (weight * inv_std / N) * (N * dout - dbias - xhat * dweight)
    return dx, dweight, dbias


def _check_4d(x, name: str) -> np.ndarray:
    x = _as_float(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x of shape (N, C, H, W), got shape {x.shape}")
    return x


def batch_norm2d_forward(x, weight, bias, state: BatchNormState, training: bool = True):
    """Batch normalization of feature maps, one set of statistics per channel (``torch.nn.BatchNorm2d``).

    x: (N, C, H, W); weight: (C,); bias: (C,); state: :class:`BatchNormState` with (C,) statistics.
    Returns ``out: (N, C, H, W)`` and a cache for :func:`batch_norm2d_backward`.

    Every pixel of a channel is one more sample of that channel's feature, so
    the mean and variance of channel c run over the N * H * W values
    ``x[:, c, :, :]``. That is plain :func:`batch_norm_forward` on the
    (N * H * W, C) matrix whose columns are the channels, which is how it is
    computed here. Training updates ``state`` in place (unbiased variance with
    count N * H * W, as PyTorch) and needs N * H * W >= 2.

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """
    x = _check_4d(x, "batch_norm2d_forward")
    N, C, H, W = x.shape
    _check_params(weight, bias, (C,), x.shape, x.dtype, "batch_norm2d_forward")
    if state.running_mean.shape != (C,):
        raise ValueError(
            f"batch_norm2d_forward: state holds running statistics of shape {state.running_mean.shape}, "
            f"but x of shape {x.shape} has {C} channels"
        )
    if training and N * H * W < 2:
        raise ValueError(
            f"batch_norm2d_forward: training needs more than one value per channel, got x of shape {x.shape}"
        )
    # Channels last, then flatten: row = one (n, h, w) position, column = one channel.
    columns = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out_columns, column_cache = batch_norm_forward(columns, weight, bias, state, training)
    out = out_columns.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, {"column_cache": column_cache, "shape": x.shape}


def batch_norm2d_backward(dout, cache):
    """Backward pass of :func:`batch_norm2d_forward`.

    dout: (N, C, H, W); returns ``dx: (N, C, H, W)``, ``dweight: (C,)``, ``dbias: (C,)``.
    Same rearrangement as the forward pass, then :func:`batch_norm_backward_simple`.

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """
    N, C, H, W = cache["shape"]
    dout = _check_dout(dout, cache["shape"], "batch_norm2d_backward")
    dout_columns = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx_columns, dweight, dbias = batch_norm_backward_simple(dout_columns, cache["column_cache"])
    dx = dx_columns.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dweight, dbias


# --------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, weight, bias, eps: float = 1e-5):
    """Layer normalization over the trailing dimensions (``torch.nn.functional.layer_norm``).

    x: (N, *S), e.g. (N, D) or (N, C, H, W); weight, bias: S, the trailing
    "normalized shape", e.g. (D,) or (C, H, W). Returns ``out`` of x's shape and a cache.

    Each sample is normalized with its *own* mean and biased variance over the
    S dimensions, so the result does not depend on the batch and training and
    evaluation behave the same (no running statistics)::

        out[n] = weight * (x[n] - mean(x[n])) / sqrt(var(x[n]) + eps) + bias

    Book: "Normalization", section "Layer normalization" (``book/normalization.md``).
    """
    x = _as_float(x)
    normalized_shape = np.shape(weight)
    num_normalized = len(normalized_shape)
    if num_normalized == 0 or x.ndim < num_normalized or x.shape[x.ndim - num_normalized :] != normalized_shape:
        raise ValueError(
            f"layer_norm_forward: weight's shape {normalized_shape} must equal the trailing dimensions "
            f"of x, got x of shape {x.shape}"
        )
    weight, bias = _check_params(weight, bias, normalized_shape, x.shape, x.dtype, "layer_norm_forward")
    normalized_axes = tuple(range(x.ndim - num_normalized, x.ndim))
    xhat, inv_std = _normalize(x, normalized_axes, eps)
    out = weight * xhat + bias  # weight (S) broadcasts over the leading (N, ...) dims
    cache = {"xhat": xhat, "inv_std": inv_std, "weight": weight, "normalized_axes": normalized_axes}
    return out, cache


def layer_norm_backward(dout, cache):
    """Backward pass of :func:`layer_norm_forward`.

    dout: (N, *S); returns ``dx: (N, *S)``, ``dweight: S``, ``dbias: S``.
    The batch-norm formula with the roles of the axes swapped: means are over S,
    parameter gradients sum over the leading dims.

    Book: "Normalization", section "Layer normalization" (``book/normalization.md``).
    """
    xhat, inv_std, weight, normalized_axes = (cache[k] for k in ("xhat", "inv_std", "weight", "normalized_axes"))
    dout = _check_dout(dout, xhat.shape, "layer_norm_backward")
    leading_axes = tuple(range(xhat.ndim - len(normalized_axes)))
    dbias = dout.sum(axis=leading_axes)
    dweight = (dout * xhat).sum(axis=leading_axes)
    dx = _normalize_backward(dout * weight, xhat, inv_std, normalized_axes)
    return dx, dweight, dbias


# --------------------------------------------------------------------------- group and instance norm


def _group_norm_forward(x, num_groups, weight, bias, eps, name):
    x = _as_float(x)
    if x.ndim < 2:
        raise ValueError(f"{name}: expected x of shape (N, C, H, W), got shape {x.shape}")
    N, C = x.shape[:2]
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"{name}: num_groups must be a positive integer, got {num_groups!r}")
    if C % num_groups != 0:
        raise ValueError(f"{name}: {C} channels (x of shape {x.shape}) cannot be split into {num_groups} groups")
    weight, bias = _check_params(weight, bias, (C,), x.shape, x.dtype, name)
    # One row per (sample, group): the group's C / G channels and all their pixels.
    grouped = x.reshape(N, num_groups, -1)
    xhat_grouped, inv_std = _normalize(grouped, (2,), eps)
    xhat = xhat_grouped.reshape(x.shape)
    per_channel = (1, C) + (1,) * (x.ndim - 2)  # weight and bias scale and shift whole channels
    out = weight.reshape(per_channel) * xhat + bias.reshape(per_channel)
    cache = {"xhat": xhat, "inv_std": inv_std, "weight": weight, "num_groups": num_groups}
    return out, cache


def group_norm_forward(x, num_groups: int, weight, bias, eps: float = 1e-5):
    """Group normalization (``torch.nn.functional.group_norm``).

    x: (N, C, H, W) (any number of trailing spatial dims works, including none);
    num_groups: G, must divide C; weight, bias: (C,).
    Returns ``out`` of x's shape and a cache for :func:`group_norm_backward`.

    The C channels are split into G consecutive groups of C / G channels; each
    sample's group is normalized with its own mean and biased variance over
    its (C / G) * H * W values, then each channel c is scaled by ``weight[c]``
    and shifted by ``bias[c]``. G = 1 is layer norm over (C, H, W) with
    per-channel parameters; G = C is instance norm.

    Book: "Normalization", section "Group and instance normalization" (``book/normalization.md``).
    """
    return _group_norm_forward(x, num_groups, weight, bias, eps, "group_norm_forward")


def group_norm_backward(dout, cache):
    """Backward pass of :func:`group_norm_forward`.

    dout: (N, C, H, W); returns ``dx: (N, C, H, W)``, ``dweight: (C,)``, ``dbias: (C,)``.

    Book: "Normalization", section "Group and instance normalization" (``book/normalization.md``).
    """
    xhat, inv_std, weight, num_groups = (cache[k] for k in ("xhat", "inv_std", "weight", "num_groups"))
    dout = _check_dout(dout, xhat.shape, "group_norm_backward")
    N, C = xhat.shape[:2]
    sum_axes = (0,) + tuple(range(2, xhat.ndim))  # everything but the channel
    dbias = dout.sum(axis=sum_axes)
    dweight = (dout * xhat).sum(axis=sum_axes)
    dxhat = dout * weight.reshape((1, C) + (1,) * (xhat.ndim - 2))
    dx_grouped = _normalize_backward(dxhat.reshape(N, num_groups, -1), xhat.reshape(N, num_groups, -1), inv_std, (2,))
    return dx_grouped.reshape(xhat.shape), dweight, dbias


def instance_norm_forward(x, weight, bias, eps: float = 1e-5):
    """Instance normalization (``torch.nn.functional.instance_norm`` with input statistics).

    x: (N, C, H, W); weight, bias: (C,). Returns ``out`` of x's shape and a cache.
    Every (sample, channel) feature map is normalized over its own H * W pixels:
    group norm with one channel per group, ``group_norm_forward(x, C, weight, bias, eps)``.

    Book: "Normalization", section "Group and instance normalization" (``book/normalization.md``).
    """
    x = _as_float(x)
    if x.ndim < 2:
        raise ValueError(f"instance_norm_forward: expected x of shape (N, C, H, W), got shape {x.shape}")
    return _group_norm_forward(x, x.shape[1], weight, bias, eps, "instance_norm_forward")


def instance_norm_backward(dout, cache):
    """Backward pass of :func:`instance_norm_forward`: dout (N, C, H, W) -> dx, dweight (C,), dbias (C,).

    Book: "Normalization", section "Group and instance normalization" (``book/normalization.md``).
    """
    return group_norm_backward(dout, cache)


from ._renamed import module_getattr as _module_getattr  # noqa: E402  (old names, with a warning)

__getattr__ = _module_getattr(globals(), __name__)
