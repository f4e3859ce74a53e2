"""The worker's read-call-reply loop: one call at a time, in arrival order.

It turns task outcomes into result/error messages; framing is frames.py's
job and the process set-up (stdio, signals, imports) is __main__'s.
"""

from __future__ import annotations

import sys
import traceback
from types import CoroutineType

from . import guard, protocol, registry
from .errors import TaskError, as_text
from .frames import read_frame, write_frame
from .guard import changes as _changes

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any, BinaryIO, Dict, Optional

# A failed call's message and traceback are cut to this many characters: they go
# into one log record on the server, and must never make the reply too large to send.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


class Runner:
    """Runs task functions, sync or async, and reports what happened as a message."""

    def __init__(self) -> None:
        # One event loop for the worker's life, created at start if any task is async.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        if any(task.is_async for task in registry.all_tasks()):
            self._event_loop()
        self._baseline = guard.Baseline()  # after the event loop: making it is not a task's doing

    def run(self, message: Dict[str, Any]) -> Dict[str, Any]:
        call_id = message.get("id")
        name = message.get("task")
        task = registry.get(name) if isinstance(name, str) else None
        if task is None:
            return protocol.error(call_id, protocol.KIND_FAILED, "UnknownTask", f"this worker has no task {name!r}")
        try:
            try:
                value = task.fn(message.get("input"))
                # A coroutine from a plain function too: an async def behind a decorator that is not.
                if task.is_async or type(value) is CoroutineType:
                    value = self._event_loop().run_until_complete(value)
                reply = protocol.result(call_id, value)
            except TaskError as exc:
                reply = _rejected(call_id, exc)
            except BaseException as exc:
                # Not only Exception: KeyboardInterrupt, SystemExit (a library calling
                # sys.exit()), asyncio.CancelledError and GeneratorExit raised by a task
                # are its failures too (500), not a reason to lose the worker. The runtime
                # never raises them itself (SIGINT is ignored, SIGTERM has no handler).
                reply = _failed(call_id, exc)
        except BaseException as exc:  # building the reply raised (an exception's property, say): still one reply
            reply = _unreportable(call_id, exc)
        # What the call left behind (see guard.py): one dict test and three identity checks.
        base = self._baseline
        try:
            if _changes or sys.stdout is not base.stdout or sys.stderr is not base.stderr or sys.stdin is not base.stdin:
                base.restore(task.name, reply)  # in a process the task forked, this exits
        except BaseException:  # a handler the task left ran just now and raised: the reply stands
            guard.log.exception("task %r: putting its worker back in order after the call raised", task.name)
        return reply

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


def _rejected(call_id: Any, exc: TaskError) -> Dict[str, Any]:
    # A subclass may not have called TaskError.__init__, or may have set .message to a non-str.
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = as_text(exc if message is None else message)
    return protocol.error(
        call_id, protocol.KIND_REJECTED, type(exc).__name__, _cut(message, MAX_MESSAGE_CHARS), getattr(exc, "details", None)
    )


def _failed(call_id: Any, exc: BaseException, context: str = "") -> Dict[str, Any]:
    # The traceback travels to the server for its log only; clients see a generic message.
    reply = protocol.error(call_id, protocol.KIND_FAILED, type(exc).__name__, _cut(context + as_text(exc), MAX_MESSAGE_CHARS))
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException as problem:  # a broken exception can break the formatting too
        text = f"(no traceback: formatting it raised {type(problem).__name__})"
    reply["traceback"] = _cut_traceback(text)
    return reply


def _unreportable(call_id: Any, exc: BaseException) -> Dict[str, Any]:
    """The reply for a call whose outcome could not be made into one: a plain 500."""
    try:
        return _failed(call_id, exc, "the outcome of the call could not be reported: ")
    except BaseException:
        reply = protocol.error(call_id, protocol.KIND_FAILED, "UnreportableError", "the outcome of the call could not be reported")
        reply["traceback"] = ""  # a runtime reply without one would read as UnknownTask to the server
        return reply


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [truncated: {len(text):,} characters in all]"


def _cut_traceback(text: str) -> str:
    """Keep the start (the frames) and the end (the last exception's line) of a traceback too long to log."""
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    head, tail = MAX_TRACEBACK_CHARS * 3 // 4, MAX_TRACEBACK_CHARS // 4
    return f"{text[:head]}\n[... {len(text) - head - tail:,} characters cut: the traceback was {len(text):,} characters ...]\n{text[-tail:]}"


def encode_reply(reply: Dict[str, Any], max_frame_bytes: int) -> bytes:
    """Encode a reply, turning unencodable or oversize results into error messages."""
    call_id = reply.get("id")
    is_result = reply.get("t") == protocol.MSG_RESULT
    try:
        body = protocol.encode(reply)
    except Exception as exc:  # TypeError or OverflowError from _to_msgpack, ValueError for a cycle, ...
        what = "the result" if is_result else f"the details of the {reply.get('type')}"
        try:
            body = protocol.encode(_failed(call_id, exc, f"{what} cannot be sent: "))
        except Exception as problem:
            body = protocol.encode(_unreportable(call_id, problem))
    if len(body) > max_frame_bytes:
        what = "result" if is_result else f"{reply.get('type')} reply"
        body = protocol.encode(
            protocol.error(
                call_id,
                protocol.KIND_TOO_LARGE,
                "ResultTooLarge",
                f"the {what} is {len(body)} bytes, over the limit of {max_frame_bytes} (MAX_FRAME_BYTES)",
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
