"""``similarity``: pairs of submissions whose answer code is unusually alike, as an HTML report.

The report informs an instructor's judgement; it never changes a score.

Method: document fingerprinting by winnowing (Schleimer, Wilkerson and Aiken,
"Winnowing: local algorithms for document fingerprinting", SIGMOD 2003, the
method of MOSS).

1. *Answer code* only: the code cells the release marks as solution cells
   (``metadata.nbgrader.solution``), matched by ``grade_id`` against the released
   notebooks (the release decides, not the student's possibly edited metadata),
   from every notebook of ``submitted/<student>/<assignment>/``.
2. *Normalise* (:func:`tokens`): Python's ``tokenize``; comments, docstrings and
   other string-only statements, blank lines, line breaks and indentation are
   dropped; every identifier becomes ``V``, except keywords, builtins and
   attribute names (after a ``.``): ``np.zeros`` and ``x.shape`` cannot be
   renamed without changing what the code does, and keeping them is what tells
   ``np.einsum`` from a loop of ``np.sum``. An attribute the submission assigns
   or defines itself (``self.cache = ...``) is its own name and becomes ``V``.
   Every string literal becomes ``S``; numbers are kept. IPython magics
   (``%timeit``, ``!pip``) are skipped.
3. *Fingerprint* (:func:`fingerprints`): a 64-bit hash of every run of ``k``
   consecutive tokens; in each window of ``w`` consecutive hashes the smallest
   is kept (the rightmost on ties), each chosen position once (:func:`winnow`).
   Any shared run of at least ``w + k - 1`` tokens is guaranteed to be found.
   Each fingerprint keeps the source lines its tokens came from.
4. *Ignore* what proves nothing: every k-gram of the released notebooks'
   code (stubs, imports, visible tests), and fingerprints held by more than
   ``common_fraction`` of the submissions and by at least ``COMMON_MIN``:
   idioms everyone writes (in a small class, where three students with the
   same code are most of it, nothing is ignored this way).
5. *Score* each pair: shared fingerprints / the smaller of the two counts (1.0:
   one submission's answer code is contained in the other's). Pairs at or above
   ``threshold`` with at least ``min_shared`` shared fingerprints are flagged.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import keyword
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from .course import Course, atomic_write
from .normalize import Unreadable, read_submission
from .notebooks import nbgrader_meta, read

__all__ = ["K", "W", "THRESHOLD", "COMMON_FRACTION", "COMMON_MIN", "MIN_SHARED", "Token", "tokens", "kgram_hashes", "winnow",
           "fingerprints", "Fragment", "Submission", "Pair", "Report", "similarity", "text_table"]

K = 12  # tokens per k-gram
W = 8  # window: any common run of W + K - 1 = 19 normalised tokens is found
THRESHOLD = 0.5
COMMON_FRACTION = 0.5
COMMON_MIN = 5  # a fingerprint fewer submissions hold is never a "common idiom"
MIN_SHARED = 8

_KEPT_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist)
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12 splits f-strings into tokens
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_ASSIGN_OPS = {"=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "@=", "&=", "|=", "^=", ">>=", "<<=", ":"}


@dataclass(frozen=True)
class Token:
    text: str  # the normalised text: "V", "S", a keyword, an operator...
    first_line: int  # 1-based lines of the source this token spans
    last_line: int


def _raw_tokens(source: str) -> tuple[list[tokenize.TokenInfo], str]:
    """Python's tokens of ``source`` (magic lines blanked), and a note if it could not be read to the end."""
    lines = ["" if line.lstrip().startswith(("%", "!")) and not line.lstrip().startswith("!=") else line
             for line in source.splitlines()]
    out: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            out.append(token)
    except Exception as error:  # noqa: BLE001 - TokenError, IndentationError...: keep what was read
        return out, f"tokenised up to line {out[-1].start[0] if out else 0} ({error.__class__.__name__})"
    return out, ""


def _statements(raw: list[tokenize.TokenInfo]):
    """Group tokens into logical lines (statements), without layout tokens; f-strings become one STRING."""
    statement: list[tokenize.TokenInfo] = []
    depth, start = 0, None
    for token in raw:
        if token.type == _FSTRING_START:
            depth, start = depth + 1, start or token
            continue
        if depth:
            if token.type == _FSTRING_END:
                depth -= 1
                if not depth:
                    statement.append(tokenize.TokenInfo(tokenize.STRING, "f''", start.start, token.end, ""))
                    start = None
            continue
        if token.type == tokenize.NEWLINE or (token.type == tokenize.OP and token.string == ";"):
            yield statement
            statement = []
        elif token.type not in _SKIPPED and (token.type != tokenize.ERRORTOKEN or token.string.strip()):
            statement.append(token)
    if statement:
        yield statement


