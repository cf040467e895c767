"""The calls each check makes to the student's code, recorded from the instructor notebook.

Runs in a trusted process, never in a sandbox. The instructor notebook (with
its solutions and hidden tests) is executed once in an IPython shell; every
function defined in a solution cell is wrapped, and each top-level call that a
test cell (or a locked cell) makes to one of them is recorded: the function's
name and its arguments, the grader-chosen inputs. A value that an earlier call
returned and a later call receives (a cache, a model) is recorded as a
reference to that earlier result, so that the student's own value is passed
along. An ``nn.Module`` returned by a student's function is followed too: each
time the checks apply it to an input (``model(x)``, ``predict(model, x)``) the
input is recorded, with the module's train/eval mode and the grad mode.

No per-assignment specification is needed. Any return structure works
(arrays, tensors, numbers, tuples, nested caches, dicts, modules): nothing is
compared here. Grading runs the recorded calls on the student's code in the
sandbox, which only writes the values they return; :mod:`replay` then runs the
instructor's checks, hidden lines included, in a trusted process with the
student's functions replaced by those values.

At the end the recording checks itself: replaying the instructor's own
results must pass every test cell. A cell that fails this, or whose calls take
an argument that is not plain data, is marked ``gradable: false`` (graded by
hand), and the test-suite requires every cell of every assignment to be gradable.

Layout of an oracle folder::

    oracle.json            {"functions": [...], "cells": {grade_id: {"test", "points", "forbid": [names], "gradable",
                            "calls": [{"key", "name" | "target", "args", "kwargs", "mode", "label"}]}}}
    in/<key>_<j>.npy       inputs, by call (copied into the sandbox call by call)
    expected/<key>.json    the instructor's results, in the format the sandbox writes (for the self-check)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from cnnbook.checks import HIDDEN_SEED_VARIABLE

from .static import parse_python
from .values import Encoder, Unrepresentable, save, walk

FORMAT = 5
#: a link from an exercise to a book section: [title](../../book/<chapter>.md#<anchor>)
BOOK_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)+(book/[\w-]+\.md#[\w-]+)\)")


def defined_functions(source: str) -> list[str]:
    try:
        tree = parse_python(source)
    except SyntaxError:
        return []
    # a class the student writes (an nn.Module) is recorded like a function: its construction is a call
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def describe(spec) -> str:
    """How a call's argument is named in feedback: its kind and shape, never its values."""
    kind = spec[0]
    if kind in ("npy", "tensor"):
        return "array" if kind == "npy" else "tensor"
    if kind in ("tuple", "list"):
        return f"{kind} of {len(spec[1])}"
    if kind == "dict":
        return "dict"
    if kind == "generator":
        return "random generator"
    if kind == "ref":
        return "your earlier result"
    if kind == "json":
        return type(spec[1]).__name__
    return kind


def _label(name: str, args: list, encoder: Encoder) -> str:
    shown = []
    for spec in args:
        if spec[0] in ("npy", "tensor"):
            array = encoder.arrays[spec[1]]
            shown.append(f"{'array' if spec[0] == 'npy' else 'tensor'} {tuple(array.shape)}")
        else:
            shown.append(describe(spec))
    return f"{name}({', '.join(shown)})"


