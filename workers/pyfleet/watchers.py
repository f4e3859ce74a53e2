"""What a call changes in its worker, noted as it changes it: the at-fork hook, and the
wrappers watch() puts in place of ``signal.signal``, ``signal.setitimer``, ``signal.alarm``,
``os.chdir``, ``os.fchdir``, ``os.close``, ``os.closerange``, ``os.dup2`` and faulthandler's
``register``/``unregister`` (and of ``open``, which keeps fds 0-2 open: std_fds.py). Why
wrappers, not questions asked after each call, and what they miss: guard.py, which puts
back what ``changes`` notes.
"""

from __future__ import annotations

import builtins
import faulthandler
import io
import operator
import os
import signal

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict

from .std_fds import STD_FDS, open_keeping_std_fds

# What tasks changed since the last restore: "fork", "cwd", "fds", "faulthandler" (SIGUSR1's), ("signal", n) -> the handler before, ("timer", which) -> whether it was running before.
# Changed in place only, never rebound: runner.py and guard.py hold a reference to it.
changes: Dict[Any, Any] = {}

# The originals, taken before watch() wraps them: the wrappers call them, and guard.py puts
# things back with them, which notes no change.
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
    # A forked child is not the worker: its copies of the protocol's pipes are its to close
    # (a child that closes every descriptor to detach must not keep the server's pipes open).
    _kept_open.clear()


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
    # The timer as the call found it, at its first change: one running before (a task module's,
    # started at import) is the baseline, not something the call left behind.
    changes.setdefault(("timer", which), signal.getitimer(which)[0] > 0)
    return _setitimer(which, seconds, interval)


def _alarm_watched(seconds: int, /) -> int:
    # alarm() and ITIMER_REAL are one timer.
    changes.setdefault(("timer", signal.ITIMER_REAL), signal.getitimer(signal.ITIMER_REAL)[0] > 0)
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


# The worker's own descriptors (the protocol's two pipes), which os.closerange leaves open:
# closing every inherited descriptor, os.closerange(3, N), is a common idiom, and it cut the
# worker off from the server mid-call (a 502, and a lost worker). os.close of one by number
# still closes it: a task that names the fd means to.
_kept_open: list = []


def keep_open(*fds: int) -> None:
    """Descriptors os.closerange leaves open from now on (the protocol's; __main__ names them)."""
    _kept_open[:] = sorted(set(fds))


def _closerange_watched(fd_low: int, fd_high: int, /) -> None:
    if fd_low <= 2:
        changes["fds"] = True
    low = fd_low
    for kept in _kept_open:
        if low <= kept < fd_high:
            _closerange(low, kept)
            low = kept + 1
    _closerange(low, fd_high)


def _dup2_watched(fd: int, fd2: int, inheritable: bool = True) -> int:
    if fd2 in STD_FDS:
        changes["fds"] = True
    return _dup2(fd, fd2, inheritable)


# The real call first: its own errors for a signal number of the wrong type (int() of a
# string raised ValueError where faulthandler raises TypeError), and no change noted then.
def _fh_register_watched(signum: int, *args: Any, **kwargs: Any) -> None:
    _fh_register(signum, *args, **kwargs)
    if operator.index(signum) == signal.SIGUSR1:  # the dump's own registration (stack_dump.install)
        changes["faulthandler"] = True


def _fh_unregister_watched(signum: int, /) -> bool:
    unregistered = _fh_unregister(signum)
    if operator.index(signum) == signal.SIGUSR1:
        changes["faulthandler"] = True
    return unregistered


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
