"""What a task may ask about the call it is running: its request id.

The id is the HTTP request's ``x-request-id`` (the client's, or one the server
made), the one the server logs the call and its output under. Pass it on to
the services a task calls, so that their logs can be joined with pyfleet's.
"""

from __future__ import annotations

from contextvars import ContextVar

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# A context variable, not a global: asyncio tasks a call starts keep the id of the call
# that started them (they copy the context when made), and threads start without one.
_request_id: ContextVar = ContextVar("pyfleet_request_id", default=None)
set_request_id = _request_id.set  # the runtime's, before each call
reset_request_id = _request_id.reset  # and after it


def request_id() -> Optional[str]:
    """The ``x-request-id`` of the call running now; None outside a call (at import,
    in a thread the task started: pass the id to it)."""
    return _request_id.get()
