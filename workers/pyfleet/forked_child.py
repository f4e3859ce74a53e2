"""A process that os.fork() made in a task, ended when it returns from the task (guard.py
notices it: the at-fork hook in watchers.py marks it), with the status Python would give it.
"""

from __future__ import annotations

import logging
import os

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

log = logging.getLogger("pyfleet")


def exit_forked_child(task_name: str, reply: Dict[str, Any], raised: Optional[BaseException]) -> None:
    """End a process that os.fork() made in a task and that returned from it.

    It shares the worker's protocol pipes: a reply from it would answer the
    worker's call, and it would go on to read the worker's next call. So it
    writes nothing there and flushes nothing; it exits 0 if the task returned
    in it, with sys.exit()'s status if it called that, and 1 if the task raised.
    """
    status = child_status(raised)
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


def child_status(raised: Optional[BaseException]) -> Optional[int]:
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
