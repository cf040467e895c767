"""VGG: Simonyan and Zisserman 2015 (references.bib: ``simonyan2015very``), configurations A, B, D, E (Table 1).

Stacks of 3x3 convolutions (padding 1, so the size is kept) separated by 2x2
max pooling that halves the size, five times: x: (N, 3, 224, 224) ->
(N, 512, 7, 7) -> three fully connected layers 25088 -> 4096 -> 4096 -> num_classes.
The ``_bn`` variants put a batch norm after every convolution (not in the paper;
torchvision's layout). VGG-16 (D): 138,357,544 parameters, 15.5 GMACs.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["VGG", "VGG_CONFIGS", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

#: Table 1 of the paper: output channels of each 3x3 convolution, "M" a 2x2 max pooling.
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # A
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # B
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),  # D
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
              "M"),  # E
}


def make_features(config, batch_norm: bool, layers: str = "torch") -> nn.Sequential:
    """The convolutional part: (N, 3, H, W) -> (N, 512, H / 32, W / 32)."""
    kit = layer_kit(layers)
    modules, channels = [], 3
    for item in config:
        if item == "M":
            modules.append(kit.MaxPool2d(2, stride=2))
            continue
        modules.append(kit.Conv2d(channels, item, 3, padding=1))
        if batch_norm:
            modules.append(kit.BatchNorm2d(item))
        modules.append(kit.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*modules)


class VGG(nn.Module):
    """VGG. x: (N, 3, H, W), H, W >= 32 -> logits (N, num_classes)."""

    def __init__(self, config, batch_norm: bool = False, num_classes: int = 1000, dropout: float = 0.5,
                 layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "vgg")
        self.features = make_features(config, batch_norm, layers)
        self.avgpool = kit.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            kit.Linear(512 * 7 * 7, 4096), kit.ReLU(inplace=True), kit.Dropout(dropout),
            kit.Linear(4096, 4096), kit.ReLU(inplace=True), kit.Dropout(dropout),
            kit.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg(name, batch_norm, num_classes, dropout, layers):
    return VGG(VGG_CONFIGS[name], batch_norm, num_classes, dropout, layers)


@constructor
def vgg11(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-11 (configuration A): 132,863,336 parameters."""
    return _vgg("vgg11", False, num_classes, dropout, layers)


@constructor
def vgg11_bn(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-11 with batch norm: 132,868,840 parameters."""
    return _vgg("vgg11", True, num_classes, dropout, layers)


@constructor
def vgg13(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-13 (configuration B): 133,047,848 parameters."""
    return _vgg("vgg13", False, num_classes, dropout, layers)


@constructor
def vgg13_bn(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-13 with batch norm: 133,053,736 parameters."""
    return _vgg("vgg13", True, num_classes, dropout, layers)


@constructor
def vgg16(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-16 (configuration D): 138,357,544 parameters, 15.5 GMACs at 224 x 224."""
    return _vgg("vgg16", False, num_classes, dropout, layers)


@constructor
def vgg16_bn(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-16 with batch norm: 138,365,992 parameters."""
    return _vgg("vgg16", True, num_classes, dropout, layers)


@constructor
def vgg19(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-19 (configuration E): 143,667,240 parameters."""
    return _vgg("vgg19", False, num_classes, dropout, layers)


@constructor
def vgg19_bn(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> VGG:
    """VGG-19 with batch norm: 143,678,248 parameters."""
    return _vgg("vgg19", True, num_classes, dropout, layers)
