"""2-D convolution on torch tensors, forward and backward written out by hand.

Two algorithms, one public function :func:`conv2d`:

- **im2col + matmul** (:class:`Conv2dFunction`) for every ``groups``: copy each
  window of the padded input into a column, then one matrix product per group
  does all the multiply-adds. The backward is two more matrix products and
  ``col2im``, the adjoint of ``im2col``, which adds each column back onto the
  window it came from.
- **per-tap multiply-accumulate** (:class:`DepthwiseConv2dFunction`) for
  depthwise convolution (``groups == C``): each channel meets only its own
  ``KH x KW`` filter, so a matrix product has nothing to share; instead, for
  each tap ``(i, j)`` of the window, the shifted input slice is multiplied by
  one weight per channel and added to the output.

Convolution here is cross-correlation (the kernel is not flipped), exactly as
``torch.nn.functional.conv2d``. Shapes, for stride ``s``, padding ``p``,
dilation ``d``::

    x: (N, C, H, W)   w: (F, C // groups, KH, KW)   b: (F,)
    out: (N, F, OH, OW),  OH = floor((H + 2 p - d (KH - 1) - 1) / s) + 1  (same for OW)

No autograd runs inside: each ``forward`` and ``backward`` is plain tensor code,
and every tensor it creates takes the input's device and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .amp import autocast_off, autocast_policy
from ..shapes import pair
from .geometry import Window, make_window, require_4d, require_same_kind, symmetric_padding

__all__ = ["conv2d", "Conv2dFunction", "DepthwiseConv2dFunction", "im2col", "col2im", "conv_padding"]


@dataclass(frozen=True)
class _ConvShape:
    """The checked sizes of one convolution."""

    window: Window
    groups: int
    in_channels: int
    out_channels: int


def conv_padding(padding, kernel, dilation, stride, op: str = "conv2d") -> tuple[int, int, int, int]:
    """``padding`` (int, ``(ph, pw)``, ``"valid"`` or ``"same"``) as ``(top, bottom, left, right)``.

    ``"same"`` (stride 1 only) pads ``d (K - 1)`` in total per axis; when that is
    odd, the extra row/column goes below/right, as in PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if pair(stride, "stride", 1, op) != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride!r}")
            (kh, kw), (dh, dw) = pair(kernel, "kernel size", 1, op), pair(dilation, "dilation", 1, op)
            total_h, total_w = dh * (kh - 1), dw * (kw - 1)
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return symmetric_padding(padding, op)


def _check_conv(x, w, b, stride, padding, dilation, groups) -> _ConvShape:
    op = "conv2d"
    require_4d(x, op, "x")
    require_4d(w, op, "w")
    require_same_kind(op, x=x, w=w, b=b)
    n, c, h, wd = x.shape
    f, c_per_group, kh, kw = w.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if c % groups or f % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide both the input channels C={c} (x of shape {tuple(x.shape)}) "
            f"and the filters F={f} (w of shape {tuple(w.shape)})"
        )
    if c_per_group * groups != c:
        raise ValueError(
            f"{op}: x of shape {tuple(x.shape)} has C={c} channels but w of shape {tuple(w.shape)} expects "
            f"C // groups = {c_per_group} per group, i.e. C = {c_per_group * groups} with groups={groups}"
        )
    if b is not None and tuple(b.shape) != (f,):
        raise ValueError(f"{op}: b must have shape (F,) = ({f},) for w of shape {tuple(w.shape)}, got {tuple(b.shape)}")
    pads = conv_padding(padding, (kh, kw), dilation, stride, op)
    window = make_window(op, x.shape, (kh, kw), stride, pads, dilation, context=f", w of shape {tuple(w.shape)}")
    return _ConvShape(window=window, groups=groups, in_channels=c, out_channels=f)


def _pad(x: torch.Tensor, window: Window, value: float = 0.0) -> torch.Tensor:
    if any(window.padding):
        return F.pad(x, window.pad_arg(), value=value)
    return x


