"""Assertions shared by the test modules (import as ``from helpers import assert_close``)."""

from __future__ import annotations

import numpy as np

from cnnbook.gradcheck import tolerance, worst_element


def assert_close(name: str, actual, expected, dtype="float64", tol: float | None = None) -> None:
    """Relative error within the project's tolerance for ``dtype``; the message names the worst element.

    actual, expected: NumPy arrays, torch tensors (any device) or scalars of the same shape.
    """
    assert actual is not None, f"{name}: got None"
    actual_shape, expected_shape = tuple(np.shape(_numpy(actual))), tuple(np.shape(_numpy(expected)))
    assert actual_shape == expected_shape, f"{name}: shape {actual_shape} vs {expected_shape}"
    tol = tolerance(dtype) if tol is None else tol
    report = worst_element(actual, expected)
    assert report.error <= tol, f"{name} ({dtype}): {report} (tolerance {tol:g})"


def _numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
