"""What a task may leave behind in its worker, noticed and put back after the call.

The loop looks after every call, so looking must cost next to nothing (an
echo call is ~2 µs of Python in the loop):

- ``sys.stdin``, ``sys.stdout``, ``sys.stderr`` replaced: three identity
  checks per call. The runtime's own streams (std_fds.StdStream) cannot be closed.
- a process ``os.fork()`` made, returning from the task: it must neither
  reply on the worker's protocol pipe nor read the next call. An at-fork hook
  marks it.
- signal handlers (those in WATCHED_SIGNALS), interval timers (``signal.alarm``, ``signal.setitimer``)
  and the working directory: asking after each call (signal.getsignal,
  signal.getitimer, os.getcwd) costs 0.3-0.5 µs a question, so a worker wraps ``signal.signal``,
  ``signal.setitimer``, ``signal.alarm``, ``os.chdir`` and ``os.fchdir``
  (watch()) to note what a call changed. A change made another way (C code,
  ctypes) goes unnoticed.
- fds 0, 1 and 2 closed or replaced: an fstat of each would cost ~1 µs a
  call, and even one poll() of the three cost a worker ~8 % more CPU per echo
  call under load (a syscall per call), so watch() wraps ``os.close``,
  ``os.closerange`` and ``os.dup2`` to note them, and the fds are compared
  (fstat) only then. A file object made on one of them (``open(1, "w")``,
  ``os.fdopen(1)``) does not own it, as ``sys.stdout`` does not: watch() wraps
  ``open`` to pass ``closefd=False`` while the fd is still the runtime's, so
  closing the object (or its being collected) leaves the fd open. What it misses: ``io.FileIO(1)`` made
  directly, a socket made on one (``socket.socket(fileno=1)``), and C code.

The hook and the wrappers note entries in ``changes``; the loop tests it once
per call (an empty dict is false) and calls Baseline.restore only when it is
not empty or a stream was replaced.
"""

from __future__ import annotations

import builtins
import faulthandler
import io
import logging
import os
import signal
import sys

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

from . import stack_dump, std_fds
from .std_fds import STD_FDS, StdFds, open_keeping_std_fds

log = logging.getLogger("pyfleet")

# What tasks changed since the last restore: "fork", "cwd", "fds", "faulthandler" (SIGUSR1's), ("signal", n) -> the handler before, ("timer", which).
# Changed in place only, never rebound: runner.py holds a reference to it.
changes: Dict[Any, Any] = {}

_signal = signal.signal
_setitimer = signal.setitimer
_alarm = signal.alarm
_chdir = os.chdir
_fchdir = os.fchdir
_close = os.close
_closerange = os.closerange
_dup2 = os.dup2
_fh_register = faulthandler.register
_fh_unregister = faulthandler.unregister



def _after_fork_in_child() -> None:
    changes["fork"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


# The handlers a worker depends on: SIGINT ignored, SIGTERM's default (the server stops
# workers with it), SIGUSR1's stack dump (the log's only word on where a call past its timeout
# was stuck), and the timers' signals, whose timers are cancelled after a call. Other
# handlers a task sets stay: libraries set them once and rely on them (asyncio's child
# watchers on SIGCHLD, loop.add_signal_handler on the worker's one event loop).
WATCHED_SIGNALS = frozenset(int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF))


def _signal_watched(signalnum: int, handler: Any, /) -> Any:
    old = _signal(signalnum, handler)  # raises (and notes nothing) outside the main thread
    if int(signalnum) in WATCHED_SIGNALS:
        changes.setdefault(("signal", int(signalnum)), old)
    return old


def _setitimer_watched(which: int, seconds: float, interval: float = 0.0, /) -> Any:
    changes[("timer", which)] = True
    return _setitimer(which, seconds, interval)


def _alarm_watched(seconds: int, /) -> int:
    changes[("timer", signal.ITIMER_REAL)] = True  # alarm() and ITIMER_REAL are one timer
    return _alarm(seconds)


def _chdir_watched(path: Any) -> None:
    changes["cwd"] = True
    _chdir(path)


def _fchdir_watched(fd: int) -> None:
    changes["cwd"] = True
    _fchdir(fd)


def _close_watched(fd: int) -> None:
    if fd in STD_FDS:
        changes["fds"] = True
    _close(fd)


