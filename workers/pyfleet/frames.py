"""Length-prefixed frames on binary streams.

    +--------------------+---------------------------+
    | length n (4 bytes, | n bytes of msgpack: one   |
    | unsigned, big end.)| map (see protocol.py)     |
    +--------------------+---------------------------+

This module only moves bytes; protocol.py gives them meaning. The length is
checked before the body is read, and a clean EOF at a frame boundary is told
apart from a frame cut short.
"""

from __future__ import annotations

import struct
from time import monotonic

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Optional, Tuple

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
# The server's default MAX_FRAME_BYTES: what a worker (and call_task) allows when not told.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024


class FrameError(Exception):
    """The stream broke the framing rules: the peer is not to be trusted any more."""


def read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Read n bytes; fewer only at EOF. BufferedReader.read loops for us."""
    data = stream.read(n)
    if data is None:  # non-blocking stream with nothing ready: we never use one
        raise FrameError("stream is non-blocking")
    return data


def read_frame(stream: BinaryIO, max_frame_bytes: int) -> Optional[bytes]:
    """Return the next frame's body, or None on EOF at a frame boundary."""
    read = read_frame_timed(stream, max_frame_bytes)
    return None if read is None else read[0]


def read_frame_timed(stream: BinaryIO, max_frame_bytes: int) -> Optional[Tuple[bytes, float]]:
    """read_frame, with when its header arrived (time.monotonic()): a large call's body takes a
    while to come through the pipe, and the server counts the call's time from when it began
    to send it (pyfleet.time_remaining() counts from here)."""
    header = read_exactly(stream, HEADER_BYTES)
    if not header:
        return None
    arrived = monotonic()
    if len(header) < HEADER_BYTES:
        raise FrameError(f"stream ended inside a frame header ({len(header)} of {HEADER_BYTES} bytes)")
    (length,) = HEADER.unpack(header)
    if length > max_frame_bytes:
        raise FrameError(f"frame of {length} bytes is over the limit of {max_frame_bytes}")
    body = read_exactly(stream, length)
    if len(body) < length:
        raise FrameError(f"stream ended inside a frame body ({len(body)} of {length} bytes)")
    return body, arrived


def write_frame(stream: BinaryIO, body: bytes) -> None:
    """Write one frame and flush. Small frames go out in a single write(2)."""
    stream.write(HEADER.pack(len(body)))
    stream.write(body)
    stream.flush()
