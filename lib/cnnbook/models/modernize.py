"""From ResNet-50 to ConvNeXt-T one design change at a time: Liu et al. 2022, section 2 and Figure 2.

References.bib: ``liu2022convnet``. Each rung of the paper's "modernisation"
ladder is a :class:`ModernizationDesign`; :func:`modernized_resnet` builds the
network of any rung, so its parameters and MACs can be counted with
:func:`cnnbook.shapes.summarize` (build on ``device="meta"``: no memory).

The ladder, cumulative (each step keeps every change before it):

==  ========================  ==========================================================
0   ResNet-50                 bottleneck blocks (3, 4, 6, 3), 7x7 stem + max pool, BN, ReLU
1   stage ratio               blocks per stage (3, 3, 9, 3)
2   patchify stem             stem: one 4x4 convolution with stride 4
3   depthwise convolution     the 3x3 convolution of each block is depthwise (groups = channels)
4   width 96                  stage-1 width 64 -> 96 (the stem too)
5   inverted bottleneck       1x1 expand to 4 C, depthwise 3x3, 1x1 project to C (C = 96, 192, 384, 768)
6   depthwise conv moved up   depthwise first, on the narrow C channels, then the two 1x1 convolutions
7   kernel 7x7                depthwise 7x7
8   GELU                      every ReLU becomes a GELU
9   fewer activations         one activation per block, between the two 1x1 convolutions
10  fewer norms               one normalisation per block, after the depthwise convolution
11  layer norm                batch norm -> layer norm (over the channels of each pixel)
12  separate downsampling     LN + 2x2 stride-2 convolution between stages: ConvNeXt-T itself
==  ========================  ==========================================================

Step 0 is the library's :func:`~cnnbook.models.resnet50` (same layers, same
parameter count); step 12 *is* :func:`~cnnbook.models.convnext_tiny` (with its
layer scale and its final layer norm). Shapes, x: (N, 3, 224, 224) -> logits (N, num_classes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit
from .convnext import LayerNorm2d, convnext_tiny

__all__ = ["ModernizationDesign", "MODERNIZATION_STEPS", "modernization_design", "LadderBlock", "LadderNet",
           "modernized_resnet"]


@dataclass(frozen=True)
class ModernizationDesign:
    """One rung of the ladder: every design choice that differs between ResNet-50 and ConvNeXt-T.

    depths: blocks per stage; stem: ``"resnet"`` (7x7 stride 2 + 3x3 max pool) or
    ``"patchify"`` (4x4 stride 4); width: channels of stage 1's spatial
    convolution; depthwise: spatial convolution with ``groups = channels``;
    inverted: 1x1 expand to 4 C, spatial, 1x1 project (else ResNet's 1x1 reduce
    to C / 4, spatial, 1x1 expand); spatial_first: the spatial convolution comes
    first, on the block's input channels; kernel: its size K; activation:
    ``"ReLU"`` or ``"GELU"``; fewer_activations / fewer_norms: one activation
    (after the expanding 1x1) and one normalisation (after the first
    convolution) per block; norm: ``"batch"`` or ``"layer"``;
    separate_downsampling: ConvNeXt's downsampling layers between stages.

    Book: "Efficient and modern CNNs", section "ConvNeXt: a ResNet modernised step by step" (``book/efficient_cnns.md``).
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    stem: str = "resnet"
    width: int = 64
    depthwise: bool = False
    inverted: bool = False
    spatial_first: bool = False
    kernel: int = 3
    activation: str = "ReLU"
    fewer_activations: bool = False
    fewer_norms: bool = False
    norm: str = "batch"
    separate_downsampling: bool = False


#: The ladder of Liu et al. 2022 (Figure 2; appendix, Table 10): (step name, the change it makes).
MODERNIZATION_STEPS = (
    ("ResNet-50", {}),
    ("stage ratio", {"depths": (3, 3, 9, 3)}),
    ("patchify stem", {"stem": "patchify"}),
    ("depthwise conv", {"depthwise": True}),
    ("width 96", {"width": 96}),
    ("inverted bottleneck", {"inverted": True}),
    ("depthwise conv moved up", {"spatial_first": True}),
    ("kernel 7x7", {"kernel": 7}),
    ("GELU", {"activation": "GELU"}),
    ("fewer activations", {"fewer_activations": True}),
    ("fewer norms", {"fewer_norms": True}),
    ("layer norm", {"norm": "layer"}),
    ("separate downsampling", {"separate_downsampling": True}),
)


