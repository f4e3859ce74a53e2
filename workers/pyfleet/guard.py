"""What a task may leave behind in its worker.

- A task that closes ``sys.stdin``, ``sys.stdout`` or ``sys.stderr`` would
  break every later print and log line of its worker: the runtime's own
  streams (StdStream) cannot be closed.
"""

from __future__ import annotations

import io


class StdStream(io.TextIOWrapper):
    """A worker's sys.stdin, sys.stdout or sys.stderr: close() only flushes, the stream stays usable.

    A task that closes one (``sys.stdout.close()``, ``with sys.stdout:``)
    would otherwise break every later print and log line of its worker.
    """

    def close(self) -> None:
        self.flush()


def text_stream(fd: int, mode: str) -> StdStream:
    """A line-buffered UTF-8 text stream on ``fd`` that does not own it (the fd outlives the object)."""
    raw = io.FileIO(fd, mode, closefd=False)
    if mode == "r":
        return StdStream(io.BufferedReader(raw), encoding="utf-8", errors="replace")
    return StdStream(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace", line_buffering=True)
