"""Build the book with Jupyter Book 1.x, executing chapters on several cores.

``jupyter-book build`` runs Sphinx with one process, so the chapters (which
MyST-NB executes while Sphinx reads them) run one after the other. Sphinx can
read documents in parallel processes, and every extension the book uses says it
is safe for that, but the 1.x command line offers no ``-j``. This wrapper runs
the same command with Sphinx's process count set:

    python tools/build_book.py [--jobs N] [jupyter-book build arguments ...]

``--jobs`` defaults to ``BOOK_JOBS`` from the environment, else the number of
CPUs (at most 4: a chapter trains small models, and more processes than cores
only add contention). ``--jobs 1`` is exactly ``jupyter-book build``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys


def default_jobs() -> int:
    value = os.environ.get("BOOK_JOBS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"BOOK_JOBS must be a whole number of processes, at least 1 (it is {value!r})")
        return int(value)
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--jobs", type=int, default=None, help="Sphinx reading processes (default: BOOK_JOBS or the CPUs)")
    known, rest = parser.parse_known_args(argv)
    jobs = known.jobs if known.jobs is not None else default_jobs()
    if jobs < 1:
        parser.error(f"--jobs must be at least 1 (it is {jobs})")

    # jsonschema (which Jupyter Book imports to check _config.yml) imports rfc3987_syntax when it is
    # installed (a dependency of jupyter-events) only to offer an "iri" format check, and that module
    # compiles 38 grammars at import: 8-20 s of every build, a no-op rebuild included. No schema
    # Jupyter Book checks uses that format, so the build does without it.
    sys.modules.setdefault("rfc3987_syntax", None)

    from jupyter_book import sphinx as jupyter_book_sphinx
    from jupyter_book.cli.main import main as jupyter_book

    # the build command imports build_sphinx from the module when it runs, so it gets this one
    jupyter_book_sphinx.build_sphinx = with_jobs(jupyter_book_sphinx.build_sphinx, jobs)
    print(f"tools/build_book.py: Sphinx reads the chapters with {jobs} process(es)", flush=True)
    return jupyter_book.main(["build", *rest], standalone_mode=False) or 0


def with_jobs(original, jobs: int):
    """``jupyter_book.sphinx.build_sphinx`` with Sphinx's ``parallel`` set to ``jobs``."""

    @functools.wraps(original)
    def build_sphinx(*args, **kwargs):
        kwargs.setdefault("jobs", jobs)
        return original(*args, **kwargs)

    return build_sphinx


if __name__ == "__main__":
    sys.exit(main())
