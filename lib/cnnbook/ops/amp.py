"""Mixed precision: how the hand-written ops behave under ``torch.autocast``.

``torch.autocast`` picks a dtype per operation: matrix products and
convolutions run in the low-precision dtype (float16 or bfloat16), reductions
that lose accuracy in it stay in float32, and everything else runs in the dtype
it is given. ``torch.nn.functional``'s ops are on autocast's lists; an
``autograd.Function`` of our own is not, so each op here states its policy
with :func:`autocast_policy`, which does what ``torch.amp.custom_fwd`` does for
one device type, for whichever device the inputs are on:

- ``"lower"``   (``conv2d``, ``linear``): every floating input except float64 is
  cast to the autocast dtype, as autocast casts ``F.conv2d`` and ``F.linear``;
- ``"input"``   (pooling, ReLU, dropout, batch norm): run in the dtype of ``x``
  (nothing cast). Batch norm accepts a low-precision ``x`` beside float32
  parameters, computes its statistics in float32 and returns ``x``'s dtype, as
  ``F.batch_norm`` does;
- ``"float32 on cuda"`` (layer norm): CUDA autocast runs ``F.layer_norm`` in
  float32, CPU autocast in the input's dtype; this policy does the same.

Inside ``forward`` and ``backward`` autocast is switched off for the input's
device, so the hand-written arithmetic runs exactly in the dtypes chosen here
(float64 is never cast: gradient checks stay exact).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["autocast_policy", "autocast_off", "LOW_PRECISION"]

#: The floating dtypes autocast uses for its low-precision ops.
LOW_PRECISION = (torch.float16, torch.bfloat16)


def _device_type(values) -> str | None:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.device.type
    return None


def _autocast_dtype(device_type: str | None) -> torch.dtype | None:
    """The dtype autocast would cast to on ``device_type``, or None when autocast is off there."""
    if device_type is None or not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
        return value.to(dtype)
    return value


#: For each policy: (device type, autocast dtype) -> the dtype to cast floating inputs to, or None.
_POLICIES = {
    "lower": lambda device_type, dtype: dtype,
    "input": lambda device_type, dtype: None,
    "float32 on cuda": lambda device_type, dtype: torch.float32 if device_type == "cuda" else None,
}


def autocast_policy(policy: str):
    """Decorate an ``autograd.Function``'s ``forward(ctx, *args)`` with an autocast policy.

    policy: ``"lower"`` (cast floating inputs to the autocast dtype when autocast
    is on), ``"input"`` (cast nothing) or ``"float32 on cuda"`` (cast
    float16/bfloat16 inputs to float32 under CUDA autocast). Either way the body
    runs with autocast off for the inputs' device; pair it with
    :func:`autocast_off` on ``backward``.
    """
    if policy not in _POLICIES:
        raise ValueError(f"autocast_policy: policy must be one of {sorted(_POLICIES)}, got {policy!r}")

    def decorate(forward):
        @functools.wraps(forward)
        def wrapped(ctx, *args):
            device_type = _device_type(args)
            dtype = _autocast_dtype(device_type)
            ctx.autocast_device = device_type
            if dtype is None:
                return forward(ctx, *args)
            target = _POLICIES[policy](device_type, dtype)
            if target is not None:
                args = tuple(_cast(value, target) for value in args)
            with torch.autocast(device_type, enabled=False):
                return forward(ctx, *args)

        return wrapped

    return decorate


def autocast_off(backward):
    """Decorate a ``backward(ctx, *grads)``: run it with autocast off on the forward's device."""

    @functools.wraps(backward)
    def wrapped(ctx, *grads):
        device_type = getattr(ctx, "autocast_device", None)
        if device_type is None or not torch.amp.is_autocast_available(device_type):
            return backward(ctx, *grads)
        with torch.autocast(device_type, enabled=False):
            return backward(ctx, *grads)

    return wrapped
