"""The instructor's grading pipeline: collect, grade, feedback, export.

One submission = one student's folder ``submitted/<student>/<assignment>/``.
``grade`` does, for an assignment:

1. takes a lock on the assignment (a second run waits; re-runs are idempotent);
2. registers the assignment in nbgrader's gradebook (``nbgrader
   generate_assignment`` into a scratch release folder) and records the
   oracle from the instructor notebook (:mod:`cnnbook.grading.oracle`);
3. marks every submission it is about to grade as *grading*: its old record,
   autograded notebook and gradebook scores are cleared first, so a re-grade
   that fails or is interrupted never leaves an older score looking current;
4. grades each submission in a worker pool (threads, or a Dask cluster):
   validate and normalise (:mod:`normalize`), read the code's syntax tree for
   forbidden calls and tampering (:mod:`static`), run the student's cells and
   the recorded calls in a sandbox (:mod:`sandbox`, :mod:`runner`, :mod:`harness`:
   no test code enters it), then run the instructor's checks on the values it
   wrote in a trusted replay worker (:mod:`replay`): every verdict is computed
   outside the sandbox;
5. writes each result atomically (record JSON, feedback, autograded notebook)
   and updates the gradebook from this one process, as results arrive.

Every submission ends with a status: ``graded``, ``partial`` (timeout, out
of memory, kernel died: tests that ran keep their points), ``unreadable``,
``flagged`` (tampering detected: scored, but a human must look), or
``failed`` (the grader itself could not run; no score).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from . import sandbox
from .normalize import Unreadable, normalise, read_submission
from .notebooks import nbgrader_meta
from .oracle import oracle_for
from .release import nbgrader_env, run_nbgrader
from .static import FORBIDDEN, analyse, matches

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

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        config = self.root / "nbgrader_config.py"
        if config.exists():
            from traitlets.config.loader import PyFileConfigLoader

            loaded = PyFileConfigLoader(config.name, path=str(self.root)).load_config()
            directory = loaded.get("CourseDirectory", {})
            self.course_id = directory.get("course_id", self.course_id)
            self.source = directory.get("source_directory", self.source)
            self.db_url = self.db_url or directory.get("db_url", "")
        self.db_url = self.db_url or f"sqlite:///{self.root / 'gradebook.db'}"

    def submitted(self, student="", assignment=""):
        return self.root / "submitted" / student / assignment

    def records(self, assignment):
        return self.root / "grading" / assignment

    def oracle_cache(self, assignment):
        return self.root / ".grading" / "oracle" / assignment

    def notebooks(self, assignment) -> list[Path]:
        return sorted((self.root / self.source / assignment).glob("*.ipynb"))

    def students(self, assignment) -> list[str]:
        base = self.root / "submitted"
        if not base.exists():
            return []
        return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir())


# ---------------------------------------------------------------------------------------------
# small helpers


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


# ---------------------------------------------------------------------------------------------
# one submission (runs in a worker: a thread here, or a Dask worker elsewhere)


def _read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    entries = []
    with open(path, "rb") as f:
        data = f.read(MAX_RESULT_BYTES)
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def grade_notebook(spec: dict) -> dict:
    """Grade one submitted notebook. ``spec`` holds plain paths and settings (picklable)."""
    name = spec["notebook"]
    submitted = Path(spec["submitted"])
    oracle_dir = Path(spec["oracle"])
    oracle = json.loads((oracle_dir / "oracle.json").read_text())
    released = nbformat.read(spec["release"], as_version=4)
    source_nb = nbformat.read(spec["source"], as_version=4)
    settings = Settings(**spec["settings"])
    result = {"notebook": name, "status": "graded", "reasons": [], "notes": [], "flags": [], "forbidden": {},
              "cells": {}, "score": 0.0, "max_score": 0.0, "executed": None}
    recorded = oracle["cells"]
    test_cells = {g: c for g, c in recorded.items() if c["test"]}
    result["max_score"] = sum(c["points"] for c in test_cells.values())
    try:
        submission = read_submission(submitted)
        fixed = normalise(submission, released)
    except Unreadable as error:
        result.update(status="unreadable", reasons=[str(error)])
        for grade_id, cell in test_cells.items():
            result["cells"][grade_id] = {"points": 0.0, "max": cell["points"], "passed": False,
                                         "message": "not graded: the notebook could not be read"}
        return result
    except Exception as error:  # noqa: BLE001 - a notebook nbformat cannot validate after repair
        result.update(status="unreadable", reasons=[f"{name} could not be repaired into a valid notebook ({error})"])
        for grade_id, cell in test_cells.items():
            result["cells"][grade_id] = {"points": 0.0, "max": cell["points"], "passed": False,
                                         "message": "not graded: the notebook could not be read"}
        return result
    notebook = fixed.notebook
    result["notes"] = fixed.notes

    # what the code says about itself (never executed here): the student's answer cells, read with
    # the locked cells' imports and helpers in view, judged on their own
    report, result["forbidden"] = judge_code(notebook, test_cells)
    result["flags"] = report.tampering

    # the job for the sandbox: the student's and locked cells in order; at each test cell, no test
    # code, only the recorded calls of the student's functions on the grader's inputs
    job_cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        info = recorded.get(grade_id)
        entry = {"index": index, "source": None if grade_id in test_cells else cell.source, "calls": []}
        for call in (info or {}).get("calls", []):
            files = {}
            for path in (oracle_dir / "in").glob(f"{call['key']}_*.npy"):
                files[path.name] = base64.b64encode(path.read_bytes()).decode()
            forbid = list(info.get("forbid") or [])
            entry["calls"].append({**{k: call.get(k) for k in ("key", "name", "target", "args", "kwargs", "mode")},
                                   "files": files, "forbid": forbid})
        job_cells.append(entry)
    job = {"cells": job_cells, "cell_timeout": settings.cell_timeout, "call_timeout": settings.call_timeout}

    scratch = Path(tempfile.mkdtemp(prefix=f"{spec['student']}-{Path(name).stem}-", dir=spec["scratch"]))
    work = scratch / "work"
    work.mkdir()
    try:
        for extra in spec.get("public_files", []):  # files students are allowed to have
            target = work / extra["relative"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(extra["path"], target)
        nbformat.write(notebook, str(work / name))
        atomic_write(work / "job.json", json.dumps(job))
        _REPLAY.warm()  # a trusted replay worker loads its imports while the sandbox runs
        outcome = sandbox.run(work, [sys.executable, "-I", "-m", "cnnbook.grading.runner", sandbox.INSIDE],
                              settings.limits(), hide=[Path(p) for p in spec["hide"]])
        entries = _read_progress(work / "progress.jsonl")
        if os.environ.get("CNNBOOK_GRADING_DEBUG"):
            print(outcome, [(e.get("type"), e.get("index", e.get("key")), e.get("t")) for e in entries], file=sys.stderr)
        calls = {e.get("key"): e for e in entries if e.get("type") == "call"}
        cells_run = {e.get("index"): e for e in entries if e.get("type") == "cell"}
        restarts = [e for e in entries if e.get("type") == "restart"]
        started = any(e.get("type") == "started" for e in entries)
        finished = any(e.get("type") == "finished" for e in entries)

        reasons = []
        for e in list(cells_run.values()) + list(calls.values()):
            if e.get("status") == "timeout" and "timeout" not in reasons:
                reasons.append("timeout")
            if e.get("ename") == "MemoryError" and "out of memory" not in reasons:
                reasons.append("out of memory")
        for e in restarts:
            code = e.get("exit_code")
            why = "out of memory" if code in (-9, 137) else "kernel died"
            if e.get("why", "").startswith("a cell ignored"):
                why = "timeout"
            if why not in reasons:
                reasons.append(why)
        if outcome.timed_out and "timeout" not in reasons:
            reasons.append("timeout")
        if not started:
            result.update(status="failed", reasons=[f"the sandbox did not start: {outcome.stderr.strip()[-500:]}"])
            result["score"] = None
            return result
        if not finished and not reasons:
            reasons.append("kernel died")

        # every verdict in this trusted process: the instructor's checks on the values the sandbox wrote
        # A check is visible when its released cell holds code; a hidden-only cell holds at most a comment
        # ("# Hidden tests: ... run here when the notebook is graded").
        visible = {g for g in test_cells if _has_code(released_cell_source(released, g))}
        results_dir = work / "out"
        if results_dir.is_symlink() or not results_dir.is_dir():  # the sandbox made it something else
            results_dir = scratch / "empty"
            results_dir.mkdir(exist_ok=True)
        verdicts = replay_checks(spec["source"], oracle_dir, results_dir, calls, visible,
                                 timeout=settings.replay_timeout)
        for index, cell in enumerate(notebook.cells):
            grade_id = nbgrader_meta(cell).get("grade_id")
            if grade_id not in test_cells:
                continue
            info = test_cells[grade_id]
            problems = []
            if not info.get("gradable", True):
                problems.append(f"graded by hand ({info.get('why', 'the grader cannot replay this check')})")
            for function in sorted({c["name"] for c in info["calls"] if c.get("name")}):
                if function in result["forbidden"]:  # every check of that function scores 0
                    problems.append(f"{function} uses {', '.join(result['forbidden'][function])}, "
                                    "which this exercise asks you to write yourself")
            verdict = verdicts.get(grade_id, {"passed": False, "message": "not checked"})
            if not problems and not verdict["passed"]:
                problems.append(verdict["message"])
            passed = not problems
            result["cells"][grade_id] = {"points": info["points"] if passed else 0.0, "max": info["points"],
                                         "passed": passed, "message": "passed" if passed else problems[0]}
            if not info.get("gradable", True):
                result["manual"] = True
        result["score"] = sum(c["points"] for c in result["cells"].values())
        if result["flags"]:
            result["status"] = "flagged"
        elif reasons:
            result["status"] = "partial"
        result["reasons"] = reasons
        result["executed"] = _executed_notebook(notebook, cells_run, result, released)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def judge_code(notebook, test_cells: dict):
    """The static analysis of a normalised notebook: (report, {function: forbidden names it uses}).

    Only the answer cells (and cells the student added) are judged, with the locked cells' imports and
    helpers in view. A function is reported when it uses a name that a check calling it forbids (the
    names that check passed to ``forbid_calls``, recorded with the oracle).
    """
    cells_for_analysis = [(c.source, _is_answer(c)) for c in notebook.cells if c.cell_type == "code"
                          and not nbgrader_meta(c).get("grade")]
    cell_forbid = {g: c.get("forbid") or [] for g, c in test_cells.items()}
    report = analyse(cells_for_analysis, forbidden=set(FORBIDDEN).union(*cell_forbid.values()))
    # a function breaks the rules when it uses a name that a check calling it forbids (its forbid_calls)
    breaches: dict[str, dict[str, list[str]]] = {}  # grade_id -> function -> names
    for grade_id, info in test_cells.items():
        for function in sorted({c["name"] for c in info["calls"] if c.get("name")}):
            hits = [u for u in report.forbidden.get(function, []) if matches(u, cell_forbid[grade_id])]
            if hits:
                breaches.setdefault(grade_id, {})[function] = hits
    forbidden: dict[str, set[str]] = {}
    for per_function in breaches.values():
        for function, hits in per_function.items():
            forbidden.setdefault(function, set()).update(hits)
    return report, {f: sorted(v) for f, v in forbidden.items()}


def _is_answer(cell) -> bool:
    """A cell the student wrote: an answer cell, or one they added (no grading metadata)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("solution")) or not meta.get("grade_id")


