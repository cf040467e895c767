"""Validate a submitted notebook and rebuild it on the released version (trusted process).

The released notebook is the template: every cell the student may not change
(instructions, imports, visible and hidden test cells) is taken from it,
whatever the submission holds, with its nbgrader metadata. From the
submission only the *source* of answer cells (matched by ``grade_id``) and
cells the student added (without, or with unknown, nbgrader metadata) are
kept, in the student's order. So a deleted, edited, duplicated or
metadata-stripped test cell is restored once; tampered metadata (points,
``grade`` flags, ``schema_version``) and a wrong kernel name are replaced.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .notebooks import nbgrader_meta

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


class Unreadable(Exception):
    """The submission cannot be read as a version-4 notebook; the message says why."""


@dataclass
class Normalised:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)  # what was repaired, for the feedback
    student_cells: list[int] = field(default_factory=list)  # indices of cells whose source the student wrote


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Parse a submitted file strictly; raise :class:`Unreadable` with a readable reason."""
    path = Path(path)
    if not path.exists():
        raise Unreadable(f"{path.name} was not submitted")
    size = path.stat().st_size
    if size == 0:
        raise Unreadable(f"{path.name} is empty")
    if size > MAX_NOTEBOOK_BYTES:
        raise Unreadable(f"{path.name} is {size / 2**20:.0f} MiB, more than the {MAX_NOTEBOOK_BYTES // 2**20} MiB allowed")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Unreadable(f"{path.name} is not valid JSON ({error.__class__.__name__}: {error})") from None
    if not isinstance(raw, dict) or "cells" not in raw:
        raise Unreadable(f"{path.name} is JSON but not a notebook (no cells)")
    if raw.get("nbformat") != 4:
        raise Unreadable(f"{path.name} has nbformat {raw.get('nbformat')!r}; only version 4 notebooks can be graded")
    try:
        return nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as error:  # noqa: BLE001 - any parse failure makes the file unreadable
        raise Unreadable(f"{path.name} is not a valid notebook ({error})") from None


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def normalise(submitted: nbformat.NotebookNode, released: nbformat.NotebookNode) -> Normalised:
    """The released notebook with the student's answers and added cells put in place."""
    notes: list[str] = []
    release_ids = [nbgrader_meta(c).get("grade_id") for c in released.cells]
    by_id = {nbgrader_meta(c).get("grade_id"): c for c in released.cells if nbgrader_meta(c).get("grade_id")}
    answers: dict[str, str] = {}
    extras: dict[str | None, list[str]] = {}  # anchor grade_id (None: before the first) -> added code
    extra_markdown: dict[str | None, list[str]] = {}
    anchor = None
    seen: set[str] = set()
    for cell in submitted.cells:
        if not isinstance(cell, dict):
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in by_id:
            template = by_id[grade_id]
            if grade_id in seen:
                notes.append(f"cell {grade_id!r} appears more than once; only the first copy was kept")
                continue
            seen.add(grade_id)
            anchor = grade_id
            if nbgrader_meta(template).get("solution") and cell.get("cell_type") == template.cell_type:
                answers[grade_id] = _source(cell)
            elif _source(cell) != template.source or nbgrader_meta(cell) != nbgrader_meta(template):
                notes.append(f"cell {grade_id!r} was changed; the released version was restored")
            continue
        if grade_id:
            notes.append(f"a cell claims the unknown grade_id {grade_id!r}; its grading metadata was removed")
        if cell.get("cell_type") == "code":
            extras.setdefault(anchor, []).append(_source(cell))
        elif cell.get("cell_type") == "markdown":
            extra_markdown.setdefault(anchor, []).append(_source(cell))
    missing = [g for g in release_ids if g and g not in seen and nbgrader_meta(by_id[g]).get("grade")]
    if missing:
        notes.append(f"cells missing from the submission were restored: {', '.join(missing)}")
    missing_answers = [g for g in release_ids if g and g not in answers and nbgrader_meta(by_id[g]).get("solution")]

    out = copy.deepcopy(released)
    out.cells = []
    student_cells: list[int] = []

    def add_extras(key):
        for text in extra_markdown.get(key, []):
            out.cells.append(nbformat.v4.new_markdown_cell(text))
        for text in extras.get(key, []):
            student_cells.append(len(out.cells))
            out.cells.append(nbformat.v4.new_code_cell(text))

    add_extras(None)
    for template in released.cells:
        grade_id = nbgrader_meta(template).get("grade_id")
        cell = copy.deepcopy(template)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if grade_id in answers:
            cell.source = answers[grade_id]
            if cell.cell_type == "code":
                student_cells.append(len(out.cells))
        elif grade_id in missing_answers:
            # never put the stub back: an added cell may hold the student's answer
            cell.source = "# (this answer cell was missing from the submission)" if cell.cell_type == "code" else ""
        out.cells.append(cell)
        if grade_id:
            add_extras(grade_id)
    if missing_answers:
        notes.append(f"answer cells missing from the submission: {', '.join(missing_answers)}")
    kernel = submitted.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != released.metadata.get("kernelspec", {}).get("name"):
        notes.append(f"kernel {kernel!r} was replaced by {released.metadata.get('kernelspec', {}).get('name')!r}")
    out.metadata = copy.deepcopy(released.metadata)
    nbformat.validate(out)
    return Normalised(out, notes, student_cells)
