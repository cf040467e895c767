"""Feedback that never shows hidden tests.

nbgrader's ``ClearHiddenTests`` removes the hidden lines from a cell's source,
but the traceback of a failing hidden check still quotes those lines. This
preprocessor runs first and reduces every error in a hidden-test cell to its
one-line message (``CheckFailed: correlate1d(...): relative error ...``), which
the check helpers in :mod:`cnnbook.checks` write so that it names the
failing check without showing the hidden input or the expected values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from .course import STATUS_TEXT, Course, atomic_write
from .release import run_nbgrader

HIDDEN_MARKER = "BEGIN HIDDEN TESTS"


class HideHiddenTestTracebacks(Preprocessor):
    """Replace tracebacks and printed output of hidden-test cells with the error's last line."""

    # nbconvert only runs registered preprocessors that are enabled.
    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or HIDDEN_MARKER not in cell.source:
            return cell, resources
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
                kept.append(output)
        cell["outputs"] = kept
        return cell, resources




def section_link(section: dict | None, book_url: str) -> str:
    """A Markdown link to the rendered book section (``book_url`` + page + anchor), or its source path."""
    if not section:
        return ""
    page, _, anchor = section["target"].partition("#")
    title = section["title"].replace("|", "\\|").replace("]", "")
    if not book_url:
        return f"{title} (`{page}`, section `{anchor}`)"
    return f"[{title}]({book_url.rstrip('/')}/{page[:-3]}.html#{anchor})"


def feedback_text(result: dict, book_url: str = "") -> str:
    status = STATUS_TEXT[result["status"]]
    if result["reasons"] and result["status"] in ("partial", "flagged", "unreadable", "failed"):
        status += f" ({'; '.join(result['reasons'])})"
    score = "no score" if result["score"] is None else f"{result['score']:g} / {result['max_score']:g}"
    lines = [f"# Feedback on {result['assignment']} for {result['student']}", "",
             f"- **Status:** {status}", f"- **Autograded score:** {score}"]
    for name, nb in result["notebooks"].items():
        lines += ["", f"## {name}", ""]
        if nb["status"] == "unreadable":
            lines.append(f"The grader could not read this notebook: {'; '.join(nb['reasons'])}. "
                         "Your file was kept as you submitted it; ask your instructor.")
        for note in nb.get("notes", []):
            lines.append(f"- Repaired: {note}.")
        for flag in nb.get("flags", []):
            lines.append(f"- For review by your instructor: the code {flag}.")
        for function, names in nb.get("forbidden", {}).items():
            lines.append(f"- `{function}` calls {', '.join(f'`{n}`' for n in names)}: the exercise asks you to "
                         "write this yourself, so its checks score 0.")
        if "timeout" in nb.get("reasons", []):
            lines.append("- A cell or a call ran past its time limit and was stopped; the checks that ran kept their points.")
        if "out of memory" in nb.get("reasons", []):
            lines.append("- Your code ran out of memory; the checks that ran kept their points.")
        if "kernel died" in nb.get("reasons", []):
            lines.append("- The Python kernel died while running your code (for example `os._exit` or a crash); "
                         "the checks that ran kept their points.")
        if nb["cells"]:
            lines += ["", "| check | points | result | read again |", "|---|---|---|---|"]
            for grade_id, cell in nb["cells"].items():
                message = cell["message"].replace("|", "\\|").replace("\n", " ")
                read = "" if cell.get("passed") else section_link(cell.get("section"), book_url)
                lines.append(f"| {grade_id} | {cell['points']:g} / {cell['max']:g} | {message} | {read} |")
    lines += ["", "Checks named *hidden* use inputs you have not seen; the message says which function and "
              "which kind of error, never the expected values.", ""]
    return "\n".join(lines)



def hand_grades(course: Course, assignment: str) -> dict[str, str]:
    """Per student, the report's section on the answers graded by hand (the formgrader's scores and comments)."""
    from nbgrader.api import MissingEntry

    from .gradebook import gradebook

    sections = {}
    with gradebook(course) as gb:
        try:
            submissions = gb.assignment_submissions(assignment)
        except MissingEntry:
            return {}
        for submission in submissions:
            lines = []
            for notebook in submission.notebooks:
                comments = {c.name: c.manual_comment for c in notebook.comments}
                for grade in sorted(notebook.grades, key=lambda g: g.name):
                    if grade.cell.cell_type == "code":
                        continue
                    score = ("not graded yet" if grade.manual_score is None and grade.auto_score is None
                             else f"{grade.score:g} / {grade.max_score:g}")
                    comment = (comments.get(grade.name) or "").replace("|", "\\|").replace("\n", " ")
                    lines.append(f"| {notebook.name}.ipynb | {grade.name} | {score} | {comment} |")
            if not lines:
                continue
            total = ("not final: an answer is not graded by hand yet" if submission.needs_manual_grade
                     else f"{submission.score:g} / {submission.max_score:g}")
            sections[submission.student.id] = "\n".join(
                ["## Graded by hand", "", "| notebook | question | points | comment |", "|---|---|---|---|",
                 *lines, "", f"- **Total score (automatic and by hand):** {total}", ""])
    return sections


def generate_feedback(course: Course, assignment: str) -> list[Path]:
    """nbgrader's HTML feedback for every autograded notebook, plus the grader's report for every student.

    The report ends with the answers graded by hand in the formgrader (score and comment) and the total.
    """
    written = []
    if any((course.root / "autograded").glob(f"*/{assignment}/*.ipynb")):
        process = run_nbgrader(["generate_feedback", assignment, "--force", f"--db={course.db_url}"], course.root)
        if process.returncode != 0:
            print(process.stdout + process.stderr, file=sys.stderr)
    by_hand = hand_grades(course, assignment)
    for record_path in sorted(course.records(assignment).glob("*.json")):
        student = record_path.stem
        report = course.records(assignment) / f"{student}.md"
        target = course.root / "feedback" / student / assignment / "feedback.md"
        record = json.loads(record_path.read_text())
        if report.exists():
            text = report.read_text()
        else:
            text = (f"# Feedback on {assignment} for {student}\n\n- **Status:** "
                    f"{STATUS_TEXT.get(record.get('status'), record.get('status'))}\n")
        if student in by_hand and record.get("status") not in ("grading", "failed"):
            text = text.rstrip("\n") + "\n\n" + by_hand[student]
        atomic_write(target, text)
        written.append(target)
    return written


