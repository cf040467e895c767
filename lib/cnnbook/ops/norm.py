"""Batch and layer normalization on torch tensors, forward and backward written out by hand.

Both normalize ``x`` to ``x_hat = (x - mean) / sqrt(var + eps)`` (``var`` the
biased variance) and then scale and shift it, ``out = gamma * x_hat + beta``.
They differ only in *which* entries share a mean:

- batch norm: one mean per channel, over ``(N, H, W)``; at evaluation time
  the running averages collected during training replace the batch's;
- layer norm: one mean per sample, over the trailing ``normalized_shape``.

The backward of the normalization, for ``M`` entries sharing one mean::

    dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),   dx_hat = gamma * dout

(the two subtracted terms are why a gradient check needs a random ``dout``:
with ``dout = 1`` both cancel the first and ``dx`` is zero whatever the bug.)
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .amp import LOW_PRECISION, autocast_off, autocast_policy
from .geometry import require_4d, require_same_kind

__all__ = ["batch_norm2d", "layer_norm", "BatchNorm2dFunction", "LayerNormFunction"]


def _per_channel(values: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` tensor as ``(1, C, 1, 1)``, to broadcast against ``(N, C, H, W)``."""
    return values.view(1, -1, 1, 1)


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    """``t.sum(dim=(0, 2, 3))``, but faster on a CPU: each contiguous (n, c) row of H * W values first."""
    n, c = t.shape[:2]
    return t.reshape(n, c, -1).sum(dim=2).sum(dim=0)


