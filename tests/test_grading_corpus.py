"""The grading-threats corpus (shared/design/grading-threats.md, 26 kinds) against a real assignment.

All submissions are graded together in ONE pipeline run (a session fixture),
so every case also proves that the others did not disturb it; then each test
asserts its case's status, score and feedback, and that the submitted files
were not modified. Runs as root in CI (bubblewrap from tools/system-packages.txt).
"""

from __future__ import annotations

import hashlib
import re
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import pipeline, sandbox
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read
from cnnbook_grader.release import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.notebooks,
              pytest.mark.usefixtures("bubblewrap")]

ASSIGNMENT = "conv_basics"
SOURCE = REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
RELEASE = REPO_ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
FULL = 12.0  # autograded points of conv_basics (the written question is graded by hand)
SETTINGS = pipeline.Settings(cell_timeout=4, call_timeout=4, submission_timeout=90, memory_bytes=3 * 2**30, workers=2)

WRONG_CORRELATE1D = '''def correlate1d(signal, kernel):
    return np.zeros(np.shape(signal)[0] - np.shape(kernel)[0] + 1)
'''
WRONG_ALL = {
    "correlate1d": WRONG_CORRELATE1D,
    "convolve1d": "def convolve1d(signal, kernel):\n    return np.zeros(len(signal) - len(kernel) + 1)\n",
    "correlate2d": ("def correlate2d(image, kernel):\n    image, kernel = np.asarray(image), np.asarray(kernel)\n"
                    "    return np.zeros((image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1))\n"),
}


def correct_source(grade_id: str) -> str:
    nb = fill_solutions(read(RELEASE), read(SOURCE))
    return next(c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def after_docstring(source: str, code: str) -> str:
    """Insert ``code`` (indented lines) right after the function's one-line docstring."""
    lines = source.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith('"""'))
    return "\n".join(lines[: index + 1] + code.splitlines() + lines[index + 1:]) + "\n"


def cell_of(nb, grade_id):
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def build(answers: dict[str, str] | None = None, change=None):
    nb = fill_solutions(read(RELEASE), read(SOURCE))
    for grade_id, source in (answers or {}).items():
        cell_of(nb, grade_id).source = source
    if change:
        change(nb)
    return nb


def insert_after(grade_id, source):
    def change(nb):
        index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == grade_id)
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return change


def append(source):
    def change(nb):
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return change


# ---------------------------------------------------------------------------------------------- the corpus

LISTENER = {}
ESCAPE_NAME = f"cnnbook-escape-{uuid.uuid4().hex}"


