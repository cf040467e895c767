"""Feedback that never shows hidden tests.

nbgrader's ``ClearHiddenTests`` removes the hidden lines from a cell's source,
but the traceback of a failing hidden check still quotes those lines. This
preprocessor runs first and reduces every error in a hidden-test cell to its
one-line message (``CheckFailed: correlate1d(...): relative error ...``), which
the check helpers in :mod:`cnnbook.grading.checks` write so that it names the
failing check without showing the hidden input or the expected values.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

HIDDEN_MARKER = "BEGIN HIDDEN TESTS"


class HideHiddenTestTracebacks(Preprocessor):
    """Replace tracebacks and printed output of hidden-test cells with the error's last line."""

    # nbconvert only runs registered preprocessors that are enabled.
    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or HIDDEN_MARKER not in cell.source:
            return cell, resources
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
                kept.append(output)
        cell["outputs"] = kept
        return cell, resources
