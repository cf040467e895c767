"""RoI pooling and RoIAlign on torch tensors: any device, hand-written backward passes.

The same operations as :mod:`cnnbook.detection.roi_reference` (read its
docstring for the geometry), written as whole-tensor arithmetic:

- RoIAlign is *separable*: bilinear interpolation is linear interpolation
  along y times linear interpolation along x, and the sampling points of a bin
  form a grid. So each region gets two small matrices, ``Ay: (PH, H)`` (bin
  row ``ph`` holds the y-weights of its samples, divided by their number) and
  ``Ax: (PW, W)``, and the pooled feature is ``Ay @ x[b, c] @ Ax.T``. The
  backward is the transpose, ``Ay.T @ dout[k, c] @ Ax``.
- RoI pooling gathers every bin's cells (padded to the largest bin, padding
  ``-inf``) and takes the maximum; the backward adds ``dout`` at the argmax.

``rois`` is ``(K, 5)`` ``(batch_index, x1, y1, x2, y2)`` or a list of ``(L_i,
4)`` boxes, one tensor per image (as in ``torchvision.ops``). Both gather each
region's image (``x[batch]``, K copies of a ``(C, H, W)`` map): clear for a
book, heavier in memory than torchvision's kernels for thousands of regions.
Where torchvision fails (RoIAlign with ``aligned=True``, adaptive sampling and
a reversed region ``x2 < x1`` raises), these return 0 for the region.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..ops.amp import autocast_off, autocast_policy
from ..shapes import pair
from .roi_reference import FLT_MAX

__all__ = ["roi_pool", "roi_align", "RoIPoolFunction", "RoIAlignFunction", "boxes_to_rois"]


def boxes_to_rois(boxes) -> torch.Tensor:
    """One ``(K, 5)`` tensor from a list of per-image ``(L_i, 4)`` box tensors (image index first).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must have shape (L, 4), got shape {tuple(b.shape)}")
    index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(pair_, dim=1) for pair_ in zip(index, boxes)], dim=0)


def _check(x, rois, output_size, op):
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{op}: x must be a (N, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    if isinstance(rois, (list, tuple)):
        rois = boxes_to_rois(rois)
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (K, 5) = (batch_index, x1, y1, x2, y2), "
                         f"got shape {tuple(rois.shape)}")
    if rois.device != x.device:
        raise ValueError(f"{op}: rois on {rois.device} but x on {x.device}")
    batch = rois[:, 0]
    if len(rois) and bool(((batch < 0) | (batch >= x.shape[0]) | (batch != batch.floor())).any()):
        raise ValueError(f"{op}: rois[:, 0] must be image indices in [0, {x.shape[0]}) for x of shape "
                         f"{tuple(x.shape)}")
    return rois.to(x.dtype), pair(output_size, "output_size", 1, op)


def _axis_matrix(start, length, pooled: int, grid, size: int) -> torch.Tensor:
    """``(K, pooled, size)``: row ``p`` holds the interpolation weights of bin ``p``'s samples, over their count.

    start, length: (K,) the region along this axis (in cells); grid: (K,) samples per bin.
    """
    k = len(start)
    largest = max(int(grid.max()) if k else 0, 1)
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    steps = torch.arange(largest, dtype=start.dtype, device=start.device)[None, None, :]
    bin_size, per_bin = (length / pooled)[:, None, None], grid.clamp(min=1).to(start.dtype)[:, None, None]
    position = start[:, None, None] + bins * bin_size + (steps + 0.5) * bin_size / per_bin  # (K, pooled, largest)
    inside = (steps < grid[:, None, None]) & (position >= -1.0) & (position <= size)
    position = position.clamp(min=0)
    low = position.floor().clamp(max=size - 1)
    fraction = torch.where(low >= size - 1, torch.zeros_like(position), position - low)
    low = low.to(torch.int64)
    high = (low + 1).clamp(max=size - 1)
    zero = torch.zeros_like(position)
    matrix = torch.zeros((k, pooled, size), dtype=start.dtype, device=start.device)
    matrix.scatter_add_(2, low, torch.where(inside, (1 - fraction) / per_bin, zero))
    matrix.scatter_add_(2, high, torch.where(inside, fraction / per_bin, zero))
    return matrix


class RoIAlignFunction(torch.autograd.Function):
    """RoIAlign. x: (N, C, H, W), rois: (K, 5) -> out: (K, C, PH, PW); gradient for x only.

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
        rois, (ph, pw) = _check(x, rois, output_size, "roi_align")
        offset = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
        width, height = x2 - x1, y2 - y1
        if not aligned:
            width, height = width.clamp(min=1.0), height.clamp(min=1.0)
        if sampling_ratio > 0:
            grid_h = grid_w = torch.full((len(rois),), int(sampling_ratio), device=x.device)
        else:
            grid_h, grid_w = torch.ceil(height / ph).to(torch.int64), torch.ceil(width / pw).to(torch.int64)
        rows = _axis_matrix(y1, height, ph, grid_h, x.shape[2])  # (K, PH, H)
        columns = _axis_matrix(x1, width, pw, grid_w, x.shape[3])  # (K, PW, W)
        batch = rois[:, 0].to(torch.int64)
        ctx.save_for_backward(rows, columns, batch)
        ctx.x_shape = x.shape
        return torch.einsum("kph,kchw,kqw->kcpq", rows, x[batch], columns)

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        rows, columns, batch = ctx.saved_tensors
        per_region = torch.einsum("kph,kcpq,kqw->kchw", rows, dout, columns)
        dx = torch.zeros(ctx.x_shape, dtype=dout.dtype, device=dout.device)
        dx.index_add_(0, batch, per_region)
        return dx, None, None, None, None, None


def roi_align(x, rois, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False):
    """RoIAlign with ``torchvision.ops.roi_align``'s arguments.

    x: (N, C, H, W); rois: (K, 5) or a list of (L_i, 4); output_size: PH or (PH, PW).
    Returns out: (K, C, PH, PW).

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    return RoIAlignFunction.apply(x, rois, output_size, spatial_scale, sampling_ratio, aligned)


