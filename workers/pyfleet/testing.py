"""Run a task the way a worker runs it, without the server: for task authors' tests.

    import unittest
    import mytasks.greeting  # importing a task module registers its tasks
    from pyfleet.testing import TaskCallError, call_task

    class GreetTest(unittest.TestCase):
        def test_greets(self):
            self.assertEqual(call_task("greet", {"name": "Ada"}), {"greeting": "hello, Ada"})

        def test_refuses_nobody(self):
            with self.assertRaises(TaskCallError) as caught:
                call_task("greet", {"name": "nobody"})
            self.assertEqual(caught.exception.status, 422)

Input and result go through the same msgpack encoding and the same error
handling as a real call (the worker loop's own code), so a result the server
could not send, or a task that raises, fails here as it would over HTTP. What
this does not do is the server's side: the input schema is checked by Node
(Ajv) before any worker is involved, and JSON clients see bytes as base64 and
integers beyond 2^53 as strings.
"""

from __future__ import annotations

import msgpack

from . import protocol, registry
from .loop import Runner, encode_reply

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# The server's default MAX_FRAME_BYTES.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

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
        super().__init__(f"{self.status} {self.code}: {self.type}: {self.message}")


def call_task(name: str, input: Any, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Any:
    """Call the registered task ``name`` with ``input``; return its value as msgpack delivers it.

    Raises TaskCallError for any error reply (TaskError, another exception, a
    result that cannot be encoded or is over ``max_frame_bytes``), and KeyError
    for a name no imported module registered.
    """
    if registry.get(name) is None:
        known = ", ".join(sorted(task.name for task in registry.all_tasks())) or "none: import your task module first"
        raise KeyError(f"no task named {name!r} (registered: {known})")
    call = {"t": protocol.MSG_CALL, "id": 1, "task": name, "input": input, "requestId": "test"}
    runner = Runner()
    try:
        reply = runner.run(protocol.decode(protocol.encode(call)))
    finally:
        runner.close()
    try:
        reply = protocol.decode(encode_reply(reply, max_frame_bytes))
    except protocol.ProtocolError as exc:  # e.g. a tuple key: it comes back as an (unhashable) list
        raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": str(exc)}) from None
    if reply["t"] == protocol.MSG_RESULT:
        problem = _unsendable(reply["value"])
        if problem is not None:
            raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": problem})
        return reply["value"]
    raise TaskCallError(reply)


def _unsendable(value: Any) -> Optional[str]:
    """What the server cannot turn into a JavaScript value (it answers 500 TASK_FAILED), if anything."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, msgpack.ExtType):
            return "the result holds a msgpack.ExtType, which the server refuses"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    return f"the result has a {type(key).__name__} dict key; use str keys"
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return None
