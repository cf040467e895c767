"""The rendered book, checked the way a reader sees it: in a browser.

The built site (_build/html) is served on 127.0.0.1 and headless Chromium
(Debian's `chromium` + `chromium-driver`, driven by Selenium through the system
ChromeDriver; nothing is downloaded) opens every page of _toc.yml, plus the
search and index pages. On every page:

- the browser console shows no error (a failed request, a script error);
- every image has loaded (non-zero natural width);
- MathJax has typeset every `.math` element, with no TeX error, and no raw TeX
  (`$$`, `\\frac`, `\\begin{...}`) is left in the text outside code;
- every link that stays inside the site resolves: the file exists and a #fragment
  names an element on it.

Also: the search page finds each chapter by a word only that chapter contains;
exercise pages show the `raise NotImplementedError` stubs and no line of the
instructor's solutions or hidden tests; screenshots of key pages at desktop and
phone widths are saved in test-artifacts/screenshots/ for a person to look at.

Chromium runs with every network access outside loopback refused, so a page that
needs a CDN fails here just as it would for a reader offline.

Run only these: `.venv/bin/python -m pytest -m browser`.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from booksite import HTML, REPO, broken_internal_link, chapter_docnames, exercise_docnames, toc_files, source_of

pytestmark = [pytest.mark.slow, pytest.mark.notebooks, pytest.mark.browser]

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
VIEWPORTS = {"desktop": (1366, 900, False), "phone": (390, 844, True)}
SCREENSHOT_MAX_HEIGHT = 7000  # px: long chapters are cut there
PAGES = ["index", *toc_files(), "search", "genindex"]

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    # Nothing but loopback: a page that needs the internet fails as it would offline.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# Raw TeX that MathJax should have turned into typeset math.
RAW_TEX = re.compile(
    r"\$\$|\\\(|\\\)|\\\[|\\\]"
    r"|\\(?:begin|end)\{"
    r"|\\(?:frac|dfrac|sum|prod|int|sqrt|times|cdot|cdots|ldots|dots|star|left|right|mathbf|mathrm|mathcal"
    r"|text|operatorname|partial|nabla|alpha|beta|gamma|delta|epsilon|lambda|sigma|theta|mu|qquad|quad"
    r"|leq|geq|le|ge|neq|approx|infty|hat|bar|tilde|odot|otimes)(?![a-zA-Z])"
    r"|(?<![\w$\\])\$(?=\S)[^$\n]{1,200}(?<=\S)\$(?![\w$])"
)

# Text nodes inside these are code or MathJax output, where `$` and `\` are legitimate.
JS_VISIBLE_TEXT = """
const skip = 'pre, code, kbd, samp, script, style, noscript, textarea, mjx-container, mjx-assistive-mml';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const parts = [];
let node;
while ((node = walker.nextNode())) {
  if (!node.parentElement || node.parentElement.closest(skip)) continue;
  parts.push(node.nodeValue);
}
return parts.join(' ');
"""

JS_WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!document.querySelector('.math')) { done('no math'); return; }
const started = Date.now();
(function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done('typeset'), (e) => done('MathJax failed: ' + e));
  } else if (Date.now() - started > 20000) {
    done('MathJax did not start within 20 s (script not loaded?)');
  } else {
    setTimeout(poll, 50);
  }
})();
"""

