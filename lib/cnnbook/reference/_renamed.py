"""Old names of the reference functions, kept working with a ``DeprecationWarning``.

The reference layers took torch's names (``max_pool2d_forward``, ``batch_norm_forward``,
``kernel_size=``, ``training=``, ``weight``/``bias``) so that the NumPy code, the torch ops
and ``torch.nn.functional`` read alike. Readers' notebooks written against the
old names keep running and are told the new name; the aliases go in a later release.
"""

from __future__ import annotations

import functools
import warnings

#: old function name -> (new function name, {old keyword: new keyword})
RENAMED = {
    "maxpool2d_forward": ("max_pool2d_forward", {"kernel": "kernel_size"}),
    "maxpool2d_backward": ("max_pool2d_backward", {}),
    "avgpool2d_forward": ("avg_pool2d_forward", {"kernel": "kernel_size"}),
    "avgpool2d_backward": ("avg_pool2d_backward", {}),
    "global_avgpool_forward": ("global_avg_pool2d_forward", {}),
    "global_avgpool_backward": ("global_avg_pool2d_backward", {}),
    "adaptive_avgpool2d_forward": ("adaptive_avg_pool2d_forward", {}),
    "adaptive_avgpool2d_backward": ("adaptive_avg_pool2d_backward", {}),
    "batchnorm_forward": ("batch_norm_forward", {"gamma": "weight", "beta": "bias", "train": "training"}),
    "batchnorm_backward": ("batch_norm_backward", {}),
    "batchnorm_backward_simple": ("batch_norm_backward_simple", {}),
    "spatial_batchnorm_forward": ("batch_norm2d_forward", {"gamma": "weight", "beta": "bias", "train": "training"}),
    "spatial_batchnorm_backward": ("batch_norm2d_backward", {}),
    "layernorm_forward": ("layer_norm_forward", {"gamma": "weight", "beta": "bias"}),
    "layernorm_backward": ("layer_norm_backward", {}),
    "groupnorm_forward": ("group_norm_forward", {"gamma": "weight", "beta": "bias"}),
    "groupnorm_backward": ("group_norm_backward", {}),
    "instancenorm_forward": ("instance_norm_forward", {"gamma": "weight", "beta": "bias"}),
    "instancenorm_backward": ("instance_norm_backward", {}),
}

#: functions that kept their name but renamed a keyword: name -> {old keyword: new keyword}
RENAMED_KEYWORDS = {"dropout_forward": {"train": "training"}}


def renamed(old_name: str, function, keywords: dict):
    """``function`` under ``old_name``: warns once per call site and maps the old keywords."""

    @functools.wraps(function)
    def old(*args, **kwargs):
        warnings.warn(f"cnnbook.reference.{old_name} is now {function.__name__}"
                      + (f" (keywords: {', '.join(f'{a}= is {b}=' for a, b in keywords.items())})" if keywords else ""),
                      DeprecationWarning, stacklevel=2)
        return function(*args, **{keywords.get(key, key): value for key, value in kwargs.items()})

    return old


def accept_old_keywords(function, keywords: dict):
    """``function`` that still takes its old keyword names, with a ``DeprecationWarning`` when one is used."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        old = [key for key in kwargs if key in keywords]
        if old:
            warnings.warn(f"cnnbook.reference.{function.__name__}: "
                          + ", ".join(f"{key}= is now {keywords[key]}=" for key in old), DeprecationWarning, stacklevel=2)
        return function(*args, **{keywords.get(key, key): value for key, value in kwargs.items()})

    return wrapper


def module_getattr(namespace: dict, module: str):
    """A module ``__getattr__`` that resolves the old names among the functions in ``namespace``."""

    def __getattr__(name: str):
        if name in RENAMED:
            new_name, keywords = RENAMED[name]
            if new_name in namespace:
                return renamed(name, namespace[new_name], keywords)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