def corpus(course: Path) -> dict[str, object]:
    """student -> notebook (or raw bytes, or (filename, bytes))."""
    c2d = correct_source("correlate2d")
    cases: dict[str, object] = {}
    cases["c01_correct"] = build()
    cases["c02_wrong"] = build({"correlate2d": WRONG_ALL["correlate2d"]})

    def delete_and_strip(nb):
        nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != "test_correlate1d_visible"]
        cell_of(nb, "test_convolve1d_hidden").metadata = {}
    cases["c03_deleted_test"] = build(change=delete_and_strip)

    def edit_locked(nb):
        cell_of(nb, "test_correlate1d_visible").source = "print('all good')"
        cell_of(nb, "test_correlate1d_hidden").source = "pass"
    cases["c04_edited_test"] = build({"correlate1d": WRONG_CORRELATE1D}, edit_locked)

    def duplicate(nb):
        index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == "test_correlate1d_hidden")
        nb.cells.insert(index, nbformat.from_dict(json.loads(json.dumps(nb.cells[index]))))
        index = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == "correlate2d")
        nb.cells.insert(index, nbformat.from_dict(json.loads(json.dumps(nb.cells[index]))))
    cases["c05_duplicated"] = build(change=duplicate)

    def tamper(nb):
        cell_of(nb, "test_correlate1d_visible").metadata["nbgrader"]["schema_version"] = 99
        cell_of(nb, "test_correlate2d_hidden").metadata["nbgrader"]["points"] = 100
        own = cell_of(nb, "convolve1d")
        own.metadata["nbgrader"].update({"grade": True, "points": 50})
        extra = nbformat.v4.new_code_cell("x = 1")
        extra.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "points": 1000, "solution": False,
                                      "locked": False, "schema_version": 3}
        nb.cells.append(extra)
    cases["c06_metadata"] = build(change=tamper)

    cases["c07_traceback_patch"] = build(WRONG_ALL, insert_after("imports", (
        "import sys\nip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
        "ip._showtraceback = lambda *a, **k: None\nsys.excepthook = lambda *a: None\n")))
    cases["c08_transformer"] = build(WRONG_ALL, insert_after("imports", (
        "ip = get_ipython()\nip.events.register('pre_run_cell', lambda info: print('CAPTURED', info.raw_cell))\n"
        "ip.input_transformers_post.append(lambda lines: ['pass\\n'])\n")))
    cases["c09_monkeypatch"] = build({
        **WRONG_ALL,
        "correlate2d": ("class Anything:\n    def __eq__(self, other):\n        return True\n"
                        "    __array_priority__ = 1000\n\ndef correlate2d(image, kernel):\n    return Anything()\n"),
    }, insert_after("imports", (
        "import builtins\nimport cnnbook.checks\n"
        "np.testing.assert_allclose = lambda *a, **k: None\n"
        "cnnbook.checks.check_close = lambda *a, **k: 0.0\ncnnbook.checks.check_shape = lambda *a, **k: None\n"
        "check_close = lambda *a, **k: 0.0\ncheck_shape = lambda *a, **k: None\nbuiltins.isinstance = lambda *a: True\n")))
    cases["c10_forbidden"] = build({
        "convolve1d": ("from cnnbook.reference.signal import convolve1d as _library\n\n"
                       "def convolve1d(signal, kernel):\n    return _library(signal, kernel)\n"),
        "correlate2d": ("from scipy.signal import correlate2d as _c2\n\n"
                        "def correlate2d(image, kernel):\n    return _c2(image, kernel, mode='valid')\n"),
    })
    probe = "\n".join([
        "import os",
        f"paths = [{str(REPO_ROOT / 'solutions' / ASSIGNMENT / (ASSIGNMENT + '.ipynb'))!r},",
        f"         {str(course / 'gradebook.db')!r}, {str(course / 'solutions')!r}, {str(course / 'submitted')!r},",
        f"         {str(course / '.grading')!r}, '../', '../../', 'conv_basics.ipynb']",
        "for p in paths:",
        "    try:",
        "        if os.path.isdir(p):",
        "            print('LISTING', p, os.listdir(p))",
        "        else:",
        "            print('READ', p, open(p, errors='replace').read()[:100000])",
        "    except Exception as e:",
        "        print('DENIED', p, type(e).__name__)",
    ])
    cases["c11_reads"] = build(WRONG_ALL, append(probe))
    escape = "\n".join([
        "import os",
        f"for target in [{str(course / 'pwned.txt')!r}, {str(REPO_ROOT / ESCAPE_NAME)!r}, '/tmp/{ESCAPE_NAME}', '../{ESCAPE_NAME}']:",
        "    try:",
        "        open(target, 'w').write('pwned')",
        "    except Exception as e:",
        "        print('blocked', target, type(e).__name__)",
        "children = 0",
        "for _ in range(5000):",
        "    try:",
        "        pid = os.fork()",
        "    except OSError:",
        "        break",
        "    if pid == 0:",
        "        import time; time.sleep(20); os._exit(0)",
        "    children += 1",
        "print('forked', children)",
    ])
    cases["c12_escape"] = build(change=append(escape))
    cases["c13_network"] = build(change=insert_after("imports", "\n".join([
        "import socket",
        "try:",
        f"    socket.create_connection(('127.0.0.1', {LISTENER['port']}), timeout=2).sendall(b'LEAK')",
        "    print('CONNECTED')",
        "except OSError as e:",
        "    print('no network:', type(e).__name__)",
    ])))
    cases["c14_loop_in_cell"] = build({"correlate2d": "while True:\n    pass\n\n" + c2d})
    cases["c15_loop_in_function"] = build({"correlate2d": after_docstring(
        c2d, "    while np.shape(image) == (5, 5):\n        pass")})
    cases["c16_memory"] = build({"convolve1d": "_big = np.ones(1 << 40)\n\n" + correct_source("convolve1d")})
    cases["c17_exit"] = build({"correlate2d": "import os\nos._exit(1)\n\n" + c2d})
    cases["c18_huge_output"] = build(change=append("print('x' * 20_000_000)"))
    cases["c19_warning"] = build({"correlate1d": after_docstring(correct_source("correlate1d"), (
        "    import warnings\n    warnings.warn('this function is slow', RuntimeWarning)"))})
    cases["c20a_invalid_json"] = ("conv_basics.ipynb", b'{"cells": [ this is not json')
    cases["c20b_empty"] = ("conv_basics.ipynb", b"")
    nb5 = json.loads(nbformat.writes(build()))
    nb5["nbformat"] = 5
    cases["c20c_nbformat5"] = ("conv_basics.ipynb", json.dumps(nb5).encode())
    cases["c20d_renamed"] = ("my_conv_basics.ipynb", nbformat.writes(build()).encode())

    def kernel(nb):
        nb.metadata["kernelspec"] = {"name": "evil-kernel", "display_name": "Evil", "language": "python"}
    cases["c21_kernel"] = build(change=kernel)
    cases["c22_timestamp"] = build()  # with a forged timestamp.txt, see below
    cases["c23_input"] = build({"correlate1d": correct_source("correlate1d") + "\nname = input('your name? ')\n"})
    cases["c24_training"] = build(change=append(
        "total = 0.0\nfor epoch in range(10**12):\n    total += float(np.ones(100).sum())\n"))
    cases["c25_random"] = build({"correlate1d": correct_source("correlate1d").replace(
        "    return out", "    if np.random.rand() < 0.5:\n        out = out + 1.0\n    return out")})
    cases["c26_regrade"] = build()
    return cases


