"""ResNet for ImageNet: basic and bottleneck residual blocks, and the pre-activation variant.

He et al. 2016, *Deep residual learning for image recognition* (references.bib: ``he2016deep``),
Table 1; pre-activation blocks from He et al. 2016, *Identity mappings in deep
residual networks* (references.bib: ``he2016identity``).

A residual block computes ``out = relu(F(x) + shortcut(x))``. The shortcut is
the identity, or a 1x1 convolution with stride (plus batch norm) where the block
changes the resolution or the channel count ("projection shortcut", option B).
The stride of a bottleneck block sits on its 3x3 convolution, as in torchvision
(often called ResNet v1.5), so torchvision's ``state_dict``s load into these models.

Shapes for a 224 x 224 input (``x: (N, 3, 224, 224)``):

========  =============================  =========================
stage     output                          blocks (18 / 34 / 50 / 101 / 152)
========  =============================  =========================
conv1     (N, 64, 112, 112), 7x7 stride 2
maxpool   (N, 64, 56, 56), 3x3 stride 2
layer1    (N, 64 e, 56, 56)               2 / 3 / 3 / 3 / 3
layer2    (N, 128 e, 28, 28)              2 / 4 / 4 / 4 / 8
layer3    (N, 256 e, 14, 14)              2 / 6 / 6 / 23 / 36
layer4    (N, 512 e, 7, 7)                2 / 3 / 3 / 3 / 3
fc        (N, num_classes)
========  =============================  =========================

with expansion ``e = 1`` (basic blocks: ResNet-18, 34) or ``e = 4`` (bottlenecks: ResNet-50, 101, 152).
Every constructor takes ``num_classes``, ``layers`` (``"torch"`` or ``"cnnbook"``),
``device`` and ``dtype``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["BasicBlock", "Bottleneck", "PreActBlock", "ResNet", "PreActResNet", "RESNET_CONFIGS",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "preact_resnet18"]


def _projection(kit, in_channels: int, out_channels: int, stride: int, norm: bool = True) -> nn.Sequential | None:
    """The shortcut of a block: None (identity) when the shapes agree, else a strided 1x1 convolution (+ BN)."""
    if stride == 1 and in_channels == out_channels:
        return None
    conv = kit.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
    return nn.Sequential(conv, kit.BatchNorm2d(out_channels)) if norm else nn.Sequential(conv)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut. x: (N, C_in, H, W) -> (N, C, H / stride, W / stride).

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, C = ``channels``.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.conv1 = kit.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = kit.BatchNorm2d(channels)
        self.relu = kit.ReLU(inplace=True)
        self.conv2 = kit.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = kit.BatchNorm2d(channels)
        self.downsample = _projection(kit, in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, with a shortcut. x: (N, C_in, H, W) -> (N, 4 C, H / s, W / s).

    ``channels`` C is the width of the 3x3 convolution; the block outputs
    ``expansion * C = 4 C`` channels. The 1x1 convolutions make the 3x3 one cheap
    (He et al. 2016, section 4.1, "deeper bottleneck architectures").
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        out_channels = channels * self.expansion
        self.conv1 = kit.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = kit.BatchNorm2d(channels)
        self.conv2 = kit.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = kit.BatchNorm2d(channels)
        self.conv3 = kit.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = kit.BatchNorm2d(out_channels)
        self.relu = kit.ReLU(inplace=True)
        self.downsample = _projection(kit, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, *Identity mappings*, Fig. 1b and 4e).

    x: (N, C_in, H, W) -> (N, C, H / stride, W / stride).
    ``out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``: nothing is
    applied after the addition, so the identity path from input to output is clean.
    A projection shortcut is a bare strided 1x1 convolution applied to ``relu(bn1(x))``.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.bn1 = kit.BatchNorm2d(in_channels)
        self.relu = kit.ReLU(inplace=True)
        self.conv1 = kit.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = kit.BatchNorm2d(channels)
        self.conv2 = kit.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.downsample = _projection(kit, in_channels, channels, stride, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(activated)
        out = self.conv1(activated)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


#: name -> (block, blocks per stage), He et al. 2016, Table 1.
RESNET_CONFIGS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
    "preact_resnet18": (PreActBlock, (2, 2, 2, 2)),
}


class ResNet(nn.Module):
    """ResNet for 224 x 224 images. x: (N, in_channels, H, W) -> logits (N, num_classes).

    block: :class:`BasicBlock` or :class:`Bottleneck`; blocks: how many per
    stage (four stages of 64, 128, 256, 512 base channels, stride 2 from the second on).
    """

    def __init__(self, block, blocks, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, type(self).__name__)
        self.conv1 = kit.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = kit.BatchNorm2d(64)
        self.relu = kit.ReLU(inplace=True)
        self.maxpool = kit.MaxPool2d(3, stride=2, padding=1)
        width = 64
        for index, (count, channels) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
            stride = 1 if index == 1 else 2
            stage = []
            for position in range(count):
                stage.append(block(width, channels, stride if position == 0 else 1, layers=layers))
                width = channels * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*stage))
        self.avgpool = kit.AdaptiveAvgPool2d((1, 1))
        self.fc = kit.Linear(width, num_classes)
        _init_resnet(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> the last stage's map (N, 512 e, H / 32, W / 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class PreActResNet(ResNet):
    """Pre-activation ResNet (He et al. 2016, *Identity mappings*). x: (N, C, H, W) -> (N, num_classes).

    The stem and stages of :class:`ResNet` with :class:`PreActBlock` blocks; since
    no block ends with a normalization, a final ``bn_final`` + ReLU precedes the pooling.
    """

    def __init__(self, block=PreActBlock, blocks=(2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 layers: str = "torch"):
        super().__init__(block, blocks, num_classes, in_channels, layers)
        self.bn_final = layer_kit(layers).BatchNorm2d(self.fc.in_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn_final(super().features(x)))


def _init_resnet(model: nn.Module) -> None:
    """He (Kaiming) normal initialisation for convolutions, fan-out mode (He et al. 2015); BN as the identity."""
    for module in model.modules():
        if "Conv" in type(module).__name__:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif "BatchNorm" in type(module).__name__:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _resnet(name: str, num_classes: int, in_channels: int, layers: str) -> ResNet:
    block, blocks = RESNET_CONFIGS[name]
    model_class = PreActResNet if block is PreActBlock else ResNet
    return model_class(block, blocks, num_classes=num_classes, in_channels=in_channels, layers=layers)


@constructor
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2); 11,689,512 parameters, 1.8 GMACs at 224 x 224."""
    return _resnet("resnet18", num_classes, in_channels, layers)


