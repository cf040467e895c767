"""nbgrader configuration for the course.

nbgrader's "source" folder is solutions/ (instructor notebooks with solutions
and hidden tests) and its "release" folder is exercises/ (what students get).
Never edit exercises/ by hand: run `make exercises`.
"""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "cnnbook"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# The grader's feedback links each failed check to the book section that explains it: set the
# published book's address (default: the book built in this folder by `make book`, if any).
# c.CnnbookGrader.book_url = "https://example.org/cnnbook"

# The stub students see in place of each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Put back any test cell a student deleted, so it is graded instead of left
# "needs manual grade" forever.
c.OverwriteCells.add_missing_cells = True

# A cell may run this long before nbgrader interrupts it.
c.ExecutePreprocessor.timeout = 120

# Feedback never shows the hidden tests: their tracebacks are cut to the
# check's message, then nbgrader removes the hidden lines from the source.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

from cnnbook_grader.feedback import HideHiddenTestTracebacks  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestTracebacks, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