class _ReplayWorkers:
    """Trusted replay workers (``python -m cnnbook.grading.replay --serve``), started on demand and reused.

    They only ever run the instructor's notebook and read plain data written by a sandbox; no student
    code runs in them, so one worker serves many students (torch is imported once per worker).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen] = []
        self.alive = 0

    def warm(self) -> None:
        """Start a worker ahead of need (it loads its imports while a sandbox runs), up to one per core."""
        with self.lock:
            if self.alive < (os.cpu_count() or 1):
                self.idle.append(self._start())
                self.alive += 1

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cnnbook.grading.replay", "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"})

    def run(self, request: dict, timeout: float) -> dict:
        with self.lock:
            worker = self.idle.pop() if self.idle else None
        if worker is None or worker.poll() is not None:
            with self.lock:
                if worker is None:
                    self.alive += 1
            worker = self._start()
        answer: list = []
        reader = threading.Thread(target=lambda: answer.append(worker.stdout.readline()), daemon=True)
        try:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
            reader.start()
            reader.join(timeout)
        except OSError:
            pass
        if not answer or not answer[0]:
            worker.kill()
            worker.wait()
            with self.lock:
                self.alive -= 1
            raise RuntimeError("the replay of the checks did not answer (it died or ran past its time limit)")
        with self.lock:
            self.idle.append(worker)
        reply = json.loads(answer[0])
        if "error" in reply:
            raise RuntimeError(f"the replay of the checks failed:\n{reply['error']}")
        return reply["verdicts"]


_REPLAY = _ReplayWorkers()


def _has_code(source: str) -> bool:
    """Whether ``source`` holds anything but blank lines and comments."""
    return any(line.strip() and not line.strip().startswith("#") for line in source.splitlines())


def replay_checks(source, oracle_dir: Path, results_dir: Path, statuses: dict, visible: set, timeout: float) -> dict:
    """The verdicts, computed by :func:`cnnbook.grading.replay.replay` in a trusted worker process."""
    return _REPLAY.run({"source": str(source), "oracle": str(oracle_dir), "results": str(results_dir),
                        "statuses": statuses, "visible": sorted(visible)}, timeout)


def released_cell_source(released, grade_id) -> str:
    for cell in released.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            return cell.source
    return ""


def _executed_notebook(notebook, cells_run: dict, result: dict, released) -> dict:
    """The normalised notebook with the sandbox's (capped) outputs and the grader's verdict per test."""
    executed = nbformat.from_dict(json.loads(json.dumps(notebook)))
    for index, cell in enumerate(executed.cells):
        if cell.cell_type != "code":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id")
        ran = cells_run.get(index)
        outputs = []
        if ran:
            for output in ran.get("outputs", []):
                try:
                    outputs.append(nbformat.from_dict(output))
                except Exception:  # noqa: BLE001
                    continue
            if ran.get("status") == "timeout":
                outputs.append(nbformat.v4.new_output("stream", name="stderr",
                                                      text="[grader] this cell was stopped: it ran past its time limit\n"))
        cell.source = released_cell_source(released, grade_id) if grade_id in result["cells"] else cell.source
        if grade_id in result["cells"]:
            verdict = result["cells"][grade_id]
            if not _has_code(released_cell_source(released, grade_id)):
                outputs = []  # hidden checks show only the grader's verdict
            if verdict["passed"]:
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=f"[grader] {grade_id}: passed\n"))
            else:
                outputs.append(nbformat.v4.new_output("error", ename="CheckFailed", evalue=verdict["message"],
                                                      traceback=[f"CheckFailed: {verdict['message']}"]))
        cell.outputs = outputs
    return json.loads(nbformat.writes(executed))


def grade_submission(job: dict) -> dict:
    """Grade every notebook of one student's submission; never raises (a grader error is status ``failed``)."""
    start = time.monotonic()
    result = {"student": job["student"], "assignment": job["assignment"], "timestamp": job.get("timestamp"),
              "timestamp_source": job.get("timestamp_source"), "notebooks": {}, "status": "graded", "reasons": []}
    for spec in job["notebooks"]:
        try:
            nb_result = grade_notebook({**spec, "student": job["student"], "settings": job["settings"],
                                        "scratch": job["scratch"], "hide": job["hide"],
                                        "public_files": job.get("public_files", [])})
        except Exception as error:  # noqa: BLE001 - one broken submission must not stop the class
            nb_result = {"notebook": spec["notebook"], "status": "failed", "reasons": [f"grader error: {error!r}"],
                         "cells": {}, "score": None, "max_score": None, "notes": [], "flags": [], "forbidden": {},
                         "executed": None}
        result["notebooks"][spec["notebook"]] = nb_result
    statuses = [nb["status"] for nb in result["notebooks"].values()]
    result["status"] = max(statuses, key=SEVERITY.index) if statuses else "unreadable"
    result["reasons"] = list(dict.fromkeys(r for nb in result["notebooks"].values() for r in nb["reasons"]))
    scores = [nb["score"] for nb in result["notebooks"].values()]
    result["score"] = None if any(s is None for s in scores) else float(sum(scores))
    result["max_score"] = float(sum(nb["max_score"] or 0 for nb in result["notebooks"].values()))
    result["seconds"] = round(time.monotonic() - start, 3)
    result["feedback"] = feedback_text(result)
    return result


