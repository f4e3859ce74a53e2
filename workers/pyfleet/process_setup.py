"""The worker process's place among the OS's: fds 0 and 1 kept for frames, inherited
fds past 2 closed, death with the server, first in line for the OOM killer, and (opted in) batch scheduling.
Called once by __main__ at start, before any task module is imported.
"""

import os
import signal
import sys

from .reporting import EXIT_OK
from .std_fds import text_stream


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when the server dies, even by kill -9 (PR_SET_PDEATHSIG).

    SIGKILL, so that no worker outlives the server even inside C code that never
    checks for signals. The price: processes a task started (fork clears
    PR_SET_PDEATHSIG) outlive a server killed with kill -9. While the server
    lives it ends each worker's process group (SIGTERM, then SIGKILL) once the worker has exited.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # stdin EOF still ends us when the server goes away cleanly
    # The parent may have died before prctl took effect: then we were re-parented.
    if parent_pid and os.getppid() != parent_pid:
        os._exit(EXIT_OK)


def close_inherited_fds() -> None:
    """Close every fd past 2 this process inherited from whoever started the server.

    Node passes workers fds 0-2 only, but it cannot close what the server itself inherited
    without close-on-exec (a wrapper script's lock file, a CI harness's pipe), so every
    worker got them, and every process a task starts after it: a task's multiprocessing
    child, which outlives a server killed with kill -9, went on holding a launcher's flock,
    and the next start found the lock busy. Python opens every fd non-inheritable (PEP 446),
    so an inheritable fd past 2 at this point can only have come from the parent.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):  # not Linux, or /proc not mounted: nothing to look at
        return
    for fd in fds:
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:  # the listing's own fd, closed by now
            pass


def prefer_oom_kill() -> None:
    """Raise this worker's oom_score_adj 500 above the server's (to at most 1000), so that
    when the container runs out of memory the kernel's OOM killer picks a worker (replaced
    at once; its call gets 502) rather than the server (every call of the replica lost).
    Raising it needs no privilege; processes a task starts inherit it.
    """
    try:
        with open("/proc/self/oom_score_adj", "r+") as adj:
            current = int(adj.read())
            adj.seek(0)
            adj.write(str(min(1000, current + 500)))
    except (OSError, ValueError):  # not Linux, or /proc not mounted: the kernel's own choice
        pass


def use_batch_scheduling() -> None:
    """SCHED_BATCH (WORKER_SCHED_BATCH=1): the kernel no longer lets this process preempt
    the one that woke it, so the server is not switched out in the middle of its turn
    each time it hands a worker a call. Short calls get cheaper; a woken worker waits
    for the running process's time slice instead. No privilege is needed to ask for it.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux, or refused (seccomp): run as before
        sys.stderr.write(f"WARNING pyfleet: WORKER_SCHED_BATCH is set but SCHED_BATCH is not available here: {exc}\n")
        sys.stderr.flush()


def guard_stdout() -> int:
    """Keep fd 1 for frames only: return a duplicate for the protocol, point fd 1 at stderr.

    sys.stdout and sys.stderr become two streams a task cannot close (std_fds.StdStream),
    both ending on the stderr pipe: closing or replacing one leaves the other working.
    """
    protocol_fd = os.dup(1)  # not inheritable: processes a task starts do not get it
    os.dup2(2, 1)
    sys.stdout = text_stream(1, "w")
    sys.stderr = text_stream(2, "w")
    # The originals too: `print(file=sys.__stderr__)`, and code that puts sys.stderr back from
    # it, get streams whose output the runtime sees (the marks around a call's output: std_fds.py).
    sys.__stdout__ = sys.stdout
    sys.__stderr__ = sys.stderr
    return protocol_fd


def guard_stdin() -> int:
    """Keep fd 0 for frames only: return a duplicate for the protocol, point fd 0 at /dev/null.

    A task (input(), sys.stdin.read()) or a process it starts (subprocess inherits
    fd 0) then reads end-of-file at once, instead of waiting for, or taking, the
    worker's next calls.
    """
    protocol_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = text_stream(0, "r")
    return protocol_fd
