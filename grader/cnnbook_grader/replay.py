"""The verdicts: the instructor's checks run in a trusted process on the values the sandbox wrote.

The instructor notebook is executed again, every cell except the solution
cells, hidden tests included, in a process no student code ever ran in. Each
function the student writes is replaced by a stand-in that, call after call,
checks that the checks pass it the inputs the recorder saw (:mod:`oracle`) and
returns what the student's function returned in the sandbox (or raises what it
raised); a model the student's code returned is stood in for by a module whose
forward pass returns the student's model's outputs on the recorded inputs.
Everything read from the sandbox is plain data (:mod:`values`): no pickle, no
code. A test cell passes when it runs to the end, as in nbgrader, so the
instructor's own checks (``check_close``, statistics over a dropout mask,
accuracy of a trained model) decide with their own tolerances. Patching
IPython, the check helpers or builtins inside the sandbox changes nothing
here.

``replay`` returns, per test cell, whether it passed and a message that names
the call (its inputs' shapes only) and what went wrong; for a hidden check
never the hidden code, the inputs' values or the expected values.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from pathlib import Path

import numpy as np

from .values import Decoder, Encoder, Unrepresentable, read_untrusted, same, walk, load_array


class ReplayProblem(BaseException):
    """A call cannot be answered (a BaseException, so that no ``except Exception`` in a check hides it)."""


class StudentError(Exception):
    """An exception raised by the student's code whose class is not a built-in one."""


class Opaque:
    """Stands in for a value the student's code returned that is not plain data."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self):
        return f"<{self.kind} returned by your code>"


def _exception(document: dict) -> BaseException:
    from cnnbook.checks import ForbiddenCall

    names = [n for n in document.get("raised", []) if isinstance(n, str)]
    message = str(document.get("message", ""))[:2000]
    if "ForbiddenCall" in names:
        return ForbiddenCall(message)
    for name in names:
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                error = cls(message)
            except Exception:  # noqa: BLE001
                continue
            error.__cnnbook_name__ = names[0] if names else name
            return error
    error = StudentError(message)
    error.__cnnbook_name__ = names[0] if names else "an exception"
    return error


class Replay:
    def __init__(self, oracle_dir: Path, results_dir: Path, statuses: dict | None, trusted: bool):
        self.oracle_dir = Path(oracle_dir)
        self.results_dir = Path(results_dir)
        self.statuses = statuses
        self.trusted = trusted
        self.oracle = json.loads((self.oracle_dir / "oracle.json").read_text())
        self.cell = None
        self.cursor = 0
        self.last = None
        self.refs: dict[int, tuple[str, tuple]] = {}
        self.keep: list = []
        self.produced: dict[int, dict] = {}  # id(part of a result) -> the call that produced it
        self.raised: dict[int, dict] = {}
        self.failure: dict | None = None

    # -- the recorded calls of the current cell --------------------------------------------------
    def next_call(self, name: str | None) -> dict:
        calls = self.oracle["cells"].get(self.cell, {}).get("calls", []) if self.cell else []
        if self.cursor >= len(calls):
            raise ReplayProblem(f"could not be checked: {name or 'your model'} was called more often than recorded")
        entry = calls[self.cursor]
        self.cursor += 1
        self.last = entry
        if entry.get("name") != name:
            raise ReplayProblem(f"could not be checked: the checks called {name or 'your model'} where "
                                f"the recording has {entry.get('name') or 'a model'}")
        return entry

    def check_inputs(self, entry: dict, args, kwargs) -> None:
        encoder = Encoder(entry["key"], strict=True, refs=self.refs)
        try:
            arg_specs = [encoder.encode(a) for a in args]
            kwarg_specs = {k: encoder.encode(v) for k, v in kwargs.items()}
        except Unrepresentable:
            raise ReplayProblem("could not be checked: its inputs depend on an earlier result that differs") from None

        def recorded(name):
            return load_array(self.oracle_dir / "in", name, trusted=True)

        ok = len(arg_specs) == len(entry["args"]) and set(kwarg_specs) == set(entry["kwargs"])
        ok = ok and all(same(a, encoder.arrays, b, recorded) for a, b in zip(arg_specs, entry["args"]))
        ok = ok and all(same(kwarg_specs[k], encoder.arrays, entry["kwargs"][k], recorded) for k in kwarg_specs)
        if not ok:
            raise ReplayProblem("could not be checked: its inputs depend on an earlier result that differs")

    def answer(self, entry: dict, args):
        key = entry["key"]
        if self.statuses is not None:
            status = self.statuses.get(key)
            if status is None:
                raise ReplayProblem("did not run (the notebook stopped earlier)")
            if status.get("status") == "timeout":
                raise ReplayProblem("took longer than the time limit")
            if status.get("status") == "died":
                raise ReplayProblem("crashed the Python kernel")
        data = (self.results_dir / f"{key}.json").read_bytes() if self.trusted else read_untrusted(
            self.results_dir / f"{key}.json", 16 * 2**20)
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise ValueError
        except Exception:  # noqa: BLE001
            raise ReplayProblem("returned nothing the grader could read") from None
        decoder = Decoder(self.results_dir, trusted=self.trusted, refs=None, module=lambda spec: ReplayModule(self),
                          opaque=lambda spec: Opaque(str(spec[1]) if len(spec) > 1 else "object"))
        try:
            for index, spec in (document.get("after") or {}).items():
                index = int(index)
                value = decoder.decode(spec)
                target = args[index] if 0 <= index < len(args) else None
                if isinstance(target, np.ndarray) and isinstance(value, np.ndarray) and target.shape == value.shape:
                    if target.flags.writeable:
                        np.copyto(target, value, casting="unsafe")
                elif isinstance(target, np.random.Generator) and isinstance(value, np.random.Generator):
                    target.bit_generator.state = value.bit_generator.state
            if "raised" in document:
                error = _exception(document)
                self.raised[id(error)] = entry
                self.keep.append(error)
                raise error
            result = decoder.decode(document.get("result"))
        except Unrepresentable as why:
            raise ReplayProblem(f"returned something the grader cannot read ({why})") from None
        self.keep.append(result)
        given = {id(v) for _, v in walk(tuple(args))}
        for path, value in walk(result):
            if isinstance(value, (bool, int, float, str, type(None))):
                continue
            self.produced[id(value)] = entry
            if hasattr(value, "_cnnbook_replay") or id(value) not in given:
                self.refs[id(value)] = (key, path)
        return result

    def function(self, name: str):
        replay = self

        def stand_in(*args, **kwargs):
            entry = replay.next_call(name)
            replay.check_inputs(entry, args, kwargs)
            return replay.answer(entry, args)

        stand_in.__name__ = stand_in.__qualname__ = name
        return stand_in

    def forward(self, module, args, kwargs, method=None):
        entry = self.next_call(None)
        if entry.get("method") != method:
            raise ReplayProblem("could not be checked: the checks used the model otherwise than recorded")
        ref = self.refs.get(id(module))
        target = entry.get("target") or [None, None, None]
        if ref is None or [ref[0], list(ref[1])] != [target[1], list(target[2] or [])]:
            raise ReplayProblem("could not be checked: the checks used another model than recorded")
        # the sandbox applies the train/eval and grad modes the instructor's checks used (recorded)
        self.check_inputs(entry, args, kwargs)
        return self.answer(entry, args)


def ReplayModule(replay: Replay):  # noqa: N802 - a class made on demand (torch is imported only when needed)
    import torch
    from torch import nn

    global _ReplayModule
    if "_ReplayModule" not in globals():
        class _Module(nn.Module):
            """Stands in for the student's model: its forward pass returns the student's model's outputs."""

            def __init__(self, owner):
                super().__init__()
                self._cnnbook_replay = owner
                self.stand_in = nn.Parameter(torch.zeros(1))

            def forward(self, *args, **kwargs):
                return self._cnnbook_replay.forward(self, args, kwargs)

        _ReplayModule = _Module
    return _ReplayModule(replay)


