"""A course folder: settings, paths, locks and the per-submission records (written by one process)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import sandbox

STATUS_TEXT = {
    "graded": "graded",
    "partial": "partially graded",
    "unreadable": "unreadable",
    "flagged": "flagged for review",
    "failed": "not graded (grader error)",
    "grading": "grading did not finish (re-run `grade`)",
}
SEVERITY = ["graded", "partial", "flagged", "unreadable", "failed"]
MAX_RESULT_BYTES = 64 * 2**20


@dataclass
class Settings:
    cell_timeout: float = 60.0  # per notebook cell
    call_timeout: float = 30.0  # per call of a student's function on grader inputs
    submission_timeout: float = 600.0  # per notebook, everything included
    replay_timeout: float = 900.0  # the trusted replay of the checks (not the student's time)
    memory_bytes: int = 4 * 2**30
    processes: int = 64
    file_bytes: int = 64 * 2**20
    workers: int = 0  # 0: one per CPU core
    engine: str = "threads"  # or "dask"
    scheduler: str | None = None  # a Dask scheduler address; None starts a local cluster

    def limits(self) -> sandbox.Limits:
        wall = self.submission_timeout
        return sandbox.Limits(memory_bytes=self.memory_bytes, cpu_seconds=int(wall) + 5, file_bytes=self.file_bytes,
                              processes=self.processes, wall_seconds=wall)


@dataclass
class Course:
    root: Path
    db_url: str = ""
    course_id: str = "cnnbook"
    source: str = "solutions"
    release: str = "exercises"  # nbgrader's release folder: what students were given
    #: where feedback links a failed check's book section: ``c.CnnbookGrader.book_url`` in
    #: nbgrader_config.py (the published site), else the book built in the course folder, else none
    book_url: str = ""

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        config = self.root / "nbgrader_config.py"
        if config.exists():
            from traitlets.config.loader import PyFileConfigLoader

            loaded = PyFileConfigLoader(config.name, path=str(self.root)).load_config()
            directory = loaded.get("CourseDirectory", {})
            self.course_id = directory.get("course_id", self.course_id)
            self.source = directory.get("source_directory", self.source)
            self.release = directory.get("release_directory", self.release)
            self.db_url = self.db_url or directory.get("db_url", "")
            self.book_url = self.book_url or loaded.get("CnnbookGrader", {}).get("book_url", "")
        if not self.book_url and (self.root / "_build" / "html" / "index.html").exists():
            self.book_url = (self.root / "_build" / "html").as_uri()
        self.db_url = self.db_url or f"sqlite:///{self.root / 'gradebook.db'}"

    def submitted(self, student="", assignment=""):
        return self.root / "submitted" / student / assignment

    def records(self, assignment):
        return self.root / "grading" / assignment

    def oracle_cache(self, assignment):
        return self.root / ".grading" / "oracle" / assignment

    def notebooks(self, assignment) -> list[Path]:
        return sorted((self.root / self.source / assignment).glob("*.ipynb"))

    def released(self, assignment) -> list[Path]:
        """The student versions of the assignment's notebooks (nbgrader's release folder)."""
        return sorted((self.root / self.release / assignment).glob("*.ipynb"))

    def students(self, assignment) -> list[str]:
        base = self.root / "submitted"
        if not base.exists():
            return []
        return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir())




def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` so that readers see the old file or the new one, never half of one.

    ``mode``: readable by everyone by default, like nbgrader's feedback (mkstemp alone gives 0600), so that
    what an instructor hands back (feedback, graded notebooks, grade exports) can be served as it is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(handle, mode)
    with os.fdopen(handle, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


@contextlib.contextmanager
def assignment_lock(course: Course, assignment: str):
    """One grading run per assignment at a time; a second run waits for the first."""
    path = course.root / ".grading" / f"{assignment}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another grading run of {assignment} is in progress; waiting for it", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield





def _paths(course: Course, assignment: str, student: str):
    records = course.records(assignment)
    return records / f"{student}.json", records / f"{student}.md", course.root / "autograded" / student / assignment


def mark_grading(course: Course, assignment: str, student: str) -> None:
    record, feedback, autograded = _paths(course, assignment, student)
    atomic_write(record, json.dumps({"student": student, "assignment": assignment, "status": "grading",
                                     "score": None, "started": dt.datetime.now(dt.timezone.utc).isoformat()}))
    if feedback.exists():
        feedback.unlink()
    if autograded.exists():
        shutil.rmtree(autograded)


def write_result(course: Course, result: dict) -> None:
    record, feedback, autograded = _paths(course, result["assignment"], result["student"])
    stored = {k: v for k, v in result.items() if k != "feedback"}
    stored["notebooks"] = {name: {k: v for k, v in nb.items() if k != "executed"} for name, nb in result["notebooks"].items()}
    if autograded.exists():
        shutil.rmtree(autograded)
    for name, nb in result["notebooks"].items():
        if nb.get("executed"):
            atomic_write(autograded / name, json.dumps(nb["executed"], indent=1))
    atomic_write(feedback, result["feedback"])
    atomic_write(record, json.dumps(stored, indent=1))  # last: the record says the result is complete


def read_record(course: Course, assignment: str, student: str) -> dict | None:
    record = _paths(course, assignment, student)[0]
    return json.loads(record.read_text()) if record.exists() else None
