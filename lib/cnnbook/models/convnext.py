"""ConvNeXt-T: Liu et al. 2022, *A ConvNet for the 2020s* (references.bib: ``liu2022convnet``), section 2 and Figure 4.

A ResNet modernised step by step toward a vision transformer's design:

- a "patchify" stem, a 4x4 convolution with stride 4, and layer norm;
- four stages of (3, 3, 9, 3) blocks at (96, 192, 384, 768) channels, with a
  separate downsampling layer (layer norm + 2x2 convolution, stride 2) between stages;
- the block, an inverted bottleneck with a large depthwise kernel:
  ``x + gamma * Linear(GELU(Linear(LayerNorm(dwconv7x7(x)))))``, the two 1x1
  convolutions written as ``Linear`` layers on a channels-last tensor (N, H, W, C),
  expansion 4, ``gamma`` a learned per-channel scale starting at 1e-6 ("layer scale"),
  and stochastic depth up to 0.1.

Shapes, x: (N, 3, 224, 224): stem (N, 96, 56, 56), stages (N, 96, 56, 56),
(N, 192, 28, 28), (N, 384, 14, 14), (N, 768, 7, 7); logits (N, num_classes).
28,589,128 parameters, 4.5 GMACs; torchvision's layout, so its weights load.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit
from .efficientnet import StochasticDepth

__all__ = ["Permute", "LayerNorm2d", "CNBlock", "ConvNeXt", "CONVNEXT_TINY_CONFIG", "convnext_tiny"]

#: Liu et al. 2022: ConvNeXt-T, (channels, blocks) per stage.
CONVNEXT_TINY_CONFIG = ((96, 3), (192, 3), (384, 9), (768, 3))


class Permute(nn.Module):
    """Reorder the axes: ``Permute((0, 2, 3, 1))`` maps (N, C, H, W) to (N, H, W, C)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel. x: (N, C, H, W) -> same shape; weight, bias: (C,)."""

    def __init__(self, channels: int, eps: float = 1e-6, layers: str = "torch"):
        super().__init__()
        self.normalized_shape, self.eps = (channels,), eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self._layer_norm = layer_kit(layers).layer_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class CNBlock(nn.Module):
    """ConvNeXt block. x: (N, C, H, W) -> same shape."""

    def __init__(self, channels: int, layer_scale: float = 1e-6, drop_prob: float = 0.0, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        self.block = nn.Sequential(
            kit.Conv2d(channels, channels, 7, padding=3, groups=channels),
            Permute((0, 2, 3, 1)),
            kit.LayerNorm(channels, eps=1e-6),
            kit.Linear(channels, 4 * channels),
            kit.GELU(),
            kit.Linear(4 * channels, channels),
            Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), layer_scale))
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """ConvNeXt. x: (N, 3, H, W), H, W >= 32 -> logits (N, num_classes)."""

    def __init__(self, config=CONVNEXT_TINY_CONFIG, num_classes: int = 1000, stochastic_depth_prob: float = 0.1,
                 layer_scale: float = 1e-6, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "convnext")
        first = config[0][0]
        stages = [nn.Sequential(kit.Conv2d(3, first, 4, stride=4), LayerNorm2d(first, layers=layers))]
        total, index = sum(blocks for _, blocks in config), 0
        for stage, (channels, blocks) in enumerate(config):
            stage_blocks = []
            for _ in range(blocks):
                drop = stochastic_depth_prob * index / (total - 1.0)
                stage_blocks.append(CNBlock(channels, layer_scale, drop, layers))
                index += 1
            stages.append(nn.Sequential(*stage_blocks))
            if stage + 1 < len(config):
                following = config[stage + 1][0]
                stages.append(nn.Sequential(LayerNorm2d(channels, layers=layers),
                                            kit.Conv2d(channels, following, 2, stride=2)))
        self.features = nn.Sequential(*stages)
        last = config[-1][0]
        self.avgpool = kit.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(last, layers=layers), nn.Flatten(1), kit.Linear(last, num_classes))
        for module in self.modules():
            if type(module).__name__ in ("Conv2d", "Linear"):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


@constructor
def convnext_tiny(*, num_classes: int = 1000, stochastic_depth_prob: float = 0.1,
                  layers: str = "torch") -> ConvNeXt:
    """ConvNeXt-T (Liu et al. 2022): 28,589,128 parameters, 4.5 GMACs at 224 x 224 (paper: 28M, 4.5G FLOPs)."""
    return ConvNeXt(CONVNEXT_TINY_CONFIG, num_classes, stochastic_depth_prob, 1e-6, layers)