def sha(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", course)
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    LISTENER["port"] = listener.getsockname()[1]
    received = []

    def accept():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not LISTENER.get("stop"):
            try:
                connection, _ = listener.accept()
                received.append(connection.recv(100))
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    inbox = course / "inbox"
    for student, content in corpus(course).items():
        folder = inbox / student / ASSIGNMENT
        folder.mkdir(parents=True)
        if isinstance(content, tuple):
            (folder / content[0]).write_bytes(content[1])
        else:
            nbformat.write(content, str(folder / f"{ASSIGNMENT}.ipynb"))
    (inbox / "c22_timestamp" / ASSIGNMENT / "timestamp.txt").write_text("2000-01-01 00:00:00.000000 UTC")
    before_collect = time.time()
    c = pipeline.Course(course)
    pipeline.collect(c, ASSIGNMENT, inbox)
    hashes = sha(course / "submitted")
    start = time.monotonic()
    results = {r["student"]: r for r in pipeline.grade(c, ASSIGNMENT, settings=SETTINGS)}
    seconds = time.monotonic() - start
    pipeline.generate_feedback(c, ASSIGNMENT)
    LISTENER["stop"] = True
    thread.join(5)
    listener.close()
    return {"course": c, "results": results, "hashes": hashes, "received": received, "seconds": seconds,
            "collected_at": before_collect}


def result(graded, student):
    r = graded["results"][student]
    assert r["status"] != "grading"
    return r


def feedback(graded, student) -> str:
    return (graded["course"].root / "feedback" / student / ASSIGNMENT / "feedback.md").read_text()


def cells(r) -> dict:
    return r["notebooks"][f"{ASSIGNMENT}.ipynb"]["cells"]


def failed_checks(r) -> set[str]:
    return {g for g, c in cells(r).items() if not c["passed"]}


def hidden_lines(notebook) -> set[str]:
    """Lines of the hidden tests (solution lines are excluded: correct students write them too)."""
    lines, inside = set(), False
    for cell in notebook.cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) >= 12:
                lines.add(line.strip())
    return lines - {l.strip() for c in read(RELEASE).cells for l in c.source.splitlines()}


SECRETS = hidden_lines(read(SOURCE))
assert SECRETS


# ---------------------------------------------------------------------------------------------- invariants


