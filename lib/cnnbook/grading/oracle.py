"""Grader-chosen inputs and the oracle's outputs, recorded from the instructor notebook.

Runs in a trusted process, never in a sandbox. The instructor notebook (with
its solutions and hidden tests) is executed once in an IPython shell; every
function defined in a solution cell is wrapped, and each top-level call made
from a graded test cell is recorded: its arguments (the grader-chosen inputs)
and what the instructor's solution returned (the oracle's answer, which the
notebook's own tests have just checked against an independent implementation).

No per-assignment specification is needed: any test cell that calls functions
the student writes, with NumPy arrays, numbers, strings, lists or tuples as
arguments, is graded by trusted comparison. A test cell whose calls cannot be
recorded this way (no call, or an argument such as a model object) is marked
``trusted: false`` and graded by running the cell itself in the sandbox.

Layout of an oracle folder::

    oracle.json          {"cells": {grade_id: {"trusted", "tol", "forbid", "calls": [...]}}}
    in/<key>_<j>.npy     inputs, by call
    expected/<key>_<i>.npy  the instructor's outputs (never copied into a sandbox)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FORMAT = 1


class Unrepresentable(Exception):
    pass


def _encode(value, folder: Path, stem: str, counter: list[int]):
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        raise Unrepresentable("torch tensor")
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise Unrepresentable("object array")
        name = f"{stem}_{counter[0]}.npy"
        counter[0] += 1
        np.save(folder / name, value, allow_pickle=False)
        return ["npy", name]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not np.isfinite(value):
            raise Unrepresentable("non-finite float")
        return ["json", value]
    if isinstance(value, tuple):
        return ["tuple", [_encode(v, folder, stem, counter) for v in value]]
    if isinstance(value, list):
        return ["list", [_encode(v, folder, stem, counter) for v in value]]
    raise Unrepresentable(type(value).__name__)


def _numeric(part) -> np.ndarray:
    if hasattr(part, "detach") and hasattr(part, "cpu"):
        part = part.detach().cpu().numpy()
    array = np.asarray(part)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise Unrepresentable(f"non-numeric result {type(part).__name__}")
    return array


def defined_functions(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def record(source_path: Path, outdir: Path) -> dict:
    """Execute the instructor notebook and write the oracle folder ``outdir``."""
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell

    import cnnbook.grading as grading_package
    from cnnbook.grading import checks
    from cnnbook.gradcheck import tolerance

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

    original_check_close = checks.check_close

    def check_close(name, actual, expected, tol=None, hint=""):
        if state["cell"] is not None:
            used = tolerance("float64", "grading") if tol is None else float(tol)
            cells[state["cell"]]["tol"] = max(cells[state["cell"]]["tol"], used)
        return original_check_close(name, actual, expected, tol=tol, hint=hint)

    checks.check_close = check_close
    grading_package.check_close = check_close

    def wrap(name, function):
        @functools.wraps(function)
        def recorded(*args, **kwargs):
            grade_id = state["cell"]
            if grade_id is None or state["depth"]:
                return function(*args, **kwargs)
            cell = cells[grade_id]
            key = f"{grade_id}-{len(cell['calls'])}"
            entry = {"key": key, "name": name}
            try:
                counter = [0]
                entry["args"] = [_encode(a, outdir / "in", key, counter) for a in args]
                entry["kwargs"] = {k: _encode(v, outdir / "in", key, counter) for k, v in kwargs.items()}
            except Unrepresentable as why:
                cell["trusted"] = False
                cell["why"] = f"argument not recordable ({why})"
                entry = None
            state["depth"] += 1
            try:
                result = function(*args, **kwargs)
            except Exception as error:
                if entry is not None:
                    entry["expect"] = {"raises": type(error).__name__}
                    cell["calls"].append(entry)
                raise
            finally:
                state["depth"] -= 1
            if entry is not None:
                try:
                    parts = list(result) if isinstance(result, tuple) else [result]
                    arrays = [_numeric(p) for p in parts]
                except Unrepresentable as why:
                    cell["trusted"] = False
                    cell["why"] = f"result not recordable ({why})"
                else:
                    for index, array in enumerate(arrays):
                        np.save(outdir / "expected" / f"{key}_{index}.npy", array, allow_pickle=False)
                    entry["expect"] = {"parts": len(arrays), "tuple": isinstance(result, tuple),
                                       "shapes": [list(a.shape) for a in arrays]}
                    cell["calls"].append(entry)
            return result

        recorded.__cnnbook_recorded__ = True
        return recorded

    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        meta = nbgrader_meta(cell)
        is_test = bool(meta.get("grade")) and not meta.get("solution")
        if is_test:
            grade_id = meta["grade_id"]
            cells[grade_id] = {"trusted": True, "tol": 0.0, "forbid": "forbid_calls" in cell.source,
                               "calls": [], "points": float(meta.get("points", 0))}
            state["cell"] = grade_id
        else:
            state["cell"] = None
        result = shell.run_cell(cell.source, store_history=False)
        state["cell"] = None
        if not result.success:
            raise RuntimeError(f"the instructor notebook {source_path.name} fails in cell "
                               f"{meta.get('grade_id')}: {result.error_in_exec or result.error_before_exec!r}")
        if meta.get("solution"):
            for name in defined_functions(cell.source):
                function = shell.user_ns.get(name)
                if callable(function) and not getattr(function, "__cnnbook_recorded__", False):
                    shell.user_ns[name] = wrap(name, function)
    for grade_id, cell in cells.items():
        if not cell["calls"]:
            cell["trusted"] = False
            cell.setdefault("why", "the test calls no function the student writes")
        cell["tol"] = 2 * (cell["tol"] or tolerance("float64", "grading"))
    summary = {"format": FORMAT, "notebook": source_path.name, "cells": cells}
    (outdir / "oracle.json").write_text(json.dumps(summary, indent=1))
    return summary


def oracle_for(source_path: Path, cache: Path) -> Path:
    """The oracle folder for an instructor notebook, recorded once per notebook content."""
    source_path = Path(source_path)
    digest = hashlib.sha256(source_path.read_bytes() + f"format{FORMAT}".encode()).hexdigest()[:16]
    target = Path(cache) / f"{source_path.stem}-{digest}"
    if (target / "oracle.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".recording-", dir=target.parent))
    process = subprocess.run(
        [sys.executable, "-m", "cnnbook.grading.oracle", str(source_path), str(scratch)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"},
    )
    if process.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError(f"recording the oracle of {source_path} failed:\n{process.stdout}\n{process.stderr}")
    try:
        os.replace(scratch, target)
    except OSError:  # another process recorded it first
        shutil.rmtree(scratch, ignore_errors=True)
    return target


if __name__ == "__main__":
    record(Path(sys.argv[1]), Path(sys.argv[2]))
