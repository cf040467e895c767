"""The chapters' animations draw the library's numbers, frame by frame."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cnnbook import viz  # noqa: E402
from cnnbook.shapes import receptive_field  # noqa: E402

# The tests draw single frames and never render a whole animation, which matplotlib warns about on deletion.
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


def _texts(animation):
    return [text.get_text() for text in animation._fig.axes[0].texts]


def test_sliding_window_fills_the_output_torch_computes():
    animation = viz.sliding_window_animation(size=5, kernel_size=3, padding=1, stride=2, seed=3)
    frames = list(animation.new_frame_seq())
    assert len(frames) == 9  # a 3 x 3 output
    animation._func(frames[-1])
    texts = _texts(animation)
    # Grid order: padded input (49), kernel (9), output (9), then titles.
    padded = np.array([float(t) for t in texts[:49]]).reshape(7, 7)
    kernel = np.array([float(t) for t in texts[50:59]]).reshape(3, 3)
    output = np.array([float(t) for t in texts[60:69]]).reshape(3, 3)
    expected = F.conv2d(torch.tensor(padded)[None, None], torch.tensor(kernel)[None, None], stride=2)[0, 0]
    np.testing.assert_array_equal(output, expected.numpy())
    animation._func(frames[0])
    assert [t for t in _texts(animation)[60:69] if t] == [texts[60]], "frame 0 shows only the first output"


def test_receptive_field_frames_follow_the_formula():
    kernels, strides = (3, 3, 2, 3), (1, 1, 2, 1)
    animation = viz.receptive_field_animation(kernels, strides, size=16)
    for frame in animation.new_frame_seq():
        animation._func(frame)
        shaded = animation._fig.axes[0].images[0].get_array()
        side = int(np.sqrt(np.count_nonzero(shaded)))
        assert side == receptive_field(kernels[:frame + 1], strides[:frame + 1])


def test_max_pool_backward_ends_with_the_library_gradient():
    animation = viz.max_pool_backward_animation(size=4, kernel_size=2, seed=1)
    frames = list(animation.new_frame_seq())
    animation._func(frames[-1])
    texts = _texts(animation)
    image = torch.tensor([float(t) for t in texts[:16]]).reshape(1, 1, 4, 4).requires_grad_()
    dout = torch.tensor([float(t) for t in texts[17:21]]).reshape(1, 1, 2, 2)
    F.max_pool2d(image, 2).backward(dout)
    shown_dx = np.array([float(t) for t in texts[22:38]]).reshape(4, 4)
    np.testing.assert_array_equal(shown_dx, image.grad[0, 0].numpy())


def test_bad_settings_name_what_is_wrong():
    with pytest.raises(ValueError, match="does not fit"):
        viz.sliding_window_animation(size=2, kernel_size=5, padding=0)
    with pytest.raises(ValueError, match="larger than the 8-pixel grid"):
        viz.receptive_field_animation((3, 3, 3, 3, 3), (1, 1, 1, 1, 1), size=8)
    with pytest.raises(ValueError, match="must divide the size"):
        viz.max_pool_backward_animation(size=5, kernel_size=2)


def test_embed_gives_offline_html_with_every_frame():
    html = viz.embed(viz.max_pool_backward_animation()).data
    assert html.count("data:image/png;base64") == 4  # one image per window
    assert "http://" not in html and "https://" not in html, "the player must not load anything from the web"
    assert '<img alt="max pooling' in html, "the frames need alternative text"
    assert 'alt="a step"' in viz.embed(viz.max_pool_backward_animation(), alt="a step").data
    animation = viz.max_pool_backward_animation()
    animation.cnnbook_description = ""
    with pytest.raises(ValueError, match="alternative text"):
        viz.embed(animation)
