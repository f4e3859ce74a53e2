"""What a task may leave behind in its worker, noticed and put back after the call.

The loop looks after every call, so looking must cost next to nothing (an
echo call is ~2 µs of Python in the loop):

- ``sys.stdin``, ``sys.stdout``, ``sys.stderr`` replaced: three identity
  checks per call. The runtime's own streams (std_fds.StdStream) cannot be closed.
- a process ``os.fork()`` made, returning from the task: it must neither
  reply on the worker's protocol pipe nor read the next call. An at-fork hook
  marks it (watchers.py), and forked_child.py ends it.
- signal handlers (those in watchers.WATCHED_SIGNALS), interval timers (``signal.alarm``, ``signal.setitimer``)
  and the working directory: asking after each call (signal.getsignal,
  signal.getitimer, os.getcwd) costs 0.3-0.5 µs a question, so a worker wraps ``signal.signal``,
  ``signal.setitimer``, ``signal.alarm``, ``os.chdir`` and ``os.fchdir``
  (watchers.watch()) to note what a call changed. A change made another way (C code,
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

The hook and the wrappers note entries in ``changes`` (watchers.py); the runner tests it once
per call (an empty dict is false) and calls Baseline.restore only when it is
not empty or a stream was replaced.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

from . import stack_dump, std_fds
from .forked_child import exit_forked_child
from .std_fds import STD_FDS, StdFds
from .watchers import _chdir, _setitimer, _signal, changes  # the originals: putting back notes no change

log = logging.getLogger("pyfleet")


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
            exit_forked_child(task_name, reply, raised)
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
            # One that ran before the call (`r = signal.alarm(0); signal.alarm(r)` reads it that way)
            # is left as the call leaves it: cancelling it lost a task module's timer for good.
            if value is True or signal.getitimer(number)[0] == 0:
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
