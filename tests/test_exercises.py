"""Properties every nbgrader assignment must have (new assignments are covered automatically).

a. exercises/ is exactly what `nbgrader generate_assignment` makes of solutions/ now;
b. the instructor notebook passes all its tests, hidden ones included;
c. the student version executes and fails only at its stubs (NotImplementedError);
d. no hidden-test text and no solution text appear anywhere in exercises/;
e. a correct fake submission autogrades to full marks and a partial one to a
   partial score through `nbgrader autograde`, and the feedback contains no
   hidden-test text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cnnbook_grader.notebooks import fill_solutions, graded_points, nbgrader_meta, protected_lines, read
from cnnbook_grader.release import REPO_ROOT, assignments, differences, generate, nbgrader_env, run_nbgrader

pytestmark = pytest.mark.notebooks

ASSIGNMENTS = assignments()


def notebooks_of(assignment: str) -> list[Path]:
    return sorted((REPO_ROOT / "solutions" / assignment).glob("*.ipynb"))


def execute(notebook, cwd: Path, allow_errors: bool):
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def errors_by_cell(notebook) -> list[tuple[int, dict, dict]]:
    return [
        (index, nbgrader_meta(cell), output)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def test_there_is_at_least_one_assignment():
    assert ASSIGNMENTS, "solutions/ holds no assignment"


@pytest.mark.slow
def test_exercises_are_generated_from_solutions(tmp_path):
    """a. Regenerating from solutions/ reproduces exercises/ byte for byte."""
    generated = generate(ASSIGNMENTS, tmp_path)
    problems = [f"{a}/{p}" for a in ASSIGNMENTS for p in differences(generated / a, REPO_ROOT / "exercises" / a)]
    extra = sorted(
        p.name for p in (REPO_ROOT / "exercises").iterdir() if p.is_dir() and p.name not in ASSIGNMENTS
    )
    assert not problems, f"exercises/ is out of sync (run `make exercises`): {problems}"
    assert not extra, f"exercises/ has assignments with no source in solutions/: {extra}"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_passes_all_tests(assignment):
    """b. The instructor version runs top to bottom without an error, hidden tests included."""
    for path in notebooks_of(assignment):
        notebook = read(path)
        hidden_cells = [c for c in notebook.cells if "BEGIN HIDDEN TESTS" in c.source]
        assert hidden_cells, f"{path.name} has no hidden tests"
        execute(notebook, path.parent, allow_errors=False)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_fails_only_at_stubs(assignment):
    """c. Every error in the student version is the stub's NotImplementedError, raised in a test cell."""
    for path in sorted((REPO_ROOT / "exercises" / assignment).glob("*.ipynb")):
        notebook = execute(read(path), path.parent, allow_errors=True)
        errors = errors_by_cell(notebook)
        assert errors, f"{path.name}: the student version raised nothing, so its stubs are not stubs"
        for index, meta, output in errors:
            assert output["ename"] == "NotImplementedError", (
                f"{path.name} cell {index} ({meta.get('grade_id')}) fails with {output['ename']}: {output['evalue']}"
            )
            assert meta.get("grade"), f"{path.name} cell {index} is not a test cell but raised"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nothing_hidden_leaks_into_exercises(assignment):
    """d. No solution or hidden-test line, and no marker, appears anywhere in exercises/."""
    secret = set()
    for path in notebooks_of(assignment):
        secret |= protected_lines(read(path))
    assert secret, "found no solution or hidden-test text to look for"
    for released in (REPO_ROOT / "exercises").rglob("*"):
        if released.is_file():
            text = released.read_text(errors="replace")
            leaked = sorted(line for line in secret if line in text)
            assert not leaked, f"{released} contains instructor-only text: {leaked[:3]}"
            for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
                assert marker not in text, f"{released} contains the marker {marker!r}"


def make_course(tmp_path: Path, assignment: str) -> Path:
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", course)
    shutil.copytree(REPO_ROOT / "solutions" / assignment, course / "solutions" / assignment)
    result = run_nbgrader(["generate_assignment", assignment, "--force"], course)
    assert result.returncode == 0, result.stderr
    return course


def submit(course: Path, assignment: str, student: str, grade_ids: set[str] | None) -> None:
    for source_path in notebooks_of(assignment):
        release = read(course / "exercises" / assignment / source_path.name)
        submission = fill_solutions(release, read(source_path), grade_ids)
        target = course / "submitted" / student / assignment / source_path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(submission, str(target))


def code_scores(course: Path, assignment: str, monkeypatch) -> dict[str, tuple[float, float]]:
    """(code score, max code score) per student, read from the gradebook through nbgrader's API."""
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", nbgrader_env()["PATH"])  # nbgrader runs `alembic` from PATH
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "cnnbook") as gradebook:
        return {
            s.student.id: (s.code_score, s.max_code_score)
            for s in gradebook.assignment_submissions(assignment)
        }


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_round_trip(tmp_path, assignment, monkeypatch):
    """e. Full marks for a correct submission, a partial score for a partial one, no leak in feedback."""
    course = make_course(tmp_path, assignment)
    first_source = read(notebooks_of(assignment)[0])
    solution_ids = [
        nbgrader_meta(c)["grade_id"] for c in first_source.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"
    ]
    submit(course, assignment, "correct", None)
    submit(course, assignment, "partial", set(solution_ids[:1]))

    result = run_nbgrader(["autograde", assignment, "--force"], course)
    assert result.returncode == 0, result.stdout + result.stderr
    scores = code_scores(course, assignment, monkeypatch)
    max_code = sum(sum(graded_points(read(p)).values()) for p in notebooks_of(assignment))
    assert scores["correct"] == (pytest.approx(max_code), pytest.approx(max_code))
    partial, maximum = scores["partial"]
    assert 0 < partial < maximum, f"partial submission scored {partial} of {maximum}"

    result = run_nbgrader(["generate_feedback", assignment, "--force"], course)
    assert result.returncode == 0, result.stdout + result.stderr
    # hidden tests only: the feedback shows each student's own code, and a correct
    # submission's code is the solution
    secret = set().union(*(protected_lines(read(p), kinds=("hidden",)) for p in notebooks_of(assignment)))
    feedback_files = list((course / "feedback").rglob("*.html"))
    assert len(feedback_files) == 2 * len(notebooks_of(assignment))
    for feedback in feedback_files:
        text = feedback.read_text()
        leaked = sorted(line for line in secret if line in text)
        assert not leaked, f"{feedback.relative_to(course)} shows hidden text: {leaked[:3]}"
        assert "HIDDEN TESTS" not in text
    partial_feedback = next(f for f in feedback_files if "partial" in f.parts).read_text()
    assert "NotImplementedError" in partial_feedback, "feedback should tell the student which check failed"