JS_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach((img) => { if (img.loading === 'lazy') img.loading = 'eager'; });
Promise.all(images.map((img) => img.complete ? null : new Promise((resolve) => {
  img.addEventListener('load', resolve); img.addEventListener('error', resolve); setTimeout(resolve, 10000);
}))).then(() => done(images.map((img) => ({
  src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
}))));
"""

JS_MATH = """
const math = Array.from(document.querySelectorAll('.math'));
return {
  total: math.length,
  untypeset: math.filter((el) => !el.querySelector('mjx-container')).map((el) => el.textContent.trim().slice(0, 80)),
  errors: Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]'))
    .map((el) => (el.getAttribute('data-mjx-error') || el.textContent).slice(0, 120)),
  typeset: document.querySelectorAll('mjx-container').length,
};
"""


# --- the site and the browser ----------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature is http.server's
        pass


@pytest.fixture(scope="session")
def site(built_book) -> str:
    """The built book served on loopback; yields its base URL (ending in '/')."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through the system ChromeDriver (never a downloaded one)."""
    chromium = _find("CNNBOOK_CHROMIUM", "chromium", "chromium-browser")
    chromedriver = _find("CNNBOOK_CHROMEDRIVER", "chromedriver")
    if not (chromium and chromedriver):
        install = "apt-get install -y chromium chromium-driver  (or: make system-packages, as root)"
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            pytest.skip(f"headless Chromium not found; to run the browser tests: sudo {install}")
        pytest.fail(f"headless Chromium not found (chromium={chromium}, chromedriver={chromedriver}): {install}")

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cnnbook-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1366,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(180)
    driver.set_script_timeout(120)  # generous: CI machines can be loaded
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str) -> tuple[str, list[str]]:
    """Load a page, wait for MathJax; return the MathJax status and the console errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    # The site's root index.html is a meta-refresh redirect: wait until the page
    # that stays has loaded (the scripts below need its document.body).
    WebDriverWait(driver, 90).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && document.body !== null"
            " && !document.querySelector('meta[http-equiv=\"refresh\" i]')"
        ),
        f"{url} did not finish loading",
    )
    status = driver.execute_async_script(JS_WAIT_FOR_MATHJAX)
    errors = [
        f"{e['level']}: {e['message']}"
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not _is_favicon_probe(e["message"])
    ]
    return status, errors


def _is_favicon_probe(message: str) -> bool:
    """Chromium asks every site for /favicon.ico by itself; the book does not link one."""
    return bool(re.match(r"https?://127\.0\.0\.1:\d+/favicon\.ico - Failed to load resource", message))


def page_url(site: str, docname: str) -> str:
    return f"{site}{docname}.html"


# --- every page ------------------------------------------------------------------------------


@pytest.mark.parametrize("docname", PAGES)
def test_page_reads_correctly(site, browser, docname):
    status, console_errors = open_page(browser, page_url(site, docname))
    problems = [f"console: {e}" for e in console_errors]
    if status not in ("typeset", "no math"):
        problems.append(f"MathJax: {status}")

    images = browser.execute_async_script(JS_IMAGES)
    problems += [f"image did not load: {img['src']}" for img in images if not img["loaded"]]

    math = browser.execute_script(JS_MATH)
    problems += [f"math not typeset: {text!r}" for text in math["untypeset"]]
    problems += [f"MathJax error: {text!r}" for text in math["errors"]]
    text = browser.execute_script(JS_VISIBLE_TEXT)
    for match in RAW_TEX.finditer(text):
        context = text[max(0, match.start() - 40) : match.end() + 40].replace("\n", " ")
        problems.append(f"raw TeX in the text: {match.group(0)!r} in ...{context}...")

    here = browser.current_url
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map((a) => [a.getAttribute('href'), a.href]);"
    )
    for raw, absolute in hrefs:
        why = broken_internal_link(here, absolute, site)
        if why:
            problems.append(f"broken link {raw!r}: {why}")

    problems = sorted(set(problems))
    shown = problems[:40] + ([f"... and {len(problems) - 40} more"] if len(problems) > 40 else [])
    assert not problems, f"{docname}.html as a reader sees it:\n" + "\n".join(shown)


def test_chapters_show_typeset_math(site, browser):
    """Some chapter has equations, and they come out as MathJax output (guards the raw-TeX check)."""
    typeset = {}
    for docname in chapter_docnames():
        open_page(browser, page_url(site, docname))
        typeset[docname] = browser.execute_script(JS_MATH)["typeset"]
    assert any(typeset.values()), f"no chapter shows typeset math: {typeset}"


# --- figures ---------------------------------------------------------------------------------

JS_FIGURES = """
return Array.from(document.querySelectorAll('main .cell_output img, main figure img')).map((img) => {
  const box = img.getBoundingClientRect();
  return {src: img.getAttribute('src'), url: img.currentSrc || img.src, natural: img.naturalWidth, shown: box.width,
          zoomable: img.classList.contains('cnnbook-zoomable'), column: img.closest('article, main').clientWidth};
});
"""

JS_LIGHTBOX = """
const overlay = document.querySelector('.cnnbook-lightbox');
if (!overlay) return null;
const img = overlay.querySelector('img');
return {src: img.getAttribute('src'), natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
        complete: img.complete};
