"""Helpers for exercise notebooks (checks with readable failure messages) and
for the instructor pipeline (release, autograde, feedback)."""

from .checks import CheckFailed, ForbiddenCall, check_close, check_shape, forbid_calls

__all__ = ["CheckFailed", "ForbiddenCall", "check_close", "check_shape", "forbid_calls"]
