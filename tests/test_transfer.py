"""cnnbook.transfer: class names, top-k, Grad-CAM against independent computations, freezing helpers, splits."""

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook import models, transfer
from cnnbook.data import load_photo
from cnnbook.models import pretrained

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


# ----------------------------------------------------------------- class names and predictions

def test_imagenet_class_file_is_the_committed_one_and_matches_torchvision():
    data = transfer.IMAGENET_CLASSES_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == "ee4fa67b1dd46919ef87529b70e25bdd1ec9ebd350de3ad426e6640eb70320a1"
    names = transfer.imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998  # ImageNet has two 'crane's and two 'maillot's
    from torchvision.models import MobileNet_V2_Weights

    assert list(names) == MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    assert names[281] == "tabby" and names[967] == "espresso" and names[0] == "tench"


def test_the_class_file_is_package_data():
    text = (transfer.IMAGENET_CLASSES_FILE.parents[2] / "pyproject.toml").read_text()
    assert "imagenet_classes.txt" in text


@pytest.fixture(scope="module")
def imagenet_models():
    return {"mobilenet_v2": (pretrained.load_mobilenet_v2_imagenet(), {}),
            "efficientnet_lite0": (pretrained.load_efficientnet_lite0_imagenet(),
                                   {"mean": pretrained.LITE_MEAN, "std": pretrained.LITE_STD})}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_top5_on_the_bundled_photos_is_sensible(imagenet_models, name):
    model, norm = imagenet_models[name]
    photos = ["chelsea", "coffee"]
    batch = torch.cat([pretrained.preprocess_imagenet(load_photo(p), **norm) for p in photos])
    chelsea, coffee = transfer.top_k(model, batch, k=5)
    assert len(chelsea) == 5 and all(a[2] >= b[2] for a, b in zip(chelsea, chelsea[1:]))
    assert chelsea[0][1] in CATS and {n for _, n, _ in chelsea} & CATS
    assert coffee[0][1] == "espresso"
    assert abs(sum(p for _, _, p in chelsea) - 1) < 1 and all(0 <= p <= 1 for _, _, p in chelsea)


def test_top_k_rejects_bad_k_and_non_imagenet_models():
    with pytest.raises(ValueError, match="k must be"):
        transfer.top_k(nn.Linear(3, 1000), torch.zeros(1, 3), k=0)
    with pytest.raises(ValueError, match="not the 1,000"):
        transfer.top_k(nn.Linear(3, 10), torch.zeros(1, 3))


def test_torchvision_pretrained_turns_a_failed_download_into_a_clear_error(monkeypatch):
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tvm, "mobilenet_v2", offline)
    with pytest.raises(transfer.WeightsUnavailableError) as info:
        transfer.torchvision_pretrained("mobilenet_v2", "IMAGENET1K_V1")
    message = str(info.value)
    assert "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth" in message
    assert "load_mobilenet_v2_imagenet" in message and "checkpoints" in message
    with pytest.raises(ValueError, match="no member 'IMAGENET1K_V9'"):
        transfer.torchvision_pretrained("mobilenet_v2", "IMAGENET1K_V9")
    with pytest.raises(ValueError, match="no constructor"):
        transfer.torchvision_pretrained("not_a_model")


# ----------------------------------------------------------------- Grad-CAM

