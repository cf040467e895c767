"""What the grader reads in the submitted code (never executed): fast, no sandbox.

- Only the student's answer cells are judged: a locked helper of the release that calls a library
  implementation (``torch_conv2d`` in conv_forward) is never reported, but a student's function that
  calls it is.
- False alarms: correct and merely wrong submissions, including ones that wrap their own functions
  (``globals()``, ``setattr`` on their own functions, their own classes' ``__dict__``,
  ``sys.modules.get(__name__)``), raise none; every way of reaching into the grader, IPython,
  builtins or an imported module stays flagged. ``false_alarm_rate`` is the figure reported in
  issue notes.
- Files the instructor hands back are readable by everyone (0644).
"""

from __future__ import annotations

import stat

import pytest

from cnnbook_grader import pipeline
from cnnbook_grader.notebooks import fill_solutions, nbgrader_meta, read
from cnnbook_grader.release import REPO_ROOT, assignments
from cnnbook_grader.static import analyse


def cells_of(notebook, replace: dict[str, str] | None = None, extra: str | None = None):
    """(source, judged) for the code cells a grader analyses (test cells excluded), as the pipeline does."""
    out = []
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        source = (replace or {}).get(meta.get("grade_id"), cell.source)
        out.append((source, bool(meta.get("solution")) or not meta.get("grade_id")))
    if extra:
        out.append((extra, True))
    return out


