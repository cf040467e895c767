"""The book builds the way the README says (`make book`), every chapter executed.

The build is incremental: chapters whose source did not change come from the
execution cache in _build/.jupyter_cache, so this test is cheap after the first run.
Browser-level checks of the rendered pages live in test_site.py, static checks of the
built HTML (figures, citations, links, offline MathJax) in test_site_static.py.
"""

from __future__ import annotations

import re

import pytest
from booksite import HTML, REPO, toc_files  # noqa: F401  (the `built_book` fixture is in conftest.py)

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]


def test_every_toc_page_is_built(built_book):
    assert (built_book / "index.html").exists()
    for name in toc_files():
        assert (built_book / f"{name}.html").exists(), f"{name} was not built"


def chapter_pages() -> list[str]:
    return [name for name in toc_files() if name.startswith("book/")]


@pytest.mark.parametrize("name", chapter_pages())
def test_chapters_are_executed_without_errors(built_book, name):
    page = (built_book / f"{name}.html").read_text()
    assert "Traceback (most recent call last)" not in page, f"{name} shows a traceback"
    source = REPO / f"{name}.md"
    if source.exists() and "{code-cell}" in source.read_text():
        assert 'class="cell_output' in page, f"{name} has code cells but no executed output"


def test_convolution_chapter_shows_its_computed_results_and_figure(built_book):
    page = (built_book / "book" / "convolution_basics.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    assert "cross-correlation: [-2. -2. -2.]" in text
    assert "[  0. -30. -30.   0.]" in text
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    assert images, "the Sobel figure is missing"
    for src in images:
        assert (built_book / "book" / src).resolve().exists(), f"image {src} not in the build"
    assert "Sobel edge detection" in text


def test_exercise_pages_are_rendered_but_not_executed(built_book):
    for name in toc_files():
        if name.startswith("exercises/"):
            page = (built_book / f"{name}.html").read_text()
            assert "NotImplementedError" in page, f"{name} should show the stubs"
            assert 'class="cell_output' not in page, f"{name} was executed by the book"
