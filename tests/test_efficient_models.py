"""The helpers of the chapter "Efficient and modern CNNs": the ResNet-50 -> ConvNeXt-T ladder and EfficientNet B1-B7.

Everything is built on the ``meta`` device (no memory); the file runs in a few seconds.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import assert_close

from cnnbook import models
from cnnbook.models import efficientnet, modernize
from cnnbook.models.convnext import ConvNeXt
from cnnbook.models.efficientnet import EFFICIENTNET_COEFFICIENTS, scaled_efficientnet_config
from cnnbook.models.modernize import MODERNIZATION_STEPS, modernization_design
from cnnbook.shapes import summarize

torchvision = pytest.importorskip("torchvision")

#: Liu et al. 2022, Figure 2 / appendix: GFLOPs (multiply-adds) of each step of the ladder.
PAPER_GFLOPS = (4.1, 4.5, 4.4, 2.4, 5.3, 4.6, 4.1, 4.2, 4.2, 4.2, 4.2, 4.2, 4.5)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model, size: int = 224) -> int:
    return summarize(model, (1, 3, size, size), device="meta").total_macs


def test_the_first_step_is_resnet50_and_the_last_is_convnext_tiny():
    first, resnet50 = models.modernized_resnet(0, device="meta"), models.resnet50(device="meta")
    assert count(first) == count(resnet50) == 25_557_032
    assert macs(first) == macs(resnet50)
    last = models.modernized_resnet("separate downsampling", device="meta")
    assert isinstance(last, ConvNeXt) and count(last) == 28_589_128


@pytest.mark.parametrize("step", range(len(MODERNIZATION_STEPS)), ids=[name for name, _ in MODERNIZATION_STEPS])
def test_every_step_runs_and_costs_what_the_paper_says(step):
    model = models.modernized_resnet(step, device="meta").eval()
    assert model(torch.zeros(2, 3, 224, 224, device="meta")).shape == (2, 1000)
    assert macs(model) / 1e9 == pytest.approx(PAPER_GFLOPS[step], rel=0.08)


def test_designs_accumulate_the_changes():
    assert modernization_design(0) == models.modernize.ModernizationDesign()
    seventh = modernization_design("kernel 7x7")
    assert (seventh.kernel, seventh.depthwise, seventh.inverted, seventh.spatial_first, seventh.width) == (7, True, True,
                                                                                                           True, 96)
    assert modernization_design(6).kernel == 3 and modernization_design(10).norm == "batch"
    for bad in (-1, len(MODERNIZATION_STEPS), "bigger kernel", True, 1.5):
        with pytest.raises(ValueError):
            modernization_design(bad)


def test_fewer_activations_and_norms_leave_one_of_each_per_block():
    block = models.modernized_resnet("fewer norms", device="meta").stages[0][1]
    kinds = [type(module).__name__ for module in block.modules()]
    assert kinds.count("GELU") == 1 and kinds.count("BatchNorm2d") == 1 and block.activation is None


@pytest.mark.parametrize("step", [0, 9, 11])
def test_the_books_layers_build_the_same_ladder_network(step):
    torch.manual_seed(0)
    reference = models.modernized_resnet(step, num_classes=10, dtype=torch.float64).eval()
    book = models.modernized_resnet(step, num_classes=10, layers="cnnbook", dtype=torch.float64).eval()
    book.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert_close(f"step {step} logits", book(x), reference(x), "float64")


@pytest.mark.parametrize("name", list(EFFICIENTNET_COEFFICIENTS))
def test_scaled_efficientnets_are_torchvisions_b0_to_b7(name):
    width_mult, depth_mult, _ = EFFICIENTNET_COEFFICIENTS[name]
    ours = models.efficientnet_scaled(width_mult, depth_mult, device="meta")
    with torch.device("meta"):
        theirs = getattr(torchvision.models, f"efficientnet_{name}")(weights=None)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert count(ours) == count(theirs)


def test_efficientnet_b0_is_the_unscaled_network():
    assert count(models.efficientnet_scaled(device="meta")) == count(models.efficientnet_b0(device="meta"))
    config, last_channel = scaled_efficientnet_config(2.0, 3.1)
    assert last_channel == 4 * config[-1][4] == 2560 and config[0][5] == 4
    with pytest.raises(ValueError):
        scaled_efficientnet_config(0, 1)


@pytest.mark.parametrize("obj", [modernize.ModernizationDesign, modernize.modernization_design, modernize.modernized_resnet,
                                 efficientnet.scaled_efficientnet_config, efficientnet.efficientnet_scaled],
                         ids=lambda obj: obj.__name__)
def test_the_helpers_name_the_book_section_that_uses_them(obj):
    from test_library_map import BOOK_LINK, REPO, _headings  # noqa: PLC0415 - the map's own parser

    match = BOOK_LINK.search(inspect.getdoc(inspect.unwrap(obj)) or "")
    assert match, f"{obj.__name__}: no 'Book: ...' line"
    headings = _headings(REPO / match["path"])
    assert match["chapter"] in headings and match["section"] in headings


def test_the_chapters_torchvision_accuracies_are_torchvisions():
    """book/efficient_cnns.md states torchvision's top-1 accuracies; they must be those of the installed metadata."""
    import ast  # noqa: PLC0415
    import re  # noqa: PLC0415

    from test_library_map import REPO  # noqa: PLC0415

    source = (REPO / "book" / "efficient_cnns.md").read_text()
    stated = ast.literal_eval(re.search(r"torchvision_top1 = (\{.*?\})\n", source, re.S).group(1))
    assert len(stated) == 10
    for enum_name, top1 in stated.items():
        metadata = getattr(torchvision.models, enum_name).IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert top1 == pytest.approx(metadata, abs=1e-9), enum_name
