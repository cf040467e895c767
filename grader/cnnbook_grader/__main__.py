"""Instructor commands: ``python -m cnnbook_grader {collect,grade,feedback,export,similarity,status} ...``.

Run them from the course folder (the one holding nbgrader_config.py), or pass
``--course``. Stock ``nbgrader`` commands keep working on the same folders and
gradebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import pipeline, similarity


def _settings(args) -> pipeline.Settings:
    return pipeline.Settings(
        cell_timeout=args.cell_timeout, call_timeout=args.call_timeout, submission_timeout=args.timeout,
        memory_bytes=int(args.memory_gib * 2**30), workers=args.workers, engine=args.engine, scheduler=args.scheduler,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnbook_grader", description=__doc__.splitlines()[0])
    parser.add_argument("--course", default=".", help="the course folder (default: the current folder)")
    parser.add_argument("--db", default="", help="gradebook URL (default: nbgrader_config.py, else sqlite:///gradebook.db)")
    commands = parser.add_subparsers(dest="command", required=True)

    c = commands.add_parser("collect", help="copy submissions from a folder or an LMS zip export into submitted/")
    c.add_argument("assignment")
    c.add_argument("source", type=Path, help="folder of <student>/ sub-folders, or a .zip export")

    g = commands.add_parser("grade", help="validate, sandbox and grade every submission; update the gradebook")
    g.add_argument("assignment")
    g.add_argument("--student", action="append", help="grade only this student (repeatable)")
    g.add_argument("--workers", type=int, default=0, help="parallel sandboxes (default: one per CPU core)")
    g.add_argument("--engine", choices=["threads", "dask"], default="threads")
    g.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local cluster)")
    g.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per notebook cell (default 60)")
    g.add_argument("--call-timeout", type=float, default=30.0, help="seconds per graded function call (default 30)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook in all (default 600)")
    g.add_argument("--memory-gib", type=float, default=4.0, help="address space per process (default 4 GiB)")

    f = commands.add_parser("feedback", help="feedback/<student>/<assignment>/: nbgrader's HTML and the grader's report")
    f.add_argument("assignment")

    e = commands.add_parser("export", help="grades as CSV: status, score, lateness, who needs a human")
    e.add_argument("assignment")
    e.add_argument("-o", "--output", type=Path, default=None, help="default: grades-<assignment>.csv")

    m = commands.add_parser("similarity", help="pairs of submissions with unusually alike answer code (an HTML report)")
    m.add_argument("assignment")
    m.add_argument("--threshold", type=float, default=similarity.THRESHOLD,
                   help=f"flag pairs whose score (shared fingerprints / the smaller count) is at least this "
                        f"(default {similarity.THRESHOLD})")
    m.add_argument("--min-shared", type=int, default=similarity.MIN_SHARED,
                   help=f"and that share at least this many fingerprints (default {similarity.MIN_SHARED})")
    m.add_argument("-k", type=int, default=similarity.K, help=f"tokens per k-gram (default {similarity.K})")
    m.add_argument("-w", type=int, default=similarity.W, help=f"winnowing window (default {similarity.W})")
    m.add_argument("--common", type=float, default=similarity.COMMON_FRACTION,
                   help="ignore fingerprints more than this fraction of submissions hold "
                        f"(default {similarity.COMMON_FRACTION})")
    m.add_argument("-o", "--output", type=Path, default=None, help="default: similarity-<assignment>.html")

    s = commands.add_parser("status", help="one line per submission from the grading records")
    s.add_argument("assignment")

    args = parser.parse_args(argv)
    course = pipeline.Course(Path(args.course), db_url=args.db)
    if args.command == "collect":
        students = pipeline.collect(course, args.assignment, args.source)
        print(f"collected {len(students)} submission(s) of {args.assignment} into submitted/: {', '.join(students)}")
        return 0
    if args.command == "grade":
        settings = _settings(args)

        def show(result):
            score = "-" if result["score"] is None else f"{result['score']:g}/{result['max_score']:g}"
            reasons = f" ({'; '.join(result['reasons'])})" if result["reasons"] else ""
            print(f"{result['student']:<20} {pipeline.STATUS_TEXT[result['status']]:<20} {score:>8}  "
                  f"{result['seconds']:.1f}s{reasons}", flush=True)

        results = pipeline.grade(course, args.assignment, args.student, settings, progress=show)
        counts = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        print("summary: " + ", ".join(f"{n} {pipeline.STATUS_TEXT[s]}" for s, n in sorted(counts.items())))
        review = [r["student"] for r in results if r["status"] in ("flagged", "unreadable", "failed")]
        if review:
            print("needs a human: " + ", ".join(review))
        return 0
    if args.command == "feedback":
        written = pipeline.generate_feedback(course, args.assignment)
        print(f"wrote feedback for {len(written)} student(s) under feedback/")
        return 0
    if args.command == "export":
        output = args.output or course.root / f"grades-{args.assignment}.csv"
        rows = pipeline.export(course, args.assignment, output)
        print(f"wrote {len(rows)} row(s) to {output}")
        return 0
    if args.command == "similarity":
        report = pipeline.similarity(course, args.assignment, output=args.output, threshold=args.threshold,
                                     k=args.k, w=args.w, common_fraction=args.common, min_shared=args.min_shared)
        print(similarity.text_table(report))
        return 0
    if args.command == "status":
        for path in sorted(course.records(args.assignment).glob("*.json")):
            record = pipeline.read_record(course, args.assignment, path.stem)
            score = "-" if record.get("score") is None else f"{record['score']:g}/{record.get('max_score', 0):g}"
            print(f"{path.stem:<20} {pipeline.STATUS_TEXT.get(record['status'], record['status']):<40} {score}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
