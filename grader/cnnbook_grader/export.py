"""``export``: the grades as CSV, with each record's status."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from .course import Course, atomic_write, read_record
from .gradebook import gradebook


def export(course: Course, assignment: str, output: Path) -> list[dict]:
    """A CSV with one row per student: status, score (manual grades included), lateness, review."""
    rows = []
    duedate = None
    scores = {}
    with gradebook(course) as gb:
        try:
            duedate = gb.find_assignment(assignment).duedate
        except Exception:  # noqa: BLE001
            duedate = None
        for submission in gb.assignment_submissions(assignment):
            cleared = any(g.auto_score is None for nb in submission.notebooks for g in nb.grades
                          if g.cell.cell_type == "code")
            scores[submission.student.id] = (submission.score, submission.max_score, submission.needs_manual_grade,
                                             cleared)
    students = sorted({p.stem for p in course.records(assignment).glob("*.json")} | set(scores))
    for student in students:
        record = read_record(course, assignment, student) or {"status": "grading"}
        status = record.get("status", "grading")
        score, max_score, manual, cleared = scores.get(student, (None, None, True, True))
        if cleared and status not in ("unreadable", "failed"):
            status = "grading"  # a re-grade started and did not finish: no score is current
        if status in ("grading", "failed"):
            score = None
        late = ""
        if duedate is not None and record.get("timestamp"):
            moment = dt.datetime.fromisoformat(record["timestamp"]).astimezone(dt.timezone.utc).replace(tzinfo=None)
            late = max(0.0, (moment - duedate).total_seconds())
        rows.append({
            "student": student, "assignment": assignment, "status": status,
            "reasons": "; ".join(record.get("reasons", [])),
            "score": "" if score is None else f"{score:g}", "max_score": "" if max_score is None else f"{max_score:g}",
            "timestamp": record.get("timestamp", ""), "duedate": duedate.isoformat() if duedate else "",
            "seconds_late": late if late == "" else f"{late:.0f}",
            "needs_human": "yes" if status not in ("graded", "partial") else "no",
            "manual_grading_pending": "yes" if manual else "no",
        })
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0].keys()) if rows else ["student"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(output), text.getvalue())
    return rows
