"""Collecting submissions (a folder or an LMS zip) into ``submitted/<student>/<assignment>/``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from .course import Course


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
