"""Two grading features, end to end through the pipeline and its sandbox.

- **Class-based answers.** A student writes an ``nn.Module``; the checks build
  it, load a reference ``state_dict`` into it and compare its output and
  gradients (:func:`cnnbook.checks.probe_module`). The sandbox only runs the
  student's module and writes the values; the verdict is computed outside.
- **Per-student inputs.** Hidden checks that draw from
  :func:`cnnbook.checks.hidden_rng` get a seed derived from the student and
  the assignment, so an answer that hard-codes a classmate's hidden results
  fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import pipeline
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read
from cnnbook_grader.oracle import oracle_for, student_seed
from cnnbook_grader.release import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.notebooks, pytest.mark.usefixtures("bubblewrap")]

SETTINGS = pipeline.Settings(cell_timeout=60, call_timeout=60, submission_timeout=240, workers=2)


def _cell(kind, source, grade_id=None, solution=False, grade=False, points=0):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": not solution,
                                     "schema_version": 3, "solution": solution, "task": False}
        if grade:
            cell.metadata["nbgrader"]["points"] = points
    return cell


MODULE_SOLUTION = '''class Gate(nn.Module):
    """y = sigmoid(gate(x)) * value(x): two linear maps named ``gate`` and ``value``."""

    def __init__(self, features, out_features):
        super().__init__()
        ### BEGIN SOLUTION
        self.gate = nn.Linear(features, out_features)
        self.value = nn.Linear(features, out_features, bias=False)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return torch.sigmoid(self.gate(x)) * self.value(x)
        ### END SOLUTION
'''

REFERENCE = '''def _reference(features, out_features, seed):
    torch.manual_seed(seed)
    gate, value = nn.Linear(features, out_features).double(), nn.Linear(features, out_features, bias=False).double()
    state = {"gate.weight": gate.weight.detach(), "gate.bias": gate.bias.detach(), "value.weight": value.weight.detach()}
    return state, lambda x: torch.sigmoid(gate(x)) * value(x)
'''

VISIBLE = '''_gate = Gate(5, 3)
_state, _ref = _reference(5, 3, seed=0)
_x, _g = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
_probe = probe_module(_gate, _x, grad_output=_g, state_dict=_state)
check_close("Gate output", _probe["output"], _ref(_x))
check_close("number of parameters", _probe["num_parameters"], 5 * 3 + 3 + 5 * 3)
'''

HIDDEN = '''### BEGIN HIDDEN TESTS
_x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
_g = torch.randn(6, 2, dtype=torch.float64)
_state, _ref = _reference(7, 2, seed=1)
_probe = probe_module(Gate(7, 2), _x, grad_output=_g, state_dict=_state)
_expected = _ref(_x)
_expected.backward(_g)
check_close("Gate output", _probe["output"], _expected)
check_close("gradient with respect to x", _probe["input_grads"][0], _x.grad,
            hint="the gate's sigmoid multiplies the value branch")
### END HIDDEN TESTS
'''


def module_course(root: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("markdown", "# A gated linear layer", "intro"),
        _cell("code", "import torch\nfrom torch import nn\n\nfrom cnnbook.checks import check_close, probe_module\n\n"
                      + REFERENCE, "imports"),
        _cell("code", MODULE_SOLUTION, "gate", solution=True),
        _cell("code", VISIBLE, "test_gate_visible", grade=True, points=2),
        _cell("code", HIDDEN, "test_gate_hidden", grade=True, points=3),
    ]
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    (root / "solutions" / "gate").mkdir(parents=True)
    nbformat.write(nb, str(root / "solutions" / "gate" / "gate.ipynb"))
    return root / "solutions" / "gate" / "gate.ipynb"


def submit(root: Path, assignment: str, student: str, nb) -> None:
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{assignment}.ipynb"))


def with_answer(source_nb, grade_id: str, code: str):
    nb = json.loads(json.dumps(source_nb))
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            cell.source = code
    return nb


WRONG_GRADIENT = ("class _Straight(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, y):\n"
                  "        return y.clone()\n\n    @staticmethod\n    def backward(ctx, g):\n        return 2 * g\n\n\n"
                  + MODULE_SOLUTION.replace("return torch.sigmoid(self.gate(x)) * self.value(x)",
                                            "return _Straight.apply(torch.sigmoid(self.gate(x)) * self.value(x))"))


@pytest.fixture(scope="module")
def gate_round(tmp_path_factory):
    """One grading round of the module assignment: five students."""
    root = tmp_path_factory.mktemp("gate-course")
    source = module_course(root)
    solution = read(source)
    answers = {
        "correct": MODULE_SOLUTION,
        "wrong": MODULE_SOLUTION.replace("torch.sigmoid(self.gate(x))", "torch.tanh(self.gate(x))"),
        "renamed": MODULE_SOLUTION.replace("self.gate", "self.gate_layer"),
        "stub": "class Gate(nn.Module):\n    pass\n",
        "wrong_gradient": WRONG_GRADIENT,  # right output, wrong backward pass
    }
    for student, code in answers.items():
        submit(root, "gate", student, with_answer(solution, "gate", code))
    results = {r["student"]: r for r in pipeline.grade(pipeline.Course(root), "gate", settings=SETTINGS)}
    return {"root": root, "source": source, "results": results,
            "cells": {s: r["notebooks"]["gate.ipynb"]["cells"] for s, r in results.items()}}


def test_module_checks_are_recorded_as_probes(gate_round):
    oracle = json.loads((oracle_for(gate_round["source"], gate_round["root"] / "cache") / "oracle.json").read_text())
    assert all(cell["gradable"] for cell in oracle["cells"].values()), oracle["cells"]
    assert any(call.get("method") == "probe_module" for call in oracle["cells"]["test_gate_hidden"]["calls"])


def test_module_answers_are_graded_by_probing_them_outside_the_test_code(gate_round):
    results, cells = gate_round["results"], gate_round["cells"]
    assert results["correct"]["score"] == 5, cells["correct"]
    assert results["wrong"]["score"] == 0, cells["wrong"]
    assert "Gate output" in cells["wrong"]["test_gate_visible"]["message"]
    assert results["renamed"]["score"] == 0
    message = cells["renamed"]["test_gate_visible"]["message"]
    assert "gate.weight" in message and "gate_layer.weight" in message, message
    assert results["stub"]["score"] == 0
    # the hidden check's feedback names the call, never the hidden values
    hidden = cells["wrong"]["test_gate_hidden"]["message"]
    assert "hidden check" in hidden and "tensor (6, 7)" in hidden, hidden


def test_hidden_check_feedback_shows_the_hint_but_no_values(gate_round):
    cells = gate_round["cells"]["wrong_gradient"]
    assert cells["test_gate_visible"]["passed"]  # the output is right
    cell = cells["test_gate_hidden"]
    assert not cell["passed"]
    assert "the gate's sigmoid multiplies the value branch" in cell["message"], cell["message"]
    assert "gradient with respect to x" not in cell["message"]  # the hidden check's own text stays hidden


def _hard_coded_conv_output_size(table: dict) -> str:
    """A submission that returns a classmate's recorded answers and says "does not fit" elsewhere."""
    return (f"_TABLE = {table!r}\n\n"
            "def conv_output_size(size, kernel, padding=0, stride=1, dilation=1):\n"
            "    if (size, kernel, padding, stride, dilation) not in _TABLE:\n"
            "        raise ValueError('the kernel does not fit')\n"
            "    return _TABLE[(size, kernel, padding, stride, dilation)]\n")


