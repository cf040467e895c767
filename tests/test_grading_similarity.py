"""The similarity report (cnnbook_grader.similarity): planted copies are flagged, independent answers are not.

Submissions are built from the real conv_basics assignment: the instructor's
solution, three disguised copies of it (names renamed and comments changed;
reordered and reformatted; statements inserted), four independent correct
solutions written for this test in different styles, two students who
submitted the starter code only, and unreadable files. Pure Python, no sandbox.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from cnnbook_grader import pipeline
from cnnbook_grader.__main__ import main
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read
from cnnbook_grader.release import REPO_ROOT
from cnnbook_grader.similarity import THRESHOLD, kgram_hashes, tokens, winnow

ASSIGNMENT = "conv_basics"
SOURCE = REPO_ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
RELEASE = REPO_ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

# ------------------------------------------------------------------------ planted copies of the instructor's answer

RENAMED = {
    "correlate1d": '''def correlate1d(signal, kernel):
    # slide the filter along the input and take dot products
    sig = np.asarray(signal, dtype=float)
    filt = np.asarray(kernel, dtype=float)
    length, width = sig.shape[0], filt.shape[0]
    if width > length:
        raise ValueError(f"filter too long: {width} > {length}")
    result = np.zeros(length - width + 1)
    for pos in range(length - width + 1):   # every valid offset
        result[pos] = np.dot(sig[pos:pos + width], filt)
    return result
''',
    "convolve1d": '''def convolve1d(signal, kernel):
    # flip then correlate
    return correlate1d(signal, np.asarray(kernel)[::-1])
''',
    "correlate2d": '''def correlate2d(image, kernel):
    """My 2-D version."""
    img = np.asarray(image, dtype=float)
    filt = np.asarray(kernel, dtype=float)
    (rows, cols), (fr, fc) = img.shape, filt.shape
    if fr > rows or fc > cols:
        raise ValueError("filter bigger than picture")
    res = np.zeros((rows - fr + 1, cols - fc + 1))
    for r in range(res.shape[0]):
        for c in range(res.shape[1]):
            # elementwise product of the patch and the filter
            res[r, c] = np.sum(img[r:r + fr, c:c + fc] * filt)
    return res
''',
}

# All three functions in the first answer cell, in another order, with other line breaks and spacing;
# the other answer cells keep only a comment. The cells themselves are moved too (see corpus()).
REFORMATTED = {
    "correlate1d": '''def correlate2d(image, kernel):
    image = np.asarray(image,
                       dtype=float)
    kernel = np.asarray(kernel, dtype=float); (height, width), (kh, kw) = (image.shape,
                                                                         kernel.shape)
    if (kh > height) or (kw > width): raise ValueError(f"kernel {kernel.shape} > image {image.shape}")
    out = np.zeros((height-kh+1,
                    width-kw+1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]): out[i, j] = np.sum(image[i : i+kh, j : j+kw]*kernel)
    return out


def convolve1d(signal, kernel): return correlate1d(signal, np.asarray(kernel)[::-1])


def correlate1d(signal, kernel):
    signal = np.asarray(signal, dtype=float); kernel = np.asarray(kernel, dtype=float)
    n, k = (signal.shape[0],
            kernel.shape[0])
    if k > n:
        raise ValueError(
            f"kernel longer than signal")
    out = np.zeros(n-k+1)
    for i in range(n-k+1): out[i] = np.dot(signal[i : i+k],
                                          kernel)
    return out
''',
    "convolve1d": "# defined above\n",
    "correlate2d": "# defined above\n",
}


def inserted(source: dict[str, str]) -> dict[str, str]:
    """The instructor's answers with a few statements put in between."""
    out = dict(source)
    out["correlate1d"] = (source["correlate1d"]
                          .replace("    n, k =", "    assert signal.ndim == 1, 'one dimension only'\n    n, k =")
                          .replace("    out = np.zeros(n - k + 1)\n",
                                   "    out = np.zeros(n - k + 1)\n    steps = 0\n")
                          .replace("        out[i] = np.dot(signal[i:i + k], kernel)\n",
                                   "        out[i] = np.dot(signal[i:i + k], kernel)\n        steps += 1\n"))
    out["correlate2d"] = (source["correlate2d"]
                          .replace("    out = np.zeros(", "    print('image', image.shape, 'kernel', kernel.shape)\n"
                                                        "    out = np.zeros(")
                          .replace("    return out", "    out = out.astype(float)\n    return out"))
    return out


