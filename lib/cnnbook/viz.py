"""Animations for the chapters: where motion teaches more than a still figure.

Each function returns a ``matplotlib.animation.FuncAnimation`` whose frames
show numbers computed by the library (nothing is drawn that the library did
not compute); its figure is already closed, so a notebook shows no stray still
image. :func:`embed` turns it into JavaScript with play, step and speed
controls that plays offline in the static book. Frames are small (a few KB
each) so a page stays light.
"""

from __future__ import annotations

import re
from html import escape

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.patches import Rectangle

from .reference.conv import conv2d_forward_naive
from .reference.pool import max_pool2d_backward, max_pool2d_forward
from .shapes import pair, receptive_field, window_output_size

__all__ = ["embed", "sliding_window_animation", "receptive_field_animation", "max_pool_backward_animation"]

_DPI = 100


#: matplotlib's player draws its buttons with Font Awesome from a CDN, which an
#: offline book cannot load: each icon becomes a plain character instead.
_BUTTON_TEXT = {
    # Characters every default font has (arrows, geometric shapes), not the media-control block.
    "fa fa-fast-backward": "\u21e4", "fa fa-step-backward": "\u2039", "fa fa-play fa-flip-horizontal": "\u25c0",
    "fa fa-pause": "||", "fa fa-play": "\u25b6", "fa fa-step-forward": "\u203a",
    "fa fa-fast-forward": "\u21e5", "fa fa-minus": "\u2212", "fa fa-plus": "+",
}


def embed(animation, alt: str | None = None):
    """The animation as an IPython ``HTML`` object: every frame as an image, with play/step controls.

    Self-contained: matplotlib's link to a Font Awesome stylesheet on a CDN is
    removed and its icons replaced by plain characters, so the player works offline.
    alt: the frames' alternative text (default: the description the animation was made with).

    Book: "Convolution arithmetic", section "Watching the window move" (``book/convolution_arithmetic.md``).
    """
    from IPython.display import HTML  # noqa: PLC0415 - only notebooks need IPython

    html = re.sub(r'<link rel="stylesheet"\s+href="https?://[^"]*"\s*/?>', "", animation.to_jshtml(default_mode="loop"))
    for icon, text in _BUTTON_TEXT.items():
        html = html.replace(f'<i class="{icon}"></i>', text)
    description = alt if alt is not None else getattr(animation, "cnnbook_description", "")
    if not description:
        raise ValueError("viz.embed: give the animation's alternative text (alt=...)")
    html = html.replace("<img id=", f'<img alt="{escape(description, quote=True)}" id=', 1)
    if "http://" in html or "https://" in html or 'class="fa' in html:
        raise RuntimeError("viz.embed: matplotlib's player changed; it still refers to a web resource")
    return HTML(html)


def _animate(fig, draw, frames: int, interval: int, description: str) -> FuncAnimation:
    animation = FuncAnimation(fig, draw, frames=frames, interval=interval, blit=False)
    animation.cnnbook_description = description  # the alternative text :func:`embed` gives the frames
    plt.close(fig)  # the animation renders it; a notebook must not also show it as a still image
    return animation


