"""NumPy reference implementations.

Every layer follows one calling convention: ``forward(...) -> (out, cache)``
and ``backward(dout, cache) -> gradients in argument order``.
"""

from .signal import convolve1d, convolve2d, correlate1d, correlate2d, sobel_edges

__all__ = ["correlate1d", "convolve1d", "correlate2d", "convolve2d", "sobel_edges"]

# Normalization, activations/dropout/linear, losses, optimizers: each module's
# __all__ lists exactly what it exports, so the star imports are controlled.
from . import activations as _activations, losses as _losses, norm as _norm, optim as _optim
from .activations import *  # noqa: E402,F403
from .losses import *  # noqa: E402,F403
from .norm import *  # noqa: E402,F403
from .optim import *  # noqa: E402,F403

__all__ += _norm.__all__ + _activations.__all__ + _losses.__all__ + _optim.__all__