# ------------------------------------------------------------------- independent solutions written for this test

INDEPENDENT = {
    "i1_plain_loops": {
        "correlate1d": '''def correlate1d(signal, kernel):
    xs = list(map(float, signal))
    ws = list(map(float, kernel))
    if len(ws) > len(xs):
        raise ValueError("kernel is longer than the signal")
    result = []
    for start in range(len(xs) - len(ws) + 1):
        total = 0.0
        for offset in range(len(ws)):
            total += xs[start + offset] * ws[offset]
        result.append(total)
    return np.array(result)
''',
        "convolve1d": '''def convolve1d(signal, kernel):
    reversed_kernel = [kernel[len(kernel) - 1 - t] for t in range(len(kernel))]
    return correlate1d(signal, reversed_kernel)
''',
        "correlate2d": '''def correlate2d(image, kernel):
    img = np.array(image, dtype=np.float64)
    ker = np.array(kernel, dtype=np.float64)
    rows = img.shape[0] - ker.shape[0] + 1
    cols = img.shape[1] - ker.shape[1] + 1
    if rows < 1 or cols < 1:
        raise ValueError("kernel does not fit in the image")
    result = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            acc = 0.0
            for u in range(ker.shape[0]):
                for v in range(ker.shape[1]):
                    acc += img[r + u, c + v] * ker[u, v]
            result[r, c] = acc
    return result
''',
    },
    "i2_stride_tricks": {
        "correlate1d": '''from numpy.lib.stride_tricks import sliding_window_view

def correlate1d(signal, kernel):
    x = np.asarray(signal, dtype=float)
    w = np.asarray(kernel, dtype=float)
    if w.size > x.size:
        raise ValueError("kernel longer than signal")
    return sliding_window_view(x, w.size) @ w
''',
        "convolve1d": '''def convolve1d(signal, kernel):
    return correlate1d(signal, np.flip(np.asarray(kernel, dtype=float)))
''',
        "correlate2d": '''def correlate2d(image, kernel):
    x = np.asarray(image, dtype=float)
    w = np.asarray(kernel, dtype=float)
    if any(a > b for a, b in zip(w.shape, x.shape)):
        raise ValueError("kernel larger than image")
    windows = sliding_window_view(x, w.shape)
    return np.einsum("ijkl,kl->ij", windows, w)
''',
    },
    "i3_shifted_sums": {
        "correlate1d": '''def correlate1d(signal, kernel):
    signal = np.asarray(signal, dtype=float)
    kernel = np.asarray(kernel, dtype=float)
    size = len(signal) - len(kernel) + 1
    if size <= 0:
        raise ValueError("the kernel must not be longer than the signal")
    # add up one shifted copy of the signal per kernel tap
    return sum(kernel[t] * signal[t:t + size] for t in range(len(kernel)))
''',
        "convolve1d": '''def convolve1d(signal, kernel):
    flipped = np.array(kernel, dtype=float)[::-1].copy()
    return correlate1d(signal, flipped)
''',
        "correlate2d": '''def correlate2d(image, kernel):
    image = np.asarray(image, dtype=float)
    kernel = np.asarray(kernel, dtype=float)
    out_rows = image.shape[0] - kernel.shape[0] + 1
    out_cols = image.shape[1] - kernel.shape[1] + 1
    if min(out_rows, out_cols) <= 0:
        raise ValueError("kernel larger than image")
    acc = np.zeros((out_rows, out_cols))
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            acc += kernel[a, b] * image[a:a + out_rows, b:b + out_cols]
    return acc
''',
    },
    "i4_comprehensions": {
        "correlate1d": '''def correlate1d(signal, kernel):
    s, h = np.asarray(signal, float), np.asarray(kernel, float)
    if len(h) > len(s):
        raise ValueError(f"len(kernel)={len(h)} exceeds len(signal)={len(s)}")
    return np.array([np.sum(s[i:i + len(h)] * h) for i in range(len(s) - len(h) + 1)])
''',
        "convolve1d": '''def convolve1d(signal, kernel):
    kernel = np.asarray(kernel)
    return correlate1d(signal, kernel[np.arange(len(kernel) - 1, -1, -1)])
''',
        "correlate2d": '''def correlate2d(image, kernel):
    im, k = np.asarray(image, float), np.asarray(kernel, float)
    kh, kw = k.shape
    if kh > im.shape[0] or kw > im.shape[1]:
        raise ValueError("kernel is larger than the image")
    return np.array([[np.vdot(im[r:r + kh, c:c + kw], k) for c in range(im.shape[1] - kw + 1)]
                     for r in range(im.shape[0] - kh + 1)])
''',
    },
}