def _closerange_watched(fd_low: int, fd_high: int, /) -> None:
    if fd_low <= 2:
        changes["fds"] = True
    _closerange(fd_low, fd_high)


def _dup2_watched(fd: int, fd2: int, inheritable: bool = True) -> int:
    if fd2 in STD_FDS:
        changes["fds"] = True
    return _dup2(fd, fd2, inheritable)


def _fh_register_watched(signum: int, *args: Any, **kwargs: Any) -> None:
    if int(signum) == signal.SIGUSR1:  # the dump's own registration (stack_dump.install)
        changes["faulthandler"] = True
    _fh_register(signum, *args, **kwargs)


def _fh_unregister_watched(signum: int, /) -> bool:
    if int(signum) == signal.SIGUSR1:
        changes["faulthandler"] = True
    return _fh_unregister(signum)


def watch() -> None:
    """Note, from now on, the signal handlers, timers, working directory and fds 0-2 tasks change, and keep
    file objects from closing fds 0-2 (a worker's set-up)."""
    for module, name, watched in (
        (signal, "signal", _signal_watched),
        (signal, "setitimer", _setitimer_watched),
        (signal, "alarm", _alarm_watched),
        (os, "chdir", _chdir_watched),
        (os, "fchdir", _fchdir_watched),
        (os, "close", _close_watched),
        (os, "closerange", _closerange_watched),
        (os, "dup2", _dup2_watched),
        (faulthandler, "register", _fh_register_watched),
        (faulthandler, "unregister", _fh_unregister_watched),
        (builtins, "open", open_keeping_std_fds),
        (io, "open", open_keeping_std_fds),
    ):
        original = getattr(module, name)
        watched.__name__ = watched.__qualname__ = name
        watched.__doc__ = original.__doc__
        watched.__wrapped__ = original
        setattr(module, name, watched)
        # os.chdir in os.supports_fd, and the like: what code asks about the original holds for the wrapper.
        for supports in (os.supports_fd, os.supports_dir_fd, os.supports_follow_symlinks, os.supports_effective_ids):
            if original in supports:
                supports.add(watched)


