"""Batch augmentations that mix images and their labels: mixup and CutMix.

torchvision's ``transforms.v2`` covers the per-image augmentations (flips,
crops, colour jitter, rotation, random erasing, RandAugment). The two here act
on a whole *batch*, because each image is combined with another image of the
same batch, and the labels are combined in the same proportion:

- mixup {Zhang et al. 2018}: ``x = lam * x_i + (1 - lam) * x_j`` and
  ``y = lam * y_i + (1 - lam) * y_j`` with ``lam ~ Beta(alpha, alpha)``;
- CutMix {Yun et al. 2019}: a rectangle of ``x_j`` is pasted into ``x_i``;
  ``lam`` is the fraction of the image that is still ``x_i``, so
  ``y = lam * y_i + (1 - lam) * y_j``.

Shapes: images ``(N, C, H, W)``, labels one-hot (or already soft) ``(N, K)``,
rows summing to 1. Images and labels may be NumPy arrays or torch tensors
(on any device); the result has the same type. Inputs are never modified.

Each augmentation has a deterministic core that takes ``lam`` / the box and
the partner of each image (``permutation``) as arguments (``mixup_with``,
``cutmix_with``), and a random front end that samples them from a seeded
generator (``mixup``, ``cutmix``). The book's chapter *Training and
regularization* shows both on real photographs.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_AUGMENT_SEED",
    "one_hot",
    "mixup_with",
    "mixup",
    "cutmix_box",
    "cutmix_lambda",
    "cutmix_with",
    "cutmix",
]

#: Seed used when no ``rng`` is given: results are reproducible, but every
#: such call draws the same numbers; in a training loop pass one generator.
DEFAULT_AUGMENT_SEED = 0


def _generator(rng) -> np.random.Generator:
    return np.random.default_rng(DEFAULT_AUGMENT_SEED if rng is None else rng)


def _copy(array):
    return array.clone() if hasattr(array, "clone") else np.array(array, copy=True)


def _float(array):
    """Integer images (uint8) cannot hold a blend: compute in float (float32 for torch, float64 for NumPy)."""
    if hasattr(array, "is_floating_point"):
        return array if array.is_floating_point() else array.float()
    array = np.asarray(array)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def _check_batch(images, labels_onehot, name: str) -> tuple[int, int, int]:
    if len(images.shape) != 4:
        raise ValueError(f"{name}: images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if len(labels_onehot.shape) != 2 or labels_onehot.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name}: labels_onehot must have shape (N, K) with N = {images.shape[0]} (the number of images), "
            f"got {tuple(labels_onehot.shape)}; use one_hot(labels, K) for integer labels"
        )
    return images.shape[0], images.shape[2], images.shape[3]


def _check_permutation(permutation, n: int, name: str) -> np.ndarray:
    permutation = np.asarray(permutation)
    if permutation.shape != (n,) or not np.issubdtype(permutation.dtype, np.integer):
        raise ValueError(f"{name}: permutation must be an integer array of shape ({n},), got {permutation.shape}")
    if permutation.size and (permutation.min() < 0 or permutation.max() >= n):
        raise ValueError(f"{name}: permutation entries must lie in [0, {n}), got {permutation.min()}..{permutation.max()}")
    return permutation


def _index(array, permutation: np.ndarray):
    if hasattr(array, "device"):
        import torch  # noqa: PLC0415

        return array[torch.as_tensor(permutation, device=array.device)]
    return array[permutation]


def one_hot(labels, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, num_classes) as float64 (NumPy).

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return np.eye(num_classes)[labels]


# --------------------------------------------------------------------------- mixup


def mixup_with(images, labels_onehot, lam: float, permutation):
    """Mixup with a given ``lam`` and partners: image i is blended with image ``permutation[i]``.

    images: (N, C, H, W); labels_onehot: (N, K); lam: weight of the image's own
    content, 0 <= lam <= 1; permutation: (N,) integers in [0, N).
    Returns ``(mixed_images (N, C, H, W), mixed_labels (N, K))``::

        mixed_images = lam * images + (1 - lam) * images[permutation]
        mixed_labels = lam * labels + (1 - lam) * labels[permutation]

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    n, _, _ = _check_batch(images, labels_onehot, "mixup_with")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixup_with: lam must lie in [0, 1], got {lam}")
    permutation = _check_permutation(permutation, n, "mixup_with")
    images, labels_onehot = _float(images), _float(labels_onehot)
    mixed_images = lam * images + (1 - lam) * _index(images, permutation)
    mixed_labels = lam * labels_onehot + (1 - lam) * _index(labels_onehot, permutation)
    return mixed_images, mixed_labels


