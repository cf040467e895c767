"""NumPy reference implementations.

Every layer follows one calling convention: ``forward(...) -> (out, cache)``
and ``backward(dout, cache) -> gradients in argument order``.
"""

from .signal import convolve1d, convolve2d, correlate1d, correlate2d, sobel_edges
from . import conv as _conv, pool as _pool
from .conv import (
    col2im,
    conv1d_backward,
    conv1d_forward,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    im2col,
)
from .pool import (
    adaptive_avgpool2d_backward,
    adaptive_avgpool2d_forward,
    avgpool2d_backward,
    avgpool2d_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)

__all__ = ["correlate1d", "convolve1d", "correlate2d", "convolve2d", "sobel_edges"]
__all__ += _conv.__all__ + _pool.__all__

# Normalization, activations/dropout/linear, losses, optimizers: each module's
# __all__ lists exactly what it exports, so the star imports are controlled.
from . import activations as _activations, losses as _losses, norm as _norm, optim as _optim
from .activations import *  # noqa: E402,F403
from .losses import *  # noqa: E402,F403
from .norm import *  # noqa: E402,F403
from .optim import *  # noqa: E402,F403

__all__ += _norm.__all__ + _activations.__all__ + _losses.__all__ + _optim.__all__