def _canvas(width_units: float, height_units: float, inches_per_unit: float = 0.28):
    """A figure whose data units are grid cells, row 0 at the top, with room for titles above."""
    fig, ax = plt.subplots(figsize=(width_units * inches_per_unit, (height_units + 1.2) * inches_per_unit), dpi=_DPI)
    ax.set_xlim(-0.2, width_units + 0.2)
    ax.set_ylim(height_units + 0.2, -1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    return fig, ax


def _grid(ax, values, left: float, title: str, fmt="{:.0f}", background=None, cmap="Greys"):
    """Draw ``values`` (2-D) as labelled cells with their top-left corner at (``left``, 0); return the texts.

    background: an array of the same shape shown as cell colours (``cmap``, 0 to 1), or None for white.
    """
    rows, columns = values.shape
    extent = (left, left + columns, rows, 0)
    shade = np.zeros(values.shape) if background is None else background
    image = ax.imshow(shade, cmap=cmap, vmin=0, vmax=1, extent=extent, interpolation="nearest", zorder=0)
    for k in range(rows + 1):
        ax.plot([left, left + columns], [k, k], color="0.6", linewidth=0.6, zorder=1)
    for k in range(columns + 1):
        ax.plot([left + k, left + k], [0, rows], color="0.6", linewidth=0.6, zorder=1)
    texts = np.empty(values.shape, dtype=object)
    for (i, j), value in np.ndenumerate(values):
        label = "" if fmt is None or np.isnan(value) else fmt.format(value)
        texts[i, j] = ax.text(left + j + 0.5, i + 0.5, label, ha="center", va="center", fontsize=8, zorder=2)
    ax.text(left + columns / 2, -0.3, title, ha="center", va="bottom", fontsize=9)
    return image, texts


def _outline(ax, size, color="C3"):
    """A movable rectangle outline of ``size`` = (height, width) cells."""
    patch = Rectangle((0, 0), size[1], size[0], fill=False, edgecolor=color, linewidth=2.2, zorder=3)
    ax.add_patch(patch)
    return patch


def sliding_window_animation(size: int = 5, kernel_size: int = 3, padding: int = 1, stride: int = 2, seed: int = 0):
    """A ``kernel_size`` window sliding with ``stride`` over a ``size`` x ``size`` input padded by ``padding``.

    One frame per output position: the padded input (padding shaded grey) with
    the window outlined, the kernel, and the output filled in up to the current
    position. Values are small integers; the output is
    :func:`cnnbook.reference.conv.conv2d_forward_naive`'s. Returns the animation.

    Book: "Convolution arithmetic", section "Watching the window move" (``book/convolution_arithmetic.md``).
    """
    size, kernel_size = pair(size, "size", 1)[0], pair(kernel_size, "kernel_size", 1)[0]
    padding, stride = pair(padding, "padding", 0)[0], pair(stride, "stride", 1)[0]
    out_size = window_output_size(size, kernel_size, stride, padding)
    if out_size < 1:
        raise ValueError(f"sliding_window_animation: a {kernel_size}-wide window does not fit a {size}-wide input "
                         f"padded by {padding}")
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4, (size, size)).astype(float)
    kernel = rng.integers(-1, 2, (kernel_size, kernel_size)).astype(float)
    out, _ = conv2d_forward_naive(image[None, None], kernel[None, None], None, stride, padding)
    out = out[0, 0]
    padded = np.pad(image, padding)
    padded_size = size + 2 * padding
    output_left = padded_size + kernel_size + 3
    fig, ax = _canvas(output_left + out_size, padded_size)
    is_padding = np.ones((padded_size, padded_size)) * 0.15
    is_padding[padding:padding + size, padding:padding + size] = 0
    _grid(ax, padded, 0, f"input, padding {padding}", background=is_padding)
    _grid(ax, kernel, padded_size + 1.5, "kernel")
    _, out_texts = _grid(ax, np.full_like(out, np.nan), output_left, f"output, stride {stride}")
    window, target = _outline(ax, (kernel_size, kernel_size)), _outline(ax, (1, 1))

    def draw(frame):
        i, j = divmod(frame, out_size)
        window.set_xy((j * stride, i * stride))
        target.set_xy((output_left + j, i))
        for k, text in enumerate(out_texts.flat):
            text.set_text(f"{out.flat[k]:.0f}" if k <= frame else "")
        return []

    return _animate(fig, draw, out_size * out_size, 700,
                    f"a {kernel_size}x{kernel_size} window sliding with stride {stride} over a {size}x{size} input "
                    f"padded by {padding}, filling the {out_size}x{out_size} output one entry per frame")


