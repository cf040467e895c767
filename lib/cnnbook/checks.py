"""Checks used by the visible and hidden tests of the exercises.

A failing check raises :class:`CheckFailed` (an ``AssertionError``) whose
message says *what* is wrong: which output, its shape, the relative error
(:func:`cnnbook.gradcheck.rel_error`) and where the worst element is. Students
never see a bare ``AssertionError``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .gradcheck import tolerance, worst_element

__all__ = ["CheckFailed", "ForbiddenCall", "check_close", "check_shape", "forbid_calls", "DEFAULT_FORBIDDEN"]


class CheckFailed(AssertionError):
    """A check in an exercise failed; the message explains why."""


class ForbiddenCall(CheckFailed):
    """The solution called a function the task asks the student to write themselves."""


def _with_hint(message: str, hint: str) -> str:
    return f"{message}. Hint: {hint}" if hint else message


def _as_array(name: str, value, hint: str = "") -> np.ndarray:
    if value is None:
        raise CheckFailed(_with_hint(f"{name}: the function returned None; did you forget `return`?", hint))
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001 - any conversion failure is the student's to see
        raise CheckFailed(_with_hint(f"{name}: could not turn the result into an array ({error})", hint)) from None
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise CheckFailed(_with_hint(
            f"{name}: expected a numeric array, got {type(value).__name__} with dtype {array.dtype}", hint))
    return array


def check_shape(name: str, actual, expected_shape: tuple[int, ...], hint: str = "") -> None:
    """Raise :class:`CheckFailed` unless ``actual`` has ``expected_shape``; the message ends with ``hint``."""
    array = _as_array(name, actual, hint)
    if tuple(array.shape) != tuple(expected_shape):
        raise CheckFailed(_with_hint(f"{name}: expected shape {tuple(expected_shape)}, got {tuple(array.shape)}", hint))


def check_close(name: str, actual, expected, tol: float | None = None, hint: str = "") -> None:
    """Compare ``actual`` with ``expected``; raise :class:`CheckFailed` naming the worst element if they differ.

    Returns None on purpose: nbgrader reads a number left as a test cell's last
    value as a partial score, so a returned relative error (about 1e-16) would
    turn a passing check into zero points.

    The tolerance defaults to the ``"grading"`` level of :data:`cnnbook.gradcheck.TOLERANCES`.
    ``hint`` ends the message whatever failed first (the shape, the type or the
    values), so a student always sees it (for example "stride defaults to the kernel size").
    """
    actual_array = _as_array(name, actual, hint)
    expected_array = np.asarray(expected, dtype=np.float64)
    check_shape(name, actual_array, expected_array.shape, hint)
    tol = tolerance("float64", "grading") if tol is None else tol
    report = worst_element(actual_array, expected_array)
    if not report.error <= tol:
        raise CheckFailed(_with_hint(f"{name}: {report} (tolerance {tol:g})", hint))


#: What an exercise that asks for a convolution or pooling may not call.
DEFAULT_FORBIDDEN = (
    "numpy.convolve",
    "numpy.correlate",
    "scipy.signal.convolve",
    "scipy.signal.correlate",
    "scipy.signal.convolve2d",
    "scipy.signal.correlate2d",
    "scipy.ndimage.convolve",
    "scipy.ndimage.correlate",
    "torch.conv1d",
    "torch.conv2d",
    "torch.nn.functional.conv1d",
    "torch.nn.functional.conv2d",
    "torch.nn.functional.max_pool2d",
    "torch.nn.functional.avg_pool2d",
    "torch.nn.functional.batch_norm",
    "torch.nn.functional.layer_norm",
    "torch.nn.functional.dropout",
)


def _targets(dotted: str) -> list[tuple[object, str]]:
    """(owner, attribute) pairs to replace for one forbidden name.

    A module name stands for every public function in it; anything else is
    ``module.attribute``. Names whose module is not installed give nothing.
    """
    try:
        module = importlib.import_module(dotted)
    except ImportError:
        module = None
    if module is not None:
        public = getattr(module, "__all__", [name for name in dir(module) if not name.startswith("_")])
        return [
            (module, name)
            for name in public
            if callable(getattr(module, name, None)) and not isinstance(getattr(module, name), type)
        ]
    module_name, _, attribute = dotted.rpartition(".")
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        return []
    return [(owner, attribute)] if hasattr(owner, attribute) else []


@contextlib.contextmanager
def forbid_calls(names: Iterable[str] = DEFAULT_FORBIDDEN, task: str = "this task") -> Iterator[None]:
    """Within the block, calling any of ``names`` raises :class:`ForbiddenCall`.

    names: dotted names such as ``"numpy.convolve"``, or a module such as
    ``"cnnbook.reference"`` (every public function in it is replaced).
    Modules that are not installed are skipped. Everything is restored on exit.
    """
    patched: list[tuple[object, str, object]] = []

    def make_trap(dotted: str) -> Callable:
        def trap(*args, **kwargs):
            raise ForbiddenCall(f"{task} asks you to write this yourself, but your code called {dotted}")

        return trap

    try:
        for dotted in names:
            for owner, attribute in _targets(dotted):
                patched.append((owner, attribute, getattr(owner, attribute)))
                setattr(owner, attribute, make_trap(f"{getattr(owner, '__name__', owner)}.{attribute}"))
        yield
    finally:
        for owner, attribute, original in reversed(patched):
            setattr(owner, attribute, original)
