"""cnnbook.augment: mixup and CutMix on NumPy arrays and torch tensors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnbook import augment


def batch(rng, n=6, channels=3, height=10, width=12, classes=5):
    images = rng.standard_normal((n, channels, height, width))
    labels = augment.one_hot(rng.integers(0, classes, n), classes)
    return images, labels


def test_import_smoke():
    assert callable(augment.mixup) and callable(augment.cutmix)


def test_one_hot_rows_and_errors():
    np.testing.assert_array_equal(augment.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        augment.one_hot(np.array([3]), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        augment.one_hot(np.array([0.5]), 3)


def test_mixup_with_is_the_convex_combination(rng):
    images, labels = batch(rng)
    permutation = rng.permutation(len(images))
    mixed, mixed_labels = augment.mixup_with(images, labels, 0.3, permutation)
    np.testing.assert_allclose(mixed, 0.3 * images + 0.7 * images[permutation])
    np.testing.assert_allclose(mixed_labels, 0.3 * labels + 0.7 * labels[permutation])
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0)


def test_mixup_leaves_inputs_unchanged_and_lam_one_is_identity(rng):
    images, labels = batch(rng)
    before = images.copy()
    mixed, mixed_labels = augment.mixup_with(images, labels, 1.0, rng.permutation(len(images)))
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(mixed_labels, labels)


@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.05, 5.0))
def test_mixup_labels_sum_to_one_and_lam_in_range(seed, alpha):
    images, labels = batch(np.random.default_rng(seed))
    mixed, mixed_labels, lam = augment.mixup(images, labels, alpha, np.random.default_rng(seed))
    assert 0.0 <= lam <= 1.0
    assert mixed.shape == images.shape and mixed_labels.shape == labels.shape
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0)


def test_mixup_is_reproducible_with_a_seed(rng):
    images, labels = batch(rng)
    first = augment.mixup(images, labels, 0.4, rng=7)
    second = augment.mixup(images, labels, 0.4, rng=np.random.default_rng(7))
    other = augment.mixup(images, labels, 0.4, rng=8)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[2] == second[2] and first[2] != other[2]


def test_mixup_on_torch_tensors_matches_numpy(rng):
    images, labels = batch(rng)
    np_result = augment.mixup(images, labels, 1.0, rng=3)
    torch_result = augment.mixup(torch.from_numpy(images), torch.from_numpy(labels), 1.0, rng=3)
    assert isinstance(torch_result[0], torch.Tensor)
    np.testing.assert_allclose(torch_result[0].numpy(), np_result[0])
    np.testing.assert_allclose(torch_result[1].numpy(), np_result[1])


def test_mixup_blends_uint8_images_in_float():
    images = np.full((2, 1, 2, 2), 200, dtype=np.uint8)
    images[1] = 100
    mixed, _ = augment.mixup_with(images, np.eye(2), 0.5, np.array([1, 0]))
    np.testing.assert_allclose(mixed, 150.0)


def test_cutmix_with_pastes_exactly_the_box(rng):
    images, labels = batch(rng, height=10, width=12)
    permutation = np.roll(np.arange(len(images)), 1)
    box = (2, 3, 4, 6)
    mixed, mixed_labels, lam = augment.cutmix_with(images, labels, box, permutation)
    inside = np.zeros((10, 12), dtype=bool)
    inside[2:6, 3:9] = True
    np.testing.assert_array_equal(mixed[:, :, inside], images[permutation][:, :, inside])
    np.testing.assert_array_equal(mixed[:, :, ~inside], images[:, :, ~inside])
    assert lam == pytest.approx(1 - 24 / 120)
    np.testing.assert_allclose(mixed_labels, lam * labels + (1 - lam) * labels[permutation])


@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.1, 5.0), height=st.integers(1, 20), width=st.integers(1, 20))
def test_cutmix_lambda_is_the_unpasted_area_fraction(seed, alpha, height, width):
    rng = np.random.default_rng(seed)
    images, labels = batch(rng, n=4, height=height, width=width)
    # Distinct constant images, so a pixel's value tells which image it came from.
    images = np.arange(4, dtype=np.float64).reshape(4, 1, 1, 1) * np.ones((4, 2, height, width))
    mixed, mixed_labels, lam = augment.cutmix(images, labels, alpha, np.random.default_rng(seed))
    assert 0.0 <= lam <= 1.0
    for i in range(4):
        own_fraction = np.mean(mixed[i] == images[i])
        partner_is_self = np.all(mixed[i] == images[i])
        if not partner_is_self:
            assert own_fraction == pytest.approx(lam)
    np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0)


def test_cutmix_box_has_the_requested_area_away_from_borders():
    lam = 0.75
    box = augment.cutmix_box(100, 100, lam, rng=0)
    top, left, box_height, box_width = box
    assert 0 <= top and top + box_height <= 100 and 0 <= left and left + box_width <= 100
    # sqrt(1 - 0.75) = 0.5: a 50 x 50 box unless a border clips it
    assert box_height <= 50 and box_width <= 50
    assert augment.cutmix_lambda(box, 100, 100) >= lam


def test_cutmix_is_reproducible_and_works_on_torch(rng):
    images, labels = batch(rng)
    first = augment.cutmix(images, labels, 1.0, rng=5)
    second = augment.cutmix(torch.from_numpy(images), torch.from_numpy(labels), 1.0, rng=5)
    np.testing.assert_array_equal(first[0], second[0].numpy())
    assert first[2] == second[2]


def test_cutmix_does_not_modify_its_input(rng):
    images, labels = batch(rng)
    before = images.copy()
    augment.cutmix_with(images, labels, (0, 0, 5, 5), np.arange(len(images))[::-1].copy())
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda im, lab: augment.mixup_with(im[0], lab, 0.5, np.arange(6)), r"\(N, C, H, W\)"),
        (lambda im, lab: augment.mixup_with(im, lab[:3], 0.5, np.arange(6)), "N = 6"),
        (lambda im, lab: augment.mixup_with(im, lab, 1.5, np.arange(6)), "lam must lie"),
        (lambda im, lab: augment.mixup_with(im, lab, 0.5, np.arange(5)), "shape \\(6,\\)"),
        (lambda im, lab: augment.cutmix_with(im, lab, (8, 0, 4, 4), np.arange(6)), "does not fit"),
        (lambda im, lab: augment.mixup(im, lab, 0.0), "alpha must be > 0"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(rng, call, message):
    images, labels = batch(rng)
    with pytest.raises(ValueError, match=message):
        call(images, labels)


def test_mixup_and_cutmix_keep_tensors_on_their_device(rng, device):
    images, labels = batch(rng)
    images_t = torch.from_numpy(images).to(device)
    labels_t = torch.from_numpy(labels).to(device)
    permutation = rng.permutation(len(images))
    mixed, mixed_labels = augment.mixup_with(images_t, labels_t, 0.4, permutation)
    cut, cut_labels, lam = augment.cutmix_with(images_t, labels_t, (1, 2, 3, 4), permutation)
    for tensor in (mixed, mixed_labels, cut, cut_labels):
        assert tensor.device.type == device
    np.testing.assert_allclose(mixed.cpu().numpy(), augment.mixup_with(images, labels, 0.4, permutation)[0])
    np.testing.assert_array_equal(cut.cpu().numpy(), augment.cutmix_with(images, labels, (1, 2, 3, 4), permutation)[0])
