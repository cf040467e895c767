"""The library and the book point at each other: the module map is true, every public function names
the book section that derives it, and every module is used by some chapter."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import cnnbook

REPO = Path(__file__).resolve().parents[1]
BOOK_LINK = re.compile(r'Book: "(?P<chapter>[^"]+)"(?:, section "(?P<section>.+)")? \(``(?P<path>book/[\w]+\.md)``\)\.')
PUBLIC_MODULES = ["cnnbook.shapes", "cnnbook.reference", "cnnbook.ops", "cnnbook.gradcheck", "cnnbook.data",
                  "cnnbook.train", "cnnbook.augment", "cnnbook.viz", "cnnbook.detection",
                  "cnnbook.transfer", "cnnbook.distributed"]


def _headings(path: Path) -> set[str]:
    headings, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.*)", line)):
            headings.add(match.group(1).strip())
    return headings


def _public_objects():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module_name}.{name}", inspect.unwrap(obj)


@pytest.mark.parametrize("name, obj", list(_public_objects()), ids=lambda value: value if isinstance(value, str) else "")
def test_every_public_function_names_the_section_that_derives_it(name, obj):
    match = BOOK_LINK.search(inspect.getdoc(obj) or "")
    assert match, f"{name}: its docstring has no 'Book: \"chapter\", section \"...\" (``book/...md``).' line"
    path = REPO / match["path"]
    assert path.exists(), f"{name}: {match['path']} does not exist"
    headings = _headings(path)
    assert match["chapter"] in headings, f"{name}: chapter title {match['chapter']!r} not in {match['path']}"
    if match["section"]:
        assert match["section"] in headings, f"{name}: section {match['section']!r} not in {match['path']}"


def test_the_module_map_lists_every_module():
    documented = set(re.findall(r":mod:`(cnnbook\.\w+)`", cnnbook.__doc__))
    actual = {f"cnnbook.{info.name}" for info in pkgutil.iter_modules(cnnbook.__path__)}
    assert documented == actual, f"missing from the map: {actual - documented}; not a module: {documented - actual}"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_library_module_is_used_by_a_chapter(module):
    chapters = "\n".join(path.read_text() for path in sorted((REPO / "book").glob("*.md")))
    short = module.split(".")[-1]
    assert re.search(rf"\b{re.escape(module)}\b|from cnnbook(\.\w+)* import[^\n]*\b{short}\b", chapters), (
        f"no chapter imports {module}")
