"""Grading throughput: the sandboxed pipeline against plain `nbgrader autograde`, same submissions, same run.

    .venv/bin/python benchmarks/bench_grading.py [--assignment conv_basics ...] [--sizes 1 20 100] [--workers 1 2] [--no-nbgrader]

For each number of fake submissions (half correct, half partial, built from the
instructor solution with ``fill_solutions``) it grades a fresh scratch course
with the pipeline at each worker count, and with ``nbgrader autograde`` (one
process, no isolation). Prints a Markdown table: wall time, seconds per
submission (steady state: wall / n), throughput and the speed-up over one
worker. The per-run fixed cost (registering the assignment in the gradebook,
recording the oracle) is reported separately.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from cnnbook_grader import pipeline  # noqa: E402
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read  # noqa: E402
from cnnbook_grader.release import run_nbgrader  # noqa: E402


def make_course(root: Path, n: int, assignment: str) -> pipeline.Course:
    shutil.copy2(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    source = read(REPO / "solutions" / assignment / f"{assignment}.ipynb")
    release = read(REPO / "exercises" / assignment / f"{assignment}.ipynb")
    first = [nbgrader_meta(c)["grade_id"] for c in source.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"][:1]
    for i in range(n):
        folder = root / "submitted" / f"student{i:03d}" / assignment
        folder.mkdir(parents=True)
        nbformat.write(fill_solutions(release, source, None if i % 2 == 0 else set(first)), str(folder / f"{assignment}.ipynb"))
    return pipeline.Course(root)


def time_pipeline(n: int, workers: int, assignment: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        course = make_course(Path(scratch), n, assignment)
        # fixed cost: gradebook registration with the oracle already recorded (a run with no student)
        pipeline.grade(course, assignment, students=[], settings=pipeline.Settings(workers=workers))
        start = time.monotonic()
        pipeline.grade(course, assignment, students=[], settings=pipeline.Settings(workers=workers))
        fixed = time.monotonic() - start
        start = time.monotonic()
        results = pipeline.grade(course, assignment, settings=pipeline.Settings(workers=workers))
        wall = time.monotonic() - start
        bad = [r["student"] for r in results if r["status"] != "graded"]
        assert not bad, f"not graded: {bad}"
        return wall - fixed, fixed


def time_nbgrader(n: int, assignment: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-nbgrader-") as scratch:
        course = make_course(Path(scratch), n, assignment)
        result = run_nbgrader(["generate_assignment", assignment, "--force", "--log-level=WARN"], course.root)
        assert result.returncode == 0, result.stderr
        start = time.monotonic()
        result = run_nbgrader(["autograde", assignment, "--force", "--log-level=WARN"], course.root)
        wall = time.monotonic() - start
        assert result.returncode == 0, result.stderr[-2000:]
        return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", nargs="+", default=["conv_basics"], help="assignments in solutions/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nbgrader", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; 1 notebook per submission\n")
    print("| assignment | submissions | grader | workers | wall (s) | s / submission | submissions / min | speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    fixed_costs = []
    for assignment in args.assignment:
        for n in args.sizes:
            base = None
            for workers in args.workers:
                wall, fixed = time_pipeline(n, workers, assignment)
                fixed_costs.append(fixed)
                base = base or wall
                print(f"| {assignment} | {n} | pipeline (sandboxed) | {workers} | {wall:.1f} | {wall / n:.2f} | "
                      f"{60 * n / wall:.0f} | {base / wall:.2f} |", flush=True)
            if not args.no_nbgrader:
                wall = time_nbgrader(n, assignment)
                print(f"| {assignment} | {n} | nbgrader autograde | 1 | {wall:.1f} | {wall / n:.2f} | "
                      f"{60 * n / wall:.0f} | |", flush=True)
    print(f"\nfixed cost per grading run (gradebook registration, cached oracle): "
          f"{min(fixed_costs):.1f}-{max(fixed_costs):.1f} s, not included above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