def test_hidden_inputs_differ_by_student_so_copied_numbers_fail(tmp_path):
    assignment = "conv_arithmetic"
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", tmp_path)
    shutil.copytree(REPO_ROOT / "solutions" / assignment, tmp_path / "solutions" / assignment)
    source = tmp_path / "solutions" / assignment / f"{assignment}.ipynb"
    course = pipeline.Course(tmp_path)

    # what alice's checks ask, read from her recording (as a classmate could learn it from her run)
    alice = oracle_for(source, course.oracle_cache(assignment),
                       seed=student_seed(course.course_id, assignment, "alice"))
    recorded = json.loads((alice / "oracle.json").read_text())
    table = {}
    for cell in recorded["cells"].values():
        for call in cell["calls"]:
            specs = call["args"] + list(call["kwargs"].values())
            if call["name"] == "conv_output_size" and all(spec[0] == "json" for spec in specs):
                answer = json.loads((alice / "expected" / f"{call['key']}.json").read_text()).get("result")
                if answer and answer[0] == "json":
                    given = dict(zip(["size", "kernel", "padding", "stride", "dilation"], (a[1] for a in call["args"])))
                    given |= {name: spec[1] for name, spec in call["kwargs"].items()}
                    key = tuple(given.get(n, d) for n, d in
                                [("size", None), ("kernel", None), ("padding", 0), ("stride", 1), ("dilation", 1)])
                    table[key] = answer[1]
    assert len(table) >= 10

    release = read(REPO_ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    nb = fill_solutions(release, read(source))
    for cell in nb.cells:
        if "def conv_output_size" in cell.source and nbgrader_meta(cell).get("solution"):
            cell.source = _hard_coded_conv_output_size(table)
    for student in ("alice", "bob"):
        submit(tmp_path, assignment, student, nb)
    results = {r["student"]: r for r in pipeline.grade(course, assignment, settings=SETTINGS)}
    cells = {s: r["notebooks"][f"{assignment}.ipynb"]["cells"] for s, r in results.items()}
    assert cells["alice"]["test_output_size_hidden"]["passed"], cells["alice"]["test_output_size_hidden"]
    assert not cells["bob"]["test_output_size_hidden"]["passed"]
    # the visible check uses the same inputs for everyone
    assert cells["bob"]["test_output_size_visible"]["passed"]
    # feedback that teaches: the failed check links the section that explains it, and no hidden input
    feedback = results["bob"]["feedback"]
    assert "The size of the output" in feedback and "convolution_arithmetic" in feedback, feedback
    bob = oracle_for(source, course.oracle_cache(assignment), seed=student_seed(course.course_id, assignment, "bob"))
    bob_calls = json.loads((bob / "oracle.json").read_text())["cells"]["test_output_size_hidden"]["calls"]
    assert not any(repr(tuple(spec[1] for spec in call["args"])) in feedback for call in bob_calls)


def test_every_check_of_every_assignment_names_its_book_section():
    from cnnbook_grader.oracle import BOOK_LINK
    from cnnbook_grader.release import assignments

    for assignment in assignments():
        for path in sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb")):
            section = None
            for cell in read(path).cells:
                meta = nbgrader_meta(cell)
                if cell.cell_type == "markdown" and meta.get("grade_id") != "intro" and BOOK_LINK.search(cell.source):
                    section = BOOK_LINK.search(cell.source).group(2)
                if cell.cell_type == "code" and meta.get("grade"):
                    assert section, f"{assignment}: {meta['grade_id']} follows no task text linking the book"
                    page, _, anchor = section.partition("#")
                    assert (REPO_ROOT / page).exists(), section


def test_feedback_links_the_rendered_section():
    from cnnbook_grader.feedback import section_link

    section = {"title": "Pooling: max pooling", "target": "book/pooling.md#max-pooling"}
    assert section_link(section, "https://example.org/book/") == \
        "[Pooling: max pooling](https://example.org/book/book/pooling.html#max-pooling)"
    assert section_link(section, "") == "Pooling: max pooling (`book/pooling.md`, section `max-pooling`)"
    assert section_link(None, "https://example.org") == ""


def test_student_seeds_are_stable_and_distinct():
    seeds = {student_seed("cnnbook", "conv_arithmetic", f"s{i}") for i in range(500)}
    assert len(seeds) == 500
    assert student_seed("cnnbook", "conv_arithmetic", "s1") == student_seed("cnnbook", "conv_arithmetic", "s1")
    assert student_seed("cnnbook", "conv_basics", "s1") != student_seed("cnnbook", "conv_arithmetic", "s1")