def record(source_path: Path, outdir: Path) -> dict:
    """Execute the instructor notebook and write the oracle folder ``outdir``."""
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    from .harness import outcome
    from .notebooks import nbgrader_meta

    source_path = Path(source_path).resolve()
    outdir = Path(outdir)
    (outdir / "in").mkdir(parents=True, exist_ok=True)
    (outdir / "expected").mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(str(source_path), as_version=4)
    os.chdir(source_path.parent)
    os.environ.setdefault("MPLBACKEND", "Agg")
    shell = InteractiveShell.instance()
    state = {"cell": None, "depth": 0}
    cells: dict[str, dict] = {}
    functions: list[str] = []
    refs: dict[int, tuple[str, tuple]] = {}  # id(part of a result) -> (call key, path)
    keep: list = []  # results stay alive, so that their ids stay unique
    origin: dict[int, str] = {}  # id(module) -> the name of the function that returned it
    hooked: set[int] = set()

    def begin(grade_id: str, target: str):
        cell = cells[grade_id]
        key = f"{grade_id}-{len(cell['calls'])}"
        return cell, key

    def remember(key: str, result, name: str, args, kwargs) -> None:
        """Parts of ``result`` a later call may receive: the objects this call created, and modules."""
        keep.append(result)
        given = {id(value) for _, value in walk((args, kwargs))}
        for path, value in walk(result):
            if isinstance(value, (bool, int, float, str, type(None))):
                continue
            if _is_module(value):
                refs[id(value)] = (key, path)  # the latest result holding a model is the one passed along
                origin[id(value)] = name
                if id(value) not in hooked:
                    hooked.add(id(value))
                    value.register_forward_pre_hook(forward_pre_hook)
                    value.register_forward_hook(forward_hook, with_kwargs=True)
            elif id(value) not in given:
                refs[id(value)] = (key, path)

    def encode_call(cell, key, args, kwargs):
        encoder = Encoder(key, strict=True, refs=refs)
        try:
            arg_specs = [encoder.encode(a) for a in args]
            kwarg_specs = {k: encoder.encode(v) for k, v in kwargs.items()}
        except Unrepresentable as why:
            cell["gradable"] = False
            cell["why"] = f"an argument is not plain data ({why})"
            return None
        save(outdir / "in", f"{key}.json", {}, encoder.arrays)
        (outdir / "in" / f"{key}.json").unlink()
        return encoder, arg_specs, kwarg_specs

    def forward_pre_hook(module, args):
        if state["cell"] is not None and not state["depth"]:
            state.setdefault("streams", {})[id(module)] = _random_streams()

    def forward_hook(module, args, kwargs, output):
        grade_id = state["cell"]
        if grade_id is None or state["depth"]:
            return None
        import torch

        _restore_streams(state.get("streams", {}).pop(id(module), None))

        cell, key = begin(grade_id, "forward")
        encoded = encode_call(cell, key, args, kwargs)
        if encoded is None:
            return None
        encoder, arg_specs, kwarg_specs = encoded
        target = ["ref", *refs[id(module)][0:1], list(refs[id(module)][1])]
        name = f"the model {origin.get(id(module), 'your function')} returned"
        cell["calls"].append({"key": key, "name": None, "target": target, "args": arg_specs, "kwargs": kwarg_specs,
                              "mode": {"training": bool(module.training), "grad": bool(torch.is_grad_enabled())},
                              "label": _label(name, arg_specs, encoder)})
        document, arrays = outcome(key, output, None)
        save(outdir / "expected", f"{key}.json", document, arrays)
        return None

    def wrap(name, function):
        @functools.wraps(function)
        def recorded(*args, **kwargs):
            grade_id = state["cell"]
            if grade_id is None or state["depth"]:
                return function(*args, **kwargs)
            cell, key = begin(grade_id, name)
            encoded = encode_call(cell, key, args, kwargs)
            entry = None
            if encoded is not None:
                encoder, arg_specs, kwarg_specs = encoded
                entry = {"key": key, "name": name, "target": None, "args": arg_specs, "kwargs": kwarg_specs,
                         "mode": None, "label": _label(name, arg_specs, encoder)}
                cell["calls"].append(entry)
            mutable = {i: _snapshot(a) for i, a in enumerate(args)}
            state["depth"] += 1
            streams = _random_streams()
            try:
                result = function(*args, **kwargs)
            except Exception as error:
                if entry is not None:
                    document, arrays = outcome(key, None, error, args, mutable)
                    save(outdir / "expected", f"{key}.json", document, arrays)
                raise
            finally:
                state["depth"] -= 1
                # the replay answers this call without running it: the checks' later draws must not
                # depend on what the instructor's solution drew (construction, dropout...)
                _restore_streams(streams)
            if entry is not None:
                remember(key, result, name, args, kwargs)
                document, arrays = outcome(key, result, None, args, mutable)
                save(outdir / "expected", f"{key}.json", document, arrays)
            return result

        recorded.__cnnbook_recorded__ = True
        return recorded

    # the names each check forbids (forbid_calls), so that the same names are enforced and reported
    from cnnbook import checks
    from .static import LIBRARY

    original_forbid = checks.forbid_calls

    def forbid_calls(names=checks.DEFAULT_FORBIDDEN, task="this task"):
        names = list(names)
        if state["cell"] is not None:
            cell = cells[state["cell"]]
            cell["forbid"] = sorted(set(cell["forbid"]) | set(names) | set(LIBRARY))
        return original_forbid(names, task=task)

    checks.forbid_calls = forbid_calls

    original_probe = checks.probe_module

    def probe_module(module, *inputs, **options):
        """A check probing a module the student's code built: recorded as a call on that module."""
        grade_id = state["cell"]
        if grade_id is None or state["depth"] or id(module) not in refs:
            return original_probe(module, *inputs, **options)
        cell, key = begin(grade_id, "probe_module")
        encoded = encode_call(cell, key, inputs, options)
        if encoded is None:
            return original_probe(module, *inputs, **options)
        encoder, arg_specs, kwarg_specs = encoded
        target = ["ref", *refs[id(module)][0:1], list(refs[id(module)][1])]
        name = f"probe_module(the module {origin.get(id(module), 'your code')} built"
        label = _label(name, arg_specs, encoder).replace("built(", "built, ", 1) if arg_specs else name + ")"
        cell["calls"].append({"key": key, "name": None, "target": target, "method": "probe_module",
                              "args": arg_specs, "kwargs": kwarg_specs, "mode": None, "label": label})
        state["depth"] += 1
        try:
            result = original_probe(module, *inputs, **options)
        except Exception as error:
            document, arrays = outcome(key, None, error)
            save(outdir / "expected", f"{key}.json", document, arrays)
            raise
        finally:
            state["depth"] -= 1
        document, arrays = outcome(key, result, None)
        save(outdir / "expected", f"{key}.json", document, arrays)
        return result

    checks.probe_module = probe_module

    section = None  # the book section the latest task text links to
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            links = BOOK_LINK.findall(cell.source)
            if links and not nbgrader_meta(cell).get("grade_id") == "intro":
                section = {"title": links[0][0], "target": links[0][1]}
            continue
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        is_solution = bool(meta.get("solution"))
        if grade_id and not is_solution:
            cells[grade_id] = {"test": bool(meta.get("grade")), "points": float(meta.get("points", 0) or 0),
                               "forbid": [], "gradable": True, "calls": [], "section": section}
            state["cell"] = grade_id
        else:
            state["cell"] = None
        result = shell.run_cell(cell.source, store_history=False)
        state["cell"] = None
        if not result.success:
            raise RuntimeError(f"the instructor notebook {source_path.name} fails in cell "
                               f"{grade_id}: {result.error_in_exec or result.error_before_exec!r}")
        if is_solution:
            for name in defined_functions(cell.source):
                function = shell.user_ns.get(name)
                if callable(function) and not getattr(function, "__cnnbook_recorded__", False):
                    shell.user_ns[name] = wrap(name, function)
                    if name not in functions:
                        functions.append(name)
    cells = {g: c for g, c in cells.items() if c["test"] or c["calls"]}
    for grade_id, cell in cells.items():
        if cell["test"] and not cell["calls"] and cell["gradable"]:
            cell["gradable"] = False
            cell["why"] = "the check calls no function the student writes"
    summary = {"format": FORMAT, "notebook": source_path.name, "functions": functions, "cells": cells,
               "seed": os.environ.get(HIDDEN_SEED_VARIABLE)}
    (outdir / "oracle.json").write_text(json.dumps(summary, indent=1))
    # the self-check: the instructor's own results, replayed, must pass every check
    from .replay import replay

    verdicts = replay(source_path, outdir, outdir / "expected", statuses=None, trusted=True)
    for grade_id, verdict in verdicts.items():
        if not verdict["passed"] and cells[grade_id]["gradable"]:
            cells[grade_id]["gradable"] = False
            cells[grade_id]["why"] = f"replaying the recorded calls does not pass: {verdict['message']}"
    (outdir / "oracle.json").write_text(json.dumps(summary, indent=1))
    return summary


