"""Run a task the way a worker runs it, without the server: for task authors' tests.

``call_task("greet", {"name": "Ada"})`` returns what a client would get, or raises
TaskCallError with the status and code it would see; examples/test_greeting.py
is a whole test module (README, "Writing a task", shows it).

Input and result go through the same msgpack encoding and the same error
handling as a real call (the worker loop's own code), so a result the server
could not send, or a task that raises, fails here as it would over HTTP, and
the input's numbers are what the server would send (see call_task). What
this does not do is the server's side: the input schema is checked by Node
(Ajv) before any worker is involved, timeouts are the server's, and JSON
clients see bytes as base64 and integers beyond 2^53 as strings.
"""

from __future__ import annotations

import sys

from . import protocol, registry
from .frames import DEFAULT_MAX_FRAME_BYTES
from .protocol import as_the_server_sends
from .loop import Runner, encode_reply, event_loop_policy

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# The HTTP status and error code each kind of error reply becomes (SPEC section 1).
_HTTP = {
    protocol.KIND_REJECTED: (422, "TASK_REJECTED_INPUT"),
    protocol.KIND_FAILED: (500, "TASK_FAILED"),
    protocol.KIND_TOO_LARGE: (500, "RESULT_TOO_LARGE"),
}


class TaskCallError(Exception):
    """The call ended in an error reply: ``status`` and ``code`` are what an HTTP client would get.

    ``type`` is the Python exception's name, ``details`` the TaskError's details
    and ``traceback`` the text the server would log (for TASK_FAILED).
    """

    def __init__(self, reply: dict) -> None:
        self.status, self.code = _HTTP.get(reply.get("kind"), (500, "TASK_FAILED"))
        self.type: str = reply.get("type", "")
        self.message: str = reply.get("message", "")
        self.details: Optional[Any] = reply.get("details")
        self.traceback: Optional[str] = reply.get("traceback")
        super().__init__(f"{self.status} {self.code}: {self.type}" + (f": {self.message}" if self.message else ""))
        # A failing test then shows where the task failed, not only where call_task raised:
        # the traceback is printed with the error (a note, Python 3.11+; on 3.10, read .traceback).
        if self.traceback and hasattr(self, "add_note"):
            self.add_note("The task's traceback, as the server would log it:\n" + self.traceback.rstrip())


def call_task(name: str, input: Any, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, request_id: str = "test") -> Any:
    """Call the registered task ``name`` with ``input``; return its value as msgpack delivers it.

    Raises TaskCallError for any error reply (TaskError, another exception, a
    result that cannot be encoded or is over ``max_frame_bytes``), and KeyError
    for a name no imported module registered.

    ``input`` reaches the task as the server would send it: after a msgpack
    round trip (tuples become lists), and with every float that holds an
    integer within ±2^53 as an int (``1.0``, ``1e3``, ``-0.0`` arrive as ``1``,
    ``1000``, ``0``), since JavaScript has one number type and the server sends
    integral numbers as msgpack integers, whether the client sent JSON or msgpack.

    Unlike a worker's call, this one has no deadline: the task's ``timeout_ms``
    is the server's to enforce, so a task that hangs hangs the test. And it runs
    in the test's own process: a task that calls ``os._exit()`` ends the test
    run there, with the status it gave (0 for ``os._exit(0)``, which can look
    like a passing run), where a worker would die and the call get 502 WORKER_DIED.
    The thread's current asyncio event loop is put back as it was. ``request_id``
    is what ``pyfleet.request_id()`` returns in the task.
    """
    if registry.get(name) is None:
        known = ", ".join(sorted(task.name for task in registry.all_tasks())) or "none: import your task module first"
        raise KeyError(f"no task named {name!r} (registered: {known})")
    call = protocol.decode(protocol.encode({"t": protocol.MSG_CALL, "id": 1, "task": name, "input": input, "requestId": request_id}))
    call["input"] = as_the_server_sends(call["input"])
    put_back_event_loop = _event_loop_keeper()
    try:
        runner = Runner()
        try:
            reply = runner.run(call)
        finally:
            runner.close()
    finally:
        put_back_event_loop()
    try:
        reply = protocol.decode(encode_reply(reply, max_frame_bytes))
    except protocol.ProtocolError as exc:  # e.g. a tuple key: it comes back as an (unhashable) list
        raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": str(exc)}) from None
    if reply["t"] == protocol.MSG_RESULT:
        problem = protocol.undecodable(reply["value"], "the result")
        if problem is not None:
            raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": problem})
        return reply["value"]
    raise TaskCallError(reply)


def _event_loop_keeper() -> Any:
    """A function that puts back the thread's current asyncio event loop as it is now: a Runner sets its own.

    Read and put back through the event loop policy's per-thread record, so that
    a thread that had none set gets none, not a loop made on the way nor None
    (after set_event_loop(None), get_event_loop() raises where it made one).
    """
    asyncio = sys.modules.get("asyncio")
    local = None if asyncio is None else getattr(event_loop_policy(asyncio), "_local", None)
    saved = None if local is None else dict(vars(local))

    def put_back() -> None:
        asyncio = sys.modules.get("asyncio")
        if asyncio is None:
            return  # the Runner made no loop
        now = getattr(event_loop_policy(asyncio), "_local", None)
        if now is not None:
            vars(now).clear()  # none saved: asyncio was imported by the call, the record was new
            vars(now).update(saved or {})
        else:  # a policy of another shape
            asyncio.set_event_loop(None)

    return put_back