def im2col(padded: torch.Tensor, window: Window, groups: int = 1) -> torch.Tensor:
    """Copy every window of a padded input into a column.

    padded: (N, C, Hp, Wp), already padded. Returns ``cols`` of shape
    ``(groups, C // groups * KH * KW, N * OH * OW)``: row ``(c, i, j)`` of group
    ``g`` holds tap ``(i, j)`` of channel ``g * C // groups + c`` for every output
    position ``(n, oh, ow)``. The windows are first read as a strided view
    (no copy); ``reshape`` then makes the one copy that is the column buffer.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    n, c, _, _ = padded.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = window.kernel, window.stride, window.dilation, window.out
    s_n, s_c, s_h, s_w = padded.stride()
    per_group = c // groups
    windows = padded.as_strided(
        (groups, per_group, kh, kw, n, oh, ow),
        (per_group * s_c, s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w),
        padded.storage_offset(),
    )
    return windows.reshape(groups, per_group * kh * kw, n * oh * ow)


def col2im(cols: torch.Tensor, window: Window, batch: int, channels: int) -> torch.Tensor:
    """The adjoint of :func:`im2col`: add every column back onto the window it was copied from.

    cols: (groups, C // groups * KH * KW, N * OH * OW). Returns the gradient of the
    *padded* input, ``(N, C, Hp, Wp)``; entries read by several windows receive the
    sum of their columns. One strided add per tap ``(i, j)``.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    (kh, kw), (oh, ow) = window.kernel, window.out
    padded_h, padded_w = window.padded_size
    dpadded = torch.zeros((batch, channels, padded_h, padded_w), dtype=cols.dtype, device=cols.device)
    per_tap = cols.view(channels, kh, kw, batch, oh, ow)
    for i, j in window.taps:
        rows, columns = window.tap(i, j)
        dpadded[:, :, rows, columns].add_(per_tap[:, i, j].transpose(0, 1))
    return dpadded


#: On a CPU, the batch goes through im2col a few images at a time, so that each
#: column buffer (about this many bytes) stays in the cache and is reused; on
#: other devices the whole batch is one chunk (one large product is what a GPU wants).
CPU_COLUMNS_CHUNK_BYTES = 4 * 2**20


def _image_chunks(x: torch.Tensor, shape: _ConvShape):
    """Yield ``(start, stop)`` ranges of images, sized by :data:`CPU_COLUMNS_CHUNK_BYTES` on a CPU."""
    n = x.shape[0]
    chunk = n
    if x.device.type == "cpu":
        (kh, kw), (oh, ow) = shape.window.kernel, shape.window.out
        image_bytes = shape.in_channels * kh * kw * oh * ow * x.element_size()
        chunk = max(1, min(n, CPU_COLUMNS_CHUNK_BYTES // max(image_bytes, 1)))
    for start in range(0, n, chunk):
        yield start, min(start + chunk, n)


class Conv2dFunction(torch.autograd.Function):
    """Convolution by im2col + matmul; any ``groups``. Shapes as in :func:`conv2d`.

    Per chunk of images (:func:`_image_chunks`) and per group ``g``:
    ``out = w[g] @ cols`` with ``w[g]: (F // groups, C // groups * KH * KW)``.
    Backward: ``dw[g] += dout[g] @ cols^T`` and ``dx = col2im(w[g]^T @ dout[g])``.
    Saves ``x`` and ``w``, not the columns (``KH * KW`` times larger than ``x``):
    the backward rebuilds them, as PyTorch does.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("lower")
    def forward(ctx, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        shape = _check_conv(x, w, b, stride, padding, dilation, groups)
        window = shape.window
        filters = w.reshape(groups, shape.out_channels // groups, -1)
        out = torch.empty((x.shape[0], shape.out_channels, *window.out), dtype=x.dtype, device=x.device)
        for start, stop in _image_chunks(x, shape):
            cols = im2col(_pad(x[start:stop], window), window, groups)
            # (groups, F // groups, n * OH * OW) -> (n, F, OH, OW): one product per group for the whole chunk.
            products = torch.bmm(filters, cols).view(shape.out_channels, stop - start, *window.out).transpose(0, 1)
            if b is None:
                out[start:stop].copy_(products)
            else:
                torch.add(products, b.view(1, -1, 1, 1), out=out[start:stop])
        ctx.save_for_backward(x, w)
        ctx.shape = shape
        ctx.has_bias = b is not None
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        shape = ctx.shape
        window, groups = shape.window, shape.groups
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        filters = w.reshape(groups, shape.out_channels // groups, -1)
        db = dout.sum(dim=(0, 2, 3)) if need_db and ctx.has_bias else None
        dweights = torch.zeros_like(filters) if need_dw else None
        dx = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_dx else None
        for start, stop in _image_chunks(x, shape):
            # (groups, F // groups, n * OH * OW), the layout of the forward's products.
            dout_rows = dout[start:stop].transpose(0, 1).reshape(groups, shape.out_channels // groups, -1)
            if need_dw:
                cols = im2col(_pad(x[start:stop], window), window, groups)
                dweights.baddbmm_(dout_rows, cols.transpose(1, 2))
            if need_dx:
                dcols = torch.bmm(filters.transpose(1, 2), dout_rows)
                dx[start:stop] = window.unpad(col2im(dcols, window, stop - start, shape.in_channels))
        dw = dweights.view_as(w) if need_dw else None
        return dx, dw, db, None, None, None, None


class DepthwiseConv2dFunction(torch.autograd.Function):
    """Depthwise convolution (``groups == C``) by per-tap multiply-accumulate.

    x: (N, C, H, W); w: (C * M, 1, KH, KW) for a depth multiplier ``M``; b: (C * M,).
    Filter ``c * M + m`` sees only channel ``c``. Forward: for each tap ``(i, j)``,
    ``out[:, c, m] += x_padded[:, c, tap rows, tap columns] * w[c * M + m, 0, i, j]``.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """

    @staticmethod
    @autocast_policy("lower")
    def forward(ctx, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        shape = _check_conv(x, w, b, stride, padding, dilation, groups)
        if groups != shape.in_channels:
            raise ValueError(
                f"conv2d (depthwise): groups must equal the channels C={shape.in_channels} of x "
                f"(shape {tuple(x.shape)}), got groups={groups}"
            )
        window, (n, c) = shape.window, x.shape[:2]
        multiplier = shape.out_channels // c
        ctx.save_for_backward(x, w)
        ctx.shape = shape
        ctx.has_bias = b is not None
        if _flat_depthwise_applies(x, window, multiplier):
            return _FlatPlanes(x, window).forward(w, b)
        padded = _pad(x, window)
        weights = w.reshape(c, multiplier, *window.kernel)
        out = torch.zeros((n, c, multiplier, *window.out), dtype=x.dtype, device=x.device)
        for i, j in window.taps:
            rows, columns = window.tap(i, j)
            tap = padded[:, :, rows, columns].unsqueeze(2)
            out.addcmul_(tap, weights[:, :, i, j].view(1, c, multiplier, 1, 1))
        out = out.view(n, shape.out_channels, *window.out)
        if b is not None:
            out.add_(b.view(1, -1, 1, 1))
        return out

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        shape = ctx.shape
        window, (n, c) = shape.window, x.shape[:2]
        multiplier = shape.out_channels // c
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_db and ctx.has_bias:
            db = dout.sum(dim=(0, 2, 3))
        if _flat_depthwise_applies(x, window, multiplier):
            dx, dw = _FlatPlanes(x, window).backward(dout, w, need_dx, need_dw)
            return dx, dw, db, None, None, None, None
        dout_per_channel = dout.reshape(n, c, multiplier, *window.out)
        weights = w.reshape(c, multiplier, *window.kernel)
        if need_dw:
            padded = _pad(x, window)
            dweights = torch.empty_like(weights)
            for i, j in window.taps:
                rows, columns = window.tap(i, j)
                tap = padded[:, :, rows, columns].unsqueeze(2)
                dweights[:, :, i, j] = (dout_per_channel * tap).sum(dim=(0, 3, 4))
            dw = dweights.view_as(w)
        if need_dx:
            dpadded = torch.zeros((n, c, *window.padded_size), dtype=x.dtype, device=x.device)
            for i, j in window.taps:
                rows, columns = window.tap(i, j)
                tap_weights = weights[:, :, i, j].view(1, c, multiplier, 1, 1)
                if multiplier == 1:
                    dpadded[:, :, rows, columns].addcmul_(dout_per_channel[:, :, 0], tap_weights[:, :, 0])
                else:
                    dpadded[:, :, rows, columns].add_((dout_per_channel * tap_weights).sum(dim=2))
            dx = window.unpad(dpadded)
        return dx, dw, db, None, None, None, None


def _flat_depthwise_applies(x: torch.Tensor, window: Window, multiplier: int) -> bool:
    """The flat-plane path: on a CPU, one filter per channel, the same stride along both axes."""
    return x.device.type == "cpu" and multiplier == 1 and window.stride[0] == window.stride[1]


class _FlatPlanes:
    """Depthwise convolution on flattened padded planes (CPU), one multiply-add per tap.

    Plane ``n * C + c`` of the padded input is flattened to one row of
    ``Hp * Wp`` values. Output ``(i, j)`` at stride ``s`` reads, for tap
    ``(kh, kw)``, position ``s * (i * Wp + j) + shift`` with
    ``shift = kh * dh * Wp + kw * dw``: every tap is one strided slice of the
    rows, ``L = (OH - 1) * Wp + OW`` long, and the products of all planes are
    one ``addcmul_`` over long contiguous rows (the positions with ``j >= OW``
    are computed and thrown away). Over the ``(N, C, OH, OW)`` views this
    is several times faster on a CPU, whose vector loops want long rows.
    """

    def __init__(self, x: torch.Tensor, window: Window):
        self.window, self.x_shape = window, x.shape
        n, c = x.shape[:2]
        self.planes = n * c
        self.padded_h, self.pitch = window.padded_size
        (dh, dw), (kh, kw) = window.dilation, window.kernel
        self.shifts = [i * dh * self.pitch + j * dw for i in range(kh) for j in range(kw)]
        self.stride = window.stride[0]
        self.length = (window.out[0] - 1) * self.pitch + window.out[1]
        self.padded = _pad(x, window).reshape(self.planes, -1)

    def tap(self, rows: torch.Tensor, shift: int) -> torch.Tensor:
        return rows[:, shift : shift + self.stride * (self.length - 1) + 1 : self.stride]

    def as_image(self, flat: torch.Tensor) -> torch.Tensor:
        """(planes, L) -> (planes, OH, OW), a view skipping the thrown-away positions."""
        (oh, ow) = self.window.out
        return flat.as_strided((self.planes, oh, ow), (flat.stride(0), self.pitch, 1), flat.storage_offset())

    def plane_weights(self, w: torch.Tensor) -> torch.Tensor:
        """(planes, KH * KW): plane n * C + c uses channel c's filter."""
        return w.reshape(self.x_shape[1], -1).repeat(self.x_shape[0], 1)

    def forward(self, w: torch.Tensor, b) -> torch.Tensor:
        weights = self.plane_weights(w)
        total = torch.mul(self.tap(self.padded, self.shifts[0]), weights[:, :1])
        for t, shift in enumerate(self.shifts[1:], start=1):
            total.addcmul_(self.tap(self.padded, shift), weights[:, t : t + 1])
        out = self.as_image(total).reshape(self.x_shape[0], self.x_shape[1], *self.window.out)
        return out.add_(b.view(1, -1, 1, 1)) if b is not None else out

    def backward(self, dout: torch.Tensor, w: torch.Tensor, need_dx: bool, need_dw: bool):
        n, c = self.x_shape[:2]
        # dout laid out like the forward's flat rows; the thrown-away positions stay zero.
        flat = torch.zeros((self.planes, self.length), dtype=dout.dtype, device=dout.device)
        self.as_image(flat).copy_(dout.reshape(self.planes, *self.window.out))
        dw = dx = None
        if need_dw:
            products = torch.empty_like(flat)
            dtaps = torch.empty((len(self.shifts), self.planes), dtype=dout.dtype, device=dout.device)
            for t, shift in enumerate(self.shifts):
                torch.mul(flat, self.tap(self.padded, shift), out=products)
                torch.sum(products, dim=1, out=dtaps[t])
            dw = dtaps.view(-1, n, c).sum(dim=1).t().reshape(w.shape)
        if need_dx:
            weights = self.plane_weights(w)
            dpadded = torch.zeros((self.planes, self.padded_h * self.pitch), dtype=dout.dtype, device=dout.device)
            for t, shift in enumerate(self.shifts):
                self.tap(dpadded, shift).addcmul_(flat, weights[:, t : t + 1])
            dx = self.window.unpad(dpadded.view(n, c, self.padded_h, self.pitch))
        return dx, dw


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """2-D convolution (cross-correlation), like ``torch.nn.functional.conv2d``.

    x: (N, C, H, W); w: (F, C // groups, KH, KW); b: (F,) or None.
    stride, dilation: int or (sh, sw) / (dh, dw); padding: int, (ph, pw), "valid" or "same".
    groups: splits C and F into ``groups`` independent convolutions.
    Returns out: (N, F, OH, OW), ``OH = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1``, same for OW.

    Depthwise convolution (``groups == C > 1``) runs per tap
    (:class:`DepthwiseConv2dFunction`), everything else by im2col + matmul
    (:class:`Conv2dFunction`). Raises ``ValueError`` naming the shapes for a wrong
    rank, mismatched channels, ``groups`` not dividing C and F, or a window larger
    than the padded input.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    depthwise = isinstance(x, torch.Tensor) and x.dim() == 4 and groups == x.shape[1] and groups > 1
    function = DepthwiseConv2dFunction if depthwise else Conv2dFunction
    return function.apply(x, w, b, stride, padding, dilation, groups)
