"""cnnbook_grader: the instructor's grading pipeline for the CNN course book's exercises.

A separate distribution from ``cnnbook`` (``grader/pyproject.toml``): students
install and import only ``cnnbook`` (their notebooks call :mod:`cnnbook.checks`);
instructors install this package too, which brings nbgrader, nbformat, nbconvert
and jupyter_client. ``python -m cnnbook_grader --help`` lists the commands;
:mod:`cnnbook_grader.pipeline` is the entry point for scripts.
"""
