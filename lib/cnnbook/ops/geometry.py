"""How a window slides over an image: argument parsing, output sizes and shape checks.

Convolution and pooling share one picture. A ``(KH, KW)`` window, its taps
``dilation`` apart, moves ``stride`` steps at a time over the input after
``padding`` rows and columns were added around it. The output has one entry per
window position::

    OH = floor((H + pad_top + pad_bottom - dilation_h * (KH - 1) - 1) / stride_h) + 1

and the same for ``OW`` (:func:`cnnbook.shapes.window_output_size`, the one
implementation of that formula; arguments are parsed by :func:`cnnbook.shapes.pair`). Every check here raises ``ValueError`` naming the
shapes involved, so a reader learns *which* tensor is wrong and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..shapes import pair, window_output_size

__all__ = ["Window", "require_4d", "require_same_kind", "make_window", "symmetric_padding"]


def symmetric_padding(padding, op: str) -> tuple[int, int, int, int]:
    """An int or ``(ph, pw)`` padding as ``(top, bottom, left, right)``."""
    ph, pw = pair(padding, "padding", 0, op)
    return (ph, ph, pw, pw)


def require_4d(x, op: str, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a 4-D tensor ``(N, C, H, W)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")


def require_same_kind(op: str, **tensors) -> None:
    """Raise ``ValueError`` unless every given tensor (``None`` skipped) shares one dtype and one device."""
    present = {name: t for name, t in tensors.items() if t is not None}
    kinds = {(t.dtype, t.device) for t in present.values()}
    if len(kinds) > 1:
        listing = ", ".join(f"{name}: {t.dtype} on {t.device}" for name, t in present.items())
        raise ValueError(f"{op}: all tensors must share one dtype and device; got {listing}")


@dataclass(frozen=True)
class Window:
    """A ``(KH, KW)`` window sliding over an input of spatial size ``(H, W)``.

    ``padding`` is ``(top, bottom, left, right)``: what is added to the input
    before the window slides (for pooling with ``ceil_mode`` it includes the
    extra rows/columns the last window needs). ``out`` is ``(OH, OW)``.
    """

    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    out: tuple[int, int]

    @property
    def padded_size(self) -> tuple[int, int]:
        """``(H + top + bottom, W + left + right)``."""
        top, bottom, left, right = self.padding
        return (self.size[0] + top + bottom, self.size[1] + left + right)

    @property
    def taps(self) -> list[tuple[int, int]]:
        """Every ``(i, j)`` offset inside the window, row by row (the order PyTorch breaks ties in)."""
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    def tap(self, i: int, j: int) -> tuple[slice, slice]:
        """Slices of the padded input that tap ``(i, j)`` reads for every output position: ``(OH, OW)`` entries."""
        (sh, sw), (dh, dw), (oh, ow) = self.stride, self.dilation, self.out
        return (
            slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
        )

    def pad_arg(self) -> tuple[int, int, int, int]:
        """``padding`` in the order ``torch.nn.functional.pad`` wants: ``(left, right, top, bottom)``."""
        top, bottom, left, right = self.padding
        return (left, right, top, bottom)

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """The ``(H, W)`` interior of a padded ``(N, C, Hp, Wp)`` tensor (a view)."""
        top, _, left, _ = self.padding
        return padded[:, :, top : top + self.size[0], left : left + self.size[1]]


def make_window(
    op: str,
    x_shape,
    kernel,
    stride,
    padding: tuple[int, int, int, int],
    dilation,
    ceil_mode: bool = False,
    context: str = "",
) -> Window:
    """Check a window against an input of shape ``x_shape = (N, C, H, W)`` and return its :class:`Window`.

    kernel, stride, dilation: int or pair; padding: ``(top, bottom, left, right)``.
    Raises ``ValueError`` when the window (its span ``dilation * (K - 1) + 1``)
    is larger than the padded input.
    """
    kernel = pair(kernel, "kernel size", 1, op)
    stride = pair(stride, "stride", 1, op)
    dilation = pair(dilation, "dilation", 1, op)
    height, width = int(x_shape[2]), int(x_shape[3])
    top, bottom, left, right = padding
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    padded = (height + top + bottom, width + left + right)
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(
            f"{op}: the {kernel[0]}x{kernel[1]} window with dilation {dilation} spans {span}, larger than the "
            f"padded input {padded} (x of shape {tuple(x_shape)}, padding (top, bottom, left, right) = "
            f"{padding}){context}"
        )
    out_h = window_output_size(height, kernel[0], stride[0], (top, bottom), dilation[0], ceil_mode)
    out_w = window_output_size(width, kernel[1], stride[1], (left, right), dilation[1], ceil_mode)
    # With ceil_mode the last window may hang past the padded input: pad that much more below/right.
    extra_h = max(0, (out_h - 1) * stride[0] + span[0] - padded[0])
    extra_w = max(0, (out_w - 1) * stride[1] + span[1] - padded[1])
    return Window(
        size=(height, width),
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=(top, bottom + extra_h, left, right + extra_w),
        out=(out_h, out_w),
    )
