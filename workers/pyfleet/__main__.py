"""Worker process entry: ``python3 -m pyfleet [--module M ...] [--diag]``.

Reads its options (command_line.py), sets up the process (stdio guard, signals, parent death:
process_setup.py), imports task modules once (task_modules.py), then hands the protocol streams
to loop.serve. How it reports a failure, and its exit codes (the server reads EXIT_PROTOCOL_ERROR;
the others name the failure for whoever reads a process's status), are in reporting.py.
"""

import faulthandler
import os
import signal
import sys

from . import watchers
from .command_line import take_options
from .std_fds import mark_calls
from .process_setup import close_inherited_fds, die_with_parent, guard_stdin, guard_stdout, prefer_oom_kill, use_batch_scheduling
from .stack_dump import install as dump_stacks_on_sigusr1
from .task_modules import RUNTIME_DIR, import_task_modules, pythonpath
from .reporting import (
    EXIT_IMPORT_FAILED,
    EXIT_MISSING_DEPENDENCY,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_RUNTIME_FAILED,
    fail,
    log_failure,
    set_up_logging,
)


def _import_msgpack() -> None:
    """Imports msgpack, or ends the worker saying why: not installed, or hidden by a file of the
    user's named msgpack (named: imported before stdlib_shadows looks, it has checks of its own)."""
    from .stdlib_shadows import found_in_pythonpath

    missing = (
        f"the Python package 'msgpack' is not importable by {sys.executable}; "
        "install it (Debian: apt-get install python3-msgpack python3-defusedxml; "
        "pip: pip install -r workers/requirements.txt) or set PYTHON to an interpreter that has it"
    )
    try:
        import msgpack
    except Exception as exc:  # a msgpack.py of the user's own may raise anything
        shadow = found_in_pythonpath("msgpack", pythonpath(), skip=RUNTIME_DIR)
        if shadow is not None:
            fail(EXIT_IMPORT_FAILED, f"{shadow}, in a PYTHONPATH entry, is what 'import msgpack' finds, and importing it raised "
                                     f"{type(exc).__name__}: {exc}; if it is not the msgpack package, rename it")
        if not isinstance(exc, ImportError):
            raise
        fail(EXIT_MISSING_DEPENDENCY, missing)
    # A msgpack.py that imports: it would stop the worker with "module 'msgpack' has no attribute 'Packer'", naming no file.
    if not (hasattr(msgpack, "Packer") and hasattr(msgpack, "Unpacker")):
        where = getattr(msgpack, "__file__", None)
        # None: a directory named msgpack without __init__.py, and no msgpack installed behind it.
        if where is None:
            fail(EXIT_MISSING_DEPENDENCY, missing)
        fail(
            EXIT_IMPORT_FAILED,
            f"{where} is named like the msgpack package that workers speak to the server with, and hides it "
            "(it has no Packer): every 'import msgpack' in this worker gets this file instead; rename it",
        )


def main() -> None:
    close_inherited_fds()  # first: nothing of the worker's own is open yet to be mistaken for them
    args = take_options()
    die_with_parent(args.parent_pid)
    prefer_oom_kill()
    if args.sched_batch:
        use_batch_scheduling()
    # The server decides when workers stop (after in-flight calls). Spawned in
    # their own process group, workers do not get a terminal's Ctrl-C; a SIGINT
    # sent to one directly is ignored for the same reason.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A call past its task's timeout: before the SIGKILL, the server sends SIGUSR1, and every
    # thread's stack goes to stderr (fd 2, logged under the call's request id), then every
    # pending asyncio task's, so the log shows where the task was stuck, even in C code
    # holding the GIL, or on an await that never ends.
    dump_stacks_on_sigusr1()
    # A crash in C code (a segfault in an extension, an abort): the same stacks, before the
    # process dies, so that the log says where, not only that the worker was killed by SIGSEGV.
    faulthandler.enable(file=2, all_threads=True)
    protocol_fd = guard_stdout()
    request_fd = guard_stdin()
    watchers.keep_open(request_fd, protocol_fd)
    if args.stderr_mark:
        mark_calls(args.stderr_mark)
    set_up_logging()
    watchers.watch()  # from here on, what tasks change in signal handlers, timers and cwd is noted

    _import_msgpack()

    from .errors import as_text
    from .frames import FrameError
    from .loop import serve
    from .protocol import ProtocolError

    import_task_modules(args.module, diag=args.diag, strict=args.strict)
    reader = os.fdopen(request_fd, "rb", buffering=1 << 16)
    writer = os.fdopen(protocol_fd, "wb", buffering=1 << 16)
    try:
        serve(reader, writer, args.max_frame_bytes, at_end=run_exit_handlers, max_rss_bytes=args.max_rss_bytes)
    except (FrameError, ProtocolError) as exc:
        fail(EXIT_PROTOCOL_ERROR, f"protocol error: {exc}")
    except BrokenPipeError:
        pass  # the server went away mid-reply; nobody is left to tell
    except BaseException as exc:  # the runtime itself broke: one record and one line, not a bare traceback
        log_failure("the worker's runtime failed", exc)
        hint = f" (did a task close or replace the worker's protocol fds, {request_fd} and {protocol_fd}?)" if isinstance(exc, OSError) else ""
        fail(EXIT_RUNTIME_FAILED, f"the runtime failed: {type(exc).__name__}: {as_text(exc)}{hint}")
    os._exit(EXIT_OK)


def run_exit_handlers() -> None:
    """A clean stop (the server closed stdin: a reload, a recycling, a shutdown) runs what task
    modules registered with ``atexit`` (an exporter's flush, a database's close) and flushes
    logging's handlers, as the end of any Python program would, while the worker's event loop
    is still open. Then os._exit, without waiting for threads or processes a task left
    running: a worker must stop when asked (the server kills its process group once it has
    exited). A handler that hangs is ended by the server's SIGTERM, WORKER_STOP_GRACE_MS after
    it closed stdin; one that raises is logged as an ERROR record (sys.unraisablehook)."""
    import atexit

    # multiprocessing's own handler joins the child processes a task left running: the
    # worker would wait for them until its SIGTERM, where os._exit always ended it at once.
    util = sys.modules.get("multiprocessing.util")
    if util is not None and hasattr(util, "_exit_function"):
        atexit.unregister(util._exit_function)
    run = getattr(atexit, "_run_exitfuncs", None)  # CPython's: what its own exit runs
    if run is not None:
        run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