"""


def figure_pages() -> list[str]:
    """Chapters that draw a captioned figure, read from their sources: collection must work before the
    book is built (the `built_book` fixture builds it when the first test runs, as on a fresh clone)."""
    return [name for name in chapter_docnames() if "figure:" in source_of(name).read_text()]


@pytest.mark.parametrize("docname", figure_pages())
def test_figures_are_drawn_at_the_size_they_are_shown_and_open_full_size(site, browser, docname):
    """At the desktop width every figure is shown at its natural size: never
    stretched, and not shrunk either (it was drawn no wider than the column);
    a click opens it at its natural size, and Escape closes it."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, page_url(site, docname))
    browser.execute_async_script(JS_IMAGES)
    figures = browser.execute_script(JS_FIGURES)
    assert figures, f"{docname} shows no figure"
    problems = []
    for figure in figures:
        name = figure["src"].rsplit("/", 1)[-1]
        if figure["shown"] > figure["natural"] + 1:
            problems.append(f"{name}: stretched to {figure['shown']:.0f} px from its natural {figure['natural']} px")
        if figure["shown"] < figure["natural"] - 1:
            problems.append(
                f"{name}: drawn {figure['natural']} px wide, shown at {figure['shown']:.0f} px "
                f"(column {figure['column']} px): draw it no wider than the column (figsize x dpi)"
            )
        if not figure["zoomable"]:
            problems.append(f"{name}: a click does not open it (no cnnbook-zoomable class)")
    images = browser.find_elements("css selector", "main .cell_output img, main figure img")
    for image, figure in zip(images, figures):
        name = figure["src"].rsplit("/", 1)[-1]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", image)
        image.click()
        shown = WebDriverWait(browser, 10).until(lambda d: d.execute_script(JS_LIGHTBOX), f"{name}: no overlay")
        if shown["src"] != figure["url"] or abs(shown["shown"] - figure["natural"]) > 1:
            problems.append(f"{name}: the overlay shows {shown}, not the image at {figure['natural']} px")
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(JS_LIGHTBOX) is None, f"{name}: Escape did not close it")
    assert not problems, f"{docname}:\n" + "\n".join(problems)


def test_a_figure_opens_full_size_on_a_phone(site, browser):
    """On a narrow screen a figure shrinks to fit; a click shows all its pixels."""
    docname = figure_pages()[0]
    width, height, mobile = VIEWPORTS["phone"]
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    )
    try:
        open_page(browser, page_url(site, docname))
        browser.execute_async_script(JS_IMAGES)
        figure = browser.execute_script(JS_FIGURES)[0]
        assert figure["shown"] <= width, f"a figure is {figure['shown']} px wide on a {width} px screen"
        image = browser.find_element("css selector", "main .cell_output img, main figure img")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", image)
        shown = browser.execute_script(JS_LIGHTBOX)
        assert shown and abs(shown["shown"] - figure["natural"]) <= 1, f"the overlay shows {shown}, natural {figure}"
        browser.execute_script("document.querySelector('.cnnbook-lightbox').click();")
        assert browser.execute_script(JS_LIGHTBOX) is None, "a click on the overlay did not close it"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_code_lines_stay_inside_the_column(site, browser):
    """Long code lines wrap: no code block is wider than the column it sits in."""
    wide = {}
    for docname in chapter_docnames():
        open_page(browser, page_url(site, docname))
        wide[docname] = browser.execute_script(
            "return Array.from(document.querySelectorAll('main div.highlight pre'))"
            ".filter((pre) => pre.scrollWidth > pre.clientWidth + 1)"
            ".map((pre) => pre.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 100));"
        )
    wide = {name: lines for name, lines in wide.items() if lines}
    assert not wide, f"code blocks that run off the column: {wide}"


# --- search ----------------------------------------------------------------------------------


def test_one_search_box_a_page(site, browser):
    """The theme can show a search field in the sidebar and a search button in
    the header; a reader sees one way to search."""
    counts = {}
    for docname in ["book/index", chapter_docnames()[0]]:
        open_page(browser, page_url(site, docname))
        counts[docname] = browser.execute_script(
            "return Array.from(document.querySelectorAll('input[type=search], .search-button-field, button.search-button'))"
            ".filter((el) => el.offsetParent !== null && !el.closest('dialog')).length;"
        )
    assert all(count == 1 for count in counts.values()), f"visible search boxes or buttons per page: {counts}"


def _search_index() -> dict:
    text = (HTML / "searchindex.js").read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


def _docs(entry) -> set[int]:
    return set(entry) if isinstance(entry, list) else ({entry} if entry is not None else set())