def modernization_design(step) -> ModernizationDesign:
    """The design after ``step`` (an index into :data:`MODERNIZATION_STEPS` or a step name), changes accumulated.

    ``modernization_design(0)`` is ResNet-50; ``modernization_design("kernel 7x7").kernel`` is 7.
    Raises ``ValueError`` for an unknown step.

    Book: "Efficient and modern CNNs", section "ConvNeXt: a ResNet modernised step by step" (``book/efficient_cnns.md``).
    """
    names = [name for name, _ in MODERNIZATION_STEPS]
    if isinstance(step, str):
        if step not in names:
            raise ValueError(f"unknown modernization step {step!r}; known: {names}")
        step = names.index(step)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(names):
        raise ValueError(f"step must be a name or an int in 0..{len(names) - 1}, got {step!r}")
    design = ModernizationDesign()
    for _, changes in MODERNIZATION_STEPS[: step + 1]:
        design = dataclasses.replace(design, **changes)
    return design


def _norm(design: ModernizationDesign, channels: int, layers: str) -> nn.Module:
    if design.norm == "batch":
        return layer_kit(layers).BatchNorm2d(channels)
    return LayerNorm2d(channels, eps=1e-6, layers=layers)


def _activation(design: ModernizationDesign, layers: str) -> nn.Module:
    kit = layer_kit(layers)
    return kit.GELU() if design.activation == "GELU" else kit.ReLU(inplace=True)


class LadderBlock(nn.Module):
    """A residual block of any rung. x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    Three convolutions (their order and widths set by the design), each with its
    normalisation and activation where the design keeps one, plus the shortcut
    (identity, or a strided 1x1 convolution + norm when the shape changes), and
    a final activation after the sum unless ``fewer_activations``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, design: ModernizationDesign,
                 layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        hidden = 4 * out_channels if design.inverted else out_channels // 4
        kernel = design.kernel

        def spatial(channels):
            groups = channels if design.depthwise else 1
            return ("spatial", channels, channels, kernel, stride, groups)

        if design.spatial_first:
            plan = [spatial(in_channels), ("expand", in_channels, hidden, 1, 1, 1),
                    ("project", hidden, out_channels, 1, 1, 1)]
        else:
            plan = [("expand" if design.inverted else "reduce", in_channels, hidden, 1, 1, 1), spatial(hidden),
                    ("project" if design.inverted else "expand", hidden, out_channels, 1, 1, 1)]
        units = []
        for index, (role, cin, cout, size, step, groups) in enumerate(plan):
            has_norm = index == 0 if design.fewer_norms else True
            if design.fewer_activations:
                has_activation = role == "expand" and index < 2
            else:
                has_activation = index < 2
            unit = [kit.Conv2d(cin, cout, size, stride=step, padding=size // 2, groups=groups, bias=not has_norm)]
            if has_norm:
                unit.append(_norm(design, cout, layers))
            if has_activation:
                unit.append(_activation(design, layers))
            units.append(nn.Sequential(*unit))
        self.branch = nn.Sequential(*units)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(kit.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          _norm(design, out_channels, layers))
        self.activation = None if design.fewer_activations else _activation(design, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.branch(x) + shortcut
        return out if self.activation is None else self.activation(out)


class LadderNet(nn.Module):
    """The network of one rung (without separate downsampling). x: (N, 3, H, W) -> logits (N, num_classes).

    Stage i (0..3) outputs ``width * 2**i`` channels (inverted bottleneck) or
    ``4 * width * 2**i`` (ResNet bottleneck); its first block has stride 2 from stage 1 on.
    """

    def __init__(self, design: ModernizationDesign, num_classes: int = 1000, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "modernized_resnet")
        if design.separate_downsampling:
            raise ValueError("LadderNet: the last rung is ConvNeXt-T, built by convnext_tiny()")
        width = design.width
        if design.stem == "resnet":
            self.stem = nn.Sequential(kit.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
                                      _norm(design, width, layers), _activation(design, layers),
                                      kit.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(kit.Conv2d(3, width, 4, stride=4, bias=False), _norm(design, width, layers))
        stages, channels = [], width
        for index, blocks in enumerate(design.depths):
            out = width * 2 ** index * (1 if design.inverted else 4)
            stage = []
            for position in range(blocks):
                stride = 2 if index > 0 and position == 0 else 1
                stage.append(LadderBlock(channels, out, stride, design, layers))
                channels = out
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.avgpool = kit.AdaptiveAvgPool2d(1)
        self.fc = kit.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


@constructor
def modernized_resnet(step, *, num_classes: int = 1000, layers: str = "torch") -> nn.Module:
    """The network after ``step`` of the ResNet-50 -> ConvNeXt-T ladder (index or name of :data:`MODERNIZATION_STEPS`).

    Step 0 has exactly ResNet-50's 25,557,032 parameters; the last step returns
    :func:`~cnnbook.models.convnext_tiny`. Also takes ``device=`` (``"meta"`` to count without memory).

    Book: "Efficient and modern CNNs", section "ConvNeXt: a ResNet modernised step by step" (``book/efficient_cnns.md``).
    """
    design = modernization_design(step)
    if design.separate_downsampling:
        return convnext_tiny(num_classes=num_classes, layers=layers)
    return LadderNet(design, num_classes, layers)
