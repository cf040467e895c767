"""DenseNet-121 (DenseNet-BC): Huang, Liu, van der Maaten and Weinberger 2017, Table 1.

References.bib: ``huang2017densely``.

Inside a dense block every layer reads the concatenation of all earlier
outputs of the block and adds ``growth_rate`` (k = 32) new channels:
``x_l = H_l([x_0, x_1, ..., x_{l-1}])``, with ``H_l`` = BN-ReLU-1x1 conv
(4k channels, the bottleneck) - BN-ReLU-3x3 conv (k channels). A transition
between blocks halves the channels (compression 0.5) with a 1x1 convolution
and halves the size with 2x2 average pooling.

Shapes, x: (N, 3, 224, 224): stem (N, 64, 56, 56); block 1 (6 layers)
-> (N, 256, 56, 56) -> transition (N, 128, 28, 28); block 2 (12) -> 512 ->
(N, 256, 14, 14); block 3 (24) -> 1024 -> (N, 512, 7, 7); block 4 (16) ->
(N, 1024, 7, 7); logits (N, num_classes). 7,978,856 parameters, 2.8 GMACs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet121"]


class DenseLayer(nn.Module):
    """x: a list of (N, C_i, H, W) maps -> (N, growth_rate, H, W) new features."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.norm1 = kit.BatchNorm2d(in_channels)
        self.relu1 = kit.ReLU(inplace=True)
        self.conv1 = kit.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = kit.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = kit.ReLU(inplace=True)
        self.conv2 = kit.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.dropout = kit.Dropout(drop_rate)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, dim=1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.dropout(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    """x: (N, C, H, W) -> (N, C + num_layers * growth_rate, H, W); layers named ``denselayer1``, ..."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float,
                 layers: str = "torch"):
        super().__init__()
        for index in range(num_layers):
            layer = DenseLayer(in_channels + index * growth_rate, growth_rate, bn_size, drop_rate, layers)
            self.add_module(f"denselayer{index + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv-2x2 average pool. x: (N, C_in, H, W) -> (N, C_out, H / 2, W / 2)."""

    def __init__(self, in_channels: int, out_channels: int, layers: str = "torch"):
        kit = layer_kit(layers)
        super().__init__(OrderedDict([
            ("norm", kit.BatchNorm2d(in_channels)),
            ("relu", kit.ReLU(inplace=True)),
            ("conv", kit.Conv2d(in_channels, out_channels, 1, bias=False)),
            ("pool", kit.AvgPool2d(2, stride=2)),
        ]))


class DenseNet(nn.Module):
    """DenseNet-BC. x: (N, 3, H, W) -> logits (N, num_classes)."""

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "densenet")
        stem = [
            ("conv0", kit.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", kit.BatchNorm2d(num_init_features)),
            ("relu0", kit.ReLU(inplace=True)),
            ("pool0", kit.MaxPool2d(3, stride=2, padding=1)),
        ]
        self.features = nn.Sequential(OrderedDict(stem))
        channels = num_init_features
        for index, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{index}",
                                     DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, layers))
            channels += num_layers * growth_rate
            if index < len(block_config):
                self.features.add_module(f"transition{index}", Transition(channels, channels // 2, layers))
                channels //= 2
        self.features.add_module("norm5", kit.BatchNorm2d(channels))
        self.relu = kit.ReLU(inplace=True)
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.classifier = kit.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


@constructor
def densenet121(*, num_classes: int = 1000, growth_rate: int = 32, drop_rate: float = 0.0,
                layers: str = "torch") -> DenseNet:
    """DenseNet-121 (k = 32, blocks of 6, 12, 24, 16 layers): 7,978,856 parameters."""
    return DenseNet(growth_rate, (6, 12, 24, 16), 64, 4, drop_rate, num_classes, layers)
