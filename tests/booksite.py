"""What the book-site tests share: where the book is, and which pages the table of contents lists.

Every list here is derived from _toc.yml and the files on disk, so chapters and
exercises added later are checked without touching the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
BIBFILE = REPO / "references.bib"

# Pages of book/ that are not chapters: they need not cite a source.
NON_CHAPTER_PAGES = {"book/index", "book/references", "book/exercises", "book/glossary"}


def toc_files() -> list[str]:
    """Every page of _toc.yml, in reading order, as a docname (path without suffix)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return files


def chapter_docnames() -> list[str]:
    """Pages of book/ that teach something (not the index, exercises or references page)."""
    return [name for name in toc_files() if name.startswith("book/") and name not in NON_CHAPTER_PAGES]


def exercise_docnames() -> list[str]:
    """The student exercise notebooks the book renders (never executes)."""
    return [name for name in toc_files() if name.startswith("exercises/")]


def source_of(docname: str) -> Path:
    """The source file of a page (.md or .ipynb)."""
    for suffix in (".md", ".ipynb", ".rst"):
        path = REPO / f"{docname}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no source for {docname} (.md, .ipynb or .rst)")


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", BIBFILE.read_text()))


# --- links ---------------------------------------------------------------------------------

_ID_RE = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")
_ids_cache: dict[Path, set[str]] = {}


def ids_in(path: Path) -> set[str]:
    """Every id (and anchor name) an HTML file defines."""
    if path not in _ids_cache:
        import html

        _ids_cache[path] = {html.unescape(m) for m in _ID_RE.findall(path.read_text(errors="replace"))}
    return _ids_cache[path]


def broken_internal_link(page_url: str, href: str, site_root_url: str, root: Path = HTML) -> str | None:
    """Why `href` on the page at `page_url` does not resolve inside the site, or None if it does.

    `site_root_url` is the URL the site is served from (ending in '/'); links
    that leave it (other hosts, mailto:, javascript:) are not internal and pass.
    The target file must exist under `root`; a #fragment must be an id on it.
    """
    from urllib.parse import unquote, urldefrag, urljoin, urlsplit

    href = href.strip()
    if not href or href.startswith(("mailto:", "javascript:", "tel:", "data:")):
        return None
    absolute = urljoin(page_url, href)
    if not absolute.startswith(site_root_url):
        return None
    target, fragment = urldefrag(absolute)
    relative = unquote(urlsplit(target).path[len(urlsplit(site_root_url).path):])
    path = root / relative
    if relative == "" or relative.endswith("/"):
        path = path / "index.html"
    if not path.is_file():
        return f"{href!r} -> {relative or '/'} does not exist"
    fragment = unquote(fragment)
    if fragment and path.suffix == ".html" and fragment not in ids_in(path):
        return f"{href!r} -> no element with id {fragment!r} on {path.relative_to(root)}"
    return None