@constructor
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3); 21,797,672 parameters, 3.6 GMACs at 224 x 224."""
    return _resnet("resnet34", num_classes, in_channels, layers)


@constructor
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> ResNet:
    """ResNet-50: bottlenecks (3, 4, 6, 3); 25,557,032 parameters, 4.1 GMACs at 224 x 224."""
    return _resnet("resnet50", num_classes, in_channels, layers)


@constructor
def resnet101(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> ResNet:
    """ResNet-101: bottlenecks (3, 4, 23, 3); 44,549,160 parameters, 7.8 GMACs at 224 x 224."""
    return _resnet("resnet101", num_classes, in_channels, layers)


@constructor
def resnet152(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> ResNet:
    """ResNet-152: bottlenecks (3, 8, 36, 3); 60,192,808 parameters, 11.5 GMACs at 224 x 224."""
    return _resnet("resnet152", num_classes, in_channels, layers)


@constructor
def preact_resnet18(*, num_classes: int = 1000, in_channels: int = 3, layers: str = "torch") -> PreActResNet:
    """Pre-activation ResNet-18 (He et al. 2016, *Identity mappings*): ResNet-18's layout with
    :class:`PreActBlock`; 11,687,848 parameters = ResNet-18's 11,689,512 - 1,792 (no BN on the
    projection shortcuts) + 1,024 (``bn_final``) - 896 (each stage's first ``bn1`` sees the narrower input).
    """
    return _resnet("preact_resnet18", num_classes, in_channels, layers)
