"""Messages of the worker protocol (SPEC section 4) and their msgpack coding.

    worker -> server, once:  {t: "ready", v, pid, python, tasks: [...]}
    server -> worker:        {t: "call", id, task, input, requestId, timeoutMs}
    worker -> server:        {t: "result", id, value, rss?}
    worker -> server:        {t: "error", id, kind, type, message, details?, traceback?, rss?}
    (rss: the worker's RSS in bytes, only when past --max-rss-bytes: resident.py)

An error reply has a traceback when a task's code raised; the runtime's own replies have
none, and the server tells "this worker has no such task" (type UnknownTask, no traceback:
a reload removed it, a 404) from a task raising an exception of that name by it.
The names here are spelled as in src/pool/protocol.ts. What the packer does with values
msgpack cannot carry is conversion.py's; saying why one cannot be sent, unsendable.py's.
"""

from __future__ import annotations

import os
import sys

import msgpack

from .conversion import to_msgpack

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

PROTOCOL_VERSION = 1

MSG_READY = "ready"
MSG_CALL = "call"
MSG_RESULT = "result"
MSG_ERROR = "error"

KIND_REJECTED = "rejected"
KIND_FAILED = "failed"
KIND_TOO_LARGE = "too_large"

# The type of the runtime's reply to a call of a task this worker does not have.
UNKNOWN_TASK = "UnknownTask"


class ProtocolError(Exception):
    """A frame that decodes but is not a message we understand."""


# One packer for the worker's life: building one per message costs more than the message.
_packer = msgpack.Packer(use_bin_type=True, default=to_msgpack, autoreset=True)


def encode(message: Dict[str, Any]) -> bytes:
    return _packer.pack(message)


def decode(body: bytes) -> Dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"frame is not valid msgpack: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("frame is not a message map with a 't' field")
    return message


def ready(tasks: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "t": MSG_READY,
        "v": PROTOCOL_VERSION,
        "pid": os.getpid(),
        # what platform.python_version() says ("3.11.2", "3.13.0rc1"), without importing platform
        "python": sys.version.split()[0],
        "tasks": tasks,
    }


def result(call_id: int, value: Any) -> Dict[str, Any]:
    # In this order, value last: the server sends a msgpack client the value's bytes as
    # written here, found after the first two keys (src/pool/protocol.ts, resultValueBytes).
    return {"t": MSG_RESULT, "id": call_id, "value": value}


def with_rss(reply: Dict[str, Any], rss: int) -> Dict[str, Any]:
    """``reply`` saying the worker's RSS (past MAX_WORKER_RSS_MB: resident.py), before a result's
    value, which stays last (see result())."""
    return {"t": reply["t"], "id": reply["id"], "rss": rss, **{key: item for key, item in reply.items() if key not in ("t", "id")}}


def error(call_id: int, kind: str, type_name: str, message: str, details: Optional[Any] = None) -> Dict[str, Any]:
    body = {"t": MSG_ERROR, "id": call_id, "kind": kind, "type": type_name, "message": message}
    if details is not None:
        body["details"] = details
    return body
