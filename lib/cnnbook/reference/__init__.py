"""NumPy reference implementations.

Every layer follows one calling convention: ``forward(...) -> (out, cache)``
and ``backward(dout, cache) -> gradients in argument order``. Names and
keywords are torch's (``max_pool2d_forward`` for ``F.max_pool2d``,
``kernel_size=``, ``training=``, ``weight``/``bias``); the old names still work
with a ``DeprecationWarning`` (:mod:`cnnbook.reference._renamed`).

- :mod:`~cnnbook.reference.signal`        1-D/2-D correlation and convolution of plain signals, Sobel edges
- :mod:`~cnnbook.reference.conv`          conv2d as loops, im2col / col2im (the code to read)
- :mod:`~cnnbook.reference.fast_conv`     conv2d by chunked matrix products, depthwise by taps (the code to run)
- :mod:`~cnnbook.reference.conv_variants` conv1d and transposed conv2d
- :mod:`~cnnbook.reference.pool`          max, average, global and adaptive average pooling
- :mod:`~cnnbook.reference.fast_pool`     max pooling that records its winners (the code to run; not re-exported here)
- :mod:`~cnnbook.reference.norm`          batch, layer, group and instance norm
- :mod:`~cnnbook.reference.fast_norm`     spatial batch norm in cache-sized sweeps (the code to run; not re-exported)
- :mod:`~cnnbook.reference.activations`   ReLU, leaky ReLU, sigmoid, tanh, GELU, dropout, linear, flatten
- :mod:`~cnnbook.reference.losses`        softmax, cross-entropy, L1/L2 penalties
- :mod:`~cnnbook.reference.optim`         SGD, momentum, Adam, AdamW, learning-rate schedules
"""

from .signal import convolve1d, convolve2d, correlate1d, correlate2d, sobel_edges
from . import conv as _conv, conv_variants as _conv_variants, fast_conv as _fast_conv, pool as _pool
from . import fast_norm, fast_pool  # noqa: F401  (same names as pool's and norm's: reached as modules)
from .conv import col2im, conv2d_backward_naive, conv2d_forward_naive, im2col
from .conv_variants import conv1d_backward, conv1d_forward, conv_transpose2d_backward, conv_transpose2d_forward
from .fast_conv import conv2d_backward, conv2d_forward
from .pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = ["correlate1d", "convolve1d", "correlate2d", "convolve2d", "sobel_edges"]
__all__ += _conv.__all__ + _fast_conv.__all__ + _conv_variants.__all__ + _pool.__all__

# Normalization, activations/dropout/linear, losses, optimizers: each module's
# __all__ lists exactly what it exports, so the star imports are controlled.
from . import activations as _activations, losses as _losses, norm as _norm, optim as _optim
from .activations import *  # noqa: E402,F403
from .losses import *  # noqa: E402,F403
from .norm import *  # noqa: E402,F403
from .optim import *  # noqa: E402,F403

__all__ += _norm.__all__ + _activations.__all__ + _losses.__all__ + _optim.__all__

from ._renamed import RENAMED_KEYWORDS as _RENAMED_KEYWORDS, accept_old_keywords as _accept_old_keywords  # noqa: E402
from ._renamed import module_getattr as _module_getattr  # noqa: E402

dropout_forward = _activations.dropout_forward = _accept_old_keywords(  # noqa: F405
    _activations.dropout_forward, _RENAMED_KEYWORDS["dropout_forward"])
__getattr__ = _module_getattr(globals(), __name__)
