"""Small ResNets for 32 x 32 images, and their "plain" twins without shortcuts.

He et al. 2016, *Deep residual learning for image recognition* (references.bib: ``he2016deep``),
section 4.2 (CIFAR-10): a 3x3 convolution with 16 filters, then three stages of
``n`` basic blocks (two 3x3 convolutions each) with 16, 32 and 64 filters on
maps of 32, 16 and 8 pixels, global average pooling and a fully connected
layer: ``6 n + 2`` weighted layers. Shortcuts are parameter-free (option A):
where a stage halves the map and doubles the channels, the shortcut takes every
second pixel and pads the new channels with zeros. The paper's counts:
ResNet-20 (n = 3) 0.27M parameters, ResNet-56 (n = 9) 0.85M.

A *plain* network (``shortcuts=False``) is the same stack without the
shortcuts: the same parameters, the comparison of the paper's Figure 6.

Shapes: x: (N, in_channels, 32, 32) -> (N, 16, 32, 32) -> (N, 32, 16, 16)
-> (N, 64, 8, 8) -> (N, 64) -> logits (N, num_classes). Any input size
works (28 x 28 Fashion-MNIST gives maps of 28, 14 and 7 pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import check_num_classes, check_positive, constructor, layer_kit
from .resnet import _init_resnet

__all__ = ["CifarBlock", "CifarResNet", "CIFAR_DEPTHS", "resnet20", "resnet32", "resnet44", "resnet56", "plain20",
           "plain56"]


def _pad_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Option A: x: (N, C, H, W) -> (N, out_channels, H / stride, W / stride), new channels zero."""
    x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x


class CifarBlock(nn.Module):
    """Basic block with an option-A shortcut. x: (N, C_in, H, W) -> (N, C, H / stride, W / stride).

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; with
    ``shortcut=False`` the addition is left out (a plain block).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: bool = True,
                 layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.conv1 = kit.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = kit.BatchNorm2d(channels)
        self.relu = kit.ReLU(inplace=True)
        self.conv2 = kit.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = kit.BatchNorm2d(channels)
        self.stride, self.channels, self.shortcut = stride, channels, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:
            out = out + _pad_shortcut(x, self.channels, self.stride)
        return self.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n + 2) for small images. x: (N, in_channels, H, W) -> (N, num_classes).

    blocks_per_stage: n; shortcuts: False for the plain twin.
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3, shortcuts: bool = True,
                 layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        name = type(self).__name__
        check_num_classes(num_classes, name)
        check_positive("in_channels", in_channels, name)
        check_positive("blocks_per_stage", blocks_per_stage, name)
        self.conv1 = kit.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = kit.BatchNorm2d(16)
        self.relu = kit.ReLU(inplace=True)
        width = 16
        for index, channels in enumerate((16, 32, 64), start=1):
            stage = []
            for position in range(blocks_per_stage):
                stride = 2 if index > 1 and position == 0 else 1
                stage.append(CifarBlock(width, channels, stride, shortcut=shortcuts, layers=layers))
                width = channels
            setattr(self, f"layer{index}", nn.Sequential(*stage))
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.fc = kit.Linear(64, num_classes)
        _init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: name -> n (blocks per stage); depth = 6 n + 2.
CIFAR_DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}


@constructor
def resnet20(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """ResNet-20 for 32 x 32 images (n = 3): 269,722 parameters at 10 classes (paper: 0.27M)."""
    return CifarResNet(3, num_classes, in_channels, True, layers)


@constructor
def resnet32(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """ResNet-32 for 32 x 32 images (n = 5; paper: 0.46M parameters)."""
    return CifarResNet(5, num_classes, in_channels, True, layers)


@constructor
def resnet44(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """ResNet-44 for 32 x 32 images (n = 7; paper: 0.66M parameters)."""
    return CifarResNet(7, num_classes, in_channels, True, layers)


@constructor
def resnet56(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """ResNet-56 for 32 x 32 images (n = 9): 853,018 parameters at 10 classes (paper: 0.85M)."""
    return CifarResNet(9, num_classes, in_channels, True, layers)


@constructor
def plain20(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """The plain twin of :func:`resnet20`: the same layers without shortcuts."""
    return CifarResNet(3, num_classes, in_channels, False, layers)


@constructor
def plain56(*, num_classes: int = 10, in_channels: int = 3, layers: str = "torch") -> CifarResNet:
    """The plain twin of :func:`resnet56`: the same layers without shortcuts."""
    return CifarResNet(9, num_classes, in_channels, False, layers)
