"""MobileNet v1 and v2: depthwise-separable convolutions.

- v1: Howard et al. 2017 (references.bib: ``howard2017mobilenets``), Table 1. A 3x3 *depthwise*
  convolution (one filter per channel, ``groups = C``) followed by a 1x1
  *pointwise* convolution replaces a full 3x3 convolution, for about
  ``1 / (1 / C_out + 1 / 9)`` times fewer weights and MACs
  (:func:`cnnbook.shapes.depthwise_separable_reduction`). 4.2M parameters, 569M MACs.
- v2: Sandler et al. 2018 (references.bib: ``sandler2018mobilenetv2``), Table 2. The
  *inverted residual*: a 1x1 expansion by ``t``, a 3x3 depthwise convolution,
  and a 1x1 *linear* projection (no activation: a ReLU in a narrow space
  destroys information), with a shortcut when input and output shapes agree.
  3,504,872 parameters, 300M MACs; torchvision's layout, so its weights load.

Shapes, x: (N, 3, 224, 224) -> (N, 32, 112, 112) after the stem -> ... ->
(N, 1024 or 1280, 7, 7) -> logits (N, num_classes).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["ConvNormAct", "DepthwiseSeparable", "InvertedResidual", "MobileNetV1", "MobileNetV2",
           "MOBILENET_V1_CONFIG", "MOBILENET_V2_CONFIG", "make_divisible", "mobilenet_v1", "mobilenet_v2"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``), never below 90 % of it.

    Keeps every channel count a multiple of 8 when a width multiplier scales the network.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormAct(nn.Sequential):
    """Convolution (no bias) + batch norm + activation, as ``[0] conv, [1] norm, [2] act``.

    x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride) (padding ``(kernel - 1) // 2``).
    activation: a layer name of the layer kit (``"ReLU"``, ``"ReLU6"``, ``"SiLU"``) or None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation: str | None = "ReLU6", layers: str = "torch", **norm):
        kit = layer_kit(layers)
        modules = [
            kit.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                       groups=groups, bias=False),
            kit.BatchNorm2d(out_channels, **norm),
        ]
        if activation is not None:
            modules.append(getattr(kit, activation)(inplace=True))
        super().__init__(*modules)
        self.out_channels = out_channels


class DepthwiseSeparable(nn.Module):
    """MobileNet v1 block: 3x3 depthwise + BN + ReLU, then 1x1 pointwise + BN + ReLU.

    x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, layers: str = "torch"):
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels, activation="ReLU",
                                     layers=layers)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, activation="ReLU", layers=layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


#: Howard et al. 2017, Table 1: (output channels, stride) of the 13 depthwise-separable blocks.
MOBILENET_V1_CONFIG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1(nn.Module):
    """MobileNet v1. x: (N, in_channels, H, W) -> logits (N, num_classes).

    width_mult: the paper's width multiplier alpha (1, 0.75, 0.5, 0.25): every
    layer's channels times alpha, so parameters and MACs fall roughly as alpha^2.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.0, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "mobilenet_v1")
        if not width_mult > 0:
            raise ValueError(f"mobilenet_v1: width_mult must be > 0, got {width_mult!r}")
        width = max(1, int(32 * width_mult))
        blocks = [ConvNormAct(in_channels, width, 3, 2, activation="ReLU", layers=layers)]
        for channels, stride in MOBILENET_V1_CONFIG:
            out = max(1, int(channels * width_mult))
            blocks.append(DepthwiseSeparable(width, out, stride, layers))
            width = out
        self.features = nn.Sequential(*blocks)
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(kit.Dropout(dropout), kit.Linear(width, num_classes))
        _init_mobilenet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """MobileNet v2 block. x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride).

    ``conv``: [1x1 expand to t C_in, BN, ReLU6] (left out when t = 1), 3x3
    depthwise, BN, ReLU6, 1x1 linear projection, BN; plus x when stride is 1 and C_in = C_out.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        modules = []
        if expand_ratio != 1:
            modules.append(ConvNormAct(in_channels, hidden, 1, layers=layers))
        modules += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, layers=layers),
            kit.Conv2d(hidden, out_channels, 1, bias=False),
            kit.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*modules)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


#: Sandler et al. 2018, Table 2: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNet v2. x: (N, 3, H, W) -> logits (N, num_classes)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 round_nearest: int = 8, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "mobilenet_v2")
        if not width_mult > 0:
            raise ValueError(f"mobilenet_v2: width_mult must be > 0, got {width_mult!r}")
        width = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        blocks = [ConvNormAct(3, width, 3, 2, layers=layers)]
        for expand, channels, repeats, stride in MOBILENET_V2_CONFIG:
            out = make_divisible(channels * width_mult, round_nearest)
            for index in range(repeats):
                blocks.append(InvertedResidual(width, out, stride if index == 0 else 1, expand, layers))
                width = out
        blocks.append(ConvNormAct(width, self.last_channel, 1, layers=layers))
        self.features = nn.Sequential(*blocks)
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(kit.Dropout(dropout), kit.Linear(self.last_channel, num_classes))
        _init_mobilenet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _init_mobilenet(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions, identity batch norms, small normal classifier weights."""
    for module in model.modules():
        kind = type(module).__name__
        if kind == "Conv2d":
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif kind == "BatchNorm2d":
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif kind == "Linear":
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


@constructor
def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3, dropout: float = 0.0,
                 layers: str = "torch") -> MobileNetV1:
    """MobileNet v1 (Howard et al. 2017): 4,231,976 parameters and 569M MACs at width 1 (paper: 4.2M, 569M)."""
    return MobileNetV1(num_classes, width_mult, in_channels, dropout, layers)


@constructor
def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 layers: str = "torch") -> MobileNetV2:
    """MobileNet v2 (Sandler et al. 2018): 3,504,872 parameters, 301M MACs at 224 x 224 (paper: 3.4M, 300M)."""
    return MobileNetV2(num_classes, width_mult, dropout, layers=layers)