def word_only_in(docname: str) -> str:
    """A word of the chapter's text that the search index holds for this chapter alone.

    A chapter that is still a stub may have no such word: then the word of its
    text (title included) that the fewest pages contain.
    """
    from bs4 import BeautifulSoup
    from sphinx.search.en import SearchEnglish

    index = _search_index()
    doc = index["docnames"].index(docname)
    stem = SearchEnglish({}).stem
    soup = BeautifulSoup((HTML / f"{docname}.html").read_text(), "html.parser")
    article = soup.select_one("article") or soup
    candidates = []
    for element in article.find_all(["p", "h1", "h2", "h3", "li"]):
        for word in re.findall(r"\b[a-z]{5,}\b", element.get_text(" ").lower()):
            term = stem(word)
            docs = _docs(index["terms"].get(term)) | _docs(index["titleterms"].get(term))
            if doc in docs:
                candidates.append((len(docs), -len(word), word))
    assert candidates, f"{docname}: none of its words is in the search index (is the page indexed?)"
    return min(candidates)[2]


@pytest.mark.parametrize("docname", chapter_docnames())
def test_search_finds_the_chapter_by_a_word_it_contains(site, browser, docname):
    word = word_only_in(docname)
    _, console_errors = open_page(browser, f"{site}search.html?q={word}")
    from selenium.webdriver.support.ui import WebDriverWait

    def finished(driver):
        summary = driver.find_elements("css selector", "#search-results .search-summary, #search-results p")
        return any(s.text.strip() for s in summary) and "Searching" not in driver.find_element("id", "search-results").text

    WebDriverWait(browser, 90).until(finished, f"search for {word!r} did not finish")
    results = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results ul.search li a')).map((a) => a.href);"
    )
    found = {re.sub(r"[?#].*$", "", href)[len(site) :] for href in results}
    assert f"{docname}.html" in found, f"searching {word!r} did not find {docname}; results: {sorted(found)}"
    assert not console_errors, "console errors on the search page:\n" + "\n".join(console_errors)


# --- exercises -------------------------------------------------------------------------------


@pytest.mark.parametrize("docname", exercise_docnames())
def test_exercise_page_shows_stubs_and_no_solution(site, browser, docname):
    from cnnbook_grader.notebooks import protected_lines, read

    source = REPO / "solutions" / Path(docname).relative_to("exercises").with_suffix(".ipynb")
    assert source.exists(), f"{docname} has no instructor source {source.relative_to(REPO)}"
    open_page(browser, page_url(site, docname))
    text = browser.execute_script("return (document.querySelector('main') || document.body).textContent;")
    lines = {line.strip() for line in text.splitlines()}
    assert "raise NotImplementedError()" in lines or "raise NotImplementedError" in text, (
        f"{docname} shows no `raise NotImplementedError` stub"
    )
    markers = [m for m in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS") if m in text]
    assert not markers, f"{docname} shows nbgrader markers {markers}"
    leaked = sorted(line for line in protected_lines(read(source)) if line in text)
    assert not leaked, f"{docname} shows instructor-only lines:\n" + "\n".join(leaked)


# --- screenshots -----------------------------------------------------------------------------


def key_pages() -> dict[str, str]:
    """The index, the first chapter with a figure (else the first chapter) and the first exercise page."""
    pages = {"index": "book/index"}
    chapters = chapter_docnames()
    with_figures = [name for name in chapters if "<img" in (HTML / f"{name}.html").read_text()]
    if chapters:
        pages["chapter"] = (with_figures or chapters)[0]
    if exercise_docnames():
        pages["exercise"] = exercise_docnames()[0]
    return pages


def screenshot(driver, path: Path, width: int, height: int, mobile: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    try:
        driver.execute_async_script(JS_WAIT_FOR_MATHJAX)
        driver.execute_async_script(JS_IMAGES)
        full = driver.execute_script("return document.documentElement.scrollHeight;")
        clip = {"x": 0, "y": 0, "width": width, "height": min(full, SCREENSHOT_MAX_HEIGHT), "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_screenshots_of_key_pages(site, browser):
    """Saved for a person to look at (CI keeps test-artifacts/); checked only to be real pictures."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for label, docname in key_pages().items():
        for device, (width, height, mobile) in VIEWPORTS.items():
            open_page(browser, page_url(site, docname))
            path = SCREENSHOTS / f"{label}-{device}.png"
            screenshot(browser, path, width, height, mobile)
            data = path.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"{path} is not a real screenshot"
            assert int.from_bytes(data[16:20], "big") == width, f"{path} is not {width} px wide"
            saved.append(path.relative_to(REPO).as_posix())
    print("screenshots:", *saved, sep="\n  ")