def solved(assignment: str):
    source = read(REPO_ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    release = read(REPO_ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    return fill_solutions(release, source)


# ------------------------------------------------------------------------------------ locked helpers


LIBRARY = ["cnnbook.ops", "cnnbook.reference"]
CONV_FORBIDDEN = ["torch.nn.functional.conv2d", "torch.conv2d", "torch.nn.functional.max_pool2d", *LIBRARY]
# the checks of each assignment, as the recorder sees them: the functions they call, the names they forbid
CHECKS = {
    "conv_forward": {"test_naive_hidden": {"calls": [{"name": "conv2d_naive"}], "forbid": CONV_FORBIDDEN},
                     "test_maxpool_hidden": {"calls": [{"name": "maxpool2d"}], "forbid": CONV_FORBIDDEN}},
    "conv_backward": {"test_conv_backward_hidden": {"calls": [{"name": "conv2d_backward"}], "forbid": CONV_FORBIDDEN},
                      "test_maxpool_backward_hidden": {"calls": [{"name": "maxpool2d_backward"}],
                                                       "forbid": CONV_FORBIDDEN}},
    "training": {"test_training_visible": {"calls": [{"name": "build_model"}, {"name": "train_model"}], "forbid": []},
                 "test_dropout_hidden": {"calls": [{"name": "dropout_forward"}],
                                         "forbid": ["torch.nn.functional.dropout", "torch.dropout", *LIBRARY]}},
}


@pytest.mark.parametrize("assignment", sorted(CHECKS))
def test_correct_code_and_locked_helpers_are_not_reported(assignment):
    """conv_forward's torch_conv2d, conv_backward's conv2d_forward/maxpool2d_forward are locked helpers;
    training's build_model may use nn.Conv2d, which no check of it forbids."""
    report, forbidden = pipeline.judge_code(solved(assignment), CHECKS[assignment])
    assert forbidden == {}
    assert not report.tampering
    helpers = {"conv_forward": {"torch_conv2d"}, "conv_backward": {"conv2d_forward", "maxpool2d_forward"}}
    assert not helpers.get(assignment, set()) & set(report.forbidden), report.forbidden


def test_a_student_function_calling_a_locked_helper_that_cheats_is_reported():
    cheat = "def conv2d_naive(x, w, b, stride=1, padding=0):\n    return torch_conv2d(x, w, b, stride, padding)\n"
    notebook = solved("conv_forward")
    next(c for c in notebook.cells if nbgrader_meta(c).get("grade_id") == "conv2d_naive").source = cheat
    report, forbidden = pipeline.judge_code(notebook, CHECKS["conv_forward"])
    assert forbidden == {"conv2d_naive": ["torch.nn.functional.conv2d"]}


# ------------------------------------------------------------------------------------ false alarms

WRONG_CORRELATE2D = ("def correlate2d(image, kernel):\n    image, kernel = np.asarray(image), np.asarray(kernel)\n"
                     "    return np.zeros((image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1))\n")

# wrong submissions that wrap, count or look up their OWN functions: no tampering
WRAPPERS = {
    "globals lookup": WRONG_CORRELATE2D + (
        "_plain = globals()['correlate2d']\n\ndef _logged(*args, **kwargs):\n    print('called')\n"
        "    return _plain(*args, **kwargs)\n\nglobals()['correlate2d'] = _logged\n"),
    "setattr on own function": WRONG_CORRELATE2D + (
        "import functools\n\ndef counted(function):\n    @functools.wraps(function)\n    def wrapper(*a, **k):\n"
        "        wrapper.calls += 1\n        return function(*a, **k)\n    setattr(wrapper, 'calls', 0)\n"
        "    return wrapper\n\ncorrelate2d = counted(correlate2d)\nsetattr(correlate2d, 'note', 'mine')\n"
        "print(getattr(correlate2d, 'note'), correlate2d.__wrapped__, correlate2d.__name__)\n"),
    "own class dict": WRONG_CORRELATE2D + (
        "class Registry:\n    kernels = {}\n\n    def add(self, name, kernel):\n        self.kernels[name] = kernel\n\n"
        "methods = [name for name in Registry.__dict__ if not name.startswith('_')]\n"
        "state = Registry().__dict__\nprint(methods, state, type(Registry()).__dict__.keys(), correlate2d.__module__)\n"
        "for name in methods:\n    setattr(Registry, name + '_copy', getattr(Registry, name))\n"),
    "own module": WRONG_CORRELATE2D + (
        "import sys\n\n_me = sys.modules.get(__name__)\n_main = sys.modules['__main__']\n"
        "_original = getattr(_me, 'correlate2d')\nsetattr(_me, 'correlate2d', lambda i, k: _original(i, k))\n"
        "_same = sys.modules.get('__main__')\n"),
    "inspect and traceback": WRONG_CORRELATE2D + (
        "import inspect, traceback\n\nprint(inspect.signature(correlate2d))\n"
        "try:\n    correlate2d(np.ones((2, 2)), np.ones((3, 3)))\nexcept Exception:\n    traceback.print_exc()\n"),
}

# reaching into the grader, IPython, builtins or an imported module: always flagged
TAMPERING = {
    "transformer": "ip = get_ipython()\nip.input_transformers_post.append(lambda lines: ['pass\\n'])\n",
    "event hook": "get_ipython().events.register('pre_run_cell', print)\n",
    "traceback display": "import sys\nsys.excepthook = lambda *a: None\n",
    "builtins": "import builtins\nbuiltins.isinstance = lambda *a: True\n",
    "__builtins__": "__builtins__['len'] = lambda x: 0\n",
    "module attribute": "np.testing.assert_allclose = lambda *a, **k: None\n",
    "setattr on a module": "setattr(np, 'allclose', lambda *a, **k: True)\n",
    "setattr on an imported function": "from cnnbook.checks import check_close\nsetattr(check_close, '__code__', None)\n",
    "grader module": "import cnnbook.checks\ncnnbook.checks.check_close = lambda *a, **k: None\n",
    "module dict": "np.__dict__['allclose'] = lambda *a, **k: True\n",
    "sys.modules of another module": "import sys\nsys.modules['cnnbook.checks'].check_close = print\n",
    "sys.modules scan": "import sys\nfor _m in list(sys.modules.values()):\n    pass\n",
    "computed getattr": "f = getattr(np, 'corr' + 'elate')\n",
    "exec": "exec('x = 1')\n",
    "dynamic import": "m = __import__('scipy.signal')\n",
    "frames": "import sys\nframe = sys._getframe().f_back\n",
    "subclasses": "print(().__class__.__base__.__subclasses__())\n",
    "importlib": "import importlib\nimportlib.reload(np)\n",
}


def false_alarms() -> tuple[list[str], int]:
    """(flagged submissions, submissions) among correct and merely wrong ones."""
    flagged, total = [], 0
    for assignment in assignments():
        notebook = solved(assignment)
        total += 1
        if analyse(cells_of(notebook)).tampering:
            flagged.append(f"{assignment}: correct")
    basics = solved("conv_basics")
    for name, wrong in {"plain wrong": WRONG_CORRELATE2D, **WRAPPERS}.items():
        total += 1
        report = analyse(cells_of(basics, {"correlate2d": wrong}))
        if report.tampering:
            flagged.append(f"{name}: {report.tampering}")
    return flagged, total


def test_no_false_alarm_on_correct_or_merely_wrong_code():
    flagged, total = false_alarms()
    assert total >= 11
    assert not flagged, f"{len(flagged)} of {total} flagged: {flagged}"


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_stays_flagged(case):
    report = analyse(cells_of(solved("conv_basics"), extra=TAMPERING[case]))
    assert report.tampering, case


# ------------------------------------------------------------------------------------ permissions


def test_what_the_instructor_hands_back_is_readable(tmp_path):
    target = tmp_path / "feedback" / "ada" / "conv_basics" / "feedback.md"
    pipeline.atomic_write(target, "# Feedback\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    pipeline.atomic_write(target, b"again")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_bytes() == b"again"


def test_dead_code_is_gone():
    for name in ("_describe", "_strip_for_sandbox", "_judge_call"):
        assert not hasattr(pipeline, name), name
