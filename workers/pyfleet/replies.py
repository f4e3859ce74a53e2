"""What a call's outcome becomes as a message: a task's rejection (422), its failure (500,
with the traceback the server logs), and the encoded reply frame, with results that cannot
be sent or are too large turned into errors that say why.

runner.py runs calls; this module only builds and encodes their replies.
"""

from __future__ import annotations

import os
import traceback

from . import protocol
from .errors import TaskError, as_text, sendable
from .places import place
from .unsendable import undecodable, why_unsendable

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

# A failed call's message and traceback are cut to this many characters: they go
# into one log record on the server, and must never make the reply too large to send.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024
# The server logs a traceback's lines cut to 1 KiB, then chooses which to keep (exceptions
# before frames: src/traceback-cut.ts): cut here first, each line and then their number, a
# cut that keeps every exception's line of a long one (six 15,000-character messages
# lost one to a cut of the whole text), and leaves the server, on its event loop, a short list
# of lines to choose from (40,000 one-character lines took it 40 ms).
MAX_TRACEBACK_LINE_CHARS = 1024
MAX_TRACEBACK_LINES = 1000


def rejected(call_id: Any, exc: TaskError) -> Dict[str, Any]:
    # A subclass may not have called TaskError.__init__, or may have set .message to a non-str.
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = as_text(exc if message is None else message, use_repr=False)  # shown to the client
    # sendable(): a lone surrogate (a byte kept by surrogateescape) must not cost the message.
    reply = protocol.error(
        call_id, protocol.KIND_REJECTED, sendable(type(exc).__name__), sendable(_cut(message, MAX_MESSAGE_CHARS)), getattr(exc, "details", None)
    )
    if "details" in reply:
        # Where it was raised, should its details not be sendable: by then the task's frames are
        # gone, and the log's traceback is the packer's. Kept, not looked up: rarely needed.
        reply[_RAISED_FROM] = exc.__traceback__
    return reply


# A reply's key for the traceback of the TaskError it carries; taken out before it is encoded.
_RAISED_FROM = "_raised_from"


def _raise_site(tb: Any) -> str:
    """`` raised at mytasks/shop.py, line 12`` (the innermost frame: the raise), or ""."""
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" raised at {place(tb.tb_frame.f_code.co_filename, tb.tb_lineno)}"


# What bdb.BdbQuit (no message of its own) means in a worker, said in the log line.
DEBUGGER_QUIT = (
    "a debugger was started (breakpoint(), pdb.set_trace()) in a worker, which has no terminal: "
    "its stdin is /dev/null, so the debugger quit at once. Debug the task in a terminal with "
    "pyfleet.testing.call_task, where breakpoint() works, or set PYTHONBREAKPOINT=0 to make "
    "breakpoint() do nothing"
)


def failed(call_id: Any, exc: BaseException, context: str = "", last_frames: Optional[int] = None) -> Dict[str, Any]:
    # The traceback travels to the server for its log only; clients see a generic message.
    if not context and type(exc).__name__ == "BdbQuit" and type(exc).__module__ == "bdb":  # bdb not imported for it
        context = DEBUGGER_QUIT
    reply = protocol.error(
        call_id, protocol.KIND_FAILED, sendable(type(exc).__name__), sendable(_cut(context + as_text(exc), MAX_MESSAGE_CHARS))
    )
    try:
        text = "".join(traceback.format_exception(type(exc), exc, _from_task_code(exc.__traceback__), limit=None if last_frames is None else -last_frames))
    except BaseException as problem:  # a broken exception can break the formatting too
        text = f"(no traceback: formatting it raised {type(problem).__name__})"
    reply["traceback"] = sendable(_cut_traceback(text))
    return reply


# The runtime's own files, and asyncio's (run_until_complete, for an async task): the frames
# every failure's traceback began with, before the task's own.
_RUNTIME_FILES = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "asyncio") + os.sep)


def _from_task_code(tb: Any) -> Any:
    """The traceback from its first frame that is not the runtime's calling the task: the log's
    line has a bound, and those frames were the same in every one. Whole when all its frames
    are the runtime's (a failure of the runtime itself)."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_FILES):
        tb = tb.tb_next
    return first if tb is None else tb


# The log's traceback for a value that could not be sent when no code of the task's ran in the attempt:
# a result, and a raised error's details (which the message says where it was raised).
_NO_TASK_FRAMES_RESULT = (
    "(no traceback: the value was returned, not raised, and no code of the task's ran while it was "
    "converted; the message says where in the value the part that cannot be sent is)"
)
_NO_TASK_FRAMES_DETAILS = (
    "(no traceback of the conversion: the details were converted after the task had raised, and no code "
    "of the task's ran while they were; the message says where the error was raised and where in the "
    "details the part that cannot be sent is)"
)


def _any_task_frame(exc: BaseException) -> bool:
    """Whether a frame of the task's own code (not the runtime's, asyncio's or msgpack's) is in
    `exc`'s traceback or in those of its causes: a set member's __lt__, a date subclass's
    isoformat(), a default= the task set up."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not (frame.f_code.co_filename.startswith(_RUNTIME_FILES) or str(frame.f_globals.get("__name__", "")).startswith("msgpack")):
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def unreportable(call_id: Any, exc: BaseException) -> Dict[str, Any]:
    """The reply for a call whose outcome could not be made into one: a plain 500."""
    try:
        return failed(call_id, exc, "the outcome of the call could not be reported: ")
    except BaseException:
        return protocol.error(call_id, protocol.KIND_FAILED, "UnreportableError", "the outcome of the call could not be reported")


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [truncated: {len(text):,} characters in all]"


