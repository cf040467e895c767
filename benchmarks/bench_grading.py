"""Grading throughput: the sandboxed pipeline against plain `nbgrader autograde`, same submissions, same run.

    .venv/bin/python benchmarks/bench_grading.py [--assignment conv_basics ...] [--sizes 1 20 100] [--workers 1 2] [--no-nbgrader]

For each number of fake submissions (half correct, half partial, built from the
instructor solution with ``fill_solutions``) it grades a fresh scratch course
with the pipeline at each worker count, and with ``nbgrader autograde`` (one
process, no isolation). Prints a Markdown table: wall time, seconds per
submission (steady state: wall / n), throughput and the speed-up over one
worker. The per-run fixed cost (registering the assignment in the gradebook,
recording the oracle) is reported separately.

Course scale, one command (issue 14):

    .venv/bin/python benchmarks/bench_grading.py --course --students 200 [--workers 2]

grades every part I assignment for ``--students`` fake students, one assignment
after the other as an instructor would, and reports for each the wall time, the
seconds per notebook in steady state (the rate between the 10th percentile of
finished submissions and the last one, so the pool's start and the oracle's
recording are left out) and the peak memory of the grader's whole process tree
(sampled every 0.2 s: the grader, its replay workers, every sandbox and kernel).
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

PART_ONE = ["conv_basics", "conv_arithmetic", "conv_forward", "conv_backward", "normalization", "training"]


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


class PeakMemory:
    """The largest summed resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # it ended between the listing and the reading
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def grade_course(students: int, workers: int, assignments: list[str]) -> int:
    """Every assignment graded for ``students`` fake students; prints one row per assignment and a total."""
    print(f"machine: {os.cpu_count()} cores; {students} students x {len(assignments)} assignments, "
          f"{workers} workers, sandboxed\n")
    print("| assignment | notebooks | wall (s) | steady s / notebook | peak memory (MiB) | status |")
    print("|---|---:|---:|---:|---:|---|")
    total_wall, total_n, peaks = 0.0, 0, []
    for assignment in assignments:
        with tempfile.TemporaryDirectory(prefix="bench-course-") as scratch:
            course = make_course(Path(scratch), students, assignment)
            finished: list[float] = []
            start = time.monotonic()
            with PeakMemory() as memory:
                results = pipeline.grade(course, assignment, settings=pipeline.Settings(workers=workers),
                                         progress=lambda r: finished.append(time.monotonic()))
            wall = time.monotonic() - start
        first = finished[len(finished) // 10] if len(finished) > 1 else start
        steady = (finished[-1] - first) / max(1, len(finished) - 1 - len(finished) // 10)
        statuses = {}
        for r in results:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        total_wall, total_n = total_wall + wall, total_n + len(results)
        peaks.append(memory.peak)
        print(f"| {assignment} | {len(results)} | {wall:.0f} | {steady:.2f} | {memory.peak / 2**20:.0f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))} |", flush=True)
    print(f"| all | {total_n} | {total_wall:.0f} | {total_wall / max(1, total_n):.2f} (mean, wall / notebooks) | "
          f"{max(peaks) / 2**20:.0f} | |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", nargs="+", default=["conv_basics"], help="assignments in solutions/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nbgrader", action="store_true")
    parser.add_argument("--course", action="store_true",
                        help="course scale: every part I assignment (or --assignment ...) for --students students")
    parser.add_argument("--students", type=int, default=200, help="with --course: how many students")
    args = parser.parse_args()
    if args.course:
        chosen = args.assignment if "--assignment" in sys.argv else PART_ONE
        return grade_course(args.students, max(args.workers) if "--workers" in sys.argv else 2, chosen)
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
