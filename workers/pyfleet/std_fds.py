"""fds 0, 1 and 2 of a worker, kept as the runtime set them up (see guard.py for when
they are checked): a copy of each to put it back from, and what each is open on; the
streams sys.stdin, sys.stdout and sys.stderr are made of, which a task cannot close; and
the open() that keeps a file object made on one of them from closing it.

A task that closes one (``os.close(1)``) would let its next ``open()`` take the
number, and then ``print()``, which writes to fd 1, would write into the task's
file; one that ``dup2``s a file of its own there would do the same at once.
"""

from __future__ import annotations

import _thread
import io
import os

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# Taken before watchers.watch() wraps them: putting an fd back is not a task's change.
_dup2 = os.dup2
_close = os.close
_open = io.open  # builtins.open is the same function; os.fdopen calls io.open

# Whether output on fds 1-2 left a line open: {OPEN_LINE: True} then, else empty. A dict of its
# own, not watchers.changes: any thread may write, at any moment, even while a call's changes are
# being undone. Changed in place only (runner.py holds a reference to it).
open_line: Dict[str, bool] = {}
OPEN_LINE = "open line"

# Where each call's output on fds 1-2 begins and ends (--stderr-mark), for the server, which
# logs every stderr line with a request id: without marks it uses the call it sent last, and
# a line a task printed just before returning, read after the reply, got the id of the call
# sent next. While a call runs, call_mark holds {PENDING: the line that opens its output}
# until its first write puts that line on the pipe, then {WRITTEN: True}; the loop closes the
# output after the call (end_call_output). A call that writes nothing costs a few dict
# operations and no write. The token, the server's secret, keeps a client's text that a task
# prints from passing for a mark.
call_mark: Dict[str, Any] = {}
PENDING = "pending"
WRITTEN = "written"
_mark_prefix: List[bytes] = []  # [b"\x1e<token> "] once mark_calls() has turned marks on
# Taking the opening mark and closing the output happen under it: a thread that took the mark
# just as the call ended would otherwise write it after the end mark, or leave no end mark,
# and the server would give the next call's output this one's id. Reentrant: a signal
# handler that prints may run while the main thread holds it.
_mark_lock = _thread.RLock()


def _after_fork_in_child() -> None:
    # A process a task forks (multiprocessing's fork pools) writes no marks: its own copy of
    # call_mark would open the call's output in the pipe without the worker ever closing it.
    global _mark_lock
    call_mark.clear()
    _mark_lock = _thread.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)

# What a worker has on fds 0-2 (set up by __main__), for the warnings.
STD_FDS = {0: "fd 0 (stdin, /dev/null)", 1: "fd 1 (stdout, which goes on to stderr)", 2: "fd 2 (stderr)"}


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
        return LineTrackingFileIO(self.fileno(), "w", closefd=False)


class LineTrackingFileIO(io.FileIO):
    """The file under a worker's sys.stdout and sys.stderr: notes whether what was written
    last ended a line. The server logs stderr line by line, each line with the request it
    came from, so a partial line (``print(..., end="")``, a progress bar's ``\\r``) must be
    ended before another call's output or a log record is written after it
    (end_open_line)."""

    def write(self, data: Any) -> Optional[int]:
        if PENDING in call_mark:
            _open_call_output()
        written = super().write(data)
        if written:
            if _ends_line(data, written):
                open_line.pop(OPEN_LINE, None)
            else:
                open_line[OPEN_LINE] = True
        return written


class _RuntimeFileIO(LineTrackingFileIO):
    """The file under the runtime's own sys.stdout and sys.stderr (their ``.buffer``): close()
    does nothing. ``io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8")``, a common way to
    force an encoding, closes it when the task's wrapper is closed or collected (the runtime puts
    its own stream back after the call): every later print in the worker failed, and with stderr
    the runtime's own warning then killed the worker."""

    def close(self) -> None:
        pass


class _RuntimeReader(io.BufferedReader):
    """sys.stdin's ``.buffer``, kept open as _RuntimeFileIO is: a wrapper of it, collected,
    made every later sys.stdin.read() raise instead of reading end-of-file."""

    def close(self) -> None:
        pass