# A fifth answer style, carrying markup in its code, comments, strings and its author's folder name.
INJECTOR = '''def correlate1d(signal, kernel):
    """</pre><script>alert(1)</script>"""
    values = np.asarray(signal, dtype=float)  # </pre><script>alert(2)</script> <img src=x onerror=alert(3)>
    taps = np.asarray(kernel, dtype=float)
    if taps.shape[0] > values.shape[0]:
        raise ValueError("</pre><script>alert(4)</script>")
    position, result = 0, []
    while position + taps.shape[0] <= values.shape[0]:
        result.append(float(np.sum(values[position:position + taps.shape[0]] * taps)))
        position += 1
    return np.array(result)
'''
INJECTOR_NAME = "x1_<img src=x onerror=alert(5)>"


def _instructor() -> dict[str, str]:
    nb = fill_solutions(read(RELEASE), read(SOURCE))
    return {g: c.source for c in nb.cells if (g := nbgrader_meta(c).get("grade_id")) in RENAMED}


def build(answers: dict[str, str] | None = None):
    nb = read(RELEASE)  # the starter code, for answers not given
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in (answers or {}):
            cell.source = answers[nbgrader_meta(cell)["grade_id"]]
    return nb


def _write(course: Path, student: str, nb, name: str = f"{ASSIGNMENT}.ipynb") -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, bytes):
        (folder / name).write_bytes(nb)
    else:
        nbformat.write(nb, str(folder / name))


