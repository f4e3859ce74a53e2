"""The worker's read-call-reply loop: one call at a time, in arrival order.

It turns task outcomes into result/error messages; framing is frames.py's
job and the process set-up (stdio, signals, imports) is __main__'s.
"""

from __future__ import annotations

import traceback

from . import protocol, registry
from .errors import TaskError
from .frames import read_frame, write_frame

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any, BinaryIO, Dict, Optional


class Runner:
    """Runs task functions, sync or async, and reports what happened as a message."""

    def __init__(self) -> None:
        # One event loop for the worker's life, created at start if any task is async.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        if any(task.is_async for task in registry.all_tasks()):
            self._event_loop()

    def run(self, message: Dict[str, Any]) -> Dict[str, Any]:
        call_id = message.get("id")
        name = message.get("task")
        task = registry.get(name) if isinstance(name, str) else None
        if task is None:
            return protocol.error(call_id, protocol.KIND_FAILED, "UnknownTask", f"this worker has no task {name!r}")
        try:
            value = task.fn(message.get("input"))
            if task.is_async:
                value = self._event_loop().run_until_complete(value)
            return protocol.result(call_id, value)
        except TaskError as exc:
            return protocol.error(call_id, protocol.KIND_REJECTED, type(exc).__name__, exc.message, exc.details)
        except BaseException as exc:
            # Not only Exception: KeyboardInterrupt, SystemExit (a library calling
            # sys.exit()), asyncio.CancelledError and GeneratorExit raised by a task
            # are its failures too (500), not a reason to lose the worker. The runtime
            # never raises them itself (SIGINT is ignored, SIGTERM has no handler).
            return _failed(call_id, exc)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            # Imported only by workers that have an async task (at start, see __init__): asyncio adds ~9 MB.
            import asyncio

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop


def _failed(call_id: Any, exc: BaseException) -> Dict[str, Any]:
    # The traceback travels to the server for its log only; clients see a generic message.
    reply = protocol.error(call_id, protocol.KIND_FAILED, type(exc).__name__, str(exc))
    reply["traceback"] = "".join(traceback.format_exception(exc))
    return reply


def encode_reply(reply: Dict[str, Any], max_frame_bytes: int) -> bytes:
    """Encode a reply, turning unencodable or oversize results into error messages."""
    call_id = reply.get("id")
    try:
        body = protocol.encode(reply)
    except Exception as exc:  # TypeError from _to_msgpack, OverflowError for ints past 64 bits, ...
        body = protocol.encode(_failed(call_id, exc))
    if len(body) > max_frame_bytes:
        body = protocol.encode(
            protocol.error(
                call_id,
                protocol.KIND_TOO_LARGE,
                "ResultTooLarge",
                f"the result is {len(body)} bytes, over the limit of {max_frame_bytes} (MAX_FRAME_BYTES)",
            )
        )
    return body


def serve(reader: BinaryIO, writer: BinaryIO, max_frame_bytes: int) -> None:
    """Say ready, then answer calls until stdin ends. Raises FrameError/ProtocolError on a broken peer."""
    tasks = [task.describe() for task in registry.all_tasks()]
    runner = Runner()  # before ready: it may import asyncio
    try:
        write_frame(writer, protocol.encode(protocol.ready(tasks)))
        while True:
            body = read_frame(reader, max_frame_bytes)
            if body is None:
                return
            message = protocol.decode(body)
            if message["t"] != protocol.MSG_CALL:
                raise protocol.ProtocolError(f"unexpected message type {message['t']!r}")
            reply = runner.run(message)
            write_frame(writer, encode_reply(reply, max_frame_bytes))
    finally:
        runner.close()