@contextlib.contextmanager
def _capturing_checks(replay: Replay):
    """check_close and check_shape note what failed (error size, shapes) for the feedback."""
    from cnnbook.gradcheck import rel_error

    from cnnbook import checks

    original_close, original_shape = checks.check_close, checks.check_shape

    def check_close(name, actual, expected, tol=None, hint=""):
        try:
            return original_close(name, actual, expected, tol=tol, hint=hint)
        except checks.CheckFailed:
            why = "returned a value that is not an array of numbers"
            try:
                got = checks._as_array(name, actual)
                want = np.asarray(expected, dtype=np.float64)
                if got.shape != want.shape:
                    why = f"returned shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                else:
                    from cnnbook.gradcheck import tolerance

                    used = tolerance("float64", "grading") if tol is None else tol
                    why = f"relative error {rel_error(got, want):.3g}, tolerance {used:g}"
            except Exception:  # noqa: BLE001
                pass
            replay.failure = {"id": id(actual), "why": why, "hint": hint}
            raise

    def check_shape(name, actual, expected_shape, hint=""):
        try:
            return original_shape(name, actual, expected_shape, hint=hint)
        except checks.CheckFailed:
            try:
                got = f"returned shape {tuple(checks._as_array(name, actual).shape)}, expected {tuple(expected_shape)}"
            except Exception:  # noqa: BLE001
                got = "returned a value that is not an array of numbers"
            replay.failure = {"id": id(actual), "why": got, "hint": hint}
            raise

    original_probe = checks.probe_module

    def probe_module(module, *inputs, **options):
        if not hasattr(module, "_cnnbook_replay"):  # a module the checks built themselves
            return original_probe(module, *inputs, **options)
        return replay.forward(module, inputs, options, method="probe_module")

    checks.check_close, checks.check_shape, checks.probe_module = check_close, check_shape, probe_module
    try:
        yield
    finally:
        checks.check_close, checks.check_shape, checks.probe_module = original_close, original_shape, original_probe


