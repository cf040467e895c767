"""NumPy reference implementations.

Every layer follows one calling convention: ``forward(...) -> (out, cache)``
and ``backward(dout, cache) -> gradients in argument order``.
"""

from .signal import convolve1d, convolve2d, correlate1d, correlate2d, sobel_edges

__all__ = ["correlate1d", "convolve1d", "correlate2d", "convolve2d", "sobel_edges"]