def _random_streams():
    """The global random states (Python, NumPy, torch) a call of the instructor's solution may advance."""
    import random

    import numpy as np

    torch = sys.modules.get("torch")
    return random.getstate(), np.random.get_state(), torch.get_rng_state() if torch is not None else None


def _restore_streams(streams) -> None:
    if streams is None:
        return
    import random

    import numpy as np

    random.setstate(streams[0])
    np.random.set_state(streams[1])
    if streams[2] is not None:
        sys.modules["torch"].set_rng_state(streams[2])


def _is_module(value) -> bool:
    nn = sys.modules.get("torch.nn")
    return nn is not None and isinstance(value, nn.Module)


def _snapshot(value):
    """A copy of a mutable argument, to tell whether the call changed it."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.random.Generator):
        return json.dumps(value.bit_generator.state, default=str)
    return None


def per_student(source_path: Path) -> bool:
    """Whether the notebook's hidden checks draw per-student inputs (they call ``hidden_rng``)."""
    return "hidden_rng(" in Path(source_path).read_text()


def student_seed(course_id: str, assignment: str, student: str) -> int:
    """The seed of a student's hidden inputs: fixed by course, assignment and student, different for each."""
    digest = hashlib.sha256(f"{course_id}\0{assignment}\0{student}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def oracle_for(source_path: Path, cache: Path, seed: int | None = None) -> Path:
    """The oracle folder for an instructor notebook, recorded once per notebook content (and seed).

    ``seed``: the student's seed (:func:`student_seed`) for a notebook whose hidden checks draw
    per-student inputs; it reaches :func:`cnnbook.checks.hidden_rng` through the environment.
    ``$CNNBOOK_ORACLE_CACHE``, when set, replaces ``cache`` (recordings depend only on the
    notebook's content, the format and the seed, so courses can share them).
    """
    source_path = Path(source_path)
    cache = Path(os.environ.get("CNNBOOK_ORACLE_CACHE") or cache)
    tag = "" if seed is None else f"seed{int(seed)}"
    digest = hashlib.sha256(source_path.read_bytes() + f"format{FORMAT}{tag}".encode()).hexdigest()[:16]
    target = cache / f"{source_path.stem}-{digest}"
    if (target / "oracle.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".recording-", dir=target.parent))
    from .recorder import record_into

    try:
        record_into(source_path, scratch, seed)
    except RuntimeError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        os.replace(scratch, target)
    except OSError:  # another process recorded it first
        shutil.rmtree(scratch, ignore_errors=True)
    return target


if __name__ == "__main__":
    record(Path(sys.argv[1]), Path(sys.argv[2]))
