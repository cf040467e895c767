"""Relative error and numeric gradients.

This module holds the *one* definition of relative error used by the library,
the test-suite and the exercise feedback (:func:`rel_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TOLERANCES",
    "tolerance",
    "rel_error",
    "worst_element",
    "ErrorReport",
    "numeric_gradient",
    "check_gradient",
]

#: Every tolerance on :func:`rel_error` in the project, by level and dtype, stated once.
#:
#: - ``"exact"``: one computation against an independent implementation of the
#:   same math (our NumPy reference or torch op against ``torch.nn.functional``).
#:   float64 carries 16 digits, so 1e-9 leaves room for different summation
#:   orders over millions of terms; float32 (7 digits) 1e-5. float16 (11-bit
#:   mantissa, unit round-off 4.9e-4) and bfloat16 (8 bits, 3.9e-3) get about
#:   ten units of round-off, since the two sides round every intermediate
#:   result differently.
#: - ``"gradient"``: an analytic gradient against central differences with
#:   ``h = 1e-6`` in float64, whose truncation and round-off errors are about
#:   1e-8 relative for a correct gradient; 1e-6 leaves room for kinks.
#: - ``"grading"``: a student's answer against the instructor's (visible checks
#:   and the grader): float64 arithmetic in another order than the solution's,
#:   as loose as ``"exact"`` but no looser, so a wrong formula never passes.
TOLERANCES = {
    "exact": {"float64": 1e-9, "float32": 1e-5, "float16": 5e-3, "bfloat16": 4e-2},
    "gradient": {"float64": 1e-6},
    "grading": {"float64": 1e-9},
}


def tolerance(dtype="float64", level: str = "exact") -> float:
    """The :data:`TOLERANCES` entry for a level and a NumPy or torch dtype (or its name).

    Book: "Normalization", section "An experiment: a deeper network with and without batch norm" (``book/normalization.md``).
    """
    if level not in TOLERANCES:
        raise ValueError(f"no tolerance level {level!r}; known: {sorted(TOLERANCES)}")
    if hasattr(dtype, "is_floating_point"):  # a torch dtype such as torch.float32
        name = str(dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype)
    try:
        return TOLERANCES[level][name]
    except KeyError:
        raise ValueError(
            f"no {level!r} tolerance defined for dtype {dtype!r}; known: {sorted(TOLERANCES[level])}"
        ) from None


def _as_float_arrays(a, b) -> tuple[np.ndarray, np.ndarray]:
    # at least 1-D so that scalar losses can be indexed like any other array
    a = np.atleast_1d(np.asarray(_to_numpy(a), dtype=np.float64))
    b = np.atleast_1d(np.asarray(_to_numpy(b), dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    return a, b


def _to_numpy(value):
    """Accept NumPy arrays, Python numbers and torch tensors (on any device, in any dtype:
    float16 and bfloat16, which NumPy lacks or cannot take from torch, arrive as float64)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        return (value.double() if value.is_floating_point() else value).numpy()
    return value


def rel_error(a, b) -> float:
    """Relative error between two arrays of the same shape.

    ``max |a - b| / max(max |a|, max |b|)``, and 0.0 when both arrays are all
    zeros. Scaling by the largest magnitude (rather than element by element)
    keeps entries that cancel to nearly zero from dominating the error, so the
    number means "how many significant digits agree": about 1e-16 for float64
    round-off, 1e-7 for float32, and 1.0 for an answer that is entirely wrong.

    a, b: arrays (NumPy, torch or nested lists) of identical shape.
    Raises ``ValueError`` naming both shapes when they differ.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    a, b = _as_float_arrays(a, b)
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf") if not np.array_equal(a, b, equal_nan=True) else 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(a - b)) / scale)


@dataclass(frozen=True)
class ErrorReport:
    """Where two arrays disagree most: the index, both values and the relative error.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """

    index: tuple[int, ...]
    actual: float
    expected: float
    error: float

    def __str__(self) -> str:
        return (
            f"relative error {self.error:.3g}; worst element at index {self.index}: "
            f"got {self.actual:.6g}, expected {self.expected:.6g}"
        )


def worst_element(actual, expected) -> ErrorReport:
    """Report the element where ``actual`` and ``expected`` differ most, with :func:`rel_error`.

    Book: "Backpropagation through convolution and pooling", section "The formulas, computed" (``book/backprop_conv.md``).
    """
    a, b = _as_float_arrays(actual, expected)
    error = rel_error(a, b)
    if a.size == 0:
        return ErrorReport((), float("nan"), float("nan"), error)
    difference = np.abs(a - b)
    difference[np.isnan(difference)] = np.inf
    flat = int(np.argmax(difference))
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    return ErrorReport(index, float(a[index]), float(b[index]), error)


def numeric_gradient(f, x: np.ndarray, dout: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    f: a function of one array returning an array of ``dout``'s shape.
    x: (any shape), float64; perturbed one element at a time and restored.
    dout: the upstream gradient, same shape as ``f(x)``. Use a *random* one:
    with ``dout = ones`` (i.e. checking ``f(x).sum()``) every normalization
    layer has a zero gradient and any bug in its backward goes unseen.
    Returns an array of ``x``'s shape.

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise ValueError(f"numeric_gradient needs float64 input for accuracy, got {x.dtype}")
    dout = np.asarray(dout, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        index = it.multi_index
        original = x[index]
        x[index] = original + h
        # copies: f may return a view of x (a reshape, an identity), which the
        # next perturbation would change under our feet
        plus = np.array(f(x), dtype=np.float64, copy=True)
        x[index] = original - h
        minus = np.array(f(x), dtype=np.float64, copy=True)
        x[index] = original
        if plus.shape != dout.shape:
            raise ValueError(f"numeric_gradient: f(x) has shape {plus.shape} but dout has shape {dout.shape}")
        grad[index] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def check_gradient(name: str, analytic, numeric, tol: float | None = None) -> ErrorReport:
    """Compare an analytic gradient with a numeric one; raise ``AssertionError`` naming the worst element.

    tol defaults to the ``"gradient"`` level of :data:`TOLERANCES`.
    Returns the :class:`ErrorReport` when the check passes.

    Book: "Backpropagation through convolution and pooling", section "Checking gradients numerically" (``book/backprop_conv.md``).
    """
    tol = tolerance("float64", "gradient") if tol is None else tol
    report = worst_element(analytic, numeric)
    if not report.error <= tol:
        raise AssertionError(f"gradient {name}: {report} (tolerance {tol:g})")
    return report
