"""What a task may ask about the call it is running: its request id, its client's trace
context, and how much time it has left.

The id is the HTTP request's ``x-request-id`` (the client's, or one the server
made), the one the server logs the call and its output under. Pass it on to
the services a task calls, so that their logs can be joined with pyfleet's. The
time left is until the answer is no longer wanted: pass it on as the timeout of
what the task waits for, so that it gives up before its caller does. The trace
context is the client's W3C ``traceparent``, ``tracestate`` and ``baggage`` headers:
send them on, and the services a task calls join the client's trace.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import monotonic

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

# A context variable, not a global: asyncio tasks a call starts keep the id of the call
# that started them (they copy the context when made), as do functions run by
# asyncio.to_thread; threads started otherwise (threading, executors) start without one.
_request_id: ContextVar = ContextVar("pyfleet_request_id", default=None)
set_request_id = _request_id.set  # the runtime's, before each call
reset_request_id = _request_id.reset  # and after it


def request_id() -> Optional[str]:
    """The ``x-request-id`` of the call running now; None outside a call (at import,
    in a thread the task started: pass the id to it)."""
    return _request_id.get()


# The call's client's trace headers (traceparent, tracestate, baggage: those it sent and the
# server found valid), or None.
_trace: ContextVar = ContextVar("pyfleet_trace", default=None)
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


def set_trace(value: Any) -> Any:
    """The runtime's, before each call: the frame's ``trace`` (a dict of header values, or absent).
    Returns the token for reset_trace."""
    if type(value) is dict:
        value = {name: value[name] for name in _TRACE_HEADERS if type(value.get(name)) is str}
    return _trace.set(value or None)


reset_trace = _trace.reset  # and after it


def trace_headers() -> Dict[str, str]:
    """The W3C trace context and baggage headers the client sent with the call running now, to
    send on with the HTTP requests the task makes, so that what those services record joins the
    client's trace (as children of the client's span: the server records no spans of its own)
    and gets its baggage::

        headers = {"x-request-id": pyfleet.request_id(), **pyfleet.trace_headers()}

    Holds ``traceparent`` (as version 00), ``tracestate`` (only with a traceparent) and
    ``baggage``, each when the client sent a valid one; empty when it sent none, or outside a
    call (at import, in a thread the task started: pass them on, as the request id). A new dict
    each time: changing it changes nothing else.
    """
    value = _trace.get()
    return {} if value is None else dict(value)


def traceparent() -> Optional[str]:
    """The W3C ``traceparent`` header the client sent with the call running now, as version 00
    (``00-<trace id>-<parent id>-<flags>``), or None (none, an invalid one, or not in a call).
    ``trace_headers()`` has it with ``tracestate`` and ``baggage``, which go on with it."""
    value = _trace.get()
    return None if value is None else value.get("traceparent")


# When the call's answer stops being wanted, on monotonic()'s clock; None: no limit known.
_deadline: ContextVar = ContextVar("pyfleet_deadline", default=None)


def set_deadline(timeout_ms: Any, since: Optional[float] = None) -> Any:
    """The runtime's, before each call: the call may take ``timeout_ms`` from ``since`` (when
    its frame began to arrive, on monotonic()'s clock; now if None), the frame's ``timeoutMs``:
    anything but a positive number is no limit. Returns the token for reset_deadline."""
    if type(timeout_ms) in (int, float) and timeout_ms > 0:
        return _deadline.set((monotonic() if since is None else since) + timeout_ms / 1000)
    return _deadline.set(None)


reset_deadline = _deadline.reset  # and after it


def time_remaining() -> Optional[float]:
    """Seconds until the running call's answer is no longer wanted: its task's timeout, or its
    client's ``x-request-timeout-ms`` budget if that ends first (0.0 once past it), counted from
    when the call's frame began to arrive; sending the result back takes some of it too. None
    outside a call, in a thread the task started (pass the value to it), or under
    ``pyfleet.testing.call_task`` without a ``timeout_ms``. An asyncio task a call started
    keeps the call's deadline after it, as it keeps its request id.

    Use it as the timeout of what the task waits for (an HTTP request, a database query)::

        requests.get(url, timeout=max(0.1, pyfleet.time_remaining() - 0.5))
    """
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - monotonic())
