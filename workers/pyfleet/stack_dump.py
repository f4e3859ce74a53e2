"""Where a call past its timeout is stuck, written to stderr on the SIGUSR1 the server
sends before its SIGKILL (the server logs the lines under the call's request id).

First every thread's stack, by faulthandler: written from C in the signal handler, so
it works even while a thread holds the GIL in C code. Then, from Python, the stack of
every asyncio task pending on the event loop running in the main thread: a coroutine
suspended on an ``await`` is on no thread's stack, and an async task waiting for
ever on a socket, a lock or a future showed only the event loop's ``select()``.
The Python part runs when the main thread next runs Python code (at once when it is
idle in ``select()``); a main thread stuck in C code never gets to it, and its stack
is in faulthandler's part.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, List, Optional

# Bounds, so that a worker with thousands of pending tasks writes a stack dump, not a flood
# (the server's log budget would drop most of it anyway).
MAX_TASKS = 20
MAX_FRAMES = 40


# The originals: the guard watches what tasks do with these (watchers.watch()), and putting the
# dump back must not count as a task's change.
_register = faulthandler.register
_unregister = faulthandler.unregister


def install(set_handler: Any = signal.signal) -> None:
    """Dump the stacks on SIGUSR1: the threads' (faulthandler), then the asyncio tasks'.
    ``set_handler`` is ``signal.signal``; the guard, putting the dump back after a task changed
    it, passes the original, which notes no change."""
    # faulthandler's register() does not set its handler again while it counts itself
    # registered (a signal.signal() call since has replaced it all the same): unregister first.
    _unregister(signal.SIGUSR1)
    set_handler(signal.SIGUSR1, on_signal)
    # chain=True: after its own dump, faulthandler calls the handler it replaced, Python's,
    # which runs on_signal in the main thread.
    _register(signal.SIGUSR1, file=2, all_threads=True, chain=True)


def on_signal(_signum: int, _frame: Optional[FrameType]) -> None:
    try:
        text = pending_tasks_text()
        if text:
            data = text.encode("utf-8", "backslashreplace")
            while data:  # a pipe may take a large write in parts
                data = data[os.write(2, data):]
    except BaseException:  # noqa: BLE001 - runs inside whatever the task was doing: never raise there
        pass


def pending_tasks_text() -> str:
    """The stacks of the asyncio tasks pending on the event loop running in this thread, if any."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # no task has used asyncio: nothing can be pending
        return ""
    loop = asyncio._get_running_loop()
    if loop is None:
        return ""
    # Oldest first, so that the call's own task (made when the call started, before the ones
    # it made) is among those shown when there are more than MAX_TASKS: all_tasks() is a set.
    tasks = sorted((task for task in asyncio.all_tasks(loop) if not task.done()), key=_creation_order)
    if not tasks:
        return ""
    lines: List[str] = []
    for task in tasks[:MAX_TASKS]:
        lines.append(f"Asyncio task {task.get_name()!r} (most recent call first):")
        # _fut_waiter: the future the task waits on (private, in both the C and Python Task
        # since 3.4); the coroutine chain only ends in an iterator over it.
        lines.extend(_coroutine_lines(task.get_coro(), getattr(task, "_fut_waiter", None)))
        lines.append("")
    if len(tasks) > MAX_TASKS:
        lines.append(f"  ... and {len(tasks) - MAX_TASKS} more asyncio tasks")
        lines.append("")
    return "\n".join(lines) + "\n"


def _creation_order(task: Any) -> tuple:
    """asyncio's own names count tasks as they are made (Task-1, Task-2...); named ones after them."""
    name = task.get_name()
    if name.startswith("Task-") and name[5:].isdigit():
        return (0, int(name[5:]))
    return (1, 0)


def _coroutine_lines(coro: Any, waiting_on: Any) -> List[str]:
    """The chain of coroutines a task's coroutine awaits, innermost first, as faulthandler writes frames."""
    frames: List[FrameType] = []
    awaited: Any = coro
    while awaited is not None and len(frames) < MAX_FRAMES:
        frame = _frame_of(awaited)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None) or getattr(awaited, "ag_await", None)
    lines = [f'  File "{frame.f_code.co_filename}", line {frame.f_lineno} in {frame.f_code.co_name}' for frame in reversed(frames)]
    if awaited is not None and _frame_of(awaited) is None:
        # What the innermost coroutine waits for: a future, another task, a sleep's timer.
        lines.insert(0, f"  awaiting {_short_repr(awaited if waiting_on is None else waiting_on)}")
    return lines


def _frame_of(awaitable: Any) -> Optional[FrameType]:
    return getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) or getattr(awaitable, "ag_frame", None)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 - a broken __repr__ must not cost the dump
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."
