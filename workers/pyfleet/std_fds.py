"""fds 0, 1 and 2 of a worker, kept as the runtime set them up (see guard.py for when
they are checked): a copy of each to put it back from, and what each is open on; and
the streams sys.stdin, sys.stdout and sys.stderr are made of, which a task cannot close.

A task that closes one (``os.close(1)``) would let its next ``open()`` take the
number, and then ``print()``, which writes to fd 1, would write into the task's
file; one that ``dup2``s a file of its own there would do the same at once.
"""

from __future__ import annotations

import io
import os

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# Taken before guard.watch() wraps them: putting an fd back is not a task's change.
_dup2 = os.dup2
_close = os.close


class StdFds:
    def __init__(self, names: Dict[int, str]) -> None:
        self._names = names
        # What each is open on now, and a copy to put it back from (os.dup's copies are not
        # inheritable, so processes a task starts do not get them). A closed one is left alone.
        self._identities = {fd: identity for fd in names if (identity := _identity(fd)) is not None}
        self._copies = {fd: os.dup(fd) for fd in self._identities}

    def holds(self, fd: int) -> bool:
        """Whether ``fd`` is still open on what it was when these were taken (the runtime's, not a task's)."""
        identity = self._identities.get(fd)
        return identity is not None and _identity(fd) == identity

    def restore(self) -> List[str]:
        """Put back each fd that is no longer what it was; say what was found, for the warning."""
        put_back = []
        for fd, identity in self._identities.items():
            now = _identity(fd)
            if now == identity:
                continue
            name = self._names[fd]
            copy = self._copies.get(fd)
            # The copy itself may have been closed by a task, or reused for one of its files:
            # putting that on fd 2 would send the worker's log into the task's file.
            if copy is None or _identity(copy) != identity:
                self._copies.pop(fd, None)
                put_back.append(f"changed {name}, which could not be put back (the runtime's copy of it was closed too)")
                continue
            try:
                _dup2(copy, fd)
            except OSError as exc:
                put_back.append(f"changed {name}, which could not be put back ({exc})")
                continue
            if now is None:
                put_back.append(f"closed {name}")
            else:
                # The fd is the task's file: dup2 closes that file under any object still holding it.
                put_back.append(f"put a file of its own on {name} (os.dup2, or open() after closing it); putting fd {fd} back closes that file")
        return put_back

    def close(self) -> None:
        """Close the copies (a Runner made for one call_task)."""
        copies, self._copies = self._copies, {}
        for copy in copies.values():
            try:
                _close(copy)
            except OSError:  # a task closed it already
                pass


def _identity(fd: int) -> Optional[Tuple[int, int]]:
    """What ``fd`` is open on (device and inode), None if it is closed."""
    try:
        stat = os.fstat(fd)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


class StdStream(io.TextIOWrapper):
    """A worker's sys.stdin, sys.stdout or sys.stderr: close() only flushes, and detach() hands
    out a new binary stream on the same fd; either way this stream stays usable.

    A task that closes one (``sys.stdout.close()``, ``with sys.stdout:``) or
    rewraps one (``io.TextIOWrapper(sys.stdout.detach())``, a common way to
    change the encoding) would otherwise break every later print and log line
    of its worker: the runtime puts its own streams back after each call.
    """

    def close(self) -> None:
        self.flush()

    def detach(self) -> Any:
        self.flush()
        if self.readable():
            return io.BufferedReader(io.FileIO(self.fileno(), "r", closefd=False))
        return io.FileIO(self.fileno(), "w", closefd=False)


def text_stream(fd: int, mode: str) -> StdStream:
    """A line-buffered UTF-8 text stream on ``fd`` that does not own it (the fd outlives the object)."""
    raw = io.FileIO(fd, mode, closefd=False)
    if mode == "r":
        return StdStream(io.BufferedReader(raw), encoding="utf-8", errors="replace")
    # Unbuffered, as Python's own stderr and PYTHONUNBUFFERED's stdout: a partial line or a
    # sys.stdout.buffer.write() reaches the server now, not with a later call's output, and
    # is not lost when the worker ends with os._exit or SIGKILL.
    return StdStream(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)
