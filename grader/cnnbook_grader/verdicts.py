"""Judging a submission outside the sandbox: static analysis of answer cells, and the trusted replay workers
that run the instructor's checks on the values the sandbox wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from .notebooks import nbgrader_meta
from .static import FORBIDDEN, analyse, matches


def judge_code(notebook, test_cells: dict):
    """The static analysis of a normalised notebook: (report, {function: forbidden names it uses}).

    Only the answer cells (and cells the student added) are judged, with the locked cells' imports and
    helpers in view. A function is reported when it uses a name that a check calling it forbids (the
    names that check passed to ``forbid_calls``, recorded with the oracle).
    """
    cells_for_analysis = [(c.source, _is_answer(c)) for c in notebook.cells if c.cell_type == "code"
                          and not nbgrader_meta(c).get("grade")]
    cell_forbid = {g: c.get("forbid") or [] for g, c in test_cells.items()}
    report = analyse(cells_for_analysis, forbidden=set(FORBIDDEN).union(*cell_forbid.values()))
    # a function breaks the rules when it uses a name that a check calling it forbids (its forbid_calls)
    breaches: dict[str, dict[str, list[str]]] = {}  # grade_id -> function -> names
    for grade_id, info in test_cells.items():
        for function in sorted({c["name"] for c in info["calls"] if c.get("name")}):
            hits = [u for u in report.forbidden.get(function, []) if matches(u, cell_forbid[grade_id])]
            if hits:
                breaches.setdefault(grade_id, {})[function] = hits
    forbidden: dict[str, set[str]] = {}
    for per_function in breaches.values():
        for function, hits in per_function.items():
            forbidden.setdefault(function, set()).update(hits)
    return report, {f: sorted(v) for f, v in forbidden.items()}


def _is_answer(cell) -> bool:
    """A cell the student wrote: an answer cell, or one they added (no grading metadata)."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("solution")) or not meta.get("grade_id")


class _WorkerDied(RuntimeError):
    """A replay worker ended without answering."""


class _ReplayWorkers:
    """Trusted replay workers (``python -m cnnbook_grader.replay --serve``), started on demand and reused.

    They only ever run the instructor's notebook and read plain data written by a sandbox; no student
    code runs in them, so one worker serves many students (torch is imported once per worker).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen] = []
        self.alive = 0

    def warm(self) -> None:
        """Start a worker ahead of need (it loads its imports while a sandbox runs), up to one per core."""
        with self.lock:
            if self.alive < (os.cpu_count() or 1):
                self.idle.append(self._start())
                self.alive += 1

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cnnbook_grader.replay", "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"})

    def run(self, request: dict, timeout: float) -> dict:
        """The verdicts for ``request``. A worker that dies (it runs only trusted code, so the cause is
        the machine, not the submission) is replaced and asked once more; a time-out is not retried."""
        try:
            return self._ask(request, timeout)
        except _WorkerDied:
            return self._ask(request, timeout)

    def _ask(self, request: dict, timeout: float) -> dict:
        with self.lock:
            worker = self.idle.pop() if self.idle else None
        if worker is None or worker.poll() is not None:
            with self.lock:
                if worker is None:
                    self.alive += 1
            worker = self._start()
        answer: list = []
        reader = threading.Thread(target=lambda: answer.append(worker.stdout.readline()), daemon=True)
        try:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
            reader.start()
            reader.join(timeout)
        except OSError:  # the worker is gone: its pipe is closed
            answer.append("")
        if not answer or not answer[0]:
            died = bool(answer)  # an empty line is the end of its output: it ended; no line at all: time-out
            worker.kill()
            worker.wait()
            with self.lock:
                self.alive -= 1
            if died:
                raise _WorkerDied("the replay of the checks stopped (its worker died twice)")
            raise RuntimeError(f"the replay of the checks ran past its time limit ({timeout:.0f} s)")
        with self.lock:
            self.idle.append(worker)
        reply = json.loads(answer[0])
        if "error" in reply:
            raise RuntimeError(f"the replay of the checks failed:\n{reply['error']}")
        return reply["verdicts"]


_REPLAY = _ReplayWorkers()


def _has_code(source: str) -> bool:
    """Whether ``source`` holds anything but blank lines and comments."""
    return any(line.strip() and not line.strip().startswith("#") for line in source.splitlines())


def replay_checks(source, oracle_dir: Path, results_dir: Path, statuses: dict, visible: set, timeout: float) -> dict:
    """The verdicts, computed by :func:`cnnbook_grader.replay.replay` in a trusted worker process."""
    return _REPLAY.run({"source": str(source), "oracle": str(oracle_dir), "results": str(results_dir),
                        "statuses": statuses, "visible": sorted(visible)}, timeout)