# ---------------------------------------------------------------------------------------------
# feedback


def feedback_text(result: dict) -> str:
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
            lines += ["", "| check | points | result |", "|---|---|---|"]
            for grade_id, cell in nb["cells"].items():
                message = cell["message"].replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {grade_id} | {cell['points']:g} / {cell['max']:g} | {message} |")
    lines += ["", "Checks named *hidden* use inputs you have not seen; the message says which function and "
              "which kind of error, never the expected values.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the gradebook (written only by the process that runs `grade`)


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


def gradebook_write(gb, result: dict) -> None:
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
    if result.get("timestamp"):
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


# ---------------------------------------------------------------------------------------------
# writing results (one process)


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


# ---------------------------------------------------------------------------------------------
# collect


def _timestamp_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _store_submission(course: Course, assignment: str, student: str, files: dict[str, bytes],
                      received: dt.datetime, origin: str) -> None:
    target = course.submitted(student, assignment)
    staging = Path(tempfile.mkdtemp(prefix=f".{student}-", dir=course.root / "submitted"))
    ignored = []
    for relative, data in files.items():
        if Path(relative).name == "timestamp.txt":  # students cannot set their own time
            ignored.append(relative)
            continue
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (staging / "timestamp.txt").write_text(_timestamp_text(received))
    (staging / ".collected.json").write_text(json.dumps({"received": received.astimezone(dt.timezone.utc).isoformat(),
                                                          "origin": origin, "ignored": ignored}))
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def collect(course: Course, assignment: str, source: Path, max_bytes: int = 100 * 2**20) -> list[str]:
    """Copy submissions into ``submitted/<student>/<assignment>/``; return the students collected.

    ``source`` is a folder with one sub-folder per student (``<student>/...``), or an LMS zip export
    whose entries are ``<student>/<file>`` or ``<student>_<anything>_<file>`` (Moodle, Canvas). The
    submission time recorded is the server's: the zip entry's time for an export, otherwise the time of
    collection; a ``timestamp.txt`` from the student is ignored.
    """
    source = Path(source)
    (course.root / "submitted").mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    by_student: dict[str, dict[str, bytes]] = {}
    times: dict[str, dt.datetime] = {}
    release_names = {p.name for p in course.notebooks(assignment)}
    if source.is_dir():
        for student_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = {}
            for path in sorted(student_dir.rglob("*")):
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= max_bytes:
                    relative = path.relative_to(student_dir)
                    if relative.parts[0] == assignment and len(relative.parts) > 1:
                        relative = Path(*relative.parts[1:])
                    files[str(relative)] = path.read_bytes()
            by_student[student_dir.name] = files
            times[student_dir.name] = now
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.file_size > max_bytes:
                    continue
                parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
                if not parts:
                    continue
                if len(parts) >= 2:
                    student, name = parts[0], parts[-1]
                else:
                    pieces = parts[0].split("_")
                    student = pieces[0]
                    name = next((n for n in release_names if parts[0].endswith(n)), pieces[-1])
                if not student or student.startswith("."):
                    continue
                by_student.setdefault(student, {})[name] = archive.read(info)
                stamp = dt.datetime(*info.date_time).astimezone(dt.timezone.utc)
                times[student] = max(times.get(student, stamp), stamp)
    else:
        raise ValueError(f"{source} is neither a folder nor a zip file")
    for student, files in by_student.items():
        _store_submission(course, assignment, student, files, times[student], str(source))
    return sorted(by_student)


def submission_time(course: Course, assignment: str, student: str) -> tuple[str, str]:
    folder = course.submitted(student, assignment)
    collected = folder / ".collected.json"
    if collected.exists():
        try:
            return json.loads(collected.read_text())["received"], "server (collect)"
        except Exception:  # noqa: BLE001
            pass
    notebooks = list(folder.glob("*.ipynb"))
    moment = max((p.stat().st_mtime for p in notebooks), default=folder.stat().st_mtime)
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat(), "file time (not collected with `collect`)"


# ---------------------------------------------------------------------------------------------
# grade


def _run_jobs(jobs: list[dict], settings: Settings):
    """Yield results as they finish, from a thread pool or a Dask cluster."""
    workers = settings.workers or os.cpu_count() or 1
    if settings.engine == "dask":
        from distributed import Client, LocalCluster, as_completed as dask_completed

        cluster = None
        if settings.scheduler:
            client = Client(settings.scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            futures = [client.submit(grade_submission, job, pure=False, key=f"grade-{job['student']}") for job in jobs]
            for future in dask_completed(futures):
                yield future.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(grade_submission, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def grade(course: Course, assignment: str, students: list[str] | None = None, settings: Settings | None = None,
          progress=None) -> list[dict]:
    """Grade ``students`` (default: everyone in submitted/) and return their results."""
    settings = settings or Settings()
    course = course if isinstance(course, Course) else Course(course)
    sources = course.notebooks(assignment)
    if not sources:
        raise ValueError(f"no instructor notebook in {course.source}/{assignment}/")
    with assignment_lock(course, assignment), tempfile.TemporaryDirectory(prefix="cnnbook-grading-") as scratch:
        scratch = Path(scratch)
        os.chmod(scratch, 0o711)
        release = register_assignment(course, assignment, scratch / "release")
        oracles = {p.name: oracle_for(p, course.oracle_cache(assignment)) for p in sources}
        public_files = [{"path": str(p), "relative": str(p.relative_to(release))}
                        for p in release.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
        students = students if students is not None else course.students(assignment)
        (scratch / "work").mkdir()
        os.chmod(scratch / "work", 0o711)
        jobs = []
        with gradebook(course) as gb:
            for student in students:
                # the gradebook first: if this run dies between the two, neither place shows the old
                # score as current (export also treats a cleared gradebook entry as "grading")
                gradebook_mark_grading(gb, assignment, student)
                mark_grading(course, assignment, student)
                timestamp, origin = submission_time(course, assignment, student)
                jobs.append({
                    "student": student, "assignment": assignment, "timestamp": timestamp, "timestamp_source": origin,
                    "settings": asdict(settings) | {"scheduler": None}, "scratch": str(scratch / "work"),
                    "hide": [str(course.root)], "public_files": public_files,
                    "notebooks": [{"notebook": p.name, "submitted": str(course.submitted(student, assignment) / p.name),
                                   "release": str(release / p.name), "source": str(p), "oracle": str(oracles[p.name])}
                                  for p in sources],
                })
            results = []
            for result in _run_jobs(jobs, settings):
                write_result(course, result)
                gradebook_write(gb, result)
                results.append(result)
                if progress:
                    progress(result)
    return sorted(results, key=lambda r: r["student"])


# ---------------------------------------------------------------------------------------------
# feedback and export


def generate_feedback(course: Course, assignment: str) -> list[Path]:
    """nbgrader's HTML feedback for every autograded notebook, plus the grader's report for every student."""
    written = []
    if any((course.root / "autograded").glob(f"*/{assignment}/*.ipynb")):
        process = run_nbgrader(["generate_feedback", assignment, "--force", f"--db={course.db_url}"], course.root)
        if process.returncode != 0:
            print(process.stdout + process.stderr, file=sys.stderr)
    for record_path in sorted(course.records(assignment).glob("*.json")):
        student = record_path.stem
        report = course.records(assignment) / f"{student}.md"
        target = course.root / "feedback" / student / assignment / "feedback.md"
        if report.exists():
            atomic_write(target, report.read_text())
        else:
            record = json.loads(record_path.read_text())
            atomic_write(target, f"# Feedback on {assignment} for {student}\n\n- **Status:** "
                                 f"{STATUS_TEXT.get(record.get('status'), record.get('status'))}\n")
        written.append(target)
    return written


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