#: On a CPU, :func:`_channel_dot` multiplies about this many bytes of rows at a time, into one reused buffer.
CPU_CHUNK_BYTES = 2**20


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(dim=(0, 2, 3))``. On a CPU, a few (n, c) rows at a time: the products go to a small
    buffer that stays in the cache instead of a new tensor of a's size."""
    n, c = a.shape[:2]
    a_rows, b_rows = a.reshape(n * c, -1), b.reshape(n * c, -1)
    if a.device.type != "cpu":
        return (a_rows * b_rows).sum(dim=1).view(n, c).sum(dim=0)
    step = max(1, CPU_CHUNK_BYTES // (a_rows.shape[1] * a.element_size()))
    buffer = torch.empty((min(step, n * c), a_rows.shape[1]), dtype=a.dtype, device=a.device)
    sums = torch.empty(n * c, dtype=a.dtype, device=a.device)
    for start in range(0, n * c, step):
        stop = min(n * c, start + step)
        products = torch.mul(a_rows[start:stop], b_rows[start:stop], out=buffer[: stop - start])
        torch.sum(products, dim=1, out=sums[start:stop])
    return sums.view(n, c).sum(dim=0)


def _batch_statistics(x: torch.Tensor):
    """Per-channel mean and biased variance over (N, H, W), and ``x - mean``, in x's dtype.

    Two passes (the mean, then the squares of the centred values), so no
    cancellation; each reduction runs along contiguous (n, c) rows, which is
    several times faster on a CPU than ``torch.var_mean(x, dim=(0, 2, 3))``.
    """
    n, c = x.shape[:2]
    count = x.numel() // c
    mean = _channel_sum(x) / count
    centered = x - _per_channel(mean)
    squares = torch.linalg.vector_norm(centered.reshape(n, c, -1), dim=2).square_().sum(dim=0)
    return mean, squares / count, centered


def _compute_dtype(op: str, x: torch.Tensor, **params) -> torch.dtype:
    """The dtype the statistics are computed in, after checking that ``x`` and the parameters can meet.

    Normally ``x`` and every parameter (``None`` skipped) share one dtype and one
    device, and the arithmetic runs in it. A float16/bfloat16 ``x`` is normalized
    in float32 instead (sums of thousands of low-precision terms lose too many
    digits), and its parameters may then be in its dtype or in float32, as under
    ``torch.autocast`` after a low-precision convolution. Outputs and gradients
    come back in the dtype of the tensor they belong to, as in ``torch.nn.functional``.
    """
    present = {name: t for name, t in params.items() if t is not None}
    if x.dtype not in LOW_PRECISION:
        require_same_kind(op, x=x, **present)
        return x.dtype
    odd = {name: t for name, t in present.items() if t.dtype not in (x.dtype, torch.float32) or t.device != x.device}
    if odd:
        listing = ", ".join(f"{name}: {t.dtype} on {t.device}" for name, t in present.items())
        raise ValueError(
            f"{op}: with x in {x.dtype} on {x.device}, the parameters must be in {x.dtype} or torch.float32 on "
            f"{x.device}; got {listing}"
        )
    return torch.float32


def _as(dtype: torch.dtype, *tensors):
    """Each tensor (``None`` kept) in ``dtype``."""
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def _check_batch_norm(x, running_mean, running_var, weight, bias, training) -> torch.dtype:
    op = "batch_norm2d"
    require_4d(x, op)
    dtype = _compute_dtype(op, x, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    channels = x.shape[1]
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                         ("bias", bias)):
        if tensor is not None and tuple(tensor.shape) != (channels,):
            raise ValueError(
                f"{op}: {name} must have shape (C,) = ({channels},) for x of shape {tuple(x.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    if training and x.numel() // max(channels, 1) <= 1:
        raise ValueError(
            f"{op}: training needs more than one value per channel to compute a variance; "
            f"x has shape {tuple(x.shape)}"
        )
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: evaluation (training=False) needs running_mean and running_var")
    return dtype


def _affine(x_hat: torch.Tensor, weight, bias) -> torch.Tensor:
    """``weight * x_hat + bias`` (either may be None) as a *new* tensor.

    Never ``x_hat`` itself: it is saved for the backward, and returning it would
    let an in-place op downstream (``nn.ReLU(inplace=True)``) overwrite it.
    """
    if weight is not None and bias is not None:
        return torch.addcmul(bias, x_hat, weight)
    if weight is not None:
        return x_hat * weight
    return x_hat + bias if bias is not None else x_hat.clone()


class BatchNorm2dFunction(torch.autograd.Function):
    """Spatial batch normalization. x: (N, C, H, W); running stats, weight, bias: (C,) -> out: (N, C, H, W).

    training=True: normalize with the batch's per-channel mean and biased
    variance over ``(N, H, W)`` and update the running statistics in place,
    PyTorch's way: ``running = (1 - momentum) * running + momentum * batch``,
    where the variance folded into ``running_var`` is the *unbiased* one
    (``M / (M - 1)`` times the biased, ``M = N H W``). training=False: normalize
    with the running statistics; the layer is then a per-channel affine map.
    A float16/bfloat16 ``x`` is normalized in float32 (see :func:`_compute_dtype`).

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
        compute = _check_batch_norm(x, running_mean, running_var, weight, bias, training)
        ctx.training = training
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (x, weight, bias))
        x, weight_c, bias_c = _as(compute, x, weight, bias)
        if not training:
            # A per-channel affine map: out = x * scale + shift, one pass over x.
            mean, var = _as(compute, running_mean, running_var)
            inv_std = torch.rsqrt(var + eps)
            scale = inv_std if weight_c is None else inv_std * weight_c
            shift = -mean * scale if bias_c is None else bias_c - mean * scale
            ctx.save_for_backward(x, mean.clone(), inv_std, scale)
            return torch.addcmul(_per_channel(shift), x, _per_channel(scale)).to(ctx.dtypes[0])
        mean, var, centered = _batch_statistics(x)
        count = x.numel() // x.shape[1]
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        if running_var is not None:
            running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum * count / (count - 1))
        inv_std = torch.rsqrt(var + eps)
        scale = inv_std if weight_c is None else inv_std * weight_c
        # out = weight * (x - mean) * inv_std + bias, one pass over the centred x (kept for the backward).
        out = torch.mul(centered, _per_channel(scale)) if bias_c is None else torch.addcmul(
            _per_channel(bias_c), centered, _per_channel(scale))
        ctx.save_for_backward(centered, inv_std, weight_c)
        return out.to(ctx.dtypes[0])

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        need_dx, _, _, need_dweight, need_dbias = ctx.needs_input_grad[:5]
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        dout = dout.to(ctx.saved_tensors[1].dtype)  # the compute dtype: float32 for a float16/bfloat16 x
        dbias = _channel_sum(dout)
        if not ctx.training:
            x, mean, inv_std, scale = ctx.saved_tensors
            dweight = _channel_sum(dout * (x - _per_channel(mean))).mul_(inv_std) if need_dweight else None
            dx = dout * _per_channel(scale) if need_dx else None
        else:
            centered, inv_std, weight = ctx.saved_tensors
            # sum(dout * (x - mean)) per channel: reduce each contiguous (n, c) row first, then over n.
            projection = _channel_dot(dout, centered)
            dweight = projection * inv_std
            dx = None
            if need_dx:
                # dx = scale * (dout - dbias / M - x_hat * dweight / M), x_hat = centered * inv_std, written as
                # dx = scale * dout + b * centered + c: two multiply-adds over the whole tensor.
                count = dout.numel() // dout.shape[1]
                scale = inv_std if weight is None else inv_std * weight
                b = -scale * inv_std * dweight / count
                c = -scale * dbias / count
                dx = torch.addcmul(_per_channel(c), dout, _per_channel(scale)).addcmul_(centered, _per_channel(b))
        return (_cast_if(need_dx, dx, x_dtype), None, None, _cast_if(need_dweight, dweight, weight_dtype),
                _cast_if(need_dbias, dbias, bias_dtype), None, None, None)


def _cast_if(needed: bool, grad, dtype):
    """The gradient in its input's dtype when autograd asked for it, else None."""
    return grad.to(dtype) if needed and grad is not None else None


def _check_layer_norm(x, normalized_shape, weight, bias) -> tuple[tuple[int, ...], torch.dtype]:
    op = "layer_norm"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    dtype = _compute_dtype(op, x, weight=weight, bias=bias)
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(s) for s in normalized_shape)
    if not shape or len(shape) > x.dim() or tuple(x.shape[x.dim() - len(shape):]) != shape:
        raise ValueError(
            f"{op}: normalized_shape {shape} must equal the trailing dimensions of x, whose shape is {tuple(x.shape)}"
        )
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"{op}: {name} must have shape normalized_shape = {shape}, got {tuple(tensor.shape)}")
    return shape, dtype


