"""The built book's HTML, checked without a browser (test_site.py drives one).

- the build is nitpicky and turns warnings into errors (the `built_book` fixture fails otherwise);
- every figure has a caption or real alt text;
- every chapter cites its sources, with keys that are in references.bib, and the
  rendered chapter links them to the bibliography;
- MathJax comes from the site itself, once a page, and no page loads a script,
  style sheet or font from another host (readers offline, the browser test);
- every internal link of every page resolves (file and #fragment).

Pages come from _toc.yml, so new chapters and exercises are covered automatically.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from booksite import HTML, REPO, bib_keys, broken_internal_link, chapter_docnames, source_of, toc_files
from bs4 import BeautifulSoup

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]

SITE = "http://site.invalid/"  # any base URL: links are resolved against the built files
# {cite}`a,b`, {cite:p}`a`, {cite:t}`a`, {cite:ps}`a`, ...
CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
MATHJAX = "_static/mathjax/tex-chtml-full.js"


def built_pages() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if not p.relative_to(HTML).parts[0].startswith("_"))


def soup_of(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(), "html.parser")


def test_build_is_nitpicky_and_fails_on_warnings(built_book):
    makefile = (REPO / "Makefile").read_text()
    flags = re.search(r"^BOOK_FLAGS\s*\??=\s*(.*)$", makefile, re.M)
    assert flags, "Makefile has no BOOK_FLAGS"
    assert {"-W", "-n"} <= set(flags.group(1).split()), f"make book must run with -W -n, has {flags.group(1)!r}"


def _alt_is_real(img) -> bool:
    """Docutils fills a missing alt with the image's URI: that is no description."""
    alt = (img.get("alt") or "").strip()
    src = img.get("src") or ""
    return bool(alt) and alt != src and not re.fullmatch(r"[\w./-]+\.(png|jpe?g|gif|svg|webp)", alt)


def test_every_image_has_alt_text_or_a_caption(built_book):
    missing = []
    for page in built_pages():
        for img in soup_of(page).find_all("img"):
            figure = img.find_parent("figure")
            caption = figure.find("figcaption") if figure else None
            if _alt_is_real(img) or (caption and caption.get_text(strip=True)):
                continue
            missing.append(f"{page.relative_to(HTML)}: <img src={img.get('src')!r} alt={img.get('alt')!r}>")
    assert not missing, (
        "images with neither alt text nor a figure caption (give the cell `mystnb: figure: caption:` "
        "or `mystnb: image: alt:` metadata):\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("docname", chapter_docnames())
def test_chapter_cites_its_sources_in_the_bibliography(built_book, docname):
    source = source_of(docname)
    text = source.read_text()
    keys = {key.strip() for group in CITE_RE.findall(text) for key in group.split(",")}
    assert keys, f"{source.relative_to(REPO)} cites no source: add {{cite}}`key` roles with keys from references.bib"
    unknown = sorted(keys - bib_keys())
    assert not unknown, f"{source.relative_to(REPO)} cites keys missing from references.bib: {unknown}"
    page = soup_of(HTML / f"{docname}.html")
    to_bibliography = [a for a in page.find_all("a", href=True) if "references.html#" in a["href"]]
    assert to_bibliography, f"{docname}.html shows no citation linked to the bibliography page"


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def test_references_page_lists_every_cited_source(built_book):
    cited = set()
    for docname in toc_files():
        try:
            text = source_of(docname).read_text()
        except FileNotFoundError:
            continue
        cited |= {key.strip() for group in CITE_RE.findall(text) for key in group.split(",")}
    entries = [_words(c.get_text(" ")) for c in soup_of(HTML / "book" / "references.html").select(".citation")]
    bib = (REPO / "references.bib").read_text()
    for key in sorted(cited):
        entry = re.search(r"@\w+\s*\{\s*" + re.escape(key) + r"\s*,.*?\btitle\s*=\s*[{\"](.+?)[}\"],?\s*\n", bib, re.S)
        assert entry, f"{key} is not in references.bib"
        title = _words(re.sub(r"\\[a-zA-Z]+|[{}]", "", entry.group(1)))
        title = " ".join(title.split()[:4])
        assert any(title in e for e in entries), f"the references page does not list {key} ({title} ...)"


def test_mathjax_is_served_by_the_site_once_a_page(built_book):
    problems = []
    for page in built_pages():
        soup = soup_of(page)
        rel = page.relative_to(HTML)
        for tag in soup.find_all(["script", "link", "img", "iframe"]):
            url = tag.get("src") or (tag.get("href") if tag.name == "link" else None)
            if url and re.match(r"(https?:)?//", url) and not (tag.name == "link" and "stylesheet" not in (tag.get("rel") or [])):
                problems.append(f"{rel}: <{tag.name}> loads {url} from another host")
        scripts = [s["src"] for s in soup.find_all("script", src=True) if "mathjax" in s["src"].lower()]
        has_math = bool(soup.select(".math"))
        if has_math and len(scripts) != 1:
            problems.append(f"{rel}: has math and loads MathJax {len(scripts)} times: {scripts}")
        for src in scripts:
            target = (page.parent / src.split("?")[0]).resolve()
            if not target.is_file() or not target.as_posix().endswith(MATHJAX):
                problems.append(f"{rel}: MathJax script {src} is not the vendored {MATHJAX}")
    fonts = list((HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "the MathJax fonts were not copied into _static/mathjax"
    assert not problems, "\n".join(problems)


def test_every_internal_link_resolves(built_book):
    broken = []
    pages = [HTML / f"{name}.html" for name in toc_files()] + [HTML / "index.html", HTML / "genindex.html"]
    for page in pages:
        page_url = SITE + page.relative_to(HTML).as_posix()
        soup = soup_of(page)
        for a in soup.find_all("a", href=True):
            why = broken_internal_link(page_url, a["href"], SITE)
            if why:
                broken.append(f"{page.relative_to(HTML)}: {why}")
        refresh = soup.find("meta", attrs={"http-equiv": re.compile("refresh", re.I)})
        if refresh and "url=" in refresh.get("content", ""):
            why = broken_internal_link(page_url, refresh["content"].split("url=", 1)[1], SITE)
            if why:
                broken.append(f"{page.relative_to(HTML)} (redirect): {why}")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
