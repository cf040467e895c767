"""Reading (so executing) the chapters in several processes: ``tools/build_book.py --jobs N``.

Loaded by _config.yml (`sphinx: local_extensions:`). Two things Sphinx needs:

- Every extension must declare that it is safe for parallel reading, or Sphinx falls back
  to one process. Two that Jupyter Book 1.x loads declare nothing; both were checked by
  reading their code (versions pinned in requirements.txt) and are declared here.
- Sphinx hands each process a contiguous chunk of the sorted documents, so in alphabetical
  order the slow chapters bunch up. Before reading, the documents are reordered so that the
  chapters MyST-NB will execute are spread over the chunks, longest first, by the execution
  times in ``EXECUTION_SECONDS`` (cold, measured on the 2-core CI machine; a chapter not listed
  counts as the median). The order only balances the work: any order builds the same book.
"""

from __future__ import annotations

import statistics
from pathlib import Path

#: - sphinx_multitoc_numbering 0.1.3 only replaces ``TocTreeCollector.assign_section_numbers``,
#:   installed at set-up in every process and run once, after reading, in the main process;
#: - sphinx_jupyterbook_latex 1.0.0 adds nodes and document transforms that change only the
#:   document being read (no shared environment state), and LaTeX settings at start-up.
PARALLEL_SAFE_UNDECLARED = ("sphinx_multitoc_numbering", "sphinx_jupyterbook_latex")

#: cold execution time of each chapter in seconds (BOOK_JOBS=1 make book, 2-core machine, 2026-12-02)
EXECUTION_SECONDS = {
    "book/why_convolutions": 17, "book/convolution_basics": 11, "book/convolution_arithmetic": 15,
    "book/pooling": 13, "book/backprop_conv": 18, "book/normalization": 33, "book/training": 50,
    "book/classic_cnns": 33, "book/resnet": 49, "book/efficient_cnns": 28, "book/transfer": 74,
    "book/detection": 57,
}


def _declare_parallel_safe(app, config) -> None:
    for name in PARALLEL_SAFE_UNDECLARED:
        extension = app.extensions.get(name)
        if extension is not None and extension.parallel_read_safe is None:
            extension.parallel_read_safe = True
            extension.parallel_write_safe = True


def _executes(app, docname: str) -> bool:
    """Whether MyST-NB will run this document: a MyST notebook (it names a kernel) outside exercises/."""
    if docname.startswith("exercises/"):
        return False
    path = Path(app.srcdir) / f"{docname}.md"
    try:
        head = path.read_text(encoding="utf-8")[:2000]
    except OSError:
        return False
    return "kernelspec:" in head


def balanced_order(docnames: list[str], executed: set[str], nproc: int, weights: dict[str, float]) -> list[str]:
    """``docnames`` reordered so Sphinx's contiguous chunks share the executed documents' time evenly."""
    from sphinx.util.parallel import make_chunks

    sizes = [len(chunk) for chunk in make_chunks(list(docnames), nproc)]
    lanes = min(nproc, len(sizes))
    known = [weights[d] for d in executed if d in weights] or [1.0]
    default = statistics.median(known)
    slots: list[list[str]] = [[] for _ in sizes]
    load = [0.0] * len(sizes)
    for doc in sorted(executed, key=lambda d: (-weights.get(d, default), d)):
        open_lanes = [i for i in range(lanes) if len(slots[i]) < sizes[i]] or \
                     [i for i in range(len(sizes)) if len(slots[i]) < sizes[i]]
        lane = min(open_lanes, key=lambda i: load[i])
        slots[lane].append(doc)
        load[lane] += weights.get(doc, default)
    rest = iter(d for d in docnames if d not in executed)
    for i, size in enumerate(sizes):
        while len(slots[i]) < size:
            slots[i].append(next(rest))
    return [doc for chunk in slots for doc in chunk]


def _balance(app, env, docnames: list[str]) -> None:
    if getattr(app, "parallel", 0) <= 1 or len(docnames) <= 5:
        return
    executed = {d for d in docnames if _executes(app, d)}
    docnames[:] = balanced_order(docnames, executed, app.parallel, EXECUTION_SECONDS)


def setup(app):
    app.connect("config-inited", _declare_parallel_safe)
    app.connect("env-before-read-docs", _balance)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
