"""Shape arithmetic for convolutional networks: output sizes, parameters, MACs, receptive fields.

Symbols as in the book, one meaning each: along one axis an input of size H
(or W), a kernel of size K, padding P, stride S, dilation D (N is the batch
size, C the channels, F the number of filters). The window of a dilated kernel
spans ``D * (K - 1) + 1`` input positions (its *effective* size), and a
convolution gives ``floor((H + 2P - D(K - 1) - 1) / S) + 1`` outputs, PyTorch's rule.

This module is the one home of that formula (:func:`window_output_size`) and
of the int-or-pair argument parser (:func:`pair`): the NumPy reference, the
torch ops and the chapters all call these two.

Counting conventions:

- parameters: weights plus biases, as ``sum(p.numel() for p in model.parameters())``;
- MACs (multiply-accumulates): one multiplication and one addition; FLOPs = 2 * MACs.
  Only convolutions and fully connected layers are counted (they hold more than
  99% of the work); pooling, activations and normalisation count 0, as in the
  papers' tallies (ResNet-18: 1.8 GMACs per 224 x 224 image).

Everything but :func:`summarize` is pure Python.
"""

from __future__ import annotations

import html
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "pair",
    "window_output_size",
    "conv_output_size",
    "conv_output_size_exact",
    "conv_fits",
    "describe_conv_fit",
    "pool_output_size",
    "same_padding",
    "same_padding_pair",
    "conv_params",
    "depthwise_separable_params",
    "depthwise_separable_reduction",
    "linear_params",
    "conv_macs",
    "conv_flops",
    "linear_macs",
    "receptive_field",
    "LayerSummary",
    "ModelSummary",
    "summarize",
]


# ------------------------------------------------------------------ checks


