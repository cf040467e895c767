"""Grading one submission (runs in a worker: a thread here, or a Dask worker elsewhere).

Validate and normalise, run the student's cells and the recorded calls in the sandbox, then judge
(:mod:`verdicts`) and assemble the autograded notebook and the result record."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from . import sandbox
from .course import MAX_RESULT_BYTES, SEVERITY, Settings, atomic_write
from .feedback import feedback_text
from .normalize import Unreadable, normalise, read_submission
from .notebooks import nbgrader_meta
from .oracle import oracle_for
from .verdicts import _REPLAY, _has_code, judge_code, replay_checks


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
    if spec.get("seed") is not None:  # per-student hidden inputs: this student's own recording
        spec["oracle"] = str(oracle_for(Path(spec["source"]), Path(spec["oracle_cache"]), seed=spec["seed"]))
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
            entry["calls"].append({**{k: call.get(k) for k in ("key", "name", "target", "method", "args", "kwargs", "mode")},
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
        outcome = sandbox.run(work, [sys.executable, "-I", "-m", "cnnbook_grader.runner", sandbox.INSIDE],
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
                                         "passed": passed, "message": "passed" if passed else problems[0],
                                         "section": info.get("section")}
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
    result["feedback"] = feedback_text(result, job.get("book_url", ""))
    return result
