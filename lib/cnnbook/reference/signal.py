"""Single-channel convolution and cross-correlation, the way the book introduces them.

Deep-learning libraries call *cross-correlation* "convolution": the kernel
slides over the input without being flipped. True convolution flips the kernel
first (reverses it in 1-D, rotates it by 180 degrees in 2-D). Both are here so
the chapter can compare them; the layers in :mod:`cnnbook.reference.conv` use
cross-correlation, like ``torch.nn.functional.conv2d``.

All functions compute the "valid" part only: positions where the whole kernel
lies inside the input, so a length-``n`` signal and a length-``k`` kernel give
``n - k + 1`` outputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["correlate1d", "convolve1d", "correlate2d", "convolve2d", "sobel_edges", "SOBEL_X", "SOBEL_Y"]

#: Sobel kernels, as used with :func:`correlate2d`: ``SOBEL_X`` responds to
#: intensity that increases from left to right (vertical edges).
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.copy()


def _check(signal: np.ndarray, kernel: np.ndarray, ndim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    signal = np.asarray(signal)
    kernel = np.asarray(kernel)
    if signal.ndim != ndim or kernel.ndim != ndim:
        raise ValueError(
            f"{name}: expected {ndim}-D signal and kernel, got signal of shape {signal.shape} "
            f"and kernel of shape {kernel.shape}"
        )
    if any(k > s for k, s in zip(kernel.shape, signal.shape)):
        raise ValueError(f"{name}: kernel of shape {kernel.shape} is larger than the input of shape {signal.shape}")
    dtype = np.result_type(signal.dtype, kernel.dtype, np.float32)
    return signal.astype(dtype, copy=False), kernel.astype(dtype, copy=False)


def correlate1d(signal, kernel) -> np.ndarray:
    """Valid 1-D cross-correlation: ``y[i] = sum_k x[i + k] * w[k]``.

    signal: (n,), kernel: (k,) -> (n - k + 1,).
    Example: ``correlate1d([1, 2, 3, 4, 5], [1, 0, -1])`` is ``[-2, -2, -2]``.

    Book: "Convolution and cross-correlation", section "A worked example in one dimension" (``book/convolution_basics.md``).
    """
    signal, kernel = _check(signal, kernel, 1, "correlate1d")
    n_out = signal.shape[0] - kernel.shape[0] + 1
    # windows[i] is signal[i : i + k]; a view, no copy.
    windows = np.lib.stride_tricks.sliding_window_view(signal, kernel.shape[0])[:n_out]
    return windows @ kernel


def convolve1d(signal, kernel) -> np.ndarray:
    """Valid 1-D convolution: cross-correlation with the kernel reversed.

    ``y[i] = sum_k x[i + k] * w[K - 1 - k]``; signal: (n,), kernel: (k,) -> (n - k + 1,).
    Matches ``np.convolve(signal, kernel, mode="valid")``.

    Book: "Convolution and cross-correlation", section "A worked example in one dimension" (``book/convolution_basics.md``).
    """
    signal, kernel = _check(signal, kernel, 1, "convolve1d")
    return correlate1d(signal, kernel[::-1])


def correlate2d(image, kernel) -> np.ndarray:
    """Valid 2-D cross-correlation: ``y[i, j] = sum_{m, n} x[i + m, j + n] * w[m, n]``.

    image: (H, W), kernel: (KH, KW) -> (H - KH + 1, W - KW + 1).
    This is what ``torch.nn.functional.conv2d`` computes for one channel.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    image, kernel = _check(image, kernel, 2, "correlate2d")
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)
    # windows: (OH, OW, KH, KW); contract the two kernel axes.
    return np.tensordot(windows, kernel, axes=([2, 3], [0, 1]))


def convolve2d(image, kernel) -> np.ndarray:
    """Valid 2-D convolution: cross-correlation with the kernel rotated by 180 degrees.

    image: (H, W), kernel: (KH, KW) -> (H - KH + 1, W - KW + 1).
    Matches ``scipy.signal.convolve2d(image, kernel, mode="valid")``.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    image, kernel = _check(image, kernel, 2, "convolve2d")
    return correlate2d(image, kernel[::-1, ::-1])


def sobel_edges(image) -> np.ndarray:
    """Gradient magnitude of a grey-scale image with the Sobel kernels.

    image: (H, W) -> (H - 2, W - 2), ``sqrt(gx**2 + gy**2)`` with
    ``gx = correlate2d(image, SOBEL_X)`` and ``gy = correlate2d(image, SOBEL_Y)``.

    Book: "Convolution and cross-correlation", section "Edge detection on a real photograph" (``book/convolution_basics.md``).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"sobel_edges: expected a grey-scale image of shape (H, W), got shape {image.shape}")
    gx = correlate2d(image, SOBEL_X)
    gy = correlate2d(image, SOBEL_Y)
    return np.hypot(gx, gy)