def receptive_field_animation(kernels=(3, 3, 2, 3, 3), strides=(1, 1, 2, 1, 1), size: int = 16):
    """How many input pixels one unit sees, layer after layer.

    Frame ``l`` shades the ``r_l x r_l`` receptive field of the centre unit after
    ``l + 1`` layers of the stack (kernels and strides per layer), with
    ``r_l`` from :func:`cnnbook.shapes.receptive_field`. Returns the animation.

    Book: "Convolution arithmetic", section "Receptive fields" (``book/convolution_arithmetic.md``).
    """
    if len(kernels) != len(strides):
        raise ValueError(f"receptive_field_animation: one stride per kernel, got {len(kernels)} kernels and "
                         f"{len(strides)} strides")
    fields = [receptive_field(kernels[:depth], strides[:depth]) for depth in range(1, len(kernels) + 1)]
    if fields[-1] > size:
        raise ValueError(f"receptive_field_animation: the last field ({fields[-1]}) is larger than the {size}-pixel grid")
    fig, ax = _canvas(size, size, inches_per_unit=0.24)
    image, _ = _grid(ax, np.zeros((size, size)), 0, "", fmt=None, cmap="Blues")
    caption = ax.text(size / 2, -0.3, "", ha="center", va="bottom", fontsize=9)

    def draw(frame):
        field = fields[frame]
        start = (size - field) // 2
        shade = np.zeros((size, size))
        shade[start:start + field, start:start + field] = 0.6
        image.set_data(shade)
        layer = "layer" if frame == 0 else "layers"
        caption.set_text(f"after {frame + 1} {layer} (last: K={kernels[frame]}, S={strides[frame]}): "
                         f"{field} x {field} pixels")
        return []

    return _animate(fig, draw, len(fields), 1000,
                    "the receptive field of one unit growing layer by layer: " + ", ".join(map(str, fields)) + " pixels")


def max_pool_backward_animation(size: int = 4, kernel_size: int = 2, seed: int = 0):
    """Max pooling's backward pass, one window at a time: each window's gradient goes to its maximum.

    Frames: for each window (stride = kernel size), the input with the window
    outlined and its maximum shaded, the upstream gradient with the current
    entry outlined, and ``dx`` filled in so far; the final ``dx`` is
    :func:`cnnbook.reference.pool.max_pool2d_backward`'s. Returns the animation.

    Book: "Backpropagation through convolution and pooling", section "Pooling" (``book/backprop_conv.md``).
    """
    if size % kernel_size:
        raise ValueError(f"max_pool_backward_animation: the kernel size {kernel_size} must divide the size {size}")
    rng = np.random.default_rng(seed)
    image = rng.permutation(size * size).reshape(size, size).astype(float)  # distinct values: one maximum each
    pooled, cache = max_pool2d_forward(image[None, None], kernel_size)
    upstream = rng.integers(1, 10, pooled.shape).astype(float)[0, 0]
    dx = max_pool2d_backward(upstream[None, None], cache)[0, 0]
    out_size = size // kernel_size
    dx_left = size + out_size + 3
    fig, ax = _canvas(dx_left + size, size)
    input_shade, _ = _grid(ax, image, 0, "input x", cmap="Oranges")
    _grid(ax, upstream, size + 1.5, "dout")
    dx_shade, dx_texts = _grid(ax, np.full_like(dx, np.nan), dx_left, "dx", cmap="Oranges")
    window, entry, dx_window = (_outline(ax, (kernel_size, kernel_size)), _outline(ax, (1, 1)),
                                _outline(ax, (kernel_size, kernel_size)))

    def draw(frame):
        i, j = divmod(frame, out_size)
        block = (slice(i * kernel_size, (i + 1) * kernel_size), slice(j * kernel_size, (j + 1) * kernel_size))
        winner = np.zeros_like(image)
        winner[block] = image[block] == image[block].max()
        input_shade.set_data(winner * 0.5)
        dx_shade.set_data(winner * 0.5)
        window.set_xy((j * kernel_size, i * kernel_size))
        entry.set_xy((size + 1.5 + j, i))
        dx_window.set_xy((dx_left + j * kernel_size, i * kernel_size))
        for k in range(frame + 1):
            wi, wj = divmod(k, out_size)
            for a in range(wi * kernel_size, (wi + 1) * kernel_size):
                for b in range(wj * kernel_size, (wj + 1) * kernel_size):
                    dx_texts[a, b].set_text(f"{dx[a, b]:.0f}")
        return []

    return _animate(fig, draw, out_size * out_size, 900,
                    f"max pooling's backward pass on a {size}x{size} input: each window's upstream gradient "
                    "goes to the position of its maximum")
