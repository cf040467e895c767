"""cnnbook.ops layers against their torch.nn twins: same parameters, same outputs, same training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnbook.ops as ops
from helpers import assert_close

FLOAT64 = torch.float64



# name -> (build(layers), input shape); ``layers`` is torch.nn or cnnbook.ops.
LAYERS = {
    "Conv2d-groups-stride": (lambda L: L.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 7)),
    "Conv2d-depthwise-no-bias": (lambda L: L.Conv2d(4, 8, (3, 1), padding=(1, 0), groups=4, bias=False), (2, 4, 6, 6)),
    "Conv2d-same-dilation": (lambda L: L.Conv2d(3, 4, 3, padding="same", dilation=2), (1, 3, 7, 7)),
    "Linear": (lambda L: L.Linear(5, 3), (4, 5)),
    "Linear-no-bias": (lambda L: L.Linear(5, 3, bias=False), (2, 4, 5)),
    "BatchNorm2d": (lambda L: L.BatchNorm2d(3), (4, 3, 5, 5)),
    "BatchNorm2d-cumulative": (lambda L: L.BatchNorm2d(3, momentum=None), (4, 3, 5, 5)),
    "BatchNorm2d-no-running-stats": (lambda L: L.BatchNorm2d(3, affine=False, track_running_stats=False), (4, 3, 5, 5)),
    "LayerNorm": (lambda L: L.LayerNorm((5, 5)), (2, 3, 5, 5)),
    "MaxPool2d": (lambda L: L.MaxPool2d(3, 2, 1), (2, 3, 7, 7)),
    "AvgPool2d": (lambda L: L.AvgPool2d(2), (2, 3, 7, 7)),
    "AdaptiveAvgPool2d": (lambda L: L.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 7)),
    "ReLU": (lambda L: L.ReLU(), (2, 3, 4)),
    "Dropout-eval": (lambda L: L.Dropout(0.5).eval(), (2, 3, 4)),
}


def twins(build, seed: int = 0):
    """The torch.nn layer and ours, each built right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    theirs = build(nn).to(FLOAT64)
    torch.manual_seed(seed)
    ours = build(ops).to(FLOAT64)
    return theirs, ours


@pytest.mark.parametrize("name", list(LAYERS), ids=list(LAYERS))
def test_layer_initialises_like_torch_and_loads_its_state_dict(name, device):
    build, shape = LAYERS[name]
    theirs, ours = twins(build)
    expected_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(expected_state), "parameter and buffer names must match torch.nn"
    for key, value in expected_state.items():
        assert our_state[key].shape == value.shape, f"{key}: shape {our_state[key].shape} != {value.shape}"
        assert torch.equal(our_state[key], value), f"{key}: same seed, different initial values"
    with torch.no_grad():  # move away from the initial values, so loading is really tested
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter))
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    for mode in ("train", "eval"):
        if name == "Dropout-eval" and mode == "train":
            continue
        getattr(theirs, mode)()
        getattr(ours, mode)()
        x = torch.randn(shape, dtype=FLOAT64, requires_grad=True)
        x_device = x.detach().to(device).requires_grad_()
        expected, actual = theirs(x), ours(x_device)
        assert_close(f"{name} ({mode}) output", actual, expected)
        dout = torch.randn(expected.shape, dtype=FLOAT64)
        expected.backward(dout)
        actual.backward(dout.to(device))
        assert_close(f"{name} ({mode}) input gradient", x_device.grad, x.grad)
        for (key, theirs_parameter), ours_parameter in zip(theirs.named_parameters(), ours.parameters()):
            assert_close(f"{name} ({mode}) gradient of {key}", ours_parameter.grad, theirs_parameter.grad)
            theirs_parameter.grad, ours_parameter.grad = None, None
        for key, value in theirs.state_dict().items():
            assert_close(f"{name} ({mode}) buffer {key}", ours.state_dict()[key], value)


def tiny_cnn(layers) -> nn.Sequential:
    """(N, 1, 8, 8) -> (N, 2) through conv, batch norm, ReLU, max pool, depthwise conv, average pools,
    1x1 conv, layer norm and linear layers."""
    return nn.Sequential(
        layers.Conv2d(1, 4, 3, padding=1),
        layers.BatchNorm2d(4),
        layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Conv2d(4, 8, 3, padding=1, groups=4),
        layers.ReLU(),
        layers.AvgPool2d(2),
        layers.Conv2d(8, 8, 1),
        layers.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        layers.LayerNorm(8),
        layers.Dropout(0.0),
        layers.Linear(8, 2),
    )


def _train(model, images, labels, steps: int) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_tiny_cnn_trains_and_matches_torch_nn_step_by_step(device):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(16, 1, 8, 8, generator=generator, dtype=FLOAT64)
    labels = (images[:, 0, :4].mean(dim=(1, 2)) > images[:, 0, 4:].mean(dim=(1, 2))).long()  # brighter top half?
    theirs, ours = twins(tiny_cnn)
    ours.to(device)
    expected = _train(theirs, images, labels, steps=20)
    actual = _train(ours, images.to(device), labels.to(device), steps=20)
    assert_close("loss at every step", torch.tensor(actual), torch.tensor(expected))
    for key, value in theirs.state_dict().items():
        assert_close(f"after training, {key}", ours.state_dict()[key], value)
    assert actual[-1] < 0.6 * actual[0], f"loss should fall by 40% over 20 steps: {actual[0]:.4f} -> {actual[-1]:.4f}"


def test_modules_reject_what_they_do_not_implement():
    with pytest.raises(NotImplementedError, match="padding_mode"):
        ops.Conv2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(NotImplementedError, match="return_indices"):
        ops.MaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        ops.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="drop probability"):
        ops.Dropout(1.5)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        ops.Conv2d(3, 4, 3, stride=2, padding="same")


def test_module_repr_reads_like_torch():
    assert repr(ops.Conv2d(3, 8, 3, padding=1, bias=False)) == repr(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert repr(ops.Linear(3, 4)) == repr(nn.Linear(3, 4))