def _ends_line(data: Any, written: int) -> bool:
    """Whether the last of the ``written`` bytes of ``data`` (any bytes-like object) is a newline."""
    if type(data) is bytes or type(data) is bytearray:
        return data[written - 1] == 10
    try:
        return memoryview(data).cast("B")[written - 1] == 10
    except (TypeError, ValueError, IndexError):
        return False


def end_open_line() -> None:
    """Ends a line a task left open on fds 1-2 (after its call, after fds 0-2 are put back), so
    that what comes next starts a line of its own."""
    if open_line.pop(OPEN_LINE, False):
        try:
            os.write(2, b"\n")
        except OSError:
            pass  # a closed pipe has no reader left


def mark_calls(token: str) -> None:
    """Turns on the marks around each call's output (--stderr-mark; letters and digits)."""
    _mark_prefix[:] = [b"\x1e" + token.encode("ascii") + b" "]


def begin_call_output(call_id: Any) -> None:
    """A call begins: its first write on fds 1-2 is preceded by a line naming it."""
    if _mark_prefix and type(call_id) is int:
        call_mark[PENDING] = _mark_prefix[0] + b"call %d\n" % call_id


def _open_call_output() -> None:
    with _mark_lock:
        mark = call_mark.pop(PENDING, None)
        if mark is not None:
            _write_mark(mark)
            call_mark[WRITTEN] = True


def end_call_output() -> None:
    """A call has ended (its line left open ended, fds 0-2 back, its reply encoded, which may
    run the task's code): if it wrote anything, a line saying that what follows is not its output."""
    with _mark_lock:
        call_mark.pop(PENDING, None)
        if call_mark.pop(WRITTEN, False):
            _write_mark(_mark_prefix[0] + b"end\n")


def _write_mark(mark: bytes) -> None:
    # Straight to fd 2, the server's pipe even where a task pointed fd 1 at a file of its own;
    # at the start of a line, where the server looks for it.
    try:
        os.write(2, b"\n" + mark if open_line.pop(OPEN_LINE, False) else mark)
    except OSError:
        pass  # a closed pipe has no reader left


def text_stream(fd: int, mode: str) -> StdStream:
    """A line-buffered UTF-8 text stream on ``fd`` that does not own it (the fd outlives the object)."""
    if mode == "r":
        return StdStream(_RuntimeReader(io.FileIO(fd, mode, closefd=False)), encoding="utf-8", errors="replace")
    raw = _RuntimeFileIO(fd, mode, closefd=False)
    # Unbuffered, as Python's own stderr and PYTHONUNBUFFERED's stdout: a partial line or a
    # sys.stdout.buffer.write() reaches the server now, not with a later call's output, and
    # is not lost when the worker ends with os._exit or SIGKILL.
    return StdStream(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)


class _OpenKeepingStdFds:
    """``open`` in a worker: a file object made on fd 0, 1 or 2 while it is still the
    runtime's does not own it (closefd=False). One made on such a number after a task
    closed or replaced it (os.close(1), and a pipe of its own landed there) owns it as
    usual: it is the task's fd then. Checked by fd number first, so other calls to open()
    cost one isinstance; an fstat only for fds 0-2.

    An object, not a function, to pass for the builtin it replaces: it does not bind as a
    method when a class stores it (``opener = open``), and it pickles as builtins.open.
    """

    __module__ = "builtins"  # pickle finds it as builtins.open, which it is in a worker

    def __call__(self, file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, int) and file in STD_FDS and runtime is not None and runtime.holds(file):
            if len(args) > 5:  # open(file, mode, buffering, encoding, errors, newline, closefd, opener)
                args = (*args[:5], False, *args[6:])
            else:
                kwargs["closefd"] = False
        return _open(file, *args, **kwargs)  # pyfleet's open(): the builtin, but fds 0-2 stay open (std_fds.py)

    def __reduce__(self) -> str:
        return "open"

    def __repr__(self) -> str:
        return "<built-in function open, kept by pyfleet from closing fds 0-2>"


open_keeping_std_fds = _OpenKeepingStdFds()  # watchers.watch() puts it in place of builtins.open and io.open
# The fds 0-2 the running guard.Baseline keeps (it sets this): which of them are still the runtime's.
runtime: Optional[StdFds] = None
