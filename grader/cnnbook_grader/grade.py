"""``grade``: the orchestration, with a thread pool or a Dask cluster as the engine."""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from .collect import submission_time
from .course import Course, Settings, assignment_lock, mark_grading, write_result
from .gradebook import (
    gradebook,
    gradebook_mark_grading,
    gradebook_write,
    register_assignment,
)
from .oracle import oracle_for, per_student, student_seed
from .submission import grade_submission


def _run_jobs(jobs: list[dict], settings: Settings):
    """Yield results as they finish, from a thread pool or a Dask cluster."""
    workers = settings.workers or os.cpu_count() or 1
    if settings.engine == "dask":
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed

        cluster = None
        if settings.scheduler:
            client = Client(settings.scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            futures = [client.submit(grade_submission, job, pure=False, key=f"grade-{job['student']}") for job in jobs]
            for future in dask_completed(futures):
                yield future.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(grade_submission, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def grade(course: Course, assignment: str, students: list[str] | None = None, settings: Settings | None = None,
          progress=None) -> list[dict]:
    """Grade ``students`` (default: everyone in submitted/) and return their results."""
    settings = settings or Settings()
    course = course if isinstance(course, Course) else Course(course)
    sources = course.notebooks(assignment)
    if not sources:
        raise ValueError(f"no instructor notebook in {course.source}/{assignment}/")
    with assignment_lock(course, assignment), tempfile.TemporaryDirectory(prefix="cnnbook-grading-") as scratch:
        scratch = Path(scratch)
        os.chmod(scratch, 0o711)
        release = register_assignment(course, assignment, scratch / "release")
        # one shared recording, or (hidden checks that call hidden_rng) one per student, made by its worker
        oracles = {p.name: None if per_student(p) else str(oracle_for(p, course.oracle_cache(assignment)))
                   for p in sources}
        public_files = [{"path": str(p), "relative": str(p.relative_to(release))}
                        for p in release.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
        students = students if students is not None else course.students(assignment)
        (scratch / "work").mkdir()
        os.chmod(scratch / "work", 0o711)
        jobs = []
        with gradebook(course) as gb:
            for student in students:
                # the gradebook first: if this run dies between the two, neither place shows the old
                # score as current (export also treats a cleared gradebook entry as "grading")
                gradebook_mark_grading(gb, assignment, student)
                mark_grading(course, assignment, student)
                timestamp, origin = submission_time(course, assignment, student)
                jobs.append({
                    "student": student, "assignment": assignment, "timestamp": timestamp, "timestamp_source": origin,
                    "settings": asdict(settings) | {"scheduler": None}, "scratch": str(scratch / "work"), "book_url": course.book_url,
                    "hide": [str(course.root)], "public_files": public_files,
                    "notebooks": [{"notebook": p.name, "submitted": str(course.submitted(student, assignment) / p.name),
                                   "release": str(release / p.name), "source": str(p), "oracle": oracles[p.name],
                                   "oracle_cache": str(course.oracle_cache(assignment)),
                                   "seed": None if oracles[p.name] else student_seed(course.course_id, assignment,
                                                                                     student)}
                                  for p in sources],
                })
            results = []
            for result in _run_jobs(jobs, settings):
                write_result(course, result)
                gradebook_write(gb, result, course)
                results.append(result)
                if progress:
                    progress(result)
    return sorted(results, key=lambda r: r["student"])