def _int(name: str, value, minimum: int, op: str = "") -> int:
    """``value`` as an int (NumPy integers welcome), or ``ValueError`` naming it; bools and floats are refused."""
    prefix = f"{op}: " if op else ""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{prefix}{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if value < minimum:
        raise ValueError(f"{prefix}{name} must be >= {minimum}, got {value}")
    return value


def pair(value, name: str, minimum: int = 0, op: str = "") -> tuple[int, int]:
    """An int or an ``(along H, along W)`` pair of ints, each ``>= minimum``, as a pair: 3 -> (3, 3).

    name, op: named in the ``ValueError`` raised for anything else (a bool, a
    float, a triple, a value below ``minimum``), e.g. ``"conv2d: stride must be >= 1, got 0"``.

    Book: "Backpropagation through convolution and pooling", section "Many channels, a batch, stride and padding" (``book/backprop_conv.md``).
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            prefix = f"{op}: " if op else ""
            raise ValueError(f"{prefix}{name} must be an int or a pair of ints (along H, along W), got {value!r}")
        return _int(name, value[0], minimum, op), _int(name, value[1], minimum, op)
    value = _int(name, value, minimum, op)
    return value, value


def window_output_size(size: int, kernel: int, stride: int = 1, padding=0, dilation: int = 1,
                       ceil_mode: bool = False) -> int:
    """How many positions a window takes along one axis: ``floor((H + P_before + P_after - D(K - 1) - 1) / S) + 1``.

    The one implementation of the output-size formula (convolution, pooling, the
    NumPy reference and the torch ops call it). padding: an int for both sides or
    ``(before, after)``. ``ceil_mode`` rounds up instead, and then the last
    window must start inside the input or its leading padding (PyTorch's rule
    for pooling). No checks: the result is < 1 when the window does not fit;
    :func:`conv_output_size` and :func:`pool_output_size` check their arguments first.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    room = size + before + after - (dilation * (kernel - 1) + 1)
    if not ceil_mode:
        return room // stride + 1
    length = -(-room // stride) + 1
    if (length - 1) * stride >= size + before:
        length -= 1
    return length


def _conv_args(size, kernel, padding, stride, dilation) -> tuple[int, int, int, int, int]:
    return (
        _int("size", size, 1),
        _int("kernel", kernel, 1),
        _int("padding", padding, 0),
        _int("stride", stride, 1),
        _int("dilation", dilation, 1),
    )


def _effective_kernel(kernel: int, dilation: int) -> int:
    """How many input positions a dilated kernel spans: ``D (K - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def _check_window(size, kernel, padding, dilation) -> None:
    effective = _effective_kernel(kernel, dilation)
    if effective > size + 2 * padding:
        dilated = f" (dilation {dilation}: spans {effective})" if dilation > 1 else ""
        raise ValueError(
            f"kernel {kernel}{dilated} is larger than the padded input: "
            f"size {size} + 2 * padding {padding} = {size + 2 * padding}"
        )


# ------------------------------------------------------------- output sizes


def conv_output_size(size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """Output size of a convolution along one axis: ``floor((H + 2P - D(K - 1) - 1) / S) + 1``.

    size H, kernel K, padding P, stride S, dilation D (all ints), as ``torch.nn.Conv2d``.
    Example: ``conv_output_size(32, 3, padding=1)`` is 32; ``conv_output_size(7, 3, stride=2)`` is 3.
    Raises ``ValueError`` naming the numbers when an argument is not a valid int or
    the (dilated) kernel does not fit the padded input.

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    size, kernel, padding, stride, dilation = _conv_args(size, kernel, padding, stride, dilation)
    _check_window(size, kernel, padding, dilation)
    return window_output_size(size, kernel, stride, padding, dilation)


def conv_output_size_exact(size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> float:
    """The output size before flooring, ``(H + 2P - D(K - 1) - 1) / S + 1``.

    Not an integer when the windows do not tile the padded input (see :func:`conv_fits`).

    Book: "Backpropagation through convolution and pooling", section "The matrix view: im2col and col2im" (``book/backprop_conv.md``).
    """
    size, kernel, padding, stride, dilation = _conv_args(size, kernel, padding, stride, dilation)
    _check_window(size, kernel, padding, dilation)
    return (size + 2 * padding - _effective_kernel(kernel, dilation)) / stride + 1


def conv_fits(size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> bool:
    """Whether the windows tile the padded input exactly: ``(H + 2P - D(K - 1) - 1) / S`` is an integer.

    When it is not, the last ``(H + 2P - D(K - 1) - 1) mod S`` rows or columns are
    never read (PyTorch drops them silently). A kernel larger than the padded input does not fit.

    Book: "Backpropagation through convolution and pooling", section "Many channels, a batch, stride and padding" (``book/backprop_conv.md``).
    """
    size, kernel, padding, stride, dilation = _conv_args(size, kernel, padding, stride, dilation)
    span = size + 2 * padding - _effective_kernel(kernel, dilation)
    return span >= 0 and span % stride == 0


def describe_conv_fit(size: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> str:
    """The output-size computation in words, as the book writes it.

    ``describe_conv_fit(7, 3, stride=3)`` is
    ``"H=7, K=3, stride 3 gives (7 - 3)/3 + 1 = 2.33: does not fit"``;
    ``describe_conv_fit(7, 3, stride=2)`` ends with ``"= 3: fits"``.

    Book: "Convolution arithmetic", section "When the windows do not fit" (``book/convolution_arithmetic.md``).
    """
    size, kernel, padding, stride, dilation = _conv_args(size, kernel, padding, stride, dilation)
    effective = _effective_kernel(kernel, dilation)
    setting = f"H={size}, K={kernel}"
    if dilation > 1:
        setting += f", dilation {dilation} (spans {effective})"
    if padding:
        setting += f", padding {padding}"
    setting += f", stride {stride}"
    numerator = f"{size} + 2*{padding} - {effective}" if padding else f"{size} - {effective}"
    span = size + 2 * padding - effective
    if span < 0:
        return f"{setting} gives ({numerator})/{stride} + 1 < 1: the kernel is larger than the padded input"
    value = span / stride + 1
    shown = f"{value:.0f}" if span % stride == 0 else f"{value:.2f}"
    verdict = "fits" if span % stride == 0 else "does not fit"
    return f"{setting} gives ({numerator})/{stride} + 1 = {shown}: {verdict}"


def pool_output_size(
    size: int, kernel: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False
) -> int:
    """Output size of max/average pooling along one axis, as ``torch.nn.MaxPool2d``.

    ``floor((H + 2P - K) / S) + 1`` (``ceil`` with ``ceil_mode=True``); stride defaults to the kernel.
    With ``ceil_mode`` the last window must start inside the input or its left
    padding: when ``(out - 1) * S >= H + P`` that window is dropped (PyTorch's rule).
    PyTorch also requires ``P <= K / 2``; this raises ``ValueError`` otherwise.

    Book: "Pooling", section "Average pooling" (``book/pooling.md``).
    """
    size, kernel, padding = _int("size", size, 1), _int("kernel", kernel, 1), _int("padding", padding, 0)
    stride = kernel if stride is None else _int("stride", stride, 1)
    if 2 * padding > kernel:
        raise ValueError(f"padding {padding} must be at most half the pooling kernel {kernel}")
    _check_window(size, kernel, padding, 1)
    return window_output_size(size, kernel, stride, padding, 1, ceil_mode)


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1: ``(D(K - 1) + 1 - 1) / 2`` = ``D(K - 1) / 2``.

    Only an odd effective kernel can be padded symmetrically; for an even one
    (e.g. 2 or 4) "same" output needs one more row on one side than the other,
    which :func:`same_padding_pair` computes, and this raises ``ValueError``.

    Book: "Convolution arithmetic", section ""Same" padding" (``book/convolution_arithmetic.md``).
    """
    kernel, dilation = _int("kernel", kernel, 1), _int("dilation", dilation, 1)
    effective = _effective_kernel(kernel, dilation)
    if effective % 2 == 0:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} spans {effective} positions, an even number: "
            f"'same' output needs asymmetric padding ({effective // 2 - 1} before, {effective // 2} after); "
            "use same_padding_pair"
        )
    return (effective - 1) // 2


def same_padding_pair(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int, int]:
    """TensorFlow's ``padding="SAME"``: output ``ceil(H / S)``; returns ``(total, before, after)``.

    ``total = max((ceil(H / S) - 1) * S + D(K - 1) + 1 - H, 0)``, with the odd
    extra row after (bottom/right), as TensorFlow does.

    Book: "Convolution arithmetic", section ""Same" padding" (``book/convolution_arithmetic.md``).
    """
    size, kernel = _int("size", size, 1), _int("kernel", kernel, 1)
    stride, dilation = _int("stride", stride, 1), _int("dilation", dilation, 1)
    out = -(-size // stride)
    total = max((out - 1) * stride + _effective_kernel(kernel, dilation) - size, 0)
    return total, total // 2, total - total // 2


# --------------------------------------------------------------- parameters


def conv_params(in_channels: int, out_channels: int, kernel, bias: bool = True, groups: int = 1) -> int:
    """Parameters of a convolution: ``C_out * (C_in / groups) * KH * KW`` weights, plus ``C_out`` biases.

    kernel: K or (KH, KW). Example: ten 5x5 filters on 3 channels have
    10 * 3 * 5 * 5 + 10 = 760 parameters. Raises ``ValueError`` when groups does
    not divide both channel counts.

    Book: "Convolution arithmetic", section "Counting parameters" (``book/convolution_arithmetic.md``).
    """
    in_channels, out_channels = _int("in_channels", in_channels, 1), _int("out_channels", out_channels, 1)
    groups = _int("groups", groups, 1)
    kh, kw = pair(kernel, "kernel", 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both in_channels={in_channels} and out_channels={out_channels}"
        )
    return out_channels * (in_channels // groups) * kh * kw + (out_channels if bias else 0)


def depthwise_separable_params(in_channels: int, out_channels: int, kernel, bias: bool = True) -> int:
    """Parameters of a depthwise (KH x KW per channel) then pointwise (1x1) convolution, as in MobileNet.

    ``C_in * KH * KW + C_in * C_out`` weights, plus ``C_in + C_out`` biases.

    Book: "Convolution arithmetic", section "Grouped and depthwise-separable convolution" (``book/convolution_arithmetic.md``).
    """
    depthwise = conv_params(in_channels, in_channels, kernel, bias=bias, groups=in_channels)
    pointwise = conv_params(in_channels, out_channels, 1, bias=bias)
    return depthwise + pointwise


def depthwise_separable_reduction(in_channels: int, out_channels: int, kernel) -> float:
    """How many times fewer weights (and MACs) a depthwise-separable convolution needs than a standard one.

    ``C_in C_out K^2 / (C_in K^2 + C_in C_out) = 1 / (1 / C_out + 1 / K^2)`` (biases left out);
    about 8 to 9 for 3x3 kernels and many channels.

    Book: "Convolution arithmetic", section "Grouped and depthwise-separable convolution" (``book/convolution_arithmetic.md``).
    """
    standard = conv_params(in_channels, out_channels, kernel, bias=False)
    return standard / depthwise_separable_params(in_channels, out_channels, kernel, bias=False)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``in * out`` weights plus ``out`` biases.

    Book: "Convolution arithmetic", section "Counting parameters" (``book/convolution_arithmetic.md``).
    """
    in_features, out_features = _int("in_features", in_features, 1), _int("out_features", out_features, 1)
    return in_features * out_features + (out_features if bias else 0)


# --------------------------------------------------------------------- MACs


def conv_macs(in_channels: int, out_channels: int, kernel, output_size, groups: int = 1) -> int:
    """Multiply-accumulates of a convolution on one image: ``OH * OW * C_out * (C_in / groups) * KH * KW``.

    kernel: K or (KH, KW); output_size: OH or (OH, OW). Each output
    value is one dot product of length ``(C_in / groups) * KH * KW``. Biases are not counted.

    Book: "Backpropagation through convolution and pooling", section "What the backward pass costs" (``book/backprop_conv.md``).
    """
    weights = conv_params(in_channels, out_channels, kernel, bias=False, groups=groups)
    height, width = pair(output_size, "output_size", 1)
    return weights * height * width


def conv_flops(in_channels: int, out_channels: int, kernel, output_size, groups: int = 1) -> int:
    """Floating-point operations of a convolution on one image: ``2 * conv_macs(...)``.

    Book: "Backpropagation through convolution and pooling", section "What the backward pass costs" (``book/backprop_conv.md``).
    """
    return 2 * conv_macs(in_channels, out_channels, kernel, output_size, groups)


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply-accumulates of a fully connected layer on one input vector: ``in * out``.

    Book: "Backpropagation through convolution and pooling", section "What the backward pass costs" (``book/backprop_conv.md``).
    """
    return linear_params(in_features, out_features, bias=False)


# ----------------------------------------------------------- receptive field


def receptive_field(
    kernels: Sequence[int], strides: Sequence[int] | None = None, dilations: Sequence[int] | None = None
) -> int:
    """Receptive field (along one axis) of a unit after a stack of convolution or pooling layers.

    ``r = 1 + sum_l D_l (K_l - 1) * prod_{i < l} S_i``: layer l widens the field by
    its effective kernel minus one, measured in input pixels, i.e. times the
    product of the strides before it. Three 3x3 stride-1 layers see 7 x 7 pixels;
    L of them see 2L + 1. kernels, strides, dilations: one int per layer (strides
    and dilations default to 1). Padding does not change the receptive field.

    Book: "Convolution arithmetic", section "Receptive fields" (``book/convolution_arithmetic.md``).
    """
    kernels = [_int(f"kernels[{i}]", k, 1) for i, k in enumerate(kernels)]
    strides = [1] * len(kernels) if strides is None else strides
    dilations = [1] * len(kernels) if dilations is None else dilations
    strides = [_int(f"strides[{i}]", s, 1) for i, s in enumerate(strides)]
    dilations = [_int(f"dilations[{i}]", d, 1) for i, d in enumerate(dilations)]
    if not len(kernels) == len(strides) == len(dilations):
        raise ValueError(
            f"one stride and one dilation per layer: got {len(kernels)} kernels, "
            f"{len(strides)} strides and {len(dilations)} dilations"
        )
    field, jump = 1, 1
    for kernel, stride, dilation in zip(kernels, strides, dilations):
        field += dilation * (kernel - 1) * jump
        jump *= stride  # distance in input pixels between neighbouring units of this layer's output
    return field


# ---------------------------------------------------------------- summarize


@dataclass(frozen=True)
class LayerSummary:
    """One row of :class:`ModelSummary`: a leaf module as it was called in the forward pass.

    Book: "Convolution arithmetic", section "Counting multiply-adds" (``book/convolution_arithmetic.md``).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass
class ModelSummary:
    """Per-layer output shapes, parameters and MACs of a model, from one forward pass.

    rows: one :class:`LayerSummary` per call of a leaf module, in call order.
    total_params / trainable_params: every parameter of the model, counted once.
    total_macs: the sum of the rows' MACs for the whole input batch.
    ``str(summary)`` is an aligned text table; in Jupyter it shows as an HTML table.

    Book: "Convolution arithmetic", section "Counting multiply-adds" (``book/convolution_arithmetic.md``).
    """

    rows: list[LayerSummary]
    total_params: int
    trainable_params: int
    input_shape: tuple[int, ...]
    columns: ClassVar[tuple[str, ...]] = ("Layer", "Type", "Output shape", "Params", "MACs")

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.rows)

    def _cells(self) -> list[tuple[str, ...]]:
        return [
            (row.name, row.type, str(list(row.output_shape)), f"{row.params:,}", f"{row.macs:,}") for row in self.rows
        ]

    def __str__(self) -> str:
        cells = self._cells()
        widths = [max(len(c) for c in column) for column in zip(self.columns, *cells)]
        right = (False, False, False, True, True)

        def line(values):
            return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

        rule = "-" * len(line(self.columns))
        lines = [line(self.columns), rule, *(line(c) for c in cells), rule]
        lines += [
            f"Input shape: {list(self.input_shape)}",
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Total MACs: {self.total_macs:,} ({_short(self.total_macs)})",
        ]
        return "\n".join(lines)

    def to_dataframe(self):
        """The rows as a pandas DataFrame (pandas is imported only here)."""
        import pandas as pd  # noqa: PLC0415

        return pd.DataFrame(
            [(r.name, r.type, r.output_shape, r.params, r.macs) for r in self.rows], columns=list(self.columns)
        )

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in self._cells()
        )
        foot = (
            f"<p>Total params: {self.total_params:,} &middot; trainable: {self.trainable_params:,} "
            f"&middot; MACs: {self.total_macs:,} ({_short(self.total_macs)}) for input {list(self.input_shape)}</p>"
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{foot}"


def _short(count: int) -> str:
    """1814073344 -> '1.81 G', 6128896 -> '6.13 M'."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return str(count)


def _layer_macs(module, inputs, output) -> int:
    """MACs of one call of a leaf module; 0 for layers that are not convolutions or fully connected."""
    import torch.nn as nn  # noqa: PLC0415

    from cnnbook.ops import modules as ops  # noqa: PLC0415 - the book's own Conv2d and Linear count too

    if hasattr(module, "count_macs"):  # a layer that states its own cost (LeNet-5's partly connected C3)
        return module.count_macs(inputs, output)
    if isinstance(module, (nn.modules.conv._ConvNd, ops.Conv2d)):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        if getattr(module, "transposed", False):
            # Each *input* value is multiplied by (C_out / groups) * prod(kernel) weights.
            return inputs[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, (nn.Linear, ops.Linear)):
        return output.numel() * module.in_features
    if isinstance(module, nn.Bilinear):
        return output.numel() * module.in1_features * module.in2_features
    return 0


def summarize(model, input_shape: Sequence[int], device="cpu") -> ModelSummary:
    """Run one forward pass on zeros of ``input_shape`` and tabulate every leaf module.

    model: a ``torch.nn.Module``; input_shape: the shape of the input *batch*,
    e.g. ``(1, 3, 32, 32)`` (N = 1 gives per-image MACs). A shape without the
    batch dimension, e.g. ``(3, 32, 32)``, works too: when the model rejects it,
    a batch of one is added (``summary.input_shape`` says which shape ran).
    device: where to run the pass (``"meta"`` gives shapes without computing anything).
    Collects, per call of a leaf module: its name, type, output shape, own
    parameters (a module called twice counts them once) and MACs (convolutions
    including groups, transposed convolutions and fully connected layers; every
    other layer counts 0). The model is put in eval mode for the pass and
    returned to its previous mode; no gradients are computed.

    Book: "Convolution arithmetic", section "Counting multiply-adds" (``book/convolution_arithmetic.md``).
    """
    input_shape = tuple(_int("input_shape", s, 1) for s in input_shape)
    try:
        rows = _trace(model, input_shape, device)
    except (RuntimeError, ValueError, IndexError) as error:
        try:
            input_shape = (1,) + input_shape
            rows = _trace(model, input_shape, device)
        except Exception:  # noqa: BLE001 - the first error is the one to show
            raise ValueError(
                f"summarize: the model failed on an input of shape {list(input_shape[1:])} "
                f"(and on {list(input_shape)} with a batch dimension added): {error}"
            ) from error
    parameters = list(model.parameters())
    return ModelSummary(
        rows=rows,
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        input_shape=input_shape,
    )


def _trace(model, input_shape: tuple[int, ...], device) -> list[LayerSummary]:
    """One forward pass on zeros with a hook on every leaf module; one row per call."""
    import torch  # noqa: PLC0415

    names = {module: name for name, module in model.named_modules()}
    rows: list[LayerSummary] = []
    seen: set[int] = set()

    def record(module, inputs, output):
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        params = 0
        if id(module) not in seen:
            seen.add(id(module))
            params = sum(p.numel() for p in module.parameters(recurse=False))
        shape = tuple(tensor.shape) if hasattr(tensor, "shape") else ()
        name = names.get(module) or type(module).__name__
        rows.append(LayerSummary(name, type(module).__name__, shape, params, _layer_macs(module, inputs, tensor)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters(), None)
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        with torch.no_grad():
            model(torch.zeros(input_shape, dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows
