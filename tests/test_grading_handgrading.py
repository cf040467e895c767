"""Hand grading closes the loop: nbgrader's formgrader, on a course folder the pipeline graded.

One pipeline run (``collect`` then ``grade``) grades two submissions of conv_basics:

- ``alice``: the instructor's solutions in every code cell and a written answer of her own;
- ``bob``: the release as it is (no code, no written answer), copied straight into ``submitted/``
  without ``collect`` (so without the ``timestamp.txt`` that nbgrader reads).

Then a real Jupyter server with nbgrader's formgrader server extension is started on the course
folder, the way the README's "Hand grading" paragraph says, and driven through the formgrader's REST
API (what its web page calls): it must list both submissions as autograded with the pipeline's
scores, render alice's autograded notebook, and take a hand grade (1.5 / 2) and a comment for her
written answer. ``export`` must then add the hand grade to her score and stop reporting her as
waiting for a hand grade; nbgrader's HTML feedback must show the comment and the hand score, and so
must the grader's own ``feedback.md``. A re-grade keeps the hand grade.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

import cnnbook_grader
from cnnbook_grader import pipeline
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read
from cnnbook_grader.release import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.notebooks, pytest.mark.usefixtures("bubblewrap")]

ASSIGNMENT = "conv_basics"
WRITTEN = "written_flip"  # the hand-graded markdown cell, 2 points
CODE_POINTS, WRITTEN_POINTS = 12.0, 2.0
ANSWER = "The kernel is learnt, so a flipped kernel is learnt just as well: flipping changes nothing but cost."
COMMENT = "Right idea; say also that the forward pass then needs no flip."
SETTINGS = pipeline.Settings(cell_timeout=30, call_timeout=30, submission_timeout=240, workers=2)
TIMEOUT = 20  # seconds, every HTTP request


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Formgrader:
    """The formgrader's REST API on a running server, with token authentication."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def request(self, method: str, path: str, body=None) -> tuple[int, str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def json(self, method: str, path: str, body=None):
        status, text = self.request(method, path, body)
        assert status == 200, f"{method} {path}: HTTP {status}\n{text[-2000:]}"
        return json.loads(text)


def formgrader_command(port: int, token: str) -> list[str]:
    """The README's command (``jupyter server`` in the course folder), on a loopback port with a known token."""
    command = [sys.executable, "-m", "jupyter", "server", "--ServerApp.root_dir=.", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return command


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    release = read(REPO_ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    alice = fill_solutions(release, read(REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    written = [c for c in alice.cells if nbgrader_meta(c).get("grade_id") == WRITTEN]
    assert len(written) == 1 and written[0].cell_type == "markdown" and nbgrader_meta(written[0])["points"] == 2
    written[0].source = ANSWER
    (root / "inbox" / "alice").mkdir(parents=True)
    nbformat.write(alice, str(root / "inbox" / "alice" / f"{ASSIGNMENT}.ipynb"))
    c = pipeline.Course(root)
    assert pipeline.collect(c, ASSIGNMENT, root / "inbox") == ["alice"]
    c.submitted("bob", ASSIGNMENT).mkdir(parents=True)
    nbformat.write(release, str(c.submitted("bob", ASSIGNMENT) / f"{ASSIGNMENT}.ipynb"))
    results = {r["student"]: r for r in pipeline.grade(c, ASSIGNMENT, settings=SETTINGS)}
    assert results["alice"]["status"] == "graded" and results["alice"]["score"] == CODE_POINTS, results["alice"]
    assert results["bob"]["status"] == "graded" and results["bob"]["score"] == 0, results["bob"]
    return c


def export_rows(c, name: str) -> dict[str, dict]:
    output = c.root / name
    pipeline.export(c, ASSIGNMENT, output)
    with open(output, newline="") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def before(course):
    """The export before any hand grade."""
    return export_rows(course, "grades-before.csv")


@pytest.fixture(scope="module")
def formgrader(course, before, tmp_path_factory):
    """A real Jupyter server in the course folder, with nbgrader's formgrader; always shut down."""
    pytest.importorskip("jupyter_server")
    home = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), "cnnbook-formgrader-token"
    environment = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),  # no personal configuration
                   "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
                   # nbgrader_config.py imports cnnbook_grader: as installed with `pip install -e ./grader`
                   "PYTHONPATH": os.pathsep.join([str(Path(cnnbook_grader.__file__).parents[1]),
                                                  os.environ.get("PYTHONPATH", "")])}
    log = home / "server.log"
    with open(log, "w") as output:
        process = subprocess.Popen(formgrader_command(port, token), cwd=course.root, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    api = Formgrader(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if api.request("GET", "/formgrader/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the formgrader did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield api, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def hand_graded(course, formgrader):
    """What the formgrader shows before the hand grade, the hand grade given through its API, and after."""
    api, log = formgrader
    seen = {"assignments": api.json("GET", "/formgrader/api/assignments"),
            "submissions": api.json("GET", f"/formgrader/api/submissions/{ASSIGNMENT}"),
            "notebooks": api.json("GET", f"/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")}
    alice = next(nb for nb in seen["notebooks"] if nb["student"] == "alice")
    seen["page"] = api.request("GET", f"/formgrader/submissions/{alice['id']}/")
    seen["grades"] = api.json("GET", f"/formgrader/api/grades?submission_id={alice['id']}")
    seen["comments"] = api.json("GET", f"/formgrader/api/comments?submission_id={alice['id']}")
    grade = next(g for g in seen["grades"] if g["name"] == WRITTEN)
    comment = next(c for c in seen["comments"] if c["name"] == WRITTEN)
    seen["put_grade"] = api.json("PUT", f"/formgrader/api/grade/{grade['id']}", {"manual_score": 1.5})
    seen["put_comment"] = api.json("PUT", f"/formgrader/api/comment/{comment['id']}", {"manual_comment": COMMENT})
    seen["after"] = api.json("GET", f"/formgrader/api/submission/{ASSIGNMENT}/alice")
    seen["log"] = log
    return seen


def test_the_formgrader_counts_every_graded_submission_as_autograded(tmp_path):
    """nbgrader's rule (NbGraderAPI.get_autograded_students): the gradebook's timestamp must equal the one in
    ``submitted/<student>/<assignment>/timestamp.txt`` (None when there is none), or the formgrader lists the
    submission as *needs autograding* and offers to run stock ``nbgrader autograde`` on it, outside the sandbox.
    Cases: collected with ``collect``; copied into submitted/ by hand; collected by ``nbgrader collect``
    (its own timestamp.txt, no record of ``collect``)."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from cnnbook_grader.gradebook import gradebook, gradebook_write, register_assignment

    shutil.copy2(REPO_ROOT / "nbgrader_config.py", tmp_path)
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, tmp_path / "solutions" / ASSIGNMENT)
    c = pipeline.Course(tmp_path)
    register_assignment(c, ASSIGNMENT, tmp_path / "scratch")
    release = REPO_ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    (tmp_path / "inbox" / "collected").mkdir(parents=True)
    shutil.copy2(release, tmp_path / "inbox" / "collected")
    pipeline.collect(c, ASSIGNMENT, tmp_path / "inbox")
    for student in ("copied", "nbgrader_collect"):
        c.submitted(student, ASSIGNMENT).mkdir(parents=True)
        shutil.copy2(release, c.submitted(student, ASSIGNMENT))
    (c.submitted("nbgrader_collect", ASSIGNMENT) / "timestamp.txt").write_text("2026-11-21 13:48:23.123456 UTC")
    students = ["collected", "copied", "nbgrader_collect"]
    with gradebook(c) as gb:
        for student in students:
            timestamp, _ = pipeline.submission_time(c, ASSIGNMENT, student)
            result = {"student": student, "assignment": ASSIGNMENT, "status": "graded", "timestamp": timestamp,
                      "notebooks": {f"{ASSIGNMENT}.ipynb": {"cells": {}}}}
            (c.root / "autograded" / student / ASSIGNMENT).mkdir(parents=True)
            gradebook_write(gb, result, c)
    api = NbGraderAPI(coursedir=CourseDirectory(root=str(c.root), course_id=c.course_id, db_url=c.db_url))
    assert api.get_submitted_students(ASSIGNMENT) == set(students)
    assert api.get_autograded_students(ASSIGNMENT) == set(students)


def test_export_before_hand_grading_says_a_hand_grade_is_pending(before):
    assert before["alice"]["score"] == "12" and before["alice"]["max_score"] == "14"
    assert before["alice"]["status"] == "graded" and before["alice"]["needs_human"] == "no"
    assert before["alice"]["manual_grading_pending"] == "yes"
    assert before["bob"]["score"] == "0" and before["bob"]["manual_grading_pending"] == "yes"


def test_the_formgrader_sees_the_pipelines_submissions_and_scores(hand_graded):
    assignment = next(a for a in hand_graded["assignments"] if a["name"] == ASSIGNMENT)
    assert assignment["num_submissions"] == 2
    submissions = {s["student"]: s for s in hand_graded["submissions"]}
    assert set(submissions) == {"alice", "bob"}
    for student, code in (("alice", CODE_POINTS), ("bob", 0.0)):
        s = submissions[student]
        # autograded (not "needs autograding"): the formgrader would otherwise offer to run nbgrader autograde
        assert s["autograded"] and s["id"] is not None, s
        assert s["code_score"] == pytest.approx(code) and s["written_score"] == 0, s
        assert s["max_score"] == pytest.approx(CODE_POINTS + WRITTEN_POINTS) and s["needs_manual_grade"], s
    notebooks = {nb["student"]: nb for nb in hand_graded["notebooks"]}
    assert set(notebooks) == {"alice", "bob"}, "the formgrader lists no notebook to grade"
    assert notebooks["alice"]["code_score"] == pytest.approx(CODE_POINTS)


def test_the_formgrader_shows_the_autograded_scores_cell_by_cell(hand_graded):
    grades = {g["name"]: g for g in hand_graded["grades"]}
    code = {name: g for name, g in grades.items() if g["cell_type"] == "code"}
    assert len(code) == 6 and sum(g["auto_score"] for g in code.values()) == pytest.approx(CODE_POINTS)
    assert all(g["auto_score"] == g["max_score"] and not g["needs_manual_grade"] for g in code.values()), code
    written = grades[WRITTEN]
    assert written["cell_type"] == "markdown" and written["max_score"] == WRITTEN_POINTS
    assert written["auto_score"] is None and written["manual_score"] is None and written["needs_manual_grade"]


def test_the_formgrader_renders_the_autograded_notebook_with_the_written_answer(hand_graded):
    status, html = hand_graded["page"]
    assert status == 200, html[-2000:]
    assert ANSWER.split(":")[0] in html  # the student's own written answer, shown for grading
    assert WRITTEN in html  # its grade box (the page binds the score input to the cell's grade_id)


def test_the_hand_grade_and_comment_are_stored(hand_graded):
    grade, comment = hand_graded["put_grade"], hand_graded["put_comment"]
    assert grade["manual_score"] == 1.5 and not grade["needs_manual_grade"]
    assert comment["manual_comment"] == COMMENT
    after = hand_graded["after"]
    assert after["score"] == pytest.approx(CODE_POINTS + 1.5) and after["written_score"] == pytest.approx(1.5)
    assert not after["needs_manual_grade"]


def test_export_adds_the_hand_grade(course, hand_graded):
    rows = export_rows(course, "grades-after.csv")
    assert rows["alice"]["score"] == "13.5" and rows["alice"]["max_score"] == "14"
    assert rows["alice"]["manual_grading_pending"] == "no" and rows["alice"]["status"] == "graded"
    assert rows["bob"]["score"] == "0" and rows["bob"]["manual_grading_pending"] == "yes"  # untouched


def test_feedback_shows_the_hand_grade_and_comment(course, hand_graded):
    pipeline.generate_feedback(course, ASSIGNMENT)
    folder = course.root / "feedback" / "alice" / ASSIGNMENT
    html = (folder / f"{ASSIGNMENT}.html").read_text()
    assert COMMENT in html  # nbgrader's feedback shows the instructor's comment under the cell
    assert "13.5" in html and "1.5" in html  # and the notebook's total and the cell's score
    report = (folder / "feedback.md").read_text()
    assert COMMENT in report and "1.5 / 2" in report, report
    assert "13.5 / 14" in report, report


def test_a_regrade_keeps_the_hand_grade(course, formgrader, hand_graded):
    api, _ = formgrader
    results = pipeline.grade(course, ASSIGNMENT, students=["alice"], settings=SETTINGS)
    assert [(r["status"], r["score"]) for r in results] == [("graded", CODE_POINTS)]
    rows = export_rows(course, "grades-regraded.csv")
    assert rows["alice"]["score"] == "13.5" and rows["alice"]["manual_grading_pending"] == "no"
    submissions = api.json("GET", f"/formgrader/api/submissions/{ASSIGNMENT}")
    submission = next(s for s in submissions if s["student"] == "alice")
    assert submission["autograded"] and submission["score"] == pytest.approx(CODE_POINTS + 1.5), submission
