"""The grader's long-lived trusted workers: the warm oracle recorder (recorder.py) and the replay workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import verdicts
from cnnbook_grader.recorder import RECORDERS
from cnnbook_grader.release import REPO_ROOT

pytestmark = pytest.mark.slow


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_warm_recording_is_the_fresh_interpreters_byte_for_byte(tmp_path):
    source = REPO_ROOT / "solutions" / "conv_arithmetic" / "conv_arithmetic.ipynb"
    seed = 987654321
    fresh = subprocess.run([sys.executable, "-m", "cnnbook_grader.oracle", str(source), str(tmp_path / "fresh")],
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
                                "CNNBOOK_HIDDEN_SEED": str(seed)})
    assert fresh.returncode == 0, fresh.stderr
    for attempt in ("first", "second"):  # the second comes from the same warm server
        RECORDERS.record(source, tmp_path / attempt, seed)
        assert files(tmp_path / attempt) == files(tmp_path / "fresh")
    other = tmp_path / "other-student"
    RECORDERS.record(source, other, seed + 1)
    assert files(other) != files(tmp_path / "fresh")  # another student's seed, other hidden inputs


def test_a_failing_recording_names_the_error_and_the_server_lives_on(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")])
    broken = tmp_path / "broken.ipynb"
    nbformat.write(notebook, str(broken))
    with pytest.raises(RuntimeError, match="broken on purpose"):
        RECORDERS.record(broken, tmp_path / "out", 1)
    assert not (tmp_path / "out.log").exists()
    source = REPO_ROOT / "solutions" / "conv_arithmetic" / "conv_arithmetic.ipynb"
    RECORDERS.record(source, tmp_path / "after", 2)
    assert (tmp_path / "after" / "oracle.json").exists()


def fake_worker(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)


ANSWERS = "import sys, json\nsys.stdin.readline()\nprint(json.dumps({'verdicts': {'t': {'passed': True}}}), flush=True)"
DIES = "import sys\nsys.stdin.readline()\nsys.exit(1)"
HANGS = "import sys, time\nsys.stdin.readline()\ntime.sleep(60)"


@pytest.mark.parametrize("scripts, outcome", [
    ([DIES, ANSWERS], "answers"),  # a worker that dies is replaced once
    ([DIES, DIES], "died"),  # twice: a grader error, not an endless loop
    ([HANGS, ANSWERS], "time limit"),  # a time-out is not retried
])
def test_replay_workers_replace_a_dead_worker_once(monkeypatch, scripts, outcome):
    workers = verdicts._ReplayWorkers()
    started = []

    def start():
        started.append(scripts[len(started)])
        return fake_worker(started[-1])

    monkeypatch.setattr(workers, "_start", start)
    if outcome == "answers":
        assert workers.run({"source": "x"}, timeout=60) == {"t": {"passed": True}}
        assert len(started) == 2
    else:
        with pytest.raises(RuntimeError, match=outcome):
            workers.run({"source": "x"}, timeout=3)
        assert len(started) == (2 if outcome == "died" else 1)


def test_syntax_trees_are_built_safely_from_several_grading_threads():
    """Grading threads analyse submissions at once. CPython 3.11's ``ast.parse`` keeps a recursion
    counter in interpreter-wide state: when a garbage collection runs a finalizer mid-parse and another
    thread parses meanwhile, it raises "SystemError: AST constructor recursion depth mismatch" (a grading
    round in two test processes hit it twice; this workload made bare ``ast.parse`` fail within seconds).
    The grader's ``parse_python`` holds a lock; under the same workload it never fails."""
    import gc
    import threading
    import time

    from cnnbook_grader.static import parse_python

    source = (REPO_ROOT / "grader" / "cnnbook_grader" / "oracle.py").read_text()

    class Finalized:
        def __init__(self):
            self.cycle = self  # collected by the cyclic collector, whose finalizers run Python code

        def __del__(self):
            sum(range(50))

    errors: list[str] = []
    stop = time.monotonic() + 8

    def work():
        while time.monotonic() < stop and not errors:
            [Finalized() for _ in range(200)]
            try:
                parse_python(source)
            except SystemError as error:
                errors.append(str(error))

    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50, 5, 5)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
    assert not errors, errors[0]
