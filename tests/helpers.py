"""Assertions shared by the test modules (import as ``from helpers import assert_close``)."""

from __future__ import annotations

import numpy as np

from cnnbook.gradcheck import tolerance, worst_element


def assert_close(name: str, actual, expected, dtype="float64", tol: float | None = None, level: str = "exact") -> None:
    """Relative error within the project's tolerance; the message names the worst element.

    actual, expected: NumPy arrays, torch tensors (any device) or scalars of the same shape.
    dtype, level: pick the tolerance from :data:`cnnbook.gradcheck.TOLERANCES`;
    ``tol`` overrides it only where a test states why.
    """
    assert actual is not None, f"{name}: got None"
    actual_shape, expected_shape = _shape(actual), _shape(expected)
    assert actual_shape == expected_shape, f"{name}: shape {actual_shape} vs {expected_shape}"
    tol = tolerance(dtype, level) if tol is None else tol
    report = worst_element(actual, expected)
    assert report.error <= tol, f"{name} ({dtype}): {report} (tolerance {tol:g})"


def _shape(value) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))
