"""The worker's own resident set size, read after every call for MAX_WORKER_RSS_MB.

The server recycles a worker whose RSS passes the limit after a call. Reading every
worker's /proc from Node after every call costs a thread-pool round trip each (echo lost
~23 % of its throughput to it), and reading it less often let a worker that grows fast run
~20 calls past the limit (432 MB against 50 MB in a review) before a sample caught it. The
worker reads its own instead, in ~1.5 us (one pread of /proc/self/statm on a descriptor
kept open), and says so in its reply only when it is past the limit (loop.py), so the
frames of every other call stay as they were.
"""

from __future__ import annotations

import os

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class ResidentSize:
    """Reads this process's RSS in bytes; None where /proc cannot tell."""

    def __init__(self) -> None:
        self._fd: Optional[int] = None

    def bytes(self) -> Optional[int]:
        for _ in range(2):
            try:
                if self._fd is None:
                    self._fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
                # statm: size resident shared text lib data dt, in pages.
                return int(os.pread(self._fd, 128, 0).split()[1]) * _PAGE_BYTES
            except (OSError, ValueError, IndexError):
                # A task closed the descriptor (os.closerange), or a file of its own took the
                # number since: open another, once. Not closed here: it may be the task's file.
                self._fd = None
        return None