class Baseline:
    """The process state a call must leave as it found it, taken when the runner starts."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.stdin, self.stdout, self.stderr = sys.stdin, sys.stdout, sys.stderr
        try:
            self.cwd: Optional[str] = os.getcwd()
        except OSError:  # started in a directory that was removed: nothing to go back to
            self.cwd = None
        self._warned: set = set()  # (task, what): each is logged once per worker
        self._std_fds = StdFds(STD_FDS)
        std_fds.runtime = self._std_fds  # which fds 0-2 open() keeps open
        std_fds.end_open_line()  # a task module's output at import, before the first call's
        changes.clear()  # what task modules did at import is the baseline

    def close(self) -> None:
        """Close the copies of fds 0-2 (a Runner made for one call_task)."""
        self._std_fds.close()

    def warn_once(self, task_name: str, *undone: str) -> None:
        """Log that the task did what ``undone`` says and that it was undone: once per task and kind."""
        new = [what for what in undone if (task_name, what) not in self._warned]
        if new:
            self._warned.update((task_name, what) for what in new)
            log.warning("task %r %s; undone after the call (logged once per task and worker)", task_name, "; ".join(new))

    def restore(self, task_name: str, reply: Dict[str, Any], raised: Optional[BaseException] = None) -> None:
        """Put back what the call changed, and log once per task and kind what that was.

        In a process that os.fork() made during the call, this ends the process instead,
        with the status ``raised`` (what the task raised, if it did) calls for.
        """
        if changes.pop("fork", False) and os.getpid() != self.pid:
            _exit_forked_child(task_name, reply, raised)
        changes.pop("fds", None)
        put_back = self._std_fds.restore()  # first: the warning below is written to fd 2
        for name in ("stdin", "stdout", "stderr"):
            if getattr(sys, name) is not getattr(self, name):
                setattr(sys, name, getattr(self, name))
                put_back.append(f"replaced sys.{name}")
        # Timers first: a pending SIGALRM must not meet the default handler put back (it ends the process).
        noted = sorted(changes.items(), key=lambda item: not (isinstance(item[0], tuple) and item[0][0] == "timer"))
        changes.clear()
        for key, value in noted:
            try:
                what = self._undo(key, value)
            except Exception as exc:  # e.g. the start directory is gone: say so, and go on serving
                what = f"changed {_describe(key)}, which could not be put back ({exc})"
            if what is not None:
                put_back.append(what)
        self.warn_once(task_name, *put_back)

    def _undo(self, key: Any, value: Any) -> Optional[str]:
        if key == "faulthandler":
            # faulthandler.register(SIGUSR1, file=...) or unregister(SIGUSR1) in a call: the dump
            # went to the task's file (closed by now, its fd perhaps another file's) or nowhere.
            # Put back when the runtime's dump is what SIGUSR1 runs (a module's own handler stays).
            if signal.getsignal(signal.SIGUSR1) is not stack_dump.on_signal:
                return None
            stack_dump.install(_signal)
            return "changed faulthandler's SIGUSR1 registration (faulthandler.register/unregister), which writes the stacks of a call past its timeout to the log"
        if key == "cwd":
            if self.cwd is None or _getcwd() == self.cwd:
                return None
            _chdir(self.cwd)
            return "changed the working directory (os.chdir)"
        kind, number = key
        if kind == "timer":
            if signal.getitimer(number)[0] == 0:
                return None
            _setitimer(number, 0)
            return f"left the {_describe(key)} timer running (cancelled)"
        if number == signal.SIGUSR1 and value is stack_dump.on_signal:
            # The runtime's dump was in place (a task module that set its own SIGUSR1 handler at
            # import keeps it: that is the baseline, put back below as any other). The dump is two
            # handlers, faulthandler's in C and ours in Python: any signal.signal() call replaced
            # the C one, even one that put our Python handler back. Both are set again.
            changed = signal.getsignal(number) != value
            stack_dump.install(_signal)
            return f"changed {_describe(key)}, which writes the stacks of a call past its timeout to the log" if changed else None
        if value is None or signal.getsignal(number) == value:  # None: the handler was not set from Python
            return None
        _signal(number, value)
        return f"changed {_describe(key)}"


def _getcwd() -> Optional[str]:
    try:
        return os.getcwd()
    except OSError:
        return None


def _describe(key: Any) -> str:
    if key == "cwd":
        return "the working directory"
    if key == "faulthandler":
        return "faulthandler's SIGUSR1 registration"
    kind, number = key
    if kind == "timer":
        return "signal.alarm/ITIMER_REAL" if number == signal.ITIMER_REAL else f"interval timer {number}"
    try:
        return f"the {signal.Signals(number).name} handler"
    except ValueError:
        return f"the handler of signal {number}"


def _exit_forked_child(task_name: str, reply: Dict[str, Any], raised: Optional[BaseException]) -> None:
    """End a process that os.fork() made in a task and that returned from it.

    It shares the worker's protocol pipes: a reply from it would answer the
    worker's call, and it would go on to read the worker's next call. So it
    writes nothing there and flushes nothing; it exits 0 if the task returned
    in it, with sys.exit()'s status if it called that, and 1 if the task raised.
    """
    status = _child_status(raised)
    try:
        if status is None:
            log.error(
                "task %r: a process it forked (pid %d) raised instead of exiting: %s",
                task_name, os.getpid(), reply.get("traceback") or reply.get("message"),
            )
        else:
            log.warning(
                "task %r: a process it forked (pid %d) %s; it exits here with status %d (end a child with os._exit)",
                task_name, os.getpid(), "called sys.exit()" if raised is not None else "returned from the task", status,
            )
    finally:
        os._exit(1 if status is None else status)


def _child_status(raised: Optional[BaseException]) -> Optional[int]:
    """The exit status for a forked child, as Python makes it: 0 if the task returned, sys.exit()'s
    code if it called that (None: 0, an int or a bool: itself, anything else: 1), None if it raised."""
    if raised is None:
        return 0
    if not isinstance(raised, SystemExit):
        return None
    code = raised.code
    if code is None:
        return 0
    if isinstance(code, int):  # bool too: sys.exit(not ok)
        return code & 0xFF if -(2**63) <= code < 2**63 else 255  # past a C long, Python exits -1: 255
    return 1  # sys.exit("message"): Python prints it and exits 1
