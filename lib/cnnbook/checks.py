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

__all__ = ["CheckFailed", "ForbiddenCall", "check_close", "check_shape", "forbid_calls", "probe_module", "hidden_rng",
           "DEFAULT_FORBIDDEN", "HIDDEN_SEED_VARIABLE"]


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
    if hasattr(expected, "detach") and hasattr(expected, "cpu"):  # a tensor, perhaps one that requires grad
        expected = expected.detach().cpu().numpy()
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
    if not module_name:  # a top-level module that is not installed: nothing to forbid
        return []
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


def probe_module(module, *inputs, grad_output=None, state_dict=None, training: bool = False, seed: int = 0,
                 dtype=None) -> dict:
    """Run ``module`` once and return what a check compares, as plain data.

    state_dict: weights loaded first with ``strict=True`` (names and shapes
    must match: this is how a check fixes the weights of a block you wrote);
    the module is first converted to ``dtype``, by default the dtype of the
    state_dict's floating-point tensors (so a float64 reference makes a float64 check);
    grad_output: when given, the output is back-propagated with it.
    ``training`` sets train or eval mode (batch norm, dropout); ``seed`` seeds
    torch first. The module and the inputs are used as given, except that
    floating-point inputs are copied and made to require gradients.

    Returns a dict: ``output``; ``input_grads`` (one per input, ``None`` for
    non-float inputs or without ``grad_output``); ``param_grads`` (name ->
    gradient); ``parameters`` (name -> shape) and ``num_parameters``;
    ``buffers`` (name -> shape). A state_dict whose names or shapes differ
    raises :class:`CheckFailed` naming the first few differences.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise CheckFailed(f"expected a torch.nn.Module, got {type(module).__name__}")
    if dtype is None and state_dict is not None:
        dtype = next((v.dtype for v in state_dict.values() if torch.is_tensor(v) and v.is_floating_point()), None)
    if dtype is not None:
        module.to(dtype)
    if state_dict is not None:
        own = module.state_dict()
        missing = [k for k in state_dict if k not in own]
        unexpected = [k for k in own if k not in state_dict]
        wrong = [f"{k} {tuple(own[k].shape)} (expected {tuple(state_dict[k].shape)})"
                 for k in state_dict if k in own and tuple(own[k].shape) != tuple(state_dict[k].shape)]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else ""))
            if unexpected:
                parts.append("not expected " + ", ".join(unexpected[:4]) + (" ..." if len(unexpected) > 4 else ""))
            if wrong:
                parts.append("wrong shape " + ", ".join(wrong[:4]))
            raise CheckFailed("the module's parameters and buffers do not match the reference (check the attribute "
                              "names and sizes the exercise prescribes): " + "; ".join(parts))
        module.load_state_dict(state_dict, strict=True)
    module.train(training)
    module.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return _probe(module, inputs, grad_output)


def _probe(module, inputs, grad_output) -> dict:
    import torch

    given = []
    for value in inputs:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.detach().clone().requires_grad_(grad_output is not None)
        given.append(value)
    with torch.set_grad_enabled(grad_output is not None):
        output = module(*given)
        if grad_output is not None:
            if not isinstance(output, torch.Tensor):
                raise CheckFailed(f"the module returned {type(output).__name__}, not a tensor")
            output.backward(grad_output)
    named = dict(module.named_parameters())
    return {
        "output": output.detach() if isinstance(output, torch.Tensor) else output,
        "input_grads": [v.grad.detach() if isinstance(v, torch.Tensor) and v.grad is not None else None for v in given],
        "param_grads": {k: p.grad.detach() for k, p in named.items() if p.grad is not None},
        "parameters": {k: list(p.shape) for k, p in named.items()},
        "num_parameters": int(sum(p.numel() for p in named.values())),
        "buffers": {k: list(b.shape) for k, b in module.named_buffers()},
    }


#: The environment variable through which the grader gives each student's hidden checks their seed.
HIDDEN_SEED_VARIABLE = "CNNBOOK_HIDDEN_SEED"


def hidden_rng(salt: int = 0) -> np.random.Generator:
    """The random generator hidden checks draw their inputs from.

    When grading, the grader sets :data:`HIDDEN_SEED_VARIABLE` to a seed
    derived from the student and the assignment, so each student's hidden
    checks use inputs of their own (numbers copied from a classmate's run do
    not pass). Anywhere else the seed is fixed, so a notebook run twice gives
    the same inputs. ``salt`` tells apart several generators in one notebook.
    """
    import os

    text = os.environ.get(HIDDEN_SEED_VARIABLE, "0")
    try:
        seed = int(text)
    except ValueError:
        raise ValueError(f"{HIDDEN_SEED_VARIABLE} must be an integer, got {text!r}") from None
    return np.random.default_rng([seed, int(salt)])