def tokens(source: str, own_attributes: frozenset[str] | None = None) -> tuple[list[Token], str]:
    """The normalised tokens of a piece of Python code, and a note if it did not tokenise to the end.

    own_attributes: attribute names the code itself defines (become ``V``); by default those of ``source``.
    """
    raw, note = _raw_tokens(source)
    statements = [s for s in _statements(raw) if s and not all(t.type == tokenize.STRING for t in s)]
    if own_attributes is None:
        own_attributes = _own_attributes(statements)
    out: list[Token] = []
    for statement in statements:
        previous = ""
        for t in statement:
            if t.type == tokenize.NAME:
                if previous == ".":
                    text = "V" if t.string in own_attributes else t.string
                else:
                    text = t.string if t.string in _KEPT_NAMES else "V"
            elif t.type == tokenize.STRING:
                text = "S"
            else:
                text = t.string
            out.append(Token(text, t.start[0], t.end[0]))
            previous = t.string
    return out, note


def _own_attributes(statements) -> frozenset[str]:
    names = set()
    for statement in statements:
        for a, b, c in zip(statement, statement[1:], statement[2:]):
            if a.string == "." and b.type == tokenize.NAME and c.type == tokenize.OP and c.string in _ASSIGN_OPS:
                names.add(b.string)
        for a, b in zip(statement, statement[1:]):
            if a.string in ("def", "class") and b.type == tokenize.NAME:
                names.add(b.string)
    return frozenset(names)


def kgram_hashes(texts: list[str], k: int = K) -> list[int]:
    """A 64-bit hash of every run of ``k`` consecutive token texts (stable across runs and machines)."""
    return [int.from_bytes(hashlib.blake2b("\x1f".join(texts[i:i + k]).encode(), digest_size=8).digest(), "big")
            for i in range(len(texts) - k + 1)]


def winnow(hashes: list[int], w: int = W) -> list[tuple[int, int]]:
    """Robust winnowing: the minimum of each window of ``w`` hashes (rightmost on ties), each position once.

    Returns ``(hash, position)`` pairs in order. A sequence shorter than one window gives its minimum.
    """
    if not hashes:
        return []
    chosen: list[tuple[int, int]] = []
    last = -1
    for start in range(max(1, len(hashes) - w + 1)):
        window = hashes[start:start + w]
        low = min(window)
        position = start + max(i for i, h in enumerate(window) if h == low)
        if position != last:
            chosen.append((low, position))
            last = position
    return chosen


@dataclass
class Fragment:
    label: str  # "<notebook> / <grade_id>"
    source: str
    tokens: list[Token] = field(default_factory=list)


def fingerprints(fragments: list[Fragment], k: int = K, w: int = W) -> dict[int, list[tuple[int, int, int]]]:
    """hash -> [(fragment index, first line, last line)] of the winnowed k-grams of each fragment."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for index, fragment in enumerate(fragments):
        texts = [t.text for t in fragment.tokens]
        for value, position in winnow(kgram_hashes(texts, k), w):
            span = fragment.tokens[position:position + k]
            out.setdefault(value, []).append((index, span[0].first_line, span[-1].last_line))
    return out


@dataclass
class Submission:
    student: str
    fragments: list[Fragment]
    prints: dict[int, list[tuple[int, int, int]]]  # after removing starter code and common idioms
    notes: list[str] = field(default_factory=list)


@dataclass
class Pair:
    a: Submission
    b: Submission
    shared: set[int]
    score: float

    def lines(self, side: Submission) -> dict[int, set[int]]:
        """fragment index -> line numbers of ``side`` covered by a shared fingerprint."""
        out: dict[int, set[int]] = {}
        for value in self.shared:
            for index, first, last in side.prints[value]:
                out.setdefault(index, set()).update(range(first, last + 1))
        return out


@dataclass
class Report:
    assignment: str
    submissions: list[Submission]
    pairs: list[Pair]  # every pair with a shared fingerprint, highest score first
    flagged: list[Pair]
    skipped: list[tuple[str, str]]  # (student or student/notebook, reason)
    settings: dict
    output: Path | None = None


def _answer_fragments(notebook, solution_ids: set[str], name: str) -> list[Fragment]:
    return [Fragment(f"{name} / {nbgrader_meta(cell).get('grade_id')}", str(cell.get("source", "")))
            for cell in notebook.cells
            if cell.get("cell_type") == "code" and nbgrader_meta(cell).get("grade_id") in solution_ids]


def _starter(course: Course, assignment: str, k: int) -> tuple[set[str], set[int]]:
    """The solution cells' grade_ids, and every k-gram hash of the released code."""
    released = course.released(assignment)
    if not released:
        raise ValueError(f"no released notebook in {course.release}/{assignment}/ (run `make exercises`)")
    solution_ids, hashes = set(), set()
    for path in released:
        for cell in read(path).cells:
            if cell.cell_type != "code":
                continue
            if nbgrader_meta(cell).get("solution"):
                solution_ids.add(nbgrader_meta(cell).get("grade_id"))
            hashes.update(kgram_hashes([t.text for t in tokens(cell.source)[0]], k))
    return solution_ids, hashes