def _message(replay: Replay, grade_id: str, error: BaseException, visible: bool) -> str:
    from cnnbook.checks import CheckFailed

    calls = replay.oracle["cells"].get(grade_id, {}).get("calls", [])
    entry = replay.last
    if isinstance(error, ReplayProblem):
        why = str(error)
    elif id(error) in replay.raised:
        entry = replay.raised[id(error)]
        name = getattr(error, "__cnnbook_name__", type(error).__name__)
        why = f"raised {name}" + (f": {str(error)[:300]}" if visible and str(error) else "")
    elif isinstance(error, CheckFailed):
        failure = replay.failure or {}
        entry = replay.produced.get(failure.get("id"), entry)
        why = str(error)[:500] if visible else failure.get("why", "failed a check")
        if not visible and failure.get("hint"):  # the instructor wrote the hint to be shown
            why += f" ({str(failure['hint'])[:300]})"
    else:
        why = f"failed ({type(error).__name__}" + (f": {str(error)[:300]})" if visible and str(error) else ")")
    if entry is None or entry not in calls:
        return why
    label = entry.get("label", entry.get("name") or "your code")
    if not visible:
        label += f" (hidden check {calls.index(entry) + 1} of {len(calls)})"
    return f"{label}: {why}"


def replay(source_path: Path, oracle_dir: Path, results_dir: Path, statuses: dict | None = None,
           trusted: bool = False, visible: set | None = None) -> dict[str, dict]:
    """Run the instructor notebook's checks on the sandbox's values; {grade_id: {"passed", "message"}}."""
    import os

    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    from .notebooks import nbgrader_meta

    source_path = Path(source_path).resolve()
    state = Replay(oracle_dir, results_dir, statuses, trusted)
    notebook = nbformat.read(str(source_path), as_version=4)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    for name in state.oracle.get("functions", []):
        namespace[name] = state.function(name)
    transformer = TransformerManager()
    verdicts = {}
    here = os.getcwd()
    os.chdir(source_path.parent)
    # the hidden checks draw the inputs the recording drew (cnnbook.checks.hidden_rng)
    from cnnbook.checks import HIDDEN_SEED_VARIABLE

    seed_before = os.environ.get(HIDDEN_SEED_VARIABLE)
    os.environ[HIDDEN_SEED_VARIABLE] = str(state.oracle.get("seed") or "0")
    try:
        with _capturing_checks(state), np.errstate(all="ignore"):
            for cell in notebook.cells:
                meta = nbgrader_meta(cell)
                if cell.cell_type != "code" or meta.get("solution"):
                    continue
                grade_id = meta.get("grade_id")
                info = state.oracle["cells"].get(grade_id)
                state.cell, state.cursor, state.last, state.failure = grade_id, 0, None, None
                try:
                    code = compile(transformer.transform_cell(cell.source), f"<{grade_id}>", "exec")
                    exec(code, namespace)  # noqa: S102 - the instructor's own cell, trusted
                except BaseException as error:  # noqa: BLE001 - a failing check is a verdict
                    if isinstance(error, (KeyboardInterrupt, SystemExit)):
                        raise
                    if info and info["test"]:
                        shown = visible is None or grade_id in visible
                        verdicts[grade_id] = {"passed": False, "message": _message(state, grade_id, error, shown)}
                    continue
                if info and info["test"]:
                    verdicts[grade_id] = {"passed": True, "message": "passed"}
    finally:
        os.chdir(here)
        if seed_before is None:
            os.environ.pop(HIDDEN_SEED_VARIABLE, None)
        else:
            os.environ[HIDDEN_SEED_VARIABLE] = seed_before
    return verdicts


def serve() -> int:
    """``python -m cnnbook_grader.replay --serve``: one JSON request a line on stdin, one verdict a line back.

    A long-lived trusted worker (torch and the instructor's imports are loaded once, not per student). It
    never runs student code, only the instructor's cells on plain data, so it serves every student. What
    the instructor's cells print is discarded: stdout is the answer channel.
    """
    import io
    import os
    import sys
    import traceback

    import nbformat  # noqa: F401 - loaded before the first request, while the sandbox runs
    from IPython.core.inputtransformer2 import TransformerManager  # noqa: F401

    import cnnbook.checks  # noqa: F401

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    sys.stdout = open(os.devnull, "w")
    for line in sys.stdin:
        try:
            request = json.loads(line)
            verdicts = replay(Path(request["source"]), Path(request["oracle"]), Path(request["results"]),
                              statuses=request.get("statuses"), visible=set(request.get("visible") or []))
            answer = {"verdicts": verdicts}
        except Exception:  # noqa: BLE001 - the grader reports it as a grader error
            buffer = io.StringIO()
            traceback.print_exc(file=buffer)
            answer = {"error": buffer.getvalue()[-4000:]}
        answers.write(json.dumps(answer) + "\n")
    return 0


def main(argv=None) -> int:
    import sys

    args = argv or sys.argv[1:]
    if args == ["--serve"]:
        return serve()
    statuses = json.loads(Path(args[3]).read_text()) if len(args) > 3 else None
    print(json.dumps(replay(Path(args[0]), Path(args[1]), Path(args[2]), statuses)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
