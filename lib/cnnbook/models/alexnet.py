"""AlexNet: Krizhevsky, Sutskever and Hinton 2012 (references.bib: ``krizhevsky2012imagenet``), in its one-GPU form.

The paper split its layers over two GPUs (96 + 96 filters in the first layer).
This is the single-tower layout torchvision uses (64, 192, 384, 256, 256
filters), so torchvision's ``state_dict`` loads; it has 61,100,840 parameters,
a little fewer than the paper's "60 million" two-tower net. Shapes, x: (N, 3, 224, 224):

    features: conv 11x11/4 -> (N, 64, 55, 55) -> maxpool 3/2 -> (N, 64, 27, 27)
              conv 5x5 -> (N, 192, 27, 27) -> maxpool -> (N, 192, 13, 13)
              conv 3x3 x3 -> (N, 256, 13, 13) -> maxpool -> (N, 256, 6, 6)
    avgpool:  adaptive to (N, 256, 6, 6), so other input sizes work too
    classifier: dropout, 9216 -> 4096, dropout, 4096 -> 4096, -> num_classes
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import check_num_classes, constructor, layer_kit

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    """AlexNet. x: (N, 3, H, W), H, W >= 63 -> logits (N, num_classes)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch"):
        super().__init__()
        kit = layer_kit(layers)
        check_num_classes(num_classes, "alexnet")
        self.features = nn.Sequential(
            kit.Conv2d(3, 64, 11, stride=4, padding=2), kit.ReLU(inplace=True), kit.MaxPool2d(3, stride=2),
            kit.Conv2d(64, 192, 5, padding=2), kit.ReLU(inplace=True), kit.MaxPool2d(3, stride=2),
            kit.Conv2d(192, 384, 3, padding=1), kit.ReLU(inplace=True),
            kit.Conv2d(384, 256, 3, padding=1), kit.ReLU(inplace=True),
            kit.Conv2d(256, 256, 3, padding=1), kit.ReLU(inplace=True), kit.MaxPool2d(3, stride=2),
        )
        self.avgpool = kit.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            kit.Dropout(dropout), kit.Linear(256 * 6 * 6, 4096), kit.ReLU(inplace=True),
            kit.Dropout(dropout), kit.Linear(4096, 4096), kit.ReLU(inplace=True),
            kit.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@constructor
def alexnet(*, num_classes: int = 1000, dropout: float = 0.5, layers: str = "torch") -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012), one tower: 61,100,840 parameters, 0.71 GMACs at 224 x 224."""
    return AlexNet(num_classes, dropout, layers)
