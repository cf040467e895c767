"""Synthetic scenes with exact answers: real Fashion-MNIST objects pasted onto real texture photographs.

Each scene is a crop of one of scikit-image's texture photographs (brick,
grass, gravel; dimmed so that objects stand out) with up to ``max_objects``
Fashion-MNIST images pasted on it, each enlarged by a whole factor from
``scales`` (every pixel becomes an ``s x s`` block, so nothing is
interpolated) at a place where it overlaps no other object. Because we drew
the scene, the answers are exact:

- an object's *mask* is its pixels brighter than ``threshold``; the
  segmentation target is 0 for background and ``label + 1`` on the mask;
- its *box* is the tight ``xyxy`` box around its mask (``x2`` is one past
  the last column, as boxes are continuous);
- its *label* is its Fashion-MNIST class, 0 to 9.

A pixel of brightness ``v`` covers the background with opacity ``v``:
``image = (1 - v) * background + v``. Everything is drawn from one seeded
generator, so a seed always gives the same scenes (:meth:`Scenes.checksum`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["TEXTURES", "Scenes", "make_scenes"]

#: The texture photographs used as backgrounds (all ship with scikit-image; no download).
TEXTURES = ("brick", "grass", "gravel")


@functools.lru_cache(maxsize=None)
def _textures() -> tuple[np.ndarray, ...]:
    from skimage import data

    return tuple(getattr(data, name)().astype(np.float64) / 255.0 for name in TEXTURES)


@functools.lru_cache(maxsize=2)
def _objects(split: str) -> tuple[np.ndarray, np.ndarray]:
    from ..data import load_fashion_mnist

    images, labels = load_fashion_mnist(split)
    return images[:, 0].astype(np.float64), labels


@dataclass(frozen=True)
class Scenes:
    """N synthetic scenes and their exact detection and segmentation targets.

    images: (N, 1, S, S) float32 in [0, 1]; boxes: list of N arrays (G_i, 4) float64 ``xyxy``;
    labels: list of N arrays (G_i,) int64 in [0, 10); masks: (N, S, S) int64, 0 background, label + 1 on objects.

    Book: "Detection and segmentation", section "Exact scenes for training and scoring" (``book/detection.md``).
    """

    images: np.ndarray
    boxes: list
    labels: list
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def checksum(self) -> str:
        """SHA-256 over the images, boxes, labels and masks (hex)."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.ascontiguousarray(self.masks).tobytes())
        for boxes, labels in zip(self.boxes, self.labels):
            digest.update(np.ascontiguousarray(boxes, dtype=np.float64).tobytes())
            digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        return digest.hexdigest()


def _free(placed, top: int, left: int, side: int) -> bool:
    return all(top + side <= t or t + s <= top or left + side <= l or l + s <= left for t, l, s in placed)


def _draw_scene(rng, size, max_objects, scales, threshold, objects, object_labels, background_level):
    textures = _textures()
    texture = textures[rng.integers(len(textures))]
    top, left = rng.integers(texture.shape[0] - size + 1), rng.integers(texture.shape[1] - size + 1)
    image = background_level * texture[top:top + size, left:left + size].copy()
    mask = np.zeros((size, size), dtype=np.int64)
    boxes, labels, placed = [], [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        index, scale = rng.integers(len(objects)), scales[rng.integers(len(scales))]
        side = 28 * scale
        if side > size:
            continue
        top, left = rng.integers(size - side + 1), rng.integers(size - side + 1)
        if not _free(placed, top, left, side):
            continue  # a crowded scene simply gets fewer objects
        brightness = np.kron(objects[index], np.ones((scale, scale)))
        on = brightness > threshold
        if not on.any():
            continue
        placed.append((top, left, side))
        region = image[top:top + side, left:left + side]
        image[top:top + side, left:left + side] = (1 - brightness) * region + brightness
        label = int(object_labels[index])
        mask[top:top + side, left:left + side][on] = label + 1
        rows, columns = np.nonzero(on)
        boxes.append([left + columns.min(), top + rows.min(), left + columns.max() + 1, top + rows.max() + 1])
        labels.append(label)
    return image, mask, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def make_scenes(num_images: int, image_size: int = 128, max_objects: int = 3, scales=(1, 2, 3),
                threshold: float = 0.2, seed: int = 0, split: str = "train", background_level: float = 0.5) -> Scenes:
    """Draw ``num_images`` scenes (see the module docstring); deterministic for a given ``seed``.

    image_size: S, the side of the square scenes (at most 512, the textures' side); max_objects: at most this many
    objects per scene (at least one is tried; each is dropped if it would overlap another); scales: whole
    enlargement factors of the 28 x 28 objects; split: the Fashion-MNIST split the objects come from.
    Returns a :class:`Scenes`: images (N, 1, S, S), boxes and labels per image, masks (N, S, S).

    Book: "Detection and segmentation", section "Exact scenes for training and scoring" (``book/detection.md``).
    """
    if not 28 <= image_size <= 512 or num_images < 0 or max_objects < 1:
        raise ValueError(f"make_scenes: image_size must be in [28, 512], num_images >= 0, max_objects >= 1; "
                         f"got image_size={image_size}, num_images={num_images}, max_objects={max_objects}")
    if not scales or any(int(s) != s or s < 1 for s in scales):
        raise ValueError(f"make_scenes: scales must be whole factors >= 1, got {scales}")
    objects, object_labels = _objects(split)
    rng = np.random.default_rng(seed)
    images = np.empty((num_images, 1, image_size, image_size), dtype=np.float32)
    masks = np.empty((num_images, image_size, image_size), dtype=np.int64)
    boxes, labels = [], []
    for n in range(num_images):
        image, masks[n], scene_boxes, scene_labels = _draw_scene(
            rng, image_size, max_objects, tuple(int(s) for s in scales), threshold, objects, object_labels,
            background_level)
        images[n, 0] = image
        boxes.append(scene_boxes)
        labels.append(scene_labels)
    return Scenes(images, boxes, labels, masks)
