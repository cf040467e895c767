"""The program that runs INSIDE the sandbox, one per submitted notebook.

``python -m cnnbook_grader.runner WORKDIR`` reads ``WORKDIR/job.json`` (the
normalised notebook's cells and, per test cell, the grader-chosen calls),
deletes the job's input files before any student code runs, starts a kernel,
executes the student's cells in order with a time limit per cell, and at each
test cell (whose code never enters the sandbox) makes the recorded calls of the
student's functions on the grader's inputs. It writes only plain data into WORKDIR:

- ``progress.jsonl``: one JSON line per executed cell or call (outputs capped);
- ``out/<call>.json`` and ``out/<call>_<n>.npy`` (written by the kernel through
  :mod:`cnnbook_grader.harness`, ``allow_pickle=False``): the values returned.

Nothing here decides a score: the trusted parent reads these files, treats
them as untrusted, and runs the instructor's checks on them (:mod:`replay`). This
module imports only the standard library and jupyter_client, so that the code
students can reach is as small as possible.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from pathlib import Path

#: Text kept per cell (stdout, stderr, results and tracebacks together).
OUTPUT_CAP = 20_000

PRELUDE = r'''
def __cnnbook_prelude__():
    import os, random, sys
    random.seed(0)
    os.environ.pop("NBGRADER_EXECUTION", None)
    try:
        import numpy
        numpy.random.seed(0)
    except Exception:
        pass
__cnnbook_prelude__()
del __cnnbook_prelude__
'''

# At a check, the kernel runs the recorded call through cnnbook_grader.harness (imported in the
# student's kernel: anything the student does to it only loses them that check).
CALL = ("__import__('cnnbook_grader.harness', fromlist=['call']).call(__import__('json').loads({request!r}), "
        "globals(), {forbid!r}, {task!r})")


def _cap(text: str, budget: list[int]) -> str:
    if budget[0] <= 0:
        return ""
    if len(text) > budget[0]:
        dropped = len(text) - budget[0]
        text = text[: budget[0]] + f"\n... [output truncated: {dropped} more characters not kept]\n"
        budget[0] = 0
        return text
    budget[0] -= len(text)
    return text


class Runner:
    def __init__(self, workdir: Path, job: dict):
        self.workdir = workdir
        self.job = job
        self.cell_timeout = float(job.get("cell_timeout", 60))
        self.call_timeout = float(job.get("call_timeout", 30))
        self.log = open(workdir / "progress.jsonl", "a", buffering=1)
        self.replay: list[str] = []
        self.restarts = 0
        self.km = None
        self.kc = None
        self.t0 = time.monotonic()

    def record(self, entry: dict) -> None:
        entry["t"] = round(time.monotonic() - self.t0, 3)
        self.log.write(json.dumps(entry) + "\n")

    # -- kernel -------------------------------------------------------------
    def start(self) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(self.workdir), stdin=None)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.allow_stdin = False
        self.kc.wait_for_ready(timeout=120)
        self.execute(PRELUDE, 120, keep=False)

    def exit_code(self):
        try:
            process = self.km.provisioner.process
            return process.poll() if process is not None else None
        except Exception:  # noqa: BLE001
            return None

    def restart(self, why: str) -> None:
        self.restarts += 1
        code = self.exit_code()
        self.record({"type": "restart", "why": why, "exit_code": code})
        if self.restarts > 3:
            raise SystemExit(3)
        try:
            self.kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass
        self.start()
        for code_text in self.replay:
            self.execute(code_text, self.cell_timeout, keep=False)

    def execute(self, code: str, timeout: float, keep: bool = True) -> dict:
        """Run ``code``; return {status: ok|error|timeout|died, outputs, ename, evalue}."""
        msg_id = self.kc.execute(code, allow_stdin=False, store_history=False)
        outputs: list[dict] = []
        budget = [OUTPUT_CAP]
        result = {"status": "ok", "outputs": outputs, "ename": None, "evalue": None}
        deadline = time.monotonic() + timeout
        interrupted_at = None
        while True:
            now = time.monotonic()
            if interrupted_at is None and now > deadline:
                result["status"] = "timeout"
                self.km.interrupt_kernel()
                interrupted_at = now
            if interrupted_at is not None and now > interrupted_at + 3:
                self.restart("a cell ignored the interrupt after its time limit")
                return result
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                if not self.km.is_alive():
                    result["status"] = "died"
                    result["exit_code"] = self.exit_code()
                    self.restart("the kernel died")
                    return result
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                return result
            if not keep:
                continue
            if kind == "stream":
                text = _cap(content.get("text", ""), budget)
                if text:
                    if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1]["name"] == content["name"]:
                        outputs[-1]["text"] += text
                    else:
                        outputs.append({"output_type": "stream", "name": content.get("name", "stdout"), "text": text})
            elif kind in ("execute_result", "display_data"):
                data = content.get("data", {})
                plain = _cap(str(data.get("text/plain", "")), budget)
                kept = {"text/plain": plain}
                png = data.get("image/png")
                if isinstance(png, str) and len(png) <= budget[0]:
                    budget[0] -= len(png)
                    kept["image/png"] = png
                entry = {"output_type": kind, "data": kept, "metadata": {}}
                if kind == "execute_result":
                    entry["execution_count"] = content.get("execution_count")
                outputs.append(entry)
            elif kind == "error":
                if result["status"] == "ok":
                    result["status"] = "error"
                result["ename"] = str(content.get("ename", ""))[:200]
                result["evalue"] = _cap(str(content.get("evalue", "")), budget)
                traceback = [_cap(line, budget) for line in content.get("traceback", [])]
                outputs.append({"output_type": "error", "ename": result["ename"], "evalue": result["evalue"],
                                "traceback": [t for t in traceback if t]})

    # -- the notebook -----------------------------------------------------------
    def run(self) -> None:
        self.start()
        self.record({"type": "started"})
        for cell in self.job["cells"]:
            index = cell["index"]
            source = cell.get("source") or ""
            if source.strip():  # test cells come without source: their checks run outside the sandbox
                outcome = self.execute(source, self.cell_timeout)
                self.record({"type": "cell", "index": index, **outcome})
                if outcome["status"] in ("ok", "error"):
                    self.replay.append(source)
            for call in cell.get("calls", []):
                request = {k: call.get(k) for k in ("key", "name", "target", "method", "args", "kwargs", "mode")}
                code = CALL.format(request=json.dumps(request), forbid=call.get("forbid") or [],
                                   task=call.get("name") or "this task")
                self.materialise(call)
                outcome = self.execute(code, self.call_timeout)
                outcome.pop("outputs", None)
                self.record({"type": "call", "key": call["key"], **outcome})
        self.record({"type": "finished"})
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass

    def materialise(self, call: dict) -> None:
        """Write this call's inputs into in/ just before the call (never earlier)."""
        import base64

        folder = self.workdir / "in"
        folder.mkdir(exist_ok=True)
        for name, blob in call.get("files", {}).items():
            (folder / name).write_bytes(base64.b64decode(blob))


def main(argv: list[str] | None = None) -> int:
    workdir = Path((argv or sys.argv[1:])[0]).resolve()
    job_path = workdir / "job.json"
    job = json.loads(job_path.read_text())
    job_path.unlink()  # the grader's inputs leave the disk before any student code runs
    (workdir / "out").mkdir(exist_ok=True)
    os.chdir(workdir)
    Runner(workdir, job).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
