"""The one exception type whose message reaches HTTP clients.

Everything else a task raises is reported as TASK_FAILED with the traceback
kept in the worker's log (stderr), never sent to the client.
"""

from __future__ import annotations

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


class TaskError(Exception):
    """Bad but well-formed input: becomes HTTP 422 TASK_REJECTED_INPUT.

    ``message`` is shown to the client as is, so it must be safe to show;
    ``details`` (JSON-able) goes into the error body's ``details`` field,
    e.g. ``{"line": 3, "column": 7}`` for a parse error.
    """

    def __init__(self, message: str, details: Optional[Any] = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