def similarity(course: Course, assignment: str, output: Path | None = None, threshold: float = THRESHOLD,
               k: int = K, w: int = W, common_fraction: float = COMMON_FRACTION,
               min_shared: int = MIN_SHARED) -> Report:
    """Compare every pair of submissions of ``assignment``; write the HTML report to ``output``.

    output: default ``similarity-<assignment>.html`` in the course folder. Reads ``submitted/`` only.
    """
    from .similarity_html import html_report

    course = course if isinstance(course, Course) else Course(course)
    if k < 1 or w < 1:
        raise ValueError(f"k and w must be at least 1 (got k={k}, w={w})")
    solution_ids, starter = _starter(course, assignment, k)
    submissions: list[Submission] = []
    skipped: list[tuple[str, str]] = []
    for student in course.students(assignment):
        paths = sorted(course.submitted(student, assignment).glob("*.ipynb"))
        for path in [p for p in paths if p.is_symlink() or not p.is_file()]:
            skipped.append((f"{student}/{path.name}", "not a plain file"))
        paths = [p for p in paths if p.is_file() and not p.is_symlink()]
        fragments, notes, readable = [], [], 0
        for path in paths:
            try:
                fragments += _answer_fragments(read_submission(path), solution_ids, path.name)
                readable += 1
            except Unreadable as error:
                skipped.append((f"{student}/{path.name}", str(error)))
            except Exception as error:  # noqa: BLE001 - one odd file must not stop the report
                skipped.append((f"{student}/{path.name}", f"could not be read ({error.__class__.__name__}: {error})"))
        if not paths:
            skipped.append((student, "no notebook submitted"))
        elif readable and not fragments:
            skipped.append((student, "no answer cell (no code cell with a released solution cell's grade_id)"))
        if not fragments:
            continue
        own = _own_attributes(s for f in fragments for s in _statements(_raw_tokens(f.source)[0]))
        for fragment in fragments:
            fragment.tokens, note = tokens(fragment.source, own)
            if note:
                notes.append(f"{fragment.label}: {note}")
        prints = {h: places for h, places in fingerprints(fragments, k, w).items() if h not in starter}
        submissions.append(Submission(student, fragments, prints, notes))

    holders: dict[int, int] = {}
    for submission in submissions:
        for value in submission.prints:
            holders[value] = holders.get(value, 0) + 1
    common = {value for value, count in holders.items()
              if count >= COMMON_MIN and count > common_fraction * len(submissions)}
    for submission in submissions:
        submission.prints = {h: p for h, p in submission.prints.items() if h not in common}

    pairs = []
    for a, b in itertools.combinations(submissions, 2):
        shared = a.prints.keys() & b.prints.keys()
        if shared:
            pairs.append(Pair(a, b, set(shared), len(shared) / min(len(a.prints), len(b.prints))))
    pairs.sort(key=lambda p: (-p.score, -len(p.shared), p.a.student, p.b.student))
    flagged = [p for p in pairs if p.score >= threshold and len(p.shared) >= min_shared]
    settings = {"k": k, "w": w, "threshold": threshold, "common_fraction": common_fraction, "min_shared": min_shared,
                "ignored_common": len(common), "release": f"{course.release}/{assignment}/"}
    report = Report(assignment, submissions, pairs, flagged, skipped, settings)
    report.output = Path(output) if output else course.root / f"similarity-{assignment}.html"
    atomic_write(report.output, html_report(report))
    return report


def text_table(report: Report) -> str:
    """The flagged pairs as a short text table, then what was skipped."""
    lines = [f"{'score':>5}  {'shared':>9}  {'student':<20} {'student':<20}"]
    for pair in report.flagged:
        smaller = min(len(pair.a.prints), len(pair.b.prints))
        lines.append(f"{pair.score:5.2f}  {len(pair.shared):>4}/{smaller:<4}  {pair.a.student:<20} {pair.b.student:<20}")
    if not report.flagged:
        lines.append("(no pair at or above the threshold)")
    lines.append(f"{len(report.flagged)} pair(s) of {len(report.submissions)} submissions at or above "
                 f"{report.settings['threshold']:g}; report: {report.output}")
    lines += [f"skipped {who}: {why}" for who, why in report.skipped]
    return "\n".join(lines)
