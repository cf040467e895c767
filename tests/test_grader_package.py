"""The grader is a distribution of its own; students' code needs only ``cnnbook``.

- ``cnnbook`` (what students install) declares no grading dependency, and
  importing the check helpers loads none of nbgrader, nbformat, nbconvert or
  jupyter_client;
- ``cnnbook-grader`` declares every third-party package its modules import;
- every module of the grader reads on one screen or two (no 900-line module).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRADER = REPO / "grader" / "cnnbook_grader"
GRADING_ONLY = ["nbgrader", "nbformat", "nbconvert", "nbclient", "jupyter_client", "dask", "distributed"]
# import name -> distribution name, where they differ
DISTRIBUTION = {"IPython": "ipython", "yaml": "pyyaml"}


def _declared(pyproject: Path) -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    names = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    out = set()
    for spec in names:
        name = spec
        for sep in "<>=!~[; ":
            name = name.split(sep)[0]
        out.add(name.strip().lower().replace("-", "_"))
    return out


def _imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_student_library_declares_no_grading_dependency():
    declared = _declared(REPO / "pyproject.toml")
    assert not declared & {n.lower() for n in GRADING_ONLY}, declared


def test_check_helpers_import_without_the_grading_stack():
    code = ("import sys, cnnbook.checks\n"
            f"loaded = [m for m in {GRADING_ONLY!r} if m in sys.modules]\n"
            "print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing cnnbook.checks loaded {out}"


def test_cnnbook_has_no_grading_package():
    assert not (REPO / "lib" / "cnnbook" / "grading").exists()
    with pytest.raises(ModuleNotFoundError):
        __import__("cnnbook.grading")


def test_grader_declares_every_package_it_imports():
    stdlib = set(sys.stdlib_module_names)
    third_party = {name for name in _imports(GRADER) if name not in stdlib and name != "cnnbook_grader"}
    declared = _declared(REPO / "grader" / "pyproject.toml")
    missing = {name for name in third_party if DISTRIBUTION.get(name, name).lower() not in declared}
    assert not missing, f"grader/pyproject.toml does not declare {sorted(missing)}"


def test_each_grader_module_is_short():
    lengths = {path.name: len(path.read_text().splitlines()) for path in GRADER.glob("*.py")}
    assert max(lengths.values()) <= 400, lengths
