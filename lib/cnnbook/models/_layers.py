"""What every model module shares: the choice of layer implementation, argument checks, device/dtype.

``layers="torch"`` builds a network from ``torch.nn``; ``layers="cnnbook"``
builds the *same* network from the book's own layers (:mod:`cnnbook.ops`),
which hold parameters with the same names and shapes, so the two exchange
``state_dict``s and compute the same outputs (to round-off).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYERS", "layer_kit", "check_num_classes", "check_positive", "constructor"]

#: The accepted values of every constructor's ``layers=`` keyword.
LAYERS = ("torch", "cnnbook")

_NAMES = ("Conv2d", "BatchNorm2d", "Linear", "LayerNorm", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout",
          "ReLU", "ReLU6", "SiLU", "Sigmoid", "GELU", "Tanh")


@functools.cache
def layer_kit(layers: str = "torch") -> SimpleNamespace:
    """The layer classes (``kit.Conv2d``, ``kit.ReLU``, ...) and ``kit.layer_norm`` for ``layers``.

    layers: ``"torch"`` (``torch.nn``) or ``"cnnbook"`` (:mod:`cnnbook.ops`). Raises ``ValueError`` otherwise.
    """
    if layers == "torch":
        kit = {name: getattr(nn, name) for name in _NAMES}
        kit["layer_norm"] = F.layer_norm
    elif layers == "cnnbook":
        from cnnbook import ops  # noqa: PLC0415 - only models built from the book's layers need them

        kit = {name: getattr(ops, name) for name in _NAMES}
        kit["layer_norm"] = ops.layer_norm
    else:
        raise ValueError(f"layers must be one of {LAYERS}, got {layers!r}")
    kit["name"] = layers
    return SimpleNamespace(**kit)


def check_positive(name: str, value, model: str) -> int:
    """``value`` as an int >= 1, or ``ValueError`` naming the model, the argument and the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{model}: {name} must be an int >= 1, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{model}: {name} must be an int >= 1, got {value}")
    return value


def check_num_classes(num_classes, model: str) -> int:
    """``num_classes`` as an int >= 1, or ``ValueError``."""
    return check_positive("num_classes", num_classes, model)


def constructor(build):
    """Give a model builder the keywords ``device=`` and ``dtype=``.

    The model is built under ``torch.device(device)``, so every parameter is
    created there: ``device="meta"`` allocates no memory at all (shapes only),
    which is how a 138M-parameter VGG-16 is counted in a test. On the meta
    device the ``torch.nn.init`` functions are skipped: a meta tensor holds no
    values, and initialising one runs PyTorch's slow reference kernels for nothing
    (EfficientNet-B7 builds in a tenth of the time). ``dtype`` converts
    the floating-point parameters and buffers afterwards (``torch.float64`` for gradient checks).
    """

    @functools.wraps(build)
    def wrapper(*args, device=None, dtype=None, **kwargs):
        place = torch.device(device) if device is not None else contextlib.nullcontext()
        skip = _skip_init() if device is not None and torch.device(device).type == "meta" else contextlib.nullcontext()
        with place, skip:
            model = build(*args, **kwargs)
        if dtype is not None:
            model = model.to(dtype=dtype)
        return model

    return wrapper


@contextlib.contextmanager
def _skip_init():
    """Make the in-place initialisers of ``torch.nn.init`` (``kaiming_normal_``, ``zeros_``, ...) return their tensor untouched."""
    names = [name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, _return_tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _return_tensor(tensor, *args, **kwargs):
    return tensor
