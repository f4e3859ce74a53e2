"""The one exception type whose message reaches HTTP clients.

Everything else a task raises is reported as TASK_FAILED with the traceback
kept in the worker's log (stderr), never sent to the client.
"""

from __future__ import annotations

import builtins

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
    e.g. ``{"line": 3, "column": 7}`` for a parse error. Without a message, the
    client is told that the task refused its input, and no more.
    """

    # For subclasses whose __init__ does not call super().__init__: replies.rejected then uses str(exc).
    details: Optional[Any] = None

    def __init__(self, message: Any = "the task refused its input", details: Optional[Any] = None) -> None:
        message = as_text(message, use_repr=False)  # shown to the client
        super().__init__(message)
        self.message = message
        self.details = details


def is_task_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a TaskError, from this module or from a second copy of it.

    A task that re-imports pyfleet (importlib.reload, or sys.modules entries
    removed and imported again) raises a TaskError of another class object:
    known by its module and name, it is still a rejection, not a failure.
    """
    if isinstance(exc, TaskError):
        return True
    return any(cls.__name__ == "TaskError" and cls.__module__ == __name__ for cls in type(exc).__mro__)


def rejection_in(exc: BaseException) -> Optional[BaseException]:
    """The TaskError that makes ``exc`` a rejection (422), or None for a failure (500).

    ``exc`` itself, or the first TaskError of an exception group made only of TaskErrors
    (nested groups included): ``asyncio.TaskGroup`` (3.11+) wraps a child's TaskError in
    one, where ``asyncio.gather`` raises it as it is. A group with any other exception in
    it is a failure: something went wrong besides the input.
    """
    group = getattr(builtins, "BaseExceptionGroup", None)
    # A loop, not recursion: a group nested thousands deep must not turn into a RecursionError.
    first = None
    pending = [exc]
    while pending:
        current = pending.pop()
        if is_task_error(current):
            if first is None:  # members are pushed in reverse, so they are taken in order
                first = current
        elif group is not None and isinstance(current, group):
            pending.extend(reversed(current.exceptions))
        else:
            return None
    return first


def describe(exc: BaseException) -> str:
    """``Type: message``, or ``Type`` alone when the message is empty (``KeyboardInterrupt()``)."""
    text = as_text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def sendable(text: str) -> str:
    """``text`` as UTF-8 can carry it: lone surrogates written as backslash escapes.

    A byte that surrogateescape decoding kept (``os.listdir``, ``sys.argv``, a
    file read with ``errors="surrogateescape"``) comes back as that byte,
    ``\\xe9``; any other lone surrogate as ``\\ud800``.
    """
    if text.isascii():  # nearly every message: no copy
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that surrogateescape did not make
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def as_text(value: Any, use_repr: bool = True) -> str:
    """``str(value)`` that never raises: bytes decoded as UTF-8, then repr, then a placeholder.

    ``use_repr=False`` for text a client reads (a TaskError's message): a repr is most often
    the default one, ``<module.Class object at 0x7f...>``, which shows a memory address.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)
    except BaseException:  # a broken __str__ may raise anything
        pass
    try:
        if use_repr:
            return repr(value)
    except BaseException:
        pass
    return f"<unprintable {type(value).__name__}>"
