"""The HTML page of :mod:`similarity`: one self-contained file, every piece of student text escaped."""

from __future__ import annotations

import datetime as dt
from html import escape

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.side { width: 100%; table-layout: fixed; }
.side td { width: 50%; }
pre { margin: 0 0 1rem 0; font-size: 0.85rem; white-space: pre-wrap; overflow-wrap: anywhere; }
pre > span { display: block; }
pre > span.match { background: #ffe08a; }
.lineno { color: #888; user-select: none; }
h3 { margin-top: 2rem; }
.note { color: #555; max-width: 60rem; }
"""


def _e(value) -> str:
    return escape(str(value), quote=True)


def _code(fragment, matched: set[int]) -> str:
    lines = fragment.source.splitlines() or [""]
    width = len(str(len(lines)))
    rows = []
    for number, line in enumerate(lines, start=1):
        css = ' class="match"' if number in matched else ""
        rows.append(f'<span{css}><span class="lineno">{number:>{width}} </span>{_e(line)}</span>')
    return f"<div><b>{_e(fragment.label)}</b></div><pre>{''.join(rows)}</pre>"


def _side(pair, submission) -> str:
    lines = pair.lines(submission)
    parts = [f"<h4>{_e(submission.student)} ({len(submission.prints)} fingerprints)</h4>"]
    parts += [_code(fragment, lines.get(index, set())) for index, fragment in enumerate(submission.fragments)]
    parts += [f'<p class="note">{_e(note)}</p>' for note in submission.notes]
    return "".join(parts)


def _pair_row(number, pair, link: bool) -> str:
    smaller = min(len(pair.a.prints), len(pair.b.prints))
    first = f'<a href="#pair-{number}">{number}</a>' if link else str(number)
    return (f'<tr><td class="num">{first}</td><td class="num">{pair.score:.2f}</td>'
            f'<td class="num">{len(pair.shared)} / {smaller}</td>'
            f"<td>{_e(pair.a.student)}</td><td>{_e(pair.b.student)}</td></tr>")


def _table(pairs, link: bool, start: int = 1) -> str:
    head = "<tr><th>#</th><th>score</th><th>shared / fewer</th><th>student</th><th>student</th></tr>"
    rows = "".join(_pair_row(start + i, p, link) for i, p in enumerate(pairs))
    return f"<table>{head}{rows}</table>"


def html_report(report) -> str:
    s = report.settings
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Similarity: {_e(report.assignment)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Similar answer code: {_e(report.assignment)}</h1>",
        f'<p class="note">{len(report.submissions)} submissions compared on {when}. A pair is listed when its '
        f"score (shared fingerprints / the fingerprints of the submission with fewer) is at least "
        f"{s['threshold']:g} and it shares at least {s['min_shared']} fingerprints. Only answer cells count; "
        f"names, comments, docstrings and layout are ignored, and so is everything in the released notebooks "
        f"({_e(s['release'])}) and any fingerprint more than {s['common_fraction']:.0%} of the submissions hold "
        f"({s['ignored_common']} such). Parameters: k = {s['k']} tokens, window w = {s['w']}.</p>",
        '<p class="note"><b>This report is a pointer for a human, not a verdict, and changes no score.</b> '
        "Short answers, a method the chapter shows, or students who worked together as allowed can all look "
        "alike; read the highlighted lines before drawing any conclusion.</p>",
        "<h2>Flagged pairs</h2>",
        _table(report.flagged, link=True) if report.flagged else "<p>No pair at or above the threshold.</p>",
    ]
    below = [p for p in report.pairs if p not in report.flagged][:10]
    if below:
        parts += ["<h2>Highest pairs below the threshold</h2>",
                  '<p class="note">For calibration: the pairs that came closest.</p>', _table(below, link=False)]
    if report.skipped:
        parts.append("<h2>Skipped</h2><ul>")
        parts += [f"<li>{_e(who)}: {_e(why)}</li>" for who, why in report.skipped]
        parts.append("</ul>")
    for number, pair in enumerate(report.flagged, start=1):
        parts += [f'<h3 id="pair-{number}">{number}. {_e(pair.a.student)} and {_e(pair.b.student)}: '
                  f"score {pair.score:.2f} ({len(pair.shared)} shared fingerprints)</h3>",
                  '<table class="side"><tr>'
                  f"<td>{_side(pair, pair.a)}</td><td>{_side(pair, pair.b)}</td></tr></table>"]
    parts.append("</body></html>")
    return "\n".join(parts)
