"""The single-channel convolution functions of the first chapter."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cnnbook.gradcheck import rel_error, tolerance
from cnnbook.reference import convolve1d, convolve2d, correlate1d, correlate2d, sobel_edges


def test_worked_example_1d():
    # Each output is x[i] - x[i+2] for a signal rising by one per step.
    np.testing.assert_array_equal(correlate1d([1, 2, 3, 4, 5], [1, 0, -1]), [-2, -2, -2])
    np.testing.assert_array_equal(convolve1d([1, 2, 3, 4, 5], [1, 0, -1]), [2, 2, 2])


def test_vertical_edge_example_2d():
    image = np.array([[10, 10, 10, 0, 0, 0]] * 6)
    kernel = np.array([[-1, 0, 1]] * 3)
    # Windows over one half see no change; the two straddling the edge see 3 rows x (0 - 10).
    np.testing.assert_array_equal(correlate2d(image, kernel), [[0, -30, -30, 0]] * 4)
    np.testing.assert_array_equal(convolve2d(image, kernel), [[0, 30, 30, 0]] * 4)


@given(n=st.integers(1, 30), k=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_1d_matches_numpy(n, k, seed):
    if k > n:
        with pytest.raises(ValueError, match="larger than the input"):
            correlate1d(np.zeros(n), np.zeros(k))
        return
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(n), rng.standard_normal(k)
    assert rel_error(correlate1d(x, w), np.correlate(x, w, mode="valid")) <= tolerance("float64")
    assert rel_error(convolve1d(x, w), np.convolve(x, w, mode="valid")) <= tolerance("float64")


@given(h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 12), kw=st.integers(1, 12), seed=st.integers(0, 99))
def test_2d_matches_torch(h, w, kh, kw, seed):
    if kh > h or kw > w:
        with pytest.raises(ValueError):
            correlate2d(np.zeros((h, w)), np.zeros((kh, kw)))
        return
    rng = np.random.default_rng(seed)
    image, kernel = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
    expected = F.conv2d(torch.tensor(image).view(1, 1, h, w), torch.tensor(kernel).view(1, 1, kh, kw))[0, 0]
    assert rel_error(correlate2d(image, kernel), expected) <= tolerance("float64")
    flipped = F.conv2d(torch.tensor(image).view(1, 1, h, w), torch.tensor(kernel[::-1, ::-1].copy()).view(1, 1, kh, kw))
    assert rel_error(convolve2d(image, kernel), flipped[0, 0]) <= tolerance("float64")


def test_sobel_on_a_step_is_strongest_at_the_step():
    image = np.zeros((8, 8))
    image[:, 4:] = 1.0
    edges = sobel_edges(image)
    assert edges.shape == (6, 6)
    # Columns 2 and 3 of the output straddle the step; elsewhere the image is flat.
    np.testing.assert_allclose(edges[:, [2, 3]], 4.0)
    np.testing.assert_allclose(edges[:, [0, 1, 4, 5]], 0.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: correlate1d(np.zeros((2, 2)), np.zeros(2)), r"1-D signal and kernel.*\(2, 2\)"),
        (lambda: correlate2d(np.zeros(5), np.zeros((2, 2))), r"2-D signal and kernel.*\(5,\)"),
        (lambda: correlate2d(np.zeros((3, 3)), np.zeros((4, 2))), r"\(4, 2\) is larger than the input of shape \(3, 3\)"),
        (lambda: sobel_edges(np.zeros((2, 3, 3))), r"\(2, 3, 3\)"),
    ],
)
def test_bad_input_names_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()
