"""Reading instructor notebooks: solution regions, hidden tests, graded cells.

Used by the tests that prove exercises/ leaks nothing, and by the grading
pipeline to build reference submissions.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

__all__ = [
    "read",
    "nbgrader_meta",
    "protected_lines",
    "strip_markers",
    "fill_solutions",
    "graded_points",
]

MARKERS = {
    "solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
    "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _split(source: str, kinds: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Lines inside a marked region of one of ``kinds``, and all other lines (markers dropped)."""
    inside, outside, open_kind = [], [], None
    for line in source.splitlines():
        stripped = line.strip()
        begun = [kind for kind, (begin, _) in MARKERS.items() if stripped.startswith(begin)]
        ended = [kind for kind, (_, end) in MARKERS.items() if stripped.startswith(end)]
        if begun:
            open_kind = begun[0]
        elif ended:
            open_kind = None
        else:
            (inside if open_kind in kinds else outside).append(line)
    return inside, outside


def protected_lines(source_nb, kinds: tuple[str, ...] = ("solution", "hidden")) -> set[str]:
    """Lines of solutions and/or hidden tests that appear nowhere else in the notebook.

    kinds: which regions to collect, ``"solution"`` and/or ``"hidden"``.
    A student version that contains any of them leaks instructor-only text; so
    does feedback that contains a hidden-test line (feedback legitimately shows
    the student's own code, which may match the solution). Very short lines
    (``return out``, ``else:``) are ignored because they are not evidence of a leak.
    """
    inside, outside = set(), set()
    for cell in source_nb.cells:
        cell_inside, cell_outside = _split(cell.source, kinds)
        inside.update(line.strip() for line in cell_inside)
        outside.update(line.strip() for line in cell_outside)
    return {line for line in inside - outside if len(line) >= 12}


def strip_markers(source: str) -> str:
    """The cell with every marker line removed (what a student who solved it would write)."""
    marker_prefixes = [m for pair in MARKERS.values() for m in pair]
    return "\n".join(line for line in source.splitlines() if not line.strip().startswith(tuple(marker_prefixes)))


def fill_solutions(release_nb, source_nb, grade_ids: set[str] | None = None):
    """A copy of the student version with the instructor's solution in some solution cells.

    grade_ids: which solution cells to fill (default: all autograded code
    solution cells). The others keep the student's stub.
    """
    solutions = {
        nbgrader_meta(cell).get("grade_id"): strip_markers(cell.source)
        for cell in source_nb.cells
        if nbgrader_meta(cell).get("solution") and cell.cell_type == "code"
    }
    submission = copy.deepcopy(release_nb)
    for cell in submission.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in solutions and (grade_ids is None or grade_id in grade_ids):
            cell.source = solutions[grade_id]
    return submission


def graded_points(notebook) -> dict[str, float]:
    """Points of each autograded test cell, by grade_id."""
    return {
        nbgrader_meta(cell)["grade_id"]: float(nbgrader_meta(cell).get("points", 0))
        for cell in notebook.cells
        if nbgrader_meta(cell).get("grade") and cell.cell_type == "code"
    }
