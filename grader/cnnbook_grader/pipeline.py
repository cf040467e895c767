"""The instructor's grading pipeline: collect, grade, feedback, export.

One submission = one student's folder ``submitted/<student>/<assignment>/``.
``grade`` does, for an assignment:

1. takes a lock on the assignment (a second run waits; re-runs are idempotent);
2. registers the assignment in nbgrader's gradebook (``nbgrader
   generate_assignment`` into a scratch release folder) and records the
   oracle from the instructor notebook (:mod:`cnnbook_grader.oracle`);
3. marks every submission it is about to grade as *grading*: its old record,
   autograded notebook and gradebook scores are cleared first, so a re-grade
   that fails or is interrupted never leaves an older score looking current;
4. grades each submission in a worker pool (threads, or a Dask cluster):
   validate and normalise (:mod:`normalize`), read the code's syntax tree for
   forbidden calls and tampering (:mod:`static`), run the student's cells and
   the recorded calls in a sandbox (:mod:`sandbox`, :mod:`runner`, :mod:`harness`:
   no test code enters it), then run the instructor's checks on the values it
   wrote in a trusted replay worker (:mod:`replay`): every verdict is computed
   outside the sandbox;
5. writes each result atomically (record JSON, feedback, autograded notebook)
   and updates the gradebook from this one process, as results arrive.

Every submission ends with a status: ``graded``, ``partial`` (timeout, out
of memory, kernel died: tests that ran keep their points), ``unreadable``,
``flagged`` (tampering detected: scored, but a human must look), or
``failed`` (the grader itself could not run; no score).

Each step lives in its own module; this one gathers the names an instructor's
script needs:

- :mod:`course`      ``Course``, ``Settings``, locks, atomic writes, the per-submission records;
- :mod:`collect`     ``collect``: a folder or an LMS zip into ``submitted/``;
- :mod:`submission`  grading one submission (sandbox, then the trusted verdicts of :mod:`verdicts`);
- :mod:`grade`       ``grade``: the orchestration, with threads or Dask;
- :mod:`gradebook`   nbgrader's gradebook;
- :mod:`feedback`    the feedback text and ``generate_feedback``;
- :mod:`export`      ``export``: grades as CSV;
- :mod:`similarity`  ``similarity``: pairs of unusually alike submissions, as an HTML report.
"""

from __future__ import annotations

from .collect import collect, submission_time
from .course import SEVERITY, STATUS_TEXT, Course, Settings, assignment_lock, atomic_write, read_record
from .export import export
from .feedback import feedback_text, generate_feedback
from .grade import grade
from .gradebook import gradebook
from .similarity import similarity
from .submission import grade_submission
from .verdicts import judge_code

__all__ = ["SEVERITY", "STATUS_TEXT", "Course", "Settings", "assignment_lock", "atomic_write", "collect",
           "export", "feedback_text", "generate_feedback", "grade", "grade_submission", "gradebook",
           "judge_code", "read_record", "similarity", "submission_time"]