def test_grad_cam_of_a_conv_pool_linear_net_is_the_class_activation_map():
    """With global average pooling then a linear layer, dy_c/dA_kij = w_ck / (h w) everywhere, so
    Grad-CAM = ReLU(sum_k w_ck A_k) / (h w): Zhou et al.'s CAM, derived by hand."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1).double()
    linear = nn.Linear(6, 4).double()
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    cam, logits = transfer.grad_cam(model, conv, x, class_index=[1, 3])
    with torch.no_grad():
        A = conv(x)
    for n, c in enumerate([1, 3]):
        expected = F.relu(torch.einsum("k,khw->hw", linear.weight[c], A[n])) / (5 * 7)
        torch.testing.assert_close(cam[n], expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(logits, model(x).detach())


def test_grad_cam_on_mobilenet_matches_a_split_network_without_hooks():
    torch.manual_seed(1)
    model = models.mobilenet_v2(num_classes=7).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    cam, logits = transfer.grad_cam(model, model.features[13], x)
    assert all(p.grad is None for p in model.parameters())  # grad_cam leaves the parameters' gradients alone
    A = model.features[:14](x).detach().requires_grad_(True)
    rest = model.classifier(torch.flatten(model.avgpool(model.features[14:](A)), 1))
    target = rest.argmax(dim=1)
    rest.gather(1, target[:, None]).sum().backward()
    expected = F.relu((A.grad.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1)).detach()
    torch.testing.assert_close(cam, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(logits.argmax(1), target)


def test_upsample_cam_scales_to_one_and_resizes():
    cam = torch.tensor([[[0.0, 2.0], [1.0, 0.5]]])
    up = transfer.upsample_cam(cam, (8, 8))
    assert up.shape == (1, 8, 8) and float(up.max()) <= 1 + 1e-6 and float(up.min()) >= 0
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        transfer.upsample_cam(torch.zeros(4, 4), (8, 8))


# ----------------------------------------------------------------- freezing, heads, groups

def test_parameter_counts_against_a_hand_count():
    model = transfer.small_cnn(1, 10)
    # conv 1->16 (3x3, no bias) 144 + BN 32; 16->32: 4,608 + 64; 32->64: 18,432 + 128; linear 64*10 + 10 = 650
    assert transfer.count_parameters(model) == 144 + 32 + 4608 + 64 + 18432 + 128 + 650 == 24058
    transfer.freeze(model.features)
    assert transfer.count_parameters(model, trainable_only=True) == 650
    assert [name for name, _ in transfer.trainable_parameters(model)] == ["classifier.weight", "classifier.bias"]
    transfer.freeze(model.features, frozen=False)
    assert transfer.count_parameters(model, trainable_only=True) == 24058


def test_frozen_parameters_get_no_gradient_and_do_not_move_in_a_step():
    torch.manual_seed(0)
    model = transfer.small_cnn(1, 3)
    transfer.freeze(model.features)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 3, (8,))
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        if name.startswith("features"):
            assert p.grad is None and torch.equal(p, before[name]), name
        else:
            assert p.grad is not None and not torch.equal(p, before[name]), name


def test_replace_head_on_library_and_torchvision_models():
    import torchvision

    mobilenet = models.mobilenet_v2()
    head = transfer.replace_head(mobilenet, 3)
    assert mobilenet.classifier[1] is head and (head.in_features, head.out_features) == (1280, 3)
    assert mobilenet.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    lite = models.efficientnet_lite0()
    assert transfer.replace_head(lite, 5) is lite._fc
    resnet = torchvision.models.resnet18()
    assert transfer.replace_head(resnet, 2) is resnet.fc and resnet.fc.in_features == 512
    small = transfer.small_cnn(1, 10)
    assert transfer.replace_head(small, 4) is small.classifier
    with pytest.raises(ValueError, match="no final nn.Linear"):
        transfer.replace_head(nn.Conv2d(1, 1, 1), 3)
    with pytest.raises(ValueError, match="num_classes"):
        transfer.replace_head(small, 0)


def test_frozen_batchnorm_keeps_its_running_statistics_during_fine_tuning():
    torch.manual_seed(0)
    x, y = np.random.default_rng(0).normal(3, 2, (32, 1, 16, 16)).astype(np.float32), np.arange(32) % 3
    frozen = transfer.small_cnn(1, 3)
    transfer.freeze(frozen.features)
    stats = [b.clone() for b in frozen.features.buffers()]
    transfer.fine_tune(frozen, x, y, torch.optim.SGD(frozen.parameters(), lr=0.1), epochs=2, batch_size=8)
    assert all(torch.equal(a, b) for a, b in zip(stats, frozen.features.buffers()))
    free = transfer.small_cnn(1, 3)
    transfer.fine_tune(free, x, y, torch.optim.SGD(free.parameters(), lr=0.1), epochs=1, batch_size=8)
    assert not torch.equal(free.features[0][1].running_mean, torch.zeros(16))
    model = transfer.small_cnn(1, 3)
    transfer.freeze(model.features[0])
    model.train()
    assert transfer.frozen_batchnorm_eval(model) == 1
    assert not model.features[0][1].training and model.features[1][1].training


def test_discriminative_learning_rates():
    blocks = [nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 3)]
    groups = transfer.param_groups_discriminative(blocks, base_lr=0.01, decay=2.0)
    assert [g["lr"] for g in groups] == [0.0025, 0.005, 0.01]
    assert [len(g["params"]) for g in groups] == [2, 2, 2]
    shared = nn.Linear(2, 2)
    groups = transfer.param_groups_discriminative([shared, nn.Sequential(shared, nn.Linear(2, 2))], 1.0)
    assert sum(len(g["params"]) for g in groups) == 4  # a shared parameter appears once
    optimizer = torch.optim.SGD(transfer.param_groups_discriminative(blocks, 0.01))
    assert len(optimizer.param_groups) == 3
    with pytest.raises(ValueError):
        transfer.param_groups_discriminative([], 0.1)


def test_gradual_unfreezing_schedule():
    blocks = [nn.Linear(2, 2) for _ in range(4)]
    trainable = lambda: [all(p.requires_grad for p in b.parameters()) for b in blocks]  # noqa: E731
    assert transfer.gradual_unfreeze(blocks, epoch=0) == 1 and trainable() == [False, False, False, True]
    assert transfer.gradual_unfreeze(blocks, epoch=2) == 3 and trainable() == [False, True, True, True]
    assert transfer.gradual_unfreeze(blocks, epoch=9) == 4 and trainable() == [True] * 4
    assert transfer.gradual_unfreeze(blocks, epoch=3, epochs_per_block=2) == 2 and trainable() == [False, False, True, True]
    with pytest.raises(ValueError):
        transfer.gradual_unfreeze(blocks, epoch=-1)


# ----------------------------------------------------------------- data for the experiments

def test_texture_patches_held_out_by_region_never_overlap_a_training_patch():
    image = np.arange(512 * 384).reshape(512, 384)
    train, test, train_boxes, test_boxes = transfer.region_patches(image, patch=64, region=128, stride=32, seed=3)
    assert len(train_boxes) + len(test_boxes) == 4 * 3 * 9 and len(test_boxes) == 3 * 9
    painted = np.zeros(image.shape, dtype=bool)  # every pixel some training patch uses
    for top, left, bottom, right in train_boxes:
        painted[top:bottom, left:right] = True
    for (top, left, bottom, right), patch in zip(test_boxes, test):
        assert not painted[top:bottom, left:right].any()
        assert np.array_equal(patch, image[top:bottom, left:right])
    assert not transfer.boxes_overlap(train_boxes, test_boxes).any()
    assert transfer.boxes_overlap(train_boxes, train_boxes).diagonal().all()
    with pytest.raises(ValueError, match="must fit"):
        transfer.region_patches(image, patch=200, region=128)


def test_boxes_overlap_by_hand():
    a = np.array([[0, 0, 4, 4]])
    b = np.array([[3, 3, 5, 5], [4, 0, 6, 4], [0, 4, 4, 8]])
    assert transfer.boxes_overlap(a, b).tolist() == [[True, False, False]]


def test_tasks_and_few_labels():
    train_x, train_y, test_x, test_y = transfer.texture_task()
    assert train_x.shape[1:] == (1, 64, 64) and set(train_y) == set(test_y) == {0, 1, 2, 3}
    assert 0 <= train_x.min() and train_x.max() <= 1
    faces = transfer.faces_task(test_per_class=50)
    assert [len(a) for a in faces] == [100, 100, 100, 100] and np.bincount(faces[3]).tolist() == [50, 50]
    chosen = transfer.few_labels(train_y, 5, seed=1)
    assert np.bincount(train_y[chosen]).tolist() == [5, 5, 5, 5] and len(set(chosen)) == 20
    assert np.array_equal(chosen, transfer.few_labels(train_y, 5, seed=1))
    with pytest.raises(ValueError, match="fewer than"):
        transfer.few_labels(train_y, 10_000)
    digits = transfer.digits_task()
    assert digits[0].shape[1:] == (1, 28, 28) and np.bincount(digits[3]).tolist() == [50] * 10
    assert transfer.imagenet_input(train_x[:2], 32).shape == (2, 3, 32, 32)


def test_extract_features_caches_and_linear_probe_learns():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    images = np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32)
    cache = {}
    first = transfer.extract_features(backbone, images, batch_size=3, cache=cache)
    assert first.shape == (10, 4) and len(cache) == 1
    assert transfer.extract_features(backbone, images, cache=cache) is first
    features = np.r_[np.zeros((20, 3)), np.ones((20, 3))] + np.random.default_rng(1).normal(0, 0.1, (40, 3))
    labels = np.r_[np.zeros(20), np.ones(20)]
    assert transfer.linear_probe(features[::2], labels[::2], features[1::2], labels[1::2]) == 1.0


@pytest.mark.slow
def test_run_strategy_probe_beats_chance_on_faces():
    backbone = pretrained.load_mobilenet_v2_imagenet()
    task = transfer.faces_task()
    accuracy = transfer.run_strategy("probe", task, 10, seed=0, backbone=backbone,
                                     to_input=lambda x: transfer.imagenet_input(x, 64))
    assert accuracy > 0.8
    with pytest.raises(ValueError, match="unknown strategy"):
        transfer.run_strategy("magic", task, 5)
    with pytest.raises(ValueError, match="needs a pretrained backbone"):
        transfer.run_strategy("probe", task, 5)


def test_the_transfer_exercises_bundled_network_is_checksummed_and_pretrained():
    """solutions/ and exercises/ ship the same MNIST network (tools/transfer_exercise_weights.py), pickle-free,
    loading strictly into small_cnn(1, 10) and as accurate on its held-out MNIST digits as the tool reported."""
    import hashlib

    import numpy as np

    from cnnbook.data import load_mnist_5k, train_test_split

    repo = Path(__file__).resolve().parents[1]
    expected = "e6a303be7b9fdedc0a2cff1d916a65ce8510207ff4676c706b61d84d7b6f658e"  # regenerate: update with the file
    for folder in ("solutions", "exercises"):
        path = repo / folder / "transfer_learning" / "mnist_cnn.npz"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected, f"{path} changed"
    with np.load(repo / "solutions" / "transfer_learning" / "mnist_cnn.npz", allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    model = transfer.small_cnn(1, 10)
    model.load_state_dict(state, strict=True)
    images, labels = load_mnist_5k()
    _, _, test_x, test_y = train_test_split(images, labels, test_fraction=0.2, seed=0)
    assert transfer.accuracy(model, test_x, test_y) > 0.93  # 0.943 when it was made
