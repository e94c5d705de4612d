"""User-facing errors.

A :class:`UserError` is something the user can fix (a missing file, a bad flag, an existing run
directory). The CLI prints it as one line on stderr and exits non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls; its message is one actionable line."""


class NumericalError(UserError):
    """Training produced a NaN or Inf; the message names the step and how to resume."""