def mixup(images, labels_onehot, alpha: float = 1.0, rng=None):
    """Mixup (Zhang et al., 2018): blend every image with a random partner from the same batch.

    images: (N, C, H, W); labels_onehot: (N, K); alpha > 0: ``lam ~ Beta(alpha, alpha)``
    (small alpha puts lam near 0 or 1, i.e. mild mixing; alpha = 1 is uniform);
    rng: a ``np.random.Generator`` or an int seed (None: :data:`DEFAULT_AUGMENT_SEED`).
    One ``lam`` and one random permutation per batch, as in the paper.
    Returns ``(mixed_images (N, C, H, W), mixed_labels (N, K), lam)``.

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    if alpha <= 0:
        raise ValueError(f"mixup: alpha must be > 0, got {alpha}")
    rng = _generator(rng)
    lam = float(rng.beta(alpha, alpha))
    permutation = rng.permutation(images.shape[0])
    mixed_images, mixed_labels = mixup_with(images, labels_onehot, lam, permutation)
    return mixed_images, mixed_labels, lam


# --------------------------------------------------------------------------- CutMix


def cutmix_box(height: int, width: int, lam: float, rng=None) -> tuple[int, int, int, int]:
    """CutMix's random box for a target mixing ratio ``lam``.

    The box has sides ``H * sqrt(1 - lam)`` and ``W * sqrt(1 - lam)`` (area
    ``(1 - lam) * H * W``), a centre drawn uniformly over the image, and is
    clipped to the image, so it may come out smaller than asked near a border.
    Returns ``(top, left, box_height, box_width)`` in pixels.

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"cutmix_box: lam must lie in [0, 1], got {lam}")
    rng = _generator(rng)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(round(height * cut)), int(round(width * cut))
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h - cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w - cut_w // 2, width)
    return top, left, bottom - top, right - left


def cutmix_lambda(box, height: int, width: int) -> float:
    """The fraction of an image that keeps its own pixels: ``1 - box_height * box_width / (H * W)``.

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    _, _, box_height, box_width = box
    return 1.0 - (box_height * box_width) / (height * width)


def _check_box(box, height: int, width: int, name: str) -> tuple[int, int, int, int]:
    if len(box) != 4:
        raise ValueError(f"{name}: box must be (top, left, box_height, box_width), got {box!r}")
    top, left, box_height, box_width = (int(v) for v in box)
    if min(top, left, box_height, box_width) < 0 or top + box_height > height or left + box_width > width:
        raise ValueError(f"{name}: box {tuple(box)} does not fit in an image of {height} x {width}")
    return top, left, box_height, box_width


def cutmix_with(images, labels_onehot, box, permutation):
    """CutMix with a given box and partners: paste ``images[permutation[i]]``'s box into image i.

    images: (N, C, H, W); labels_onehot: (N, K); box: ``(top, left, box_height, box_width)``,
    the same rectangle for the whole batch; permutation: (N,) integers in [0, N).
    Returns ``(mixed_images (N, C, H, W), mixed_labels (N, K), lam)`` where
    ``lam = 1 - box area / (H * W)`` is the fraction of each image left as it was and
    ``mixed_labels = lam * labels + (1 - lam) * labels[permutation]``.

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    n, height, width = _check_batch(images, labels_onehot, "cutmix_with")
    top, left, box_height, box_width = _check_box(box, height, width, "cutmix_with")
    permutation = _check_permutation(permutation, n, "cutmix_with")
    rows, columns = slice(top, top + box_height), slice(left, left + box_width)
    mixed_images = _copy(images)
    mixed_images[:, :, rows, columns] = _index(images, permutation)[:, :, rows, columns]
    lam = cutmix_lambda((top, left, box_height, box_width), height, width)
    labels_onehot = _float(labels_onehot)
    mixed_labels = lam * labels_onehot + (1 - lam) * _index(labels_onehot, permutation)
    return mixed_images, mixed_labels, lam


def cutmix(images, labels_onehot, alpha: float = 1.0, rng=None):
    """CutMix (Yun et al., 2019): paste a random box of a random partner into every image.

    images: (N, C, H, W); labels_onehot: (N, K); alpha > 0: the target ratio is
    drawn from ``Beta(alpha, alpha)``, the box from :func:`cutmix_box`, and the
    returned ``lam`` is recomputed from the clipped box (so the labels match the
    pixels exactly); rng: a ``np.random.Generator`` or an int seed.
    Returns ``(mixed_images (N, C, H, W), mixed_labels (N, K), lam)``.

    Book: "Training and regularization", section "Mixing images: mixup and CutMix" (``book/training.md``).
    """
    if alpha <= 0:
        raise ValueError(f"cutmix: alpha must be > 0, got {alpha}")
    rng = _generator(rng)
    target = float(rng.beta(alpha, alpha))
    permutation = rng.permutation(images.shape[0])
    box = cutmix_box(images.shape[2], images.shape[3], target, rng)
    return cutmix_with(images, labels_onehot, box, permutation)
