"""Per-student oracle recordings from a warm process (``python -m cnnbook_grader.recorder``).

A notebook whose hidden checks draw per-student inputs (``hidden_rng``) is recorded once per
student. In a fresh interpreter each recording pays Python's start-up and the import of torch,
IPython and nbformat again, which is most of its time. This server imports them once and forks
one child per recording: the child starts from the warm parent's memory, records in its own
process (its own namespace, environment, working directory and random generators, set up by
:func:`cnnbook_grader.oracle.record` exactly as in a fresh interpreter started with the same
``PYTHONHASHSEED``), writes the oracle folder and exits, so nothing one recording does reaches
the next. Only instructor notebooks are recorded here, never a student's code.

Protocol: one JSON request a line on stdin (``source``, ``outdir``, ``seed``, ``log``), one JSON
answer a line on stdout (``status``: the child's exit code). What the recording prints goes to
``log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from cnnbook.checks import HIDDEN_SEED_VARIABLE


def serve() -> int:
    import traceback

    import IPython.core.interactiveshell  # noqa: F401 - the imports a recording needs, loaded once
    import nbformat  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import cnnbook.checks  # noqa: F401

    from .oracle import record

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    sys.stdout = open(os.devnull, "w")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one recording, then gone
            code = 1
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                os.environ[HIDDEN_SEED_VARIABLE] = str(int(request["seed"]))
                record(Path(request["source"]), Path(request["outdir"]))
                code = 0
            except BaseException:  # noqa: BLE001 - reported through the exit code and the log
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
    return 0


class _Recorders:
    """Warm recording servers, started on demand (one per grading thread at a time) and reused."""

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen] = []

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cnnbook_grader.recorder"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"})

    def record(self, source_path: Path, outdir: Path, seed: int) -> None:
        """Record ``source_path`` with the student's ``seed`` into ``outdir``; raise RuntimeError on failure."""
        with self.lock:
            server = self.idle.pop() if self.idle else None
        if server is None or server.poll() is not None:
            server = self._start()
        log = Path(f"{outdir}.log")
        request = {"source": str(source_path), "outdir": str(outdir), "seed": int(seed), "log": str(log)}
        try:
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            answer = server.stdout.readline()
        except OSError:
            answer = ""
        output = log.read_text(errors="replace")[-6000:] if log.exists() else ""
        log.unlink(missing_ok=True)
        if not answer:
            server.kill()
            server.wait()
            raise RuntimeError(f"the oracle recorder stopped while recording {source_path}:\n{output}")
        with self.lock:
            self.idle.append(server)
        if json.loads(answer)["status"] != 0:
            raise RuntimeError(f"recording the oracle of {source_path} (seed {seed}) failed:\n{output}")


RECORDERS = _Recorders()


def record_into(source_path: Path, outdir: Path, seed: int | None) -> None:
    """Record the instructor notebook into ``outdir``: the shared recording (``seed`` None) in a fresh
    interpreter, a student's (their seed) in a child of a warm recorder. Raises RuntimeError on failure."""
    if seed is not None:
        RECORDERS.record(source_path, outdir, seed)
        return
    process = subprocess.run([sys.executable, "-m", "cnnbook_grader.oracle", str(source_path), str(outdir)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg", HIDDEN_SEED_VARIABLE: "0"})
    if process.returncode != 0:
        raise RuntimeError(f"recording the oracle of {source_path} failed:\n{process.stdout}\n{process.stderr}")


if __name__ == "__main__":
    sys.exit(serve())
