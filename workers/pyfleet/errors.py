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

    ``message`` is shown to the client as is, so it must be safe to show. It
    is always a str: anything else is stored as ``str(message)`` (bytes are
    decoded as UTF-8, an exception gives its own message), so
    ``raise TaskError(exc) from exc`` passes a parser's message on.
    ``details`` (JSON-able) goes into the error body's ``details`` field,
    e.g. ``{"line": 3, "column": 7}`` for a parse error.
    """

    # For subclasses whose __init__ does not call super().__init__: the loop then uses str(exc).
    details: Optional[Any] = None

    def __init__(self, message: Any, details: Optional[Any] = None) -> None:
        message = as_text(message)
        super().__init__(message)
        self.message = message
        self.details = details


def as_text(value: Any) -> str:
    """``str(value)`` that never raises: bytes decoded as UTF-8, then repr, then a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except BaseException:  # a broken __str__ may raise anything
        pass
    try:
        return repr(value)
    except BaseException:
        return f"<unprintable {type(value).__name__}>"
