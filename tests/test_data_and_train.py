"""Offline data loaders (checksums, shapes, splits) and the training loop."""

import numpy as np
import pytest
import torch
from torch import nn

from cnnbook import data, train


def test_digits_shapes_and_range():
    images, labels = data.load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(np.unique(labels)) == list(range(10))


def test_mnist_5k_is_balanced():
    images, labels = data.load_mnist_5k()
    assert images.shape == (5000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_fashion_mnist_test_split():
    images, labels = data.load_fashion_mnist("test", limit=100)
    assert images.shape == (100, 1, 28, 28) and labels.shape == (100,)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist("validation")


def test_checksum_mismatch_names_the_file(tmp_path):
    fake = tmp_path / "digits.csv.gz"
    fake.write_bytes(b"not the digits")
    with pytest.raises(data.ChecksumError, match="digits.csv.gz has SHA-256"):
        data.verify_file(fake, "sklearn/datasets/data/digits.csv.gz")


@pytest.mark.parametrize("name", data.PHOTOS)
def test_photos_load(name):
    photo = data.load_photo(name)
    assert photo.dtype == np.uint8 and photo.ndim in (2, 3) and min(photo.shape[:2]) >= 200


def test_split_is_stratified_and_reproducible():
    images, labels = data.load_digits()
    first = data.train_test_split(images, labels, 0.25, seed=3)
    second = data.train_test_split(images, labels, 0.25, seed=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    train_labels, test_labels = first[1], first[3]
    assert len(train_labels) + len(test_labels) == len(labels)
    # Every class keeps (about) a quarter of its members in the test part.
    for label in range(10):
        share = np.sum(test_labels == label) / np.sum(labels == label)
        assert abs(share - 0.25) < 0.01


def test_fit_learns_digits_and_early_stopping_restores_best():
    train.seed_everything(0)
    images, labels = data.load_digits()
    tr_x, tr_y, te_x, te_y = data.train_test_split(images, labels, 0.3, seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = train.fit(
        model, data.make_loader(tr_x, tr_y, 64, shuffle=True), optimizer, epochs=8,
        val_loader=data.make_loader(te_x, te_y, 512), device="cpu", patience=3, progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0]
    _, accuracy = train.evaluate(model, data.make_loader(te_x, te_y, 512))
    assert accuracy > 0.9
    # The restored weights are those of the best epoch.
    assert accuracy == pytest.approx(history.val_accuracy[history.best_epoch])
    assert (train.predict(model, te_x) == te_y).mean() == pytest.approx(accuracy)


def test_patience_needs_validation_data():
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="needs a val_loader"):
        train.fit(model, [], torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, patience=2)


def test_seed_everything_repeats_every_generator_and_leaves_the_environment_alone(monkeypatch):
    """PYTHONHASHSEED only acts when an interpreter starts: setting it at run time would pretend a fix."""
    import random

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    draws = []
    for _ in range(2):
        train.seed_everything(7)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item(),
                      [batch[1].tolist() for batch in data.make_loader(np.zeros((6, 1)), np.arange(6), 2,
                                                                       shuffle=True)]))
    assert draws[0] == draws[1]
    assert "PYTHONHASHSEED" not in __import__("os").environ


def test_predict_takes_tensors_on_the_model_device(device):
    """A CUDA tensor cannot go through np.asarray (the old code's first step): predict takes tensors as they are.

    The CPU case passed before the fix too; the CUDA case is the one that failed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).to(device)
    images = torch.randn(10, 1, 2, 2, device=device, requires_grad=True)
    expected = model(images).argmax(dim=1).cpu().numpy()
    np.testing.assert_array_equal(train.predict(model, images, batch_size=3), expected)
    np.testing.assert_array_equal(train.predict(model, images.detach().cpu().numpy()), expected)
