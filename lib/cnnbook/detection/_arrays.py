"""One code path for NumPy arrays and torch tensors (any device): the few functions that differ by name."""

from __future__ import annotations

import numpy as np
import torch


def is_torch(value) -> bool:
    return isinstance(value, torch.Tensor)


def as_float(value):
    """A torch tensor stays as it is (floating dtypes kept, integers become float32); anything else
    becomes a NumPy array, float64 unless it already is floating."""
    if is_torch(value):
        return value if value.is_floating_point() else value.float()
    array = np.asarray(value)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def maximum(a, b):
    return torch.maximum(a, b) if is_torch(a) else np.maximum(a, b)


def minimum(a, b):
    return torch.minimum(a, b) if is_torch(a) else np.minimum(a, b)


def clip_min(a, low: float):
    return a.clamp(min=low) if is_torch(a) else np.maximum(a, low)


def stack(values, axis: int):
    return torch.stack(values, dim=axis) if is_torch(values[0]) else np.stack(values, axis=axis)


def exp(a):
    return torch.exp(a) if is_torch(a) else np.exp(a)


def log(a):
    return torch.log(a) if is_torch(a) else np.log(a)


def shape_of(value) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))
