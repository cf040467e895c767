"""The one relative-error definition, the numeric gradient and the exercise check helpers."""

import numpy as np
import pytest
import torch

from cnnbook.gradcheck import TOLERANCES, check_gradient, numeric_gradient, rel_error, tolerance, worst_element
from cnnbook.checks import CheckFailed, ForbiddenCall, check_close, check_shape, forbid_calls


def test_rel_error_basics():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # max |a - b| = 0.5, largest magnitude = 4
    assert rel_error([1.0, 4.0], [1.5, 4.0]) == pytest.approx(0.125)
    assert rel_error(np.zeros(2), [0.0, 1e-3]) == pytest.approx(1.0)
    assert rel_error(torch.tensor([2.0]), np.array([1.0])) == pytest.approx(0.5)
    assert rel_error([np.nan], [1.0]) == float("inf")


def test_rel_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_tolerance_is_defined_once():
    assert tolerance(np.float64) == TOLERANCES["exact"]["float64"] == tolerance(torch.float64)
    assert tolerance("float32") == TOLERANCES["exact"]["float32"] == tolerance(torch.float32)
    assert tolerance(torch.bfloat16) > tolerance(torch.float16) > tolerance(torch.float32)
    assert tolerance("float64", "gradient") == TOLERANCES["gradient"]["float64"]
    with pytest.raises(ValueError, match="no tolerance level 'loose'"):
        tolerance("float64", "loose")
    with pytest.raises(ValueError, match="no .exact. tolerance defined for dtype"):
        tolerance(np.int8)


def test_worst_element_points_at_the_largest_difference():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 0.5
    actual[0, 0] = 0.1
    report = worst_element(actual, expected)
    assert report.index == (1, 2) and report.actual == 0.5 and report.expected == 0.0
    assert "(1, 2)" in str(report)


def test_numeric_gradient_of_a_known_function():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    dout = rng.standard_normal((3, 4))
    # d/dx sum(sin(x) * dout) = cos(x) * dout, derived by hand.
    check_gradient("sin", np.cos(x) * dout, numeric_gradient(np.sin, x, dout))
    with pytest.raises(AssertionError, match="gradient wrong: relative error"):
        check_gradient("wrong", np.sin(x) * dout, numeric_gradient(np.sin, x, dout))


def test_check_close_messages_say_what_is_wrong():
    check_close("ok", [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(CheckFailed, match=r"f\(x\): relative error 0\.5.*index \(1,\).*got 1.*expected 2.*Hint: flip"):
        check_close("f(x)", [1.0, 1.0], [1.0, 2.0], hint="flip")
    with pytest.raises(CheckFailed, match=r"expected shape \(3,\), got \(2,\)"):
        check_close("f(x)", [1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(CheckFailed, match="returned None"):
        check_shape("f(x)", None, (1,))


def test_forbid_calls_traps_and_restores():
    original = np.convolve
    with forbid_calls(["numpy.convolve", "cnnbook.reference"], task="conv"):
        with pytest.raises(ForbiddenCall, match="numpy.convolve"):
            np.convolve([1, 2], [1])
        import cnnbook.reference as reference

        with pytest.raises(ForbiddenCall, match="cnnbook.reference.correlate1d"):
            reference.correlate1d([1, 2], [1])
    assert np.convolve is original
    np.testing.assert_array_equal(np.convolve([1, 2], [1]), [1, 2])


def test_numeric_gradient_when_f_returns_a_view_of_x():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal(6)
    # reshape returns a view; the gradient of sum(reshape(x) * dout) is dout reshaped.
    check_gradient("reshape", dout.reshape(2, 3), numeric_gradient(lambda v: v.reshape(-1), x, dout))


def test_scalars_compare_like_arrays():
    assert rel_error(2.0, 1.0) == pytest.approx(0.5)
    report = worst_element(np.float64(3.0), 1.0)
    assert report.actual == 3.0 and report.expected == 1.0


def test_a_failing_check_shows_its_hint_whatever_failed_first():
    from cnnbook.checks import CheckFailed, check_close, check_shape

    hint = "stride defaults to the kernel size"
    for failing in (lambda: check_close("pooled", np.zeros((3, 3)), np.zeros((2, 2)), hint=hint),  # shape
                    lambda: check_close("pooled", None, np.zeros((2, 2)), hint=hint),  # forgot return
                    lambda: check_close("pooled", np.ones((2, 2)), np.zeros((2, 2)), hint=hint),  # values
                    lambda: check_shape("pooled", np.zeros((3, 3)), (2, 2), hint=hint)):
        with pytest.raises(CheckFailed, match=f"Hint: {hint}"):
            failing()


def test_check_close_takes_tensors_that_require_grad():
    import torch

    x = torch.ones(3, requires_grad=True)
    check_close("doubled", (2 * x), 2 * x)  # both sides keep their graph
    with pytest.raises(CheckFailed, match="doubled"):
        check_close("doubled", 2 * x, 3 * x)


def test_probe_module_reports_output_gradients_and_parameters():
    import torch

    from cnnbook.checks import probe_module

    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 2).double()
    reference = torch.nn.Linear(4, 2).double()
    state = {k: v.detach().clone() for k, v in reference.state_dict().items()}
    x, g = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    probe = probe_module(layer, x, grad_output=g, state_dict=state)
    # expected values by hand: y = x W^T + b, dx = g W, dW = g^T x, db = sum g
    weight, bias = state["weight"], state["bias"]
    assert torch.allclose(probe["output"], x @ weight.T + bias)
    assert torch.allclose(probe["input_grads"][0], g @ weight)
    assert torch.allclose(probe["param_grads"]["weight"], g.T @ x)
    assert torch.allclose(probe["param_grads"]["bias"], g.sum(0))
    assert probe["num_parameters"] == 10 and probe["parameters"] == {"weight": [2, 4], "bias": [2]}
    assert x.grad is None, "the caller's input is not modified"


def test_probe_module_names_mismatched_parameters():
    import torch

    from cnnbook.checks import probe_module

    state = {"proj.weight": torch.zeros(2, 4), "proj.bias": torch.zeros(2)}
    with pytest.raises(CheckFailed, match=r"missing proj\.weight.*not expected weight"):
        probe_module(torch.nn.Linear(4, 2), torch.zeros(1, 4), state_dict=state)
    with pytest.raises(CheckFailed, match="nn.Module"):
        probe_module(lambda x: x, torch.zeros(1))


def test_hidden_rng_follows_the_graders_seed(monkeypatch):
    from cnnbook.checks import HIDDEN_SEED_VARIABLE, hidden_rng

    monkeypatch.delenv(HIDDEN_SEED_VARIABLE, raising=False)
    default = hidden_rng(3).integers(0, 2**31, 4)
    assert (default == hidden_rng(3).integers(0, 2**31, 4)).all()
    assert not (default == hidden_rng(4).integers(0, 2**31, 4)).all()
    monkeypatch.setenv(HIDDEN_SEED_VARIABLE, "12345")
    assert not (default == hidden_rng(3).integers(0, 2**31, 4)).all()
    monkeypatch.setenv(HIDDEN_SEED_VARIABLE, "twelve")
    with pytest.raises(ValueError, match=HIDDEN_SEED_VARIABLE):
        hidden_rng()


def test_forbid_calls_ignores_modules_that_are_not_installed():
    import numpy as np

    with forbid_calls(["a_module_that_is_not_installed", "numpy.convolve"], task="the test"):
        with pytest.raises(ForbiddenCall):
            np.convolve([1.0], [1.0])
