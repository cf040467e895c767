"""nbgrader's gradebook, written only by the process that runs ``grade``."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
from pathlib import Path

from .course import Course
from .release import nbgrader_env


def register_assignment(course: Course, assignment: str, release_to: Path) -> Path:
    """Create or update the assignment's cells in the gradebook; write its release into ``release_to``."""
    env = nbgrader_env()
    process = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force", "--log-level=WARN",
         f"--CourseDirectory.release_directory={release_to}", f"--CourseDirectory.db_url={course.db_url}",
         f"--CourseDirectory.root={course.root}"],
        cwd=course.root, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
    )
    if process.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{process.stdout}\n{process.stderr}")
    return Path(release_to) / assignment


@contextlib.contextmanager
def gradebook(course: Course):
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url, course.course_id) as gb:
        yield gb


def _autograde_cells(gb, assignment: str, student: str):
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None, []
    grades = [g for nb in submission.notebooks for g in nb.grades if g.cell.cell_type == "code"]
    return submission, grades


def gradebook_mark_grading(gb, assignment: str, student: str) -> None:
    """Before a re-grade: the old automatic scores stop counting (nbgrader shows them as needing a grade)."""
    submission, grades = _autograde_cells(gb, assignment, student)
    for grade in grades:
        grade.auto_score = None
        grade.needs_manual_grade = True
    if submission is not None:
        gb.db.commit()


def nbgrader_timestamp(course: Course, assignment: str, student: str) -> dt.datetime | None:
    """The submission time nbgrader reads: ``submitted/<student>/<assignment>/timestamp.txt``, or None.

    nbgrader's formgrader counts a submission as autograded only when the gradebook's timestamp equals
    this one (``NbGraderAPI.get_autograded_students``); otherwise it lists it as *needs autograding*
    and offers to run stock ``nbgrader autograde`` on it, outside the sandbox.
    """
    from nbgrader.utils import parse_utc

    try:
        text = (course.submitted(student, assignment) / "timestamp.txt").read_text().strip()
        return parse_utc(text) if text else None
    except (OSError, ValueError, OverflowError):
        return None


def gradebook_write(gb, result: dict, course: Course | None = None) -> None:
    """The result's automatic scores into the gradebook; hand grades (written answers) are left as they are.

    With ``course``, the submission's gradebook timestamp is nbgrader's (:func:`nbgrader_timestamp`), so the
    formgrader sees the submission as autograded; without, the result's timestamp.
    """
    from nbgrader.api import MissingEntry

    assignment, student = result["assignment"], result["student"]
    gb.update_or_create_student(student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        import warnings

        with warnings.catch_warnings():  # nbgrader's add_submission warns "not in session", harmlessly
            warnings.filterwarnings("ignore", message=".*not in session.*")
            submission = gb.add_submission(assignment, student)
    if course is not None:
        submission.timestamp = nbgrader_timestamp(course, assignment, student)
    elif result.get("timestamp"):
        submission.timestamp = dt.datetime.fromisoformat(result["timestamp"]).astimezone(dt.timezone.utc).replace(tzinfo=None)
    review = result["status"] in ("flagged", "unreadable", "failed")
    for notebook in submission.notebooks:
        nb = result["notebooks"].get(f"{notebook.name}.ipynb", {})
        for grade in notebook.grades:
            if grade.cell.cell_type != "code":
                continue
            cell = nb.get("cells", {}).get(grade.cell.name)
            if result["status"] == "failed" or cell is None:
                grade.auto_score = None
                grade.needs_manual_grade = True
            else:
                grade.auto_score = float(cell["points"])
                grade.needs_manual_grade = review
    gb.db.commit()