def _round_half_away(values: torch.Tensor) -> torch.Tensor:
    magnitude = values.abs()
    whole = magnitude.floor()
    return torch.copysign(whole + (magnitude - whole >= 0.5).to(values.dtype), values)


def _bin_edges(start, length, pooled: int, size: int):
    """(K, pooled) first and one-past-last cell of each bin, clamped to ``[0, size]``."""
    bins = torch.arange(pooled, dtype=length.dtype, device=length.device)[None, :]
    bin_size = (length / pooled)[:, None]
    first = (torch.floor(bins * bin_size) + start[:, None]).clamp(0, size)
    last = (torch.ceil((bins + 1) * bin_size) + start[:, None]).clamp(0, size)
    return first.to(torch.int64), last.to(torch.int64)


def _gather_bins(first, last, size: int):
    """(K, pooled, span) cell indices of every bin padded to the widest bin ``span``, and which are real."""
    span = max(int((last - first).max()) if first.numel() else 0, 1)
    cells = first[:, :, None] + torch.arange(span, device=first.device)[None, None, :]
    real = cells < last[:, :, None]
    return cells.clamp(max=max(size - 1, 0)), real


class RoIPoolFunction(torch.autograd.Function):
    """RoI max pooling. x: (N, C, H, W), rois: (K, 5) -> out: (K, C, PH, PW); gradient for x only.

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """

    @staticmethod
    @autocast_policy("input")
    def forward(ctx, x, rois, output_size, spatial_scale=1.0):
        rois, (ph, pw) = _check(x, rois, output_size, "roi_pool")
        height, width = x.shape[2:]
        x1, y1, x2, y2 = (_round_half_away(rois[:, i] * spatial_scale) for i in range(1, 5))
        row_first, row_last = _bin_edges(y1, (y2 - y1 + 1).clamp(min=1), ph, height)  # (K, PH)
        col_first, col_last = _bin_edges(x1, (x2 - x1 + 1).clamp(min=1), pw, width)  # (K, PW)
        rows, real_rows = _gather_bins(row_first, row_last, height)  # (K, PH, SH)
        cols, real_cols = _gather_bins(col_first, col_last, width)  # (K, PW, SW)
        batch = rois[:, 0].to(torch.int64)
        # cells[k, p, i, q, j] = flat index of row i of bin row p and column j of bin column q
        cells = rows[:, :, :, None, None] * width + cols[:, None, None, :, :]
        real = real_rows[:, :, :, None, None] & real_cols[:, None, None, :, :]
        k, span_h, span_w = len(rois), rows.shape[2], cols.shape[2]
        cells = cells.permute(0, 1, 3, 2, 4).reshape(k, 1, ph, pw, span_h * span_w)  # bin-major, row-major inside
        real = real.permute(0, 1, 3, 2, 4).reshape(k, 1, ph, pw, span_h * span_w)
        flat = x.reshape(x.shape[0], x.shape[1], 1, 1, height * width)[batch]  # (K, C, 1, 1, H W)
        values = torch.gather(flat.expand(-1, -1, ph, pw, -1), 4, cells.expand(-1, x.shape[1], -1, -1, -1))
        values = values.masked_fill(~real | torch.isnan(values), float("-inf"))  # NaN never wins
        out, best = values.max(dim=4)  # ties: the first maximum, row-major as torchvision
        empty = ~real.any(dim=4).expand_as(out)
        lost = ~(out > -FLT_MAX)  # torchvision's maximum starts at -FLT_MAX: only larger values win
        argmax = torch.gather(cells.expand(-1, x.shape[1], -1, -1, -1), 4, best[..., None])[..., 0]
        ctx.save_for_backward(argmax.masked_fill(lost, -1), batch)
        ctx.x_shape = x.shape
        return out.masked_fill(lost, -FLT_MAX).masked_fill(empty, 0.0)

    @staticmethod
    @autocast_off
    @once_differentiable
    def backward(ctx, dout):
        argmax, batch = ctx.saved_tensors
        n, c, height, width = ctx.x_shape
        hit = argmax >= 0
        planes = batch[:, None, None, None] * c + torch.arange(c, device=dout.device)[None, :, None, None]
        index = (planes * (height * width) + argmax)[hit]
        dx = torch.zeros(n * c * height * width, dtype=dout.dtype, device=dout.device)
        dx.index_add_(0, index, dout[hit])
        return dx.view(ctx.x_shape), None, None, None


def roi_pool(x, rois, output_size, spatial_scale: float = 1.0):
    """RoI max pooling with ``torchvision.ops.roi_pool``'s arguments.

    x: (N, C, H, W); rois: (K, 5) or a list of (L_i, 4); output_size: PH or (PH, PW).
    Returns out: (K, C, PH, PW); a bin wholly outside the feature map is 0.

    Book: "Detection and segmentation", section "RoI pooling and RoIAlign" (``book/detection.md``).
    """
    return RoIPoolFunction.apply(x, rois, output_size, spatial_scale)
