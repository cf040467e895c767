"""A grading round for EVERY assignment in solutions/ (new assignments are covered automatically).

For each assignment, one pipeline run grades four submissions built from the release:

- ``correct``: the instructor's solutions in every answer cell -> full marks;
- ``wrong``: the same, with the first answer cell's functions returning perturbed values
  (derived generically: every array and number they return is scaled and shifted) -> a partial score;
- ``stub``: the release as it is -> zero;
- ``transformer``: ``wrong`` plus an IPython input transformer that turns every later cell into
  ``pass`` -> no more than ``wrong`` (the verdicts are computed outside the sandbox), and flagged.

It also proves that the test cells' code, hidden lines included, never enters the sandbox: every
job the sandbox receives is read before it starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import pipeline, sandbox
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, protected_lines, read
from cnnbook_grader.oracle import defined_functions
from cnnbook_grader.release import REPO_ROOT, assignments
from cnnbook_grader.static import analyse

pytestmark = [pytest.mark.slow, pytest.mark.notebooks,
              pytest.mark.skipif(not sandbox.available(), reason="needs bubblewrap (tools/system-packages.txt)")]

SETTINGS = pipeline.Settings(cell_timeout=120, call_timeout=120, submission_timeout=300, workers=2)

PERTURB = '''

def _perturbed(value):
    if isinstance(value, tuple):
        return tuple(_perturbed(v) for v in value)
    if isinstance(value, list):
        return [_perturbed(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    try:
        return value * 1.5 + 1
    except TypeError:
        return value


def _wrong(function):
    if isinstance(function, type):  # a module the student writes: its forward pass is perturbed
        original = function.forward

        def forward(self, *args, **kwargs):
            return _perturbed(original(self, *args, **kwargs))

        function.forward = forward
        return function

    def wrapper(*args, **kwargs):
        return _perturbed(function(*args, **kwargs))
    return wrapper


'''

TRANSFORMER = "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n"


def answer_cells(notebook) -> list:
    return [c for c in notebook.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution")]


def wrong_source(source: str) -> str:
    """The answer cell with each function it defines wrapped to return perturbed values."""
    names = defined_functions(source)
    assert names, "the first answer cell defines no function to perturb"
    return source + PERTURB + "".join(f"{name} = _wrong({name})\n" for name in names)


def submissions(assignment: str, notebook_name: str) -> dict[str, nbformat.NotebookNode]:
    source = read(REPO_ROOT / "solutions" / assignment / notebook_name)
    release = read(REPO_ROOT / "exercises" / assignment / notebook_name)
    correct = fill_solutions(release, source)
    wrong = fill_solutions(release, source)
    first = answer_cells(wrong)[0]
    first.source = wrong_source(first.source)
    transformer = nbformat.from_dict(json.loads(json.dumps(wrong)))
    index = next(i for i, c in enumerate(transformer.cells) if c is answer_cells(transformer)[0])
    transformer.cells.insert(index, nbformat.v4.new_code_cell(TRANSFORMER))
    return {"correct": correct, "wrong": wrong, "stub": release, "transformer": transformer}


@pytest.fixture(scope="module", params=assignments())
def graded(request, tmp_path_factory, monkeypatch_module):
    assignment = request.param
    course = tmp_path_factory.mktemp(f"course-{assignment}")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", course)
    shutil.copytree(REPO_ROOT / "solutions" / assignment, course / "solutions" / assignment)
    names = [p.name for p in sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb"))]
    for name in names:
        for student, notebook in submissions(assignment, name).items():
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, str(folder / name))
    jobs = []
    real_run = sandbox.run

    def spying_run(workdir, argv, limits, hide=()):
        jobs.append((Path(workdir) / "job.json").read_text())
        return real_run(workdir, argv, limits, hide)

    monkeypatch_module.setattr(sandbox, "run", spying_run)
    results = {r["student"]: r for r in pipeline.grade(pipeline.Course(course), assignment, settings=SETTINGS)}
    monkeypatch_module.setattr(sandbox, "run", real_run)
    return {"assignment": assignment, "course": course, "results": results, "jobs": jobs, "names": names}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def summary(r) -> str:
    """What went wrong, for the assertion message: the reasons (a grader error says which) and the failed checks."""
    return json.dumps({"status": r["status"], "reasons": r["reasons"],
                       "failed checks": {name: {g: c["message"] for g, c in nb["cells"].items() if not c["passed"]}
                                         for name, nb in r["notebooks"].items()}}, indent=1)[:3000]


def test_correct_solution_scores_full_marks(graded):
    r = graded["results"]["correct"]
    assert (r["status"], r["score"]) == ("graded", r["max_score"]), summary(r)
    assert r["max_score"] > 0
    for nb in r["notebooks"].values():
        assert not nb["flags"] and not nb["forbidden"], (nb["flags"], nb["forbidden"])


def test_wrong_submission_scores_partially(graded):
    r = graded["results"]["wrong"]
    assert r["status"] == "graded", (r["reasons"], [nb["flags"] for nb in r["notebooks"].values()])
    assert 0 < r["score"] < r["max_score"], summary(r)


def test_stub_scores_zero(graded):
    r = graded["results"]["stub"]
    assert r["score"] == 0, summary(r)


def test_an_input_transformer_earns_nothing_and_is_flagged(graded):
    r, wrong = graded["results"]["transformer"], graded["results"]["wrong"]
    assert r["status"] == "flagged"
    assert r["score"] <= wrong["score"]


def test_no_test_code_enters_the_sandbox(graded):
    assignment = graded["assignment"]
    secret = set()
    for name in graded["names"]:
        source = read(REPO_ROOT / "solutions" / assignment / name)
        secret |= protected_lines(source, kinds=("hidden",))
        # every test cell's code, visible checks included: the sandbox only runs the student's calls
        secret |= {line.strip() for c in source.cells if nbgrader_meta(c).get("grade") and c.cell_type == "code"
                   for line in c.source.splitlines() if len(line.strip()) >= 20 and "BEGIN" not in line}
    public = {line.strip() for name in graded["names"]  # answers, and the release's locked cells
              for c in read(REPO_ROOT / "solutions" / assignment / name).cells
              if c.cell_type == "code" and not nbgrader_meta(c).get("grade")
              for line in c.source.splitlines()}
    secret -= public
    assert graded["jobs"] and secret
    for job in graded["jobs"]:
        cells = json.loads(job)["cells"]
        text = "\n".join(c["source"] or "" for c in cells)
        leaked = sorted(line for line in secret if line in text)
        assert not leaked, f"test code in the sandbox's job: {leaked[:3]}"


def test_answer_cells_of_the_solutions_raise_no_alarm():
    """Static analysis of every correct and generically wrong submission: no tampering reported."""
    for assignment in assignments():
        for path in sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb")):
            for student, notebook in submissions(assignment, path.name).items():
                if student == "transformer":
                    continue
                cells = [(c.source, bool(nbgrader_meta(c).get("solution")) or not nbgrader_meta(c).get("grade_id"))
                         for c in notebook.cells if c.cell_type == "code" and not nbgrader_meta(c).get("grade")]
                report = analyse(cells)
                assert not report.tampering, (assignment, student, report.tampering)
