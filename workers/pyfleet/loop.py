"""The worker's read-call-reply loop: one call at a time, in arrival order.

Each call is run by runner.py (which also puts the worker back in order after it, with
guard.py); the reply messages are replies.py's, framing is frames.py's, and the process
set-up (stdio, signals, imports) is __main__'s.
"""

from __future__ import annotations

from . import protocol, registry
from .replies import encode_reply
from .frames import read_frame_timed, write_frame
from .resident import ResidentSize
from .runner import Runner
from .std_fds import end_call_output

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Optional


def serve(reader: BinaryIO, writer: BinaryIO, max_frame_bytes: int, at_end: Optional[Callable[[], None]] = None,
          max_rss_bytes: int = 0) -> None:
    """Say ready, then answer calls until stdin ends, then run ``at_end`` (while the event loop
    is still open). Raises FrameError/ProtocolError on a broken peer. With ``max_rss_bytes``
    (MAX_WORKER_RSS_MB), a reply sent while the worker's RSS is past it carries ``rss``: the
    server then replaces the worker before it takes another call (resident.py says why here)."""
    tasks = [task.describe() for task in registry.all_tasks()]
    runner = Runner()  # before ready: it may import asyncio
    resident = ResidentSize() if max_rss_bytes > 0 else None
    try:
        write_frame(writer, protocol.encode(protocol.ready(tasks)))
        try:
            fd: Optional[int] = reader.fileno()
        except (OSError, ValueError):  # an in-memory stream (tests): calls are there already, nothing to wait for
            fd = None
        while True:
            runner.wait_for_call(fd)
            read = read_frame_timed(reader, max_frame_bytes)
            if read is None:
                if at_end is not None:
                    at_end()
                return
            body, arrived = read
            message = protocol.decode(body)
            if message["t"] != protocol.MSG_CALL:
                raise protocol.ProtocolError(f"unexpected message type {message['t']!r}")
            reply = runner.run(message, arrived)
            if resident is not None:
                rss = resident.bytes()
                if rss is not None and rss > max_rss_bytes:
                    reply = protocol.with_rss(reply, rss)
            frame = encode_reply(reply, max_frame_bytes)
            # After the reply's encoding, which may run the task's code (a value's isoformat()),
            # and the warnings run() logs after the task: all of it is the call's output.
            end_call_output()
            write_frame(writer, frame)
    finally:
        runner.close()