def _cut_traceback(text: str) -> str:
    """Each line of a traceback to MAX_TRACEBACK_LINE_CHARS, then its first and last lines (where
    it began, and the exception) if there are more than MAX_TRACEBACK_LINES, then, still too long,
    the start (the frames) and the end (the last exception's line) of the text."""
    if len(text) > MAX_TRACEBACK_LINE_CHARS or text.count("\n") > MAX_TRACEBACK_LINES:
        lines = [line if len(line) <= MAX_TRACEBACK_LINE_CHARS else line[:MAX_TRACEBACK_LINE_CHARS] + "..." for line in text.split("\n")]
        if len(lines) > MAX_TRACEBACK_LINES:
            head, tail = MAX_TRACEBACK_LINES // 2, MAX_TRACEBACK_LINES // 2
            lines = [*lines[:head], f"[... {len(lines) - head - tail:,} lines cut ...]", *lines[-tail:]]
        text = "\n".join(lines)
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    head, tail = MAX_TRACEBACK_CHARS * 3 // 4, MAX_TRACEBACK_CHARS // 4
    return f"{text[:head]}\n[... {len(text) - head - tail:,} characters cut: the traceback was {len(text):,} characters ...]\n{text[-tail:]}"


def encode_reply(reply: Dict[str, Any], max_frame_bytes: int) -> bytes:
    """Encode a reply, turning unencodable or oversize results into error messages (which keep
    the reply's ``rss``, the worker's memory past MAX_WORKER_RSS_MB: loop.py)."""
    call_id = reply.get("id")
    rss = reply.get("rss")
    raised_from = reply.pop(_RAISED_FROM, None)

    def encode(message: Dict[str, Any]) -> bytes:
        if rss is not None:
            message["rss"] = rss
        return protocol.encode(message)

    is_result = reply.get("t") == protocol.MSG_RESULT

    def what() -> str:
        """What could not be sent, said when something could not (the raise site looked up only then)."""
        return "the result" if is_result else f"the details of the {reply.get('type')}{_raise_site(raised_from)}"

    try:
        body = encode(reply)
        # What msgpackr cannot decode, the server blames on "the result": say here which part it is.
        if not is_result and reply.get("details") is not None and undecodable(reply["details"], "") is not None:
            problem = undecodable(reply["details"], what())
            body = encode(protocol.error(call_id, protocol.KIND_FAILED, "UndecodableDetails", problem))
    # TypeError or OverflowError from conversion.to_msgpack, ValueError for a cycle, ..., and
    # whatever the task's own code raises while its values are converted (a set member's __lt__,
    # a date subclass's isoformat()): SystemExit and KeyboardInterrupt too, which are the call's
    # failure, as when the task raises them, not the worker's end.
    except BaseException as exc:
        try:
            why = why_unsendable(reply.get("value" if is_result else "details"), exc)
            # Only the packer's last frames: the rest is the runtime and msgpack, one pair of frames
            # per level for a value nested too deep (hundreds of lines that say nothing `why` does not).
            unsendable = failed(call_id, exc, f"{what()} cannot be sent: {why}", last_frames=3)
            if not _any_task_frame(exc):
                # The packer's and the runtime's frames alone (a timedelta returned, an int past
                # 64 bits) said nothing the message does not, and read as pyfleet failing.
                unsendable["traceback"] = _NO_TASK_FRAMES_RESULT if is_result else _NO_TASK_FRAMES_DETAILS
            body = encode(unsendable)
        except BaseException as problem:
            body = encode(unreportable(call_id, problem))
    if len(body) > max_frame_bytes:
        too_large = "result" if is_result else f"{reply.get('type')} reply"
        body = encode(
            protocol.error(
                call_id,
                protocol.KIND_TOO_LARGE,
                "ResultTooLarge",
                f"the {too_large} is {len(body)} bytes, over the limit of {max_frame_bytes} (MAX_FRAME_BYTES)",
            )
        )
    return body
