"""The page sources themselves (no build needed).

- The book stands alone: no page of book/, exercises/ or solutions/ sends the
  reader to lecture notes or slides; it states the fact and cites a source.
- Chapters and exercises link to each other: every exercise notebook links to
  chapter sections that exist, every chapter with an exercise links to it, and
  the exercises index lists every exercise with its chapters.
(test_site_static.py checks that every link of the built site resolves.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from booksite import REPO, chapter_docnames, exercise_docnames, source_of

# "the slides", "lecture notes", "a well-known slide"; not the verb ("the kernel slides").
OUTSIDE_MATERIAL = re.compile(
    r"\blectures?\b|\bcourse notes\b|\bslide deck"
    r"|\b(?:the|a|these|those|our|well-known|lecture|course)\s+slides?\b"
    r"|\bslides?\s+(?:say|show|give|compare|pool|count|use)\b",
    re.I,
)


def page_sources() -> list[Path]:
    return sorted(
        p
        for folder in ("book", "exercises", "solutions")
        for p in (REPO / folder).rglob("*")
        if p.suffix in {".md", ".ipynb"} and ".ipynb_checkpoints" not in p.parts
    )


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
    return path.read_text()


def test_the_pattern_finds_what_it_should():
    for text in ("as in the lecture notes", "The lecture slides pool", "A note on a well-known slide", "the slides compare"):
        assert OUTSIDE_MATERIAL.search(text), text
    for text in ("the kernel slides along", "Max pooling slides a window", "a window that slides"):
        assert not OUTSIDE_MATERIAL.search(text), text


def test_no_page_refers_to_lecture_notes_or_slides():
    found = []
    for path in page_sources():
        for number, line in enumerate(_text(path).splitlines(), 1):
            if OUTSIDE_MATERIAL.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert page_sources(), "found no page sources"
    assert not found, "state the fact and cite references.bib instead of sending the reader elsewhere:\n" + "\n".join(found)


# --- chapters and exercises --------------------------------------------------------------------

BOOK_LINK = re.compile(r"\]\(\.\./\.\./book/([\w-]+)\.md(?:#([\w-]+))?\)")


def _slug(title: str) -> str:
    """MyST's heading anchor (myst_heading_anchors): lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"[^\w\s-]", "", title.strip().lower())
    return re.sub(r"\s", "-", title)


def _anchors(chapter: str) -> set[str]:
    text = (REPO / "book" / f"{chapter}.md").read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # headings only, not code comments
    return {_slug(m) for m in re.findall(r"^#{1,3} (.+)$", text, re.M)}


def _solutions() -> list[Path]:
    return sorted((REPO / "solutions").glob("*/*.ipynb"))


@pytest.mark.parametrize("notebook", _solutions(), ids=lambda p: p.stem)
def test_exercise_links_to_the_sections_it_practises(notebook):
    intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    links = BOOK_LINK.findall(intro)
    sections = [(chapter, anchor) for chapter, anchor in links if anchor]
    assert sections, f"{notebook.relative_to(REPO)}: the first cell links to no chapter section (../../book/x.md#section)"
    for chapter, anchor in links:
        assert (REPO / "book" / f"{chapter}.md").exists(), f"{notebook.name} links to a missing chapter {chapter}"
        if anchor:
            assert anchor in _anchors(chapter), f"{notebook.name}: no section #{anchor} in book/{chapter}.md"
    released = REPO / "exercises" / notebook.relative_to(REPO / "solutions")
    assert BOOK_LINK.findall("".join(json.loads(released.read_text())["cells"][0]["source"])) == links, (
        f"{released.relative_to(REPO)} is out of date: run make exercises"
    )


def _exercise_of_chapters() -> dict[str, set[str]]:
    """Each chapter and the exercises whose first cell links to it."""
    practised: dict[str, set[str]] = {}
    for notebook in _solutions():
        intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
        for chapter, _ in BOOK_LINK.findall(intro):
            practised.setdefault(f"book/{chapter}", set()).add(f"exercises/{notebook.parent.name}/{notebook.stem}")
    return practised


@pytest.mark.parametrize("docname", chapter_docnames())
def test_chapter_links_to_its_exercises(docname):
    text = source_of(docname).read_text()
    for exercise in sorted(_exercise_of_chapters().get(docname, ())):
        assert f"{{doc}}`../{exercise}`" in text, f"{docname} does not link to {exercise}, which practises it"


def test_exercises_index_lists_every_exercise_with_its_chapters():
    index = (REPO / "book" / "exercises.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| \{doc\}`\.\./(exercises/[\w/]+)` \| (.+?) \|", index, re.M)}
    assert set(rows) == set(exercise_docnames()), f"the index lists {sorted(rows)}"
    for chapter, exercises in _exercise_of_chapters().items():
        for exercise in exercises:
            assert f"{{doc}}`{Path(chapter).name}`" in rows[exercise], f"the index does not say {exercise} goes with {chapter}"
    without = [name for name in chapter_docnames() if name not in _exercise_of_chapters()]
    for chapter in without:
        assert f"{{doc}}`{Path(chapter).name}` has none" in index, f"the index does not say {chapter} has no exercise"


# --- glossary ------------------------------------------------------------------------------------

SYMBOLS = {"N": "batch", "C": "channels", "H": "height", "W": "width", "F": "filters",
           "K": "kernel size", "S": "stride", "P": "padding", "D": "dilation"}
TERMS = ("im2col", "receptive field", "cross-correlation", "stride", "padding", "dilation", "feature map")


def _glossary_entries() -> dict[str, str]:
    """term -> definition, from the {glossary} directives of book/glossary.md."""
    text = (REPO / "book" / "glossary.md").read_text()
    entries: dict[str, str] = {}
    for block in re.findall(r"```\{glossary\}\n(.*?)```", text, re.S):
        for term, definition in re.findall(r"^(\S[^\n]*)\n((?:  [^\n]*\n?)+)", block, re.M):
            assert term not in entries, f"the glossary defines {term!r} twice"
            entries[term] = " ".join(definition.split())
    return entries


def test_glossary_gives_each_symbol_one_meaning():
    entries = _glossary_entries()
    for symbol, meaning in SYMBOLS.items():
        assert symbol in entries, f"the glossary does not define {symbol}"
        assert meaning in entries[symbol].lower(), f"{symbol}: {entries[symbol]!r} does not say {meaning!r}"
    for term in TERMS:
        assert term in entries, f"the glossary does not define {term!r}"


def test_glossary_is_in_the_back_matter():
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    back = [part for part in toc["parts"] if part.get("caption", "").lower() == "back matter"]
    assert back and {"file": "book/glossary"} in back[0]["chapters"], "book/glossary is not in the TOC's back matter"


# --- plotting code -------------------------------------------------------------------------------

CODE_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(?:---\n(.*?)\n---\n)?(.*?)```", re.S)


@pytest.mark.parametrize("docname", chapter_docnames())
def test_code_that_only_draws_a_figure_is_folded(docname):
    """A cell that draws a captioned figure and prints nothing shows the figure,
    not its plotting code: `tags: [hide-input]` (or remove-input)."""
    text = source_of(docname).read_text()
    unfolded = []
    for match in CODE_CELL.finditer(text):
        header, body = match.group(1) or "", match.group(2)
        if "figure:" in header and "print(" not in body and not re.search(r"(hide|remove)-input", header):
            unfolded.append(f"line {text[: match.start()].count(chr(10)) + 1}: {body.strip().splitlines()[0][:80]}")
    assert not unfolded, f"{docname}: plotting cells without hide-input:\n" + "\n".join(unfolded)