def corpus(course: Path) -> None:
    original = _instructor()
    _write(course, "p0_original", build(original))
    _write(course, "p1_renamed", build(RENAMED))
    moved = build(REFORMATTED)
    index = next(i for i, c in enumerate(moved.cells) if nbgrader_meta(c).get("grade_id") == "correlate2d")
    moved.cells.insert(0, moved.cells.pop(index))  # the cells reordered as well
    _write(course, "p2_reformatted", moved)
    _write(course, "p3_inserted", build(inserted(original)))
    for student, answers in INDEPENDENT.items():
        _write(course, student, build(answers))
    _write(course, "s1_stub_only", build())
    stub = build()
    stub.cells.append(nbformat.v4.new_code_cell("# my notes\nx = 1\n"))
    _write(course, "s2_stub_only", stub)
    # i1 also submitted a second notebook (a scratch copy) holding one more answer; and a broken one
    extra = build({"correlate2d": INDEPENDENT["i1_plain_loops"]["correlate2d"]})
    _write(course, "i1_plain_loops", extra, "conv_basics-Copy1.ipynb")
    _write(course, "i1_plain_loops", b'{"cells": [ not json', "broken.ipynb")
    _write(course, "u1_unreadable", b"")
    _write(course, "e1_broken_code", build({
        "correlate1d": "%timeit 1 + 1\n!ls\ndef correlate1d(signal, kernel):\n    out = np.zeros(len(signal)\n",
        "correlate2d": "def correlate2d(image, kernel):\n  return image\n    ",
        "convolve1d": "def convolve1d(signal, kernel):\n\treturn '\\x00' + \"unterminated\n"}))
    (course / "submitted" / "u2_nothing" / ASSIGNMENT).mkdir(parents=True)
    bad = build({"correlate1d": INJECTOR})
    _write(course, INJECTOR_NAME, bad)
    _write(course, "x2_injector_copy", bad)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    course = tmp_path_factory.mktemp("similarity-course")
    shutil.copy2(REPO_ROOT / "nbgrader_config.py", course)
    shutil.copytree(REPO_ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copytree(REPO_ROOT / "exercises" / ASSIGNMENT, course / "exercises" / ASSIGNMENT)
    corpus(course)
    before = _digest(course / "submitted")
    report = pipeline.similarity(pipeline.Course(course), ASSIGNMENT)
    return course, report, before


def _score(report, a, b) -> float:
    for pair in report.pairs:
        if {pair.a.student, pair.b.student} == {a, b}:
            return pair.score
    return 0.0


def _flagged(report) -> set[frozenset[str]]:
    return {frozenset((p.a.student, p.b.student)) for p in report.flagged}


PLANTED = ["p1_renamed", "p2_reformatted", "p3_inserted"]


# Margins either side of the default threshold (0.5): observed 1.00, 0.75 and 0.77 for the copies,
# at most 0.26 between independent answers (two loop versions that both write the output-size formula).
PLANTED_AT_LEAST = THRESHOLD + 0.15
INDEPENDENT_BELOW = THRESHOLD - 0.15


@pytest.mark.parametrize("copy", PLANTED)
def test_planted_copies_are_flagged(run, copy):
    _, report, _ = run
    assert frozenset(("p0_original", copy)) in _flagged(report), _score(report, "p0_original", copy)
    assert _score(report, "p0_original", copy) >= PLANTED_AT_LEAST


def test_independent_solutions_are_not_flagged(run):
    _, report, _ = run
    independent = list(INDEPENDENT)
    originals = ["p0_original", *PLANTED]
    for i, a in enumerate(independent):
        for b in independent[i + 1:] + originals:
            assert frozenset((a, b)) not in _flagged(report), (a, b, _score(report, a, b))
            assert _score(report, a, b) < INDEPENDENT_BELOW, (a, b, _score(report, a, b))


def test_starter_code_alone_makes_nobody_similar(run):
    _, report, _ = run
    stubs = [s for s in report.submissions if s.student in ("s1_stub_only", "s2_stub_only")]
    assert len(stubs) == 2 and all(s.fragments and not s.prints for s in stubs)  # nothing of their own
    for pair in report.pairs:
        assert not {"s1_stub_only", "s2_stub_only"} & {pair.a.student, pair.b.student}


def test_several_notebooks_and_unreadable_files(run):
    _, report, _ = run
    skipped = dict(report.skipped)
    assert "not valid JSON" in skipped["i1_plain_loops/broken.ipynb"]
    assert "empty" in skipped["u1_unreadable/conv_basics.ipynb"]
    assert skipped["u2_nothing"] == "no notebook submitted"
    broken = next(s for s in report.submissions if s.student == "e1_broken_code")  # read as far as it goes
    assert any("correlate1d: tokenised up to line 4" in note for note in broken.notes), broken.notes
    i1 = next(s for s in report.submissions if s.student == "i1_plain_loops")
    assert sorted(f.label for f in i1.fragments) == sorted(
        f"{name} / {grade_id}" for name in ("conv_basics.ipynb", "conv_basics-Copy1.ipynb")
        for grade_id in ("correlate1d", "convolve1d", "correlate2d"))


def test_submitted_folder_is_unchanged(run):
    course, _, before = run
    assert _digest(course / "submitted") == before


def test_html_escapes_student_code_and_names(run):
    course, report, _ = run
    page = report.output.read_text()
    assert frozenset((INJECTOR_NAME, "x2_injector_copy")) in _flagged(report)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'raise ValueError(&quot;&lt;/pre&gt;&lt;script&gt;alert(4)&lt;/script&gt;&quot;)' in page
    assert "x1_&lt;img src=x onerror=alert(5)&gt;" in page
    # self-contained: no external resource
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert re.search(r'<span class="match"><span class="lineno">\s*\d+ </span>\s*out = np\.zeros', page)


def test_command_line(run, capsys):
    course, _, before = run
    output = course / "out" / "report.html"
    assert main(["--course", str(course), "similarity", ASSIGNMENT, "--threshold", "0.6", "--output", str(output)]) == 0
    text = capsys.readouterr().out
    assert output.exists() and "p0_original" in text and "p1_renamed" in text
    assert "skipped u1_unreadable/conv_basics.ipynb" in text
    assert _digest(course / "submitted") == before


# ------------------------------------------------------------------------------ the algorithm on small examples


def test_winnowing_hand_worked():
    # w = 3 over [5, 3, 9, 3, 7, 1, 8]: windows (5 3 9) -> 3 at 1; (3 9 3) -> the rightmost 3, at 3;
    # (9 3 7) -> 3 at 3 again (not repeated); (3 7 1) -> 1 at 5; (7 1 8) -> 1 at 5 again.
    assert winnow([5, 3, 9, 3, 7, 1, 8], 3) == [(3, 1), (3, 3), (1, 5)]
    # The example of Schleimer, Wilkerson and Aiken (2003), figure 2, with w = 4:
    # fingerprints [17,3] [17,6] [8,8] [39,11] [17,15].
    hashes = [77, 74, 42, 17, 98, 50, 17, 98, 8, 88, 67, 39, 77, 74, 42, 17, 98]
    assert winnow(hashes, 4) == [(17, 3), (17, 6), (8, 8), (39, 11), (17, 15)]
    assert winnow([4, 2], 3) == [(2, 1)]  # shorter than a window: its minimum
    assert winnow([], 3) == []


def test_tokens_ignore_names_comments_docstrings_and_layout():
    first = '''def f(a, b):
    """Docstring."""
    total = np.sum(a * b)  # a comment
    return total + 1
'''
    second = "def g(x,\n      y):\n    s = np.sum(x*y); return s+1\n"
    one, two = tokens(first)[0], tokens(second)[0]
    texts = [t.text for t in one]
    assert texts == ["def", "V", "(", "V", ",", "V", ")", ":", "V", "=", "V", ".", "sum", "(", "V", "*", "V", ")",
                     "return", "V", "+", "1"]
    assert [t.text for t in two] == texts
    assert (one[8].first_line, one[-1].first_line) == (3, 4)  # tokens remember their lines
    assert kgram_hashes(texts, 4) == kgram_hashes([t.text for t in two], 4)
    assert len(kgram_hashes(texts, 4)) == len(texts) - 3
    # own attributes are names like any other; a library's are kept
    obj = [t.text for t in tokens("self.cache = x.shape\n")[0]]
    assert obj == ["V", ".", "V", "=", "V", ".", "shape"]
    # a cell that does not tokenise to the end gives what it could, and says so
    partial, note = tokens("x = np.zeros(3)\ny = (\n")
    assert [t.text for t in partial][:6] == ["V", "=", "V", ".", "zeros", "("] and "tokenised up to" in note


def test_idioms_most_submissions_share_are_ignored(run, tmp_path):
    # 8 of the 13 submissions open correlate1d with `<name> = np.asarray(signal, dtype=float)` right after
    # the def line: more than half, so that line proves nothing and is not highlighted for p0 and p1.
    course, report, _ = run
    opening = 3  # the line after the def line and docstring of the instructor's correlate1d

    def p0_lines(rep):
        pair = next(p for p in rep.pairs if {p.a.student, p.b.student} == {"p0_original", "p1_renamed"})
        p0 = pair.a if pair.a.student == "p0_original" else pair.b
        index = next(i for i, f in enumerate(p0.fragments) if f.label.endswith("/ correlate1d"))
        assert p0.fragments[index].source.splitlines()[opening - 1].strip().startswith("signal = np.asarray(")
        return pair.lines(p0)[index]

    assert report.settings["ignored_common"] > 0 and opening not in p0_lines(report)
    everything = pipeline.similarity(pipeline.Course(course), ASSIGNMENT, output=tmp_path / "r.html",
                                     common_fraction=1.0)
    assert everything.settings["ignored_common"] == 0 and opening in p0_lines(everything)
