"""Visible checks never blame correct code (new assignments are covered automatically).

For every assignment and every function a student writes, the notebook is run
with that one function deliberately wrong (it raises). Every visible check of
the *other* functions must still pass: a check compares with trusted values
(the library, PyTorch, numbers worked out by hand), never with the student's
other answers. The one exception is an answer whose own code calls the broken
function (convolve1d built on correlate1d): its checks may fail, and the
error names the function at fault. A check of the broken function must fail.
Hidden tests are left out (they are the grader's, see test_grading_*).
"""

from __future__ import annotations

import ast
import copy
import re

import pytest

from cnnbook_grader.notebooks import nbgrader_meta, read
from cnnbook_grader.release import REPO_ROOT, assignments

from test_exercises import execute

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)


def _defined_names(source: str) -> list[str]:
    return [node.name for node in ast.parse(source).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


def _answers(notebook) -> list[tuple[int, list[str]]]:
    """(cell index, names it defines) of every answer cell that defines a function or class."""
    found = []
    for index, cell in enumerate(notebook.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            names = _defined_names(cell.source)
            if names:
                found.append((index, names))
    return found


def _cases():
    for assignment in assignments():
        for path in sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb")):
            for index, names in _answers(read(path)):
                yield pytest.param(path, index, names, id=f"{assignment}-{'+'.join(names)}")


def _callers(notebook, names: list[str]) -> set[int]:
    """Answer cells whose solution code calls one of ``names`` (a chain in the answers themselves)."""
    callers = set()
    for index, _ in _answers(notebook):
        used = {node.id for node in ast.walk(ast.parse(notebook.cells[index].source)) if isinstance(node, ast.Name)}
        if used & set(names):
            callers.add(index)
    return callers


def _visible_checks(notebook) -> dict[int, int]:
    """Visible test cell index -> index of the answer cell it follows (the function it checks)."""
    owners, owner = {}, None
    answer_cells = {index for index, _ in _answers(notebook)}
    for index, cell in enumerate(notebook.cells):
        if index in answer_cells:
            owner = index
        elif cell.cell_type == "code" and nbgrader_meta(cell).get("grade") and HIDDEN.sub("", cell.source).strip():
            if not HIDDEN.sub("", cell.source).lstrip().startswith("# Hidden tests"):
                owners[index] = owner
    return owners


@pytest.mark.parametrize("path, broken_cell, names", list(_cases()))
def test_a_wrong_function_fails_only_its_own_checks(path, broken_cell, names, tmp_path):
    notebook = copy.deepcopy(read(path))
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = HIDDEN.sub("", cell.source)
    wrong = "\n".join(
        f"def {name}(*args, **kwargs):\n    raise ValueError('deliberately wrong {name}')" for name in names)
    notebook.cells[broken_cell].source += "\n\n\n# The test breaks this answer on purpose:\n" + wrong
    owners = _visible_checks(notebook)
    allowed = {broken_cell} | _callers(read(path), names)
    executed = execute(notebook, path.parent, allow_errors=True)
    blamed = []
    for index, owner in owners.items():
        errors = [o for o in executed.cells[index].get("outputs", []) if o.get("output_type") == "error"]
        if errors and owner != broken_cell and owner in allowed and not any(
                name in errors[0]["evalue"] for name in names):
            blamed.append(f"cell {index}: its answer calls {names}, but the error does not name them: "
                          f"{errors[0]['evalue'][:200]}")
        if errors and owner not in allowed:
            blamed.append(f"cell {index} ({nbgrader_meta(executed.cells[index]).get('grade_id')}): "
                          f"{errors[0]['ename']}: {errors[0]['evalue'][:200]}")
    assert not blamed, f"with only {names} wrong, checks of other functions failed:\n" + "\n".join(blamed)
    own = [index for index, owner in owners.items() if owner == broken_cell]
    assert any(o.get("output_type") == "error" for index in own for o in executed.cells[index].get("outputs", [])), (
        f"no visible check of {names} failed when it was wrong")
