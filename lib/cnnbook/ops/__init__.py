"""The book's layers on torch tensors: device-agnostic, hand-written forward and backward.

The same operations as the NumPy reference (:mod:`cnnbook.reference`), written
with torch tensor arithmetic (strided views, matrix products, reductions) so
they run on a CPU or a GPU unchanged: nothing here moves a tensor to a device,
and every tensor created inside takes its input's device and dtype. No autograd
runs inside an operation; each is a ``torch.autograd.Function`` whose
``backward`` is written out, so ``torch.autograd.gradcheck`` can test it and a
model built from them trains with any torch optimizer.

Where to find what:

- :mod:`cnnbook.ops.conv`        ``conv2d``: im2col + matmul, and per-tap depthwise
- :mod:`cnnbook.ops.pool`        ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d``, ``global_avg_pool2d``
- :mod:`cnnbook.ops.norm`        ``batch_norm2d``, ``layer_norm``
- :mod:`cnnbook.ops.elementwise` ``relu``, ``dropout``, ``linear``
- :mod:`cnnbook.ops.activations` ``tanh``, ``sigmoid``, ``silu``, ``relu6``, ``gelu`` and their layers
- :mod:`cnnbook.ops.modules`     ``nn.Module`` layers with ``torch.nn``'s names and parameters
- :mod:`cnnbook.ops.geometry`    window arithmetic and the shape checks shared by conv and pooling
"""

from .activations import GELU, ReLU6, Sigmoid, SiLU, Tanh, gelu, relu6, sigmoid, silu, tanh
from .conv import Conv2dFunction, DepthwiseConv2dFunction, col2im, conv2d, im2col
from .elementwise import DropoutFunction, LinearFunction, ReLUFunction, dropout, linear, relu
from .modules import AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, LayerNorm, Linear, MaxPool2d, ReLU
from .norm import BatchNorm2dFunction, LayerNormFunction, batch_norm2d, layer_norm
from .pool import (
    AdaptiveAvgPool2dFunction,
    AvgPool2dFunction,
    GlobalAvgPool2dFunction,
    MaxPool2dFunction,
    adaptive_avg_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    max_pool2d,
)

__all__ = [
    # functions
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "global_avg_pool2d",
    "batch_norm2d",
    "layer_norm",
    "dropout",
    "relu",
    "linear",
    "tanh",
    "sigmoid",
    "silu",
    "relu6",
    "gelu",
    "im2col",
    "col2im",
    # modules
    "Conv2d",
    "BatchNorm2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "LayerNorm",
    "Dropout",
    "Linear",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "SiLU",
    "ReLU6",
    "GELU",
    # autograd Functions
    "Conv2dFunction",
    "DepthwiseConv2dFunction",
    "MaxPool2dFunction",
    "AvgPool2dFunction",
    "AdaptiveAvgPool2dFunction",
    "GlobalAvgPool2dFunction",
    "BatchNorm2dFunction",
    "LayerNormFunction",
    "DropoutFunction",
    "ReLUFunction",
    "LinearFunction",
]