class LayerNormFunction(torch.autograd.Function):
    """Layer normalization. x: (*, *normalized_shape); weight, bias: normalized_shape -> out: x's shape.

    Each sample (each index into the leading ``*`` dimensions) is normalized
    with its own mean and biased variance over the trailing ``normalized_shape``
    dimensions; nothing is kept between calls, so training and evaluation agree.
    A float16/bfloat16 ``x`` is normalized in float32 (see :func:`_compute_dtype`);
    under CUDA autocast the whole op runs in float32, autocast's rule for ``F.layer_norm``.

    Book: "Normalization", section "Layer normalization" (``book/normalization.md``).
    """

    @staticmethod
    @autocast_policy("float32 on cuda")
    def forward(ctx, x, normalized_shape, weight=None, bias=None, eps=1e-5):
        shape, compute = _check_layer_norm(x, normalized_shape, weight, bias)
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (x, weight, bias))
        x, weight_c, bias_c = _as(compute, x, weight, bias)
        dims = tuple(range(x.dim() - len(shape), x.dim()))
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        inv_std = torch.rsqrt(var + eps)
        x_hat = (x - mean).mul_(inv_std)
        ctx.save_for_backward(x_hat, inv_std, weight_c)
        ctx.dims = dims
        return _affine(x_hat, weight_c, bias_c).to(ctx.dtypes[0])

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x_hat, inv_std, weight = ctx.saved_tensors
        dout = dout.to(x_hat.dtype)
        dims = ctx.dims
        need_dx, _, need_dweight, need_dbias = ctx.needs_input_grad[:4]
        leading = tuple(range(dout.dim() - len(dims)))
        dx = dweight = dbias = None
        if need_dweight:
            dweight = (dout * x_hat).sum(dim=leading)
        if need_dbias:
            dbias = dout.sum(dim=leading)
        if need_dx:
            dx_hat = dout if weight is None else dout * weight
            mean_dx_hat = dx_hat.mean(dim=dims, keepdim=True)
            mean_projection = (dx_hat * x_hat).mean(dim=dims, keepdim=True)
            dx = (dx_hat - mean_dx_hat).sub_(x_hat * mean_projection).mul_(inv_std)
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        return (_cast_if(need_dx, dx, x_dtype), None, _cast_if(need_dweight, dweight, weight_dtype),
                _cast_if(need_dbias, dbias, bias_dtype), None)


def batch_norm2d(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Spatial batch normalization, like ``torch.nn.functional.batch_norm`` on 4-D input.

    x: (N, C, H, W); running_mean, running_var: (C,) or None (updated in place
    when training); weight (gamma), bias (beta): (C,) or None.
    Returns (N, C, H, W). See :class:`BatchNorm2dFunction` for the statistics used.
    Raises ``ValueError`` for a wrong rank, stats of the wrong length, a batch with a
    single value per channel in training, or evaluation without running stats.

    Book: "Normalization", section "Batch normalization in convolutional networks" (``book/normalization.md``).
    """
    if not 0.0 <= float(momentum) <= 1.0 or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"batch_norm2d: need 0 <= momentum <= 1 and eps >= 0, got momentum={momentum}, eps={eps}")
    return BatchNorm2dFunction.apply(x, running_mean, running_var, weight, bias, training, momentum, eps)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization, like ``torch.nn.functional.layer_norm``.

    x: (*, *normalized_shape); weight, bias: normalized_shape or None. Returns x's shape.

    Book: "Normalization", section "Layer normalization" (``book/normalization.md``).
    """
    return LayerNormFunction.apply(x, normalized_shape, weight, bias, eps)