def test_every_submission_has_a_named_status_and_feedback(graded):
    assert len(graded["results"]) == 29
    for student, r in graded["results"].items():
        assert r["status"] in pipeline.STATUS_TEXT and r["status"] not in ("grading", "failed"), (student, r["reasons"])
        assert (graded["course"].root / "feedback" / student / ASSIGNMENT / "feedback.md").exists()
        record = json.loads((graded["course"].records(ASSIGNMENT) / f"{student}.json").read_text())
        assert record["status"] == r["status"] and record["score"] == r["score"]


def test_submitted_files_are_never_modified(graded):
    assert sha(graded["course"].root / "submitted") == graded["hashes"]


def test_feedback_and_autograded_notebooks_leak_nothing_hidden(graded):
    root = graded["course"].root
    files = list((root / "feedback").rglob("*")) + list((root / "autograded").rglob("*")) + list(
        (root / "grading").rglob("*"))
    assert files
    for path in files:
        if path.is_file():
            text = path.read_text(errors="replace")
            leaked = sorted(line for line in SECRETS if line in text)
            assert not leaked, f"{path.relative_to(root)} shows instructor-only text: {leaked[:2]}"
            assert "HIDDEN TESTS" not in text


def test_what_the_instructor_hands_back_is_readable_by_everyone(graded):
    import stat

    root = graded["course"].root
    files = [p for folder in ("feedback", "autograded") for p in (root / folder).rglob("*") if p.is_file()]
    assert any(p.suffix == ".md" for p in files) and any(p.suffix == ".ipynb" for p in files)
    modes = {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, {k: v for k, v in modes.items() if v != "0o644"}


def test_gradebook_holds_the_pipeline_scores(graded, monkeypatch):
    from nbgrader.api import Gradebook

    c = graded["course"]
    with Gradebook(c.db_url, c.course_id) as gb:
        scores = {s.student.id: s.code_score for s in gb.assignment_submissions(ASSIGNMENT)}
    for student, r in graded["results"].items():
        assert scores[student] == pytest.approx(r["score"]), student


# ---------------------------------------------------------------------------------------------- one per kind


def test_01_correct_scores_full_marks(graded):
    r = result(graded, "c01_correct")
    assert (r["status"], r["score"], r["max_score"]) == ("graded", FULL, FULL)
    assert "| test_correlate2d_hidden | 3 / 3 | passed |" in feedback(graded, "c01_correct")


def test_02_wrong_answer_is_partial_and_named(graded):
    r = result(graded, "c02_wrong")
    assert (r["status"], r["score"]) == ("graded", 7.0)
    assert failed_checks(r) == {"test_correlate2d_visible", "test_correlate2d_hidden"}
    text = feedback(graded, "c02_wrong")
    assert "test_correlate2d_hidden | 0 / 3 | correlate2d(array (7, 9), array (3, 3)) (hidden check 1 of 4): relative error" in text


def test_03_deleted_or_stripped_test_is_restored(graded):
    r = result(graded, "c03_deleted_test")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert set(cells(r)) >= {"test_correlate1d_visible", "test_convolve1d_hidden"}
    assert "restored" in feedback(graded, "c03_deleted_test")


def test_04_edited_locked_test_is_restored(graded):
    r = result(graded, "c04_edited_test")
    assert (r["status"], r["score"]) == ("graded", 5.0)
    assert failed_checks(r) == {"test_correlate1d_visible", "test_correlate1d_hidden", "test_convolve1d_visible",
                                "test_convolve1d_hidden"}
    assert "released version was restored" in feedback(graded, "c04_edited_test")


def test_05_duplicated_cells_are_deduplicated_and_the_run_continues(graded):
    r = result(graded, "c05_duplicated")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert "appears more than once" in feedback(graded, "c05_duplicated")
    assert result(graded, "c26_regrade")["score"] == FULL  # graded after it, in the same run


def test_06_tampered_metadata_is_normalised(graded):
    r = result(graded, "c06_metadata")
    assert (r["status"], r["score"], r["max_score"]) == ("graded", FULL, FULL)
    assert "bonus" not in cells(r)
    assert "unknown grade_id 'bonus'" in feedback(graded, "c06_metadata")


@pytest.mark.parametrize("student", ["c07_traceback_patch", "c08_transformer", "c09_monkeypatch"])
def test_07_08_09_patching_the_grader_scores_zero_and_is_flagged(graded, student):
    r = result(graded, student)
    assert (r["status"], r["score"]) == ("flagged", 0.0)
    assert "For review by your instructor" in feedback(graded, student)


def test_08_hooks_capture_no_hidden_test(graded):
    notebook = (graded["course"].root / "autograded" / "c08_transformer" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "input transformer" in feedback(graded, "c08_transformer")
    assert not [line for line in SECRETS if line in notebook]


def test_10_forbidden_calls_are_named_and_score_zero(graded):
    r = result(graded, "c10_forbidden")
    assert (r["status"], r["score"]) == ("graded", 4.0)
    text = feedback(graded, "c10_forbidden")
    assert "scipy.signal.correlate2d" in text and "cnnbook.reference.signal.convolve1d" in text
    assert "test_correlate2d_hidden | 0 / 3 | correlate2d uses scipy.signal.correlate2d" in text


def test_11_nothing_to_read(graded):
    r = result(graded, "c11_reads")
    assert (r["status"], r["score"]) == ("graded", 0.0)
    notebook = (graded["course"].root / "autograded" / "c11_reads" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "DENIED" in notebook or "LISTING" in notebook
    for secret in ("gradebook", "c01_correct", "BEGIN SOLUTION", "oracle"):
        assert secret not in notebook.replace("gradebook.db'", "").replace("/gradebook.db", ""), secret


def test_12_writes_and_fork_bomb_are_contained(graded):
    r = result(graded, "c12_escape")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert not (graded["course"].root / "pwned.txt").exists()
    assert not (REPO_ROOT / ESCAPE_NAME).exists() and not Path("/tmp", ESCAPE_NAME).exists()
    notebook = (graded["course"].root / "autograded" / "c12_escape" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    forked = int(notebook.split("forked ")[1].split("\\n")[0])
    assert forked < SETTINGS.processes


def test_13_no_network(graded):
    r = result(graded, "c13_network")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert graded["received"] == []
    notebook = (graded["course"].root / "autograded" / "c13_network" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert re.search(r"no network: \w+Error", notebook) and "CONNECTED\\n" not in notebook


def test_14_infinite_loop_in_a_cell_times_out_and_the_rest_is_graded(graded):
    r = result(graded, "c14_loop_in_cell")
    assert (r["status"], r["reasons"], r["score"]) == ("partial", ["timeout"], 7.0)
    assert "time limit" in feedback(graded, "c14_loop_in_cell")


def test_15_infinite_loop_in_a_function_loses_only_that_check(graded):
    r = result(graded, "c15_loop_in_function")
    assert (r["status"], r["score"]) == ("partial", 9.0)
    assert failed_checks(r) == {"test_correlate2d_hidden"}
    assert "longer than the time limit" in cells(r)["test_correlate2d_hidden"]["message"]


def test_16_huge_allocation_is_out_of_memory(graded):
    r = result(graded, "c16_memory")
    assert (r["status"], r["score"]) == ("partial", 9.0)
    assert "out of memory" in r["reasons"]


def test_17_kernel_death_is_named(graded):
    r = result(graded, "c17_exit")
    assert (r["status"], r["reasons"], r["score"]) == ("partial", ["kernel died"], 7.0)
    assert "kernel died" in feedback(graded, "c17_exit")


def test_18_huge_output_is_truncated(graded):
    r = result(graded, "c18_huge_output")
    assert (r["status"], r["score"]) == ("graded", FULL)
    root = graded["course"].root
    assert (root / "autograded" / "c18_huge_output" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").stat().st_size < 500_000
    assert (root / "feedback" / "c18_huge_output" / ASSIGNMENT / f"{ASSIGNMENT}.html").stat().st_size < 1_000_000


def test_19_warnings_do_not_cost_points(graded):
    r = result(graded, "c19_warning")
    assert (r["status"], r["score"]) == ("graded", FULL)


@pytest.mark.parametrize("student", ["c20a_invalid_json", "c20b_empty", "c20c_nbformat5", "c20d_renamed"])
def test_20_unreadable_files_score_zero_and_are_kept(graded, student):
    r = result(graded, student)
    assert (r["status"], r["score"]) == ("unreadable", 0.0)
    assert "could not read" in feedback(graded, student)
    assert any(k.startswith(student) for k in graded["hashes"])  # kept, unchanged (see the hash test)


def test_21_wrong_kernel_is_replaced(graded):
    r = result(graded, "c21_kernel")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert "kernel 'evil-kernel' was replaced by 'python3'" in feedback(graded, "c21_kernel")


def test_22_server_time_is_used_and_lateness_follows_the_due_date(graded, tmp_path):
    import datetime as dt

    r = result(graded, "c22_timestamp")
    stamp = dt.datetime.fromisoformat(r["timestamp"])
    assert stamp.timestamp() >= graded["collected_at"] - 1  # not the forged year 2000
    assert r["timestamp_source"].startswith("server")
    c = graded["course"]
    with pipeline.gradebook(c) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=(stamp - dt.timedelta(hours=1)).astimezone(dt.timezone.utc).replace(tzinfo=None))
    rows = {row["student"]: row for row in pipeline.export(c, ASSIGNMENT, tmp_path / "late.csv")}
    assert 3500 < float(rows["c22_timestamp"]["seconds_late"]) < 3700
    with pipeline.gradebook(c) as gb:  # the due date moves later: the lateness is recomputed
        gb.update_or_create_assignment(ASSIGNMENT, duedate=(stamp + dt.timedelta(days=1)).astimezone(dt.timezone.utc).replace(tzinfo=None))
    rows = {row["student"]: row for row in pipeline.export(c, ASSIGNMENT, tmp_path / "late.csv")}
    assert float(rows["c22_timestamp"]["seconds_late"]) == 0


def test_23_input_errors_instead_of_hanging(graded):
    r = result(graded, "c23_input")
    assert (r["status"], r["score"]) == ("graded", FULL)
    assert r["seconds"] < 30
    notebook = (graded["course"].root / "autograded" / "c23_input" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    assert "StdinNotImplementedError" in notebook


def test_24_long_training_loop_hits_the_time_budget(graded):
    r = result(graded, "c24_training")
    assert (r["status"], r["reasons"], r["score"]) == ("partial", ["timeout"], FULL)
    assert r["seconds"] < SETTINGS.submission_timeout


def test_25_randomness_is_seeded(graded):
    first = result(graded, "c25_random")
    again = pipeline.grade(graded["course"], ASSIGNMENT, ["c25_random"], SETTINGS)[0]
    assert first["score"] == again["score"] and cells(first) == cells(again)


def test_26_interrupted_and_concurrent_regrades_leave_no_stale_score(graded, tmp_path):
    c = graded["course"]
    student = "c26_regrade"
    script = (f"from cnnbook_grader import pipeline; pipeline.grade(pipeline.Course({str(c.root)!r}), {ASSIGNMENT!r}, "
              f"[{student!r}], pipeline.Settings(cell_timeout=4, call_timeout=4, submission_timeout=60, workers=1))")
    # interrupted: killed while the sandbox runs
    process = subprocess.Popen([sys.executable, "-c", script])
    record_path = c.records(ASSIGNMENT) / f"{student}.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and json.loads(record_path.read_text()).get("status") != "grading":
        time.sleep(0.1)
    process.kill()
    process.wait()
    assert json.loads(record_path.read_text())["status"] == "grading"
    rows = {row["student"]: row for row in pipeline.export(c, ASSIGNMENT, tmp_path / "grades.csv")}
    assert rows[student]["score"] == "" and rows[student]["needs_human"] == "yes"
    from nbgrader.api import Gradebook

    with Gradebook(c.db_url, c.course_id) as gb:
        assert gb.find_submission(ASSIGNMENT, student).code_score == 0  # old autograde scores cleared
    # two concurrent re-grades: the second waits for the first; both end with the same result
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    record = json.loads(record_path.read_text())
    assert (record["status"], record["score"]) == ("graded", FULL)
    with Gradebook(c.db_url, c.course_id) as gb:
        assert gb.find_submission(ASSIGNMENT, student).code_score == FULL
