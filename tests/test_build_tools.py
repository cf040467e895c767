"""The parallel book build (tools/build_book.py, _ext/cnnbook_parallel.py): its scheduling, its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "_ext"))

from cnnbook_parallel import EXECUTION_SECONDS, balanced_order  # noqa: E402
from sphinx.util.parallel import make_chunks  # noqa: E402


def chunk_loads(order, nproc, weights):
    return [sum(weights.get(d, 0) for d in chunk) for chunk in make_chunks(order, nproc)]


def test_the_book_order_spreads_the_executed_chapters_evenly_over_two_processes():
    chapters = sorted(EXECUTION_SECONDS)
    docnames = sorted(chapters + ["book/index", "book/exercises", "book/glossary", "book/references"]
                      + [f"exercises/e{i:02d}/e{i:02d}" for i in range(13)])
    order = balanced_order(docnames, set(chapters), 2, EXECUTION_SECONDS)
    assert sorted(order) == docnames  # a permutation: nothing lost, nothing added
    balanced = chunk_loads(order, 2, EXECUTION_SECONDS)
    total = sum(EXECUTION_SECONDS.values())
    # the two chunks that run at once share the time evenly (ideal: 50% each)
    assert max(balanced[:2]) <= 0.52 * total
    assert sum(balanced[2:]) == 0  # the chunk read last executes nothing


@pytest.mark.parametrize("seed", range(20))
def test_any_document_set_is_a_permutation_with_no_process_left_idle(seed):
    import random

    rng = random.Random(seed)
    n = rng.randint(6, 60)
    docnames = sorted(f"d{i:03d}" for i in range(n))
    executed = set(rng.sample(docnames, rng.randint(0, n)))
    weights = {d: rng.randint(1, 100) for d in executed if rng.random() < 0.8}  # some unknown: the median
    nproc = rng.choice([2, 3, 4])
    order = balanced_order(docnames, executed, nproc, weights)
    assert sorted(order) == docnames
    assert [len(c) for c in make_chunks(order, nproc)] == [len(c) for c in make_chunks(docnames, nproc)]


def test_every_chapter_with_code_has_an_execution_time_for_the_schedule():
    chapters = {f"book/{p.stem}" for p in (REPO / "book").glob("*.md") if "kernelspec:" in p.read_text()[:2000]}
    assert chapters == set(EXECUTION_SECONDS), "update EXECUTION_SECONDS in _ext/cnnbook_parallel.py"


@pytest.mark.parametrize("jobs, message", [("0", "--jobs must be at least 1"),
                                           ("x", "invalid int value")])
def test_build_book_rejects_a_bad_process_count(jobs, message):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "build_book.py"), "--jobs", jobs, "."],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_build_book_rejects_a_bad_book_jobs_variable():
    import os

    result = subprocess.run([sys.executable, str(REPO / "tools" / "build_book.py"), "."], capture_output=True,
                            text=True, cwd=REPO, env={**os.environ, "BOOK_JOBS": "two"})
    assert result.returncode != 0 and "BOOK_JOBS must be a whole number" in result.stderr, result.stderr


def test_slow_documents_bunched_in_alphabetical_order_are_split():
    docnames = [f"a{i}" for i in range(6)] + [f"z{i}" for i in range(6)]  # two chunks of six
    weights = {f"a{i}": 50 for i in range(6)}
    assert chunk_loads(docnames, 2, weights) == [300, 0]
    order = balanced_order(docnames, set(weights), 2, weights)
    assert chunk_loads(order, 2, weights) == [150, 150]
