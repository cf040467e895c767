"""Past one machine: the gradebook on a real PostgreSQL server, grading jobs on a Dask cluster.

The PostgreSQL test starts its own server (Debian's postgresql package, from
tools/system-packages.txt) in a temporary folder, as the ``postgres`` user,
listening on 127.0.0.1 only, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import pipeline, sandbox
from cnnbook_grader.notebooks import fill_solutions, read
from cnnbook_grader.release import REPO_ROOT, run_nbgrader

pytestmark = [pytest.mark.slow, pytest.mark.notebooks,
              pytest.mark.usefixtures("bubblewrap")]

ASSIGNMENT = "conv_basics"
SETTINGS = dict(cell_timeout=10, call_timeout=10, submission_timeout=120, workers=2)


def make_course(root: Path) -> pipeline.Course:
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    release = read(REPO_ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    source = read(REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    inbox = root / "inbox"
    for student, ids in [("ada", None), ("bo", {"correlate1d"})]:
        (inbox / student).mkdir(parents=True)
        nbformat.write(fill_solutions(release, source, ids), str(inbox / student / f"{ASSIGNMENT}.ipynb"))
    return pipeline.Course(root)


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres(tmp_path):
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (tools/system-packages.txt lists it)")
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="cnnbook-pg-"))  # pytest's tmp folders are private to root
    data = home / "pgdata"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(home, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    tmp_path = home
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(tmp_path / "pg.log"), "-w", "-o",
                              f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_user + [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                  "gradebook"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_gradebook_on_postgresql(tmp_path_factory, postgres):
    tmp_path = tmp_path_factory.mktemp("pgcourse")
    course_dir = tmp_path / "course"
    course_dir.mkdir()
    course = make_course(course_dir)
    course.db_url = postgres
    pipeline.collect(course, ASSIGNMENT, course_dir / "inbox")
    results = {r["student"]: r for r in pipeline.grade(course, ASSIGNMENT, settings=pipeline.Settings(**SETTINGS))}
    assert (results["ada"]["status"], results["ada"]["score"]) == ("graded", 12.0)
    assert (results["bo"]["status"], results["bo"]["score"]) == ("graded", 4.0)
    from nbgrader.api import Gradebook

    with Gradebook(postgres, course.course_id) as gb:
        scores = {s.student.id: s.code_score for s in gb.assignment_submissions(ASSIGNMENT)}
    assert scores == {"ada": 12.0, "bo": 4.0}
    # stock nbgrader sees the same gradebook
    process = run_nbgrader(["export", f"--db={postgres}", "--to=grades.csv"], course_dir)
    assert process.returncode == 0, process.stderr
    text = (course_dir / "grades.csv").read_text()
    assert ",ada," in text and "12.0" in text
    rows = {r["student"]: r for r in pipeline.export(course, ASSIGNMENT, course_dir / "ours.csv")}
    assert rows["bo"]["score"] == "4" and rows["bo"]["status"] == "graded"


def test_grading_jobs_on_a_local_dask_cluster(tmp_path):
    import distributed  # noqa: F401  (pinned: a broken install fails here, it is not skipped)
    course = make_course(tmp_path)
    pipeline.collect(course, ASSIGNMENT, tmp_path / "inbox")
    start = time.monotonic()
    results = {r["student"]: r for r in pipeline.grade(
        course, ASSIGNMENT, settings=pipeline.Settings(engine="dask", **SETTINGS))}
    assert (results["ada"]["status"], results["ada"]["score"]) == ("graded", 12.0)
    assert (results["bo"]["status"], results["bo"]["score"]) == ("graded", 4.0)
    assert time.monotonic() - start < 300
    assert (tmp_path / "grading" / ASSIGNMENT / "ada.json").exists()


def test_collect_from_an_lms_zip_export(tmp_path):
    import zipfile

    course = make_course(tmp_path)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for student in ("ada", "bo"):
            info = zipfile.ZipInfo(f"{student}_12345_67890_{ASSIGNMENT}.ipynb", date_time=(2030, 1, 2, 3, 4, 5))
            z.writestr(info, (tmp_path / "inbox" / student / f"{ASSIGNMENT}.ipynb").read_bytes())
        z.writestr("../../evil/timestamp.txt", "2000-01-01")
    students = pipeline.collect(course, ASSIGNMENT, archive)
    assert "ada" in students and "bo" in students
    assert (tmp_path / "submitted" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").exists()
    assert (tmp_path / "submitted" / "ada" / ASSIGNMENT / "timestamp.txt").read_text().startswith("2030-01-02")
    assert not (tmp_path.parent / "evil").exists()
