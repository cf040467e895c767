"""Small fixes to the book's HTML so that a reader's browser console stays clean.

Loaded by _config.yml (`sphinx: local_extensions:`); tests/test_site.py checks the result.

- Jupyter Book 1.x registers some inline scripts twice; sphinx-thebe's
  `const THEBE_JS_URL = ...` declared twice is a SyntaxError on every page.
  Identical <script> entries are dropped from each page (first one kept).
- pydata-sphinx-theme logs "Got invalid theme mode" on a reader's first visit
  unless `default_mode` is in the page context; it is "auto" (follows the
  system) unless `html_context` sets it.
- One search box: pydata-sphinx-theme adds a search field to the page header
  (`navbar_persistent`) unless told otherwise, and sphinx-book-theme already
  has one at the top of the sidebar; the header's is left out.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    """What the <script> tag says: its file and attributes (inline code included), not its priority."""
    # an inline script is registered once as filename None and once as '' (Sphinx's
    # own duplicate check treats them as different)
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", None) or {}
    return (str(filename), tuple(sorted((key, str(value)) for key, value in attributes.items())))


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique
    # pydata-sphinx-theme reads the colour mode from the page context (html_context)
    context.setdefault("default_mode", "auto")


def _one_search_box(app, config) -> None:
    options = config.html_theme_options
    if isinstance(options, dict):
        options.setdefault("navbar_persistent", [])


def setup(app):
    app.connect("config-inited", _one_search_box)
    # late, after the extensions that add page-specific scripts (MathJax among them)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
