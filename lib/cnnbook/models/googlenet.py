"""GoogLeNet (Inception v1): Szegedy et al. 2015 (references.bib: ``szegedy2015going``), Table 1 and Figure 2b.

An Inception module runs four branches side by side on the same input and
concatenates their outputs along the channels:

- a 1x1 convolution;
- a 1x1 reduction, then a 3x3 convolution;
- a 1x1 reduction, then a "5x5" convolution (3x3 here, as in torchvision's
  layout, so its ``state_dict``s load; the paper's is 5x5);
- a 3x3 max pooling (stride 1), then a 1x1 projection.

Every convolution is followed by batch norm (eps 0.001) and ReLU (batch norm is
a later addition, as in torchvision). Shapes, x: (N, 3, 224, 224):
conv1 (N, 64, 112, 112), after the stem (N, 192, 28, 28), inception 3b
(N, 480, 28, 28), 4e (N, 832, 14, 14), 5b (N, 1024, 7, 7), logits (N, num_classes).
Two auxiliary classifiers (on 4a's and 4d's outputs) help training; they run
only in training mode, where the forward pass returns ``(logits, aux2, aux1)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["BasicConv2d", "Inception", "InceptionAux", "GoogLeNet", "GoogLeNetOutputs", "INCEPTION_CONFIGS",
           "googlenet"]


class GoogLeNetOutputs(NamedTuple):
    """What a training-mode forward pass with auxiliary classifiers returns: three (N, num_classes) logits."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor | None
    aux_logits1: torch.Tensor | None


class BasicConv2d(nn.Module):
    """Convolution (no bias) + batch norm + ReLU. x: (N, C_in, H, W) -> (N, C_out, OH, OW)."""

    def __init__(self, in_channels: int, out_channels: int, layers: str = "torch", **conv):
        super().__init__()
        kit = layer_kit(layers)
        self.conv = kit.Conv2d(in_channels, out_channels, bias=False, **conv)
        self.bn = kit.BatchNorm2d(out_channels, eps=0.001)
        self.relu = kit.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches. x: (N, C_in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.branch1 = BasicConv2d(in_channels, ch1x1, layers, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, layers, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, layers, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, layers, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, layers, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(kit.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, layers, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier. x: (N, C_in, H, W) -> 4x4 average -> 1x1 conv (128) -> 1024 -> (N, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.pool = kit.AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, layers, kernel_size=1)
        self.fc1 = kit.Linear(128 * 4 * 4, 1024)
        self.relu = kit.ReLU(inplace=True)
        self.fc2 = kit.Linear(1024, num_classes)
        self.dropout = kit.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


#: Table 1 of the paper: in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_CONFIGS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """GoogLeNet. x: (N, 3, H, W) -> logits (N, num_classes) (``GoogLeNetOutputs`` in training with aux)."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 dropout: float = 0.2, dropout_aux: float = 0.7, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "googlenet")
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(3, 64, layers, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = kit.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, layers, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, layers, kernel_size=3, padding=1)
        self.maxpool2 = kit.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, config in INCEPTION_CONFIGS.items():
            setattr(self, name, Inception(*config, layers=layers))
            if name == "inception3b":
                self.maxpool3 = kit.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = kit.MaxPool2d(2, stride=2, ceil_mode=True)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux, layers)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux, layers)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.dropout = kit.Dropout(dropout)
        self.fc = kit.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor):
        if self.transform_input:
            x = _renormalize(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        auxiliary = self.aux_logits and self.training
        aux1 = self.aux1(x) if auxiliary else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if auxiliary else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return GoogLeNetOutputs(logits, aux2, aux1) if auxiliary else logits


def _renormalize(x: torch.Tensor) -> torch.Tensor:
    """x normalised with the ImageNet mean and std -> the same image scaled to [-1, 1], ``(rgb - 0.5) / 0.5``.

    The ImageNet weights torchvision ships for GoogLeNet were trained on the latter.
    x: (N, 3, H, W) -> (N, 3, H, W).
    """
    mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return (x * std + mean - 0.5) / 0.5


@constructor
def googlenet(*, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
              dropout: float = 0.2, dropout_aux: float = 0.7, layers: str = "torch") -> GoogLeNet:
    """GoogLeNet (Szegedy et al. 2015): 13,004,888 parameters with the auxiliary classifiers, 6,624,904 without.

    transform_input: re-normalise ImageNet-normalised input to [-1, 1] first, as torchvision's
    pretrained GoogLeNet does.
    """
    return GoogLeNet(num_classes, aux_logits, transform_input, dropout, dropout_aux, layers)
