"""Grading throughput: the sandboxed pipeline against plain `nbgrader autograde`, same submissions, same run.

    .venv/bin/python benchmarks/bench_grading.py [--sizes 1 20 100] [--workers 1 2] [--no-nbgrader]

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

from cnnbook.grading import pipeline  # noqa: E402
from cnnbook.grading.notebooks import fill_solutions, nbgrader_meta, read  # noqa: E402
from cnnbook.grading.release import run_nbgrader  # noqa: E402

ASSIGNMENT = "conv_basics"


def make_course(root: Path, n: int) -> pipeline.Course:
    shutil.copy2(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    source = read(REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    release = read(REPO / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    first = [nbgrader_meta(c)["grade_id"] for c in source.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"][:1]
    for i in range(n):
        folder = root / "submitted" / f"student{i:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(fill_solutions(release, source, None if i % 2 == 0 else set(first)), str(folder / f"{ASSIGNMENT}.ipynb"))
    return pipeline.Course(root)


def time_pipeline(n: int, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        course = make_course(Path(scratch), n)
        # fixed cost: gradebook registration with the oracle already recorded (a run with no student)
        pipeline.grade(course, ASSIGNMENT, students=[], settings=pipeline.Settings(workers=workers))
        start = time.monotonic()
        pipeline.grade(course, ASSIGNMENT, students=[], settings=pipeline.Settings(workers=workers))
        fixed = time.monotonic() - start
        start = time.monotonic()
        results = pipeline.grade(course, ASSIGNMENT, settings=pipeline.Settings(workers=workers))
        wall = time.monotonic() - start
        bad = [r["student"] for r in results if r["status"] != "graded"]
        assert not bad, f"not graded: {bad}"
        return wall - fixed, fixed


def time_nbgrader(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-nbgrader-") as scratch:
        course = make_course(Path(scratch), n)
        result = run_nbgrader(["generate_assignment", ASSIGNMENT, "--force", "--log-level=WARN"], course.root)
        assert result.returncode == 0, result.stderr
        start = time.monotonic()
        result = run_nbgrader(["autograde", ASSIGNMENT, "--force", "--log-level=WARN"], course.root)
        wall = time.monotonic() - start
        assert result.returncode == 0, result.stderr[-2000:]
        return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nbgrader", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; notebook: {ASSIGNMENT} (1 notebook per submission)\n")
    print("| submissions | grader | workers | wall (s) | s / submission | submissions / min | speed-up |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    fixed_costs = []
    for n in args.sizes:
        base = None
        for workers in args.workers:
            wall, fixed = time_pipeline(n, workers)
            fixed_costs.append(fixed)
            base = base or wall
            print(f"| {n} | pipeline (sandboxed) | {workers} | {wall:.1f} | {wall / n:.2f} | {60 * n / wall:.0f} | "
                  f"{base / wall:.2f} |", flush=True)
        if not args.no_nbgrader:
            wall = time_nbgrader(n)
            print(f"| {n} | nbgrader autograde | 1 | {wall:.1f} | {wall / n:.2f} | {60 * n / wall:.0f} | |", flush=True)
    print(f"\nfixed cost per grading run (gradebook registration, cached oracle): "
          f"{min(fixed_costs):.1f}-{max(fixed_costs):.1f} s, not included above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
