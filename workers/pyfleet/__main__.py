"""Worker process entry: ``python3 -m pyfleet [--module M ...] [--diag]``.

Sets up the process (stdio guard, signals, parent death: process_setup.py),
imports task modules once, then hands the protocol streams to loop.serve. How it reports
a failure, and its exit codes (the server reads EXIT_PROTOCOL_ERROR; the others name the
failure for whoever reads a process's status), are in reporting.py.
"""

import faulthandler
import importlib
import logging
import os
import signal
import sys

from . import guard
from .frames import DEFAULT_MAX_FRAME_BYTES
from .std_fds import mark_calls
from .process_setup import die_with_parent, guard_stdin, guard_stdout, prefer_oom_kill, use_batch_scheduling
from .stack_dump import install as dump_stacks_on_sigusr1
from .reporting import (
    EXIT_IMPORT_FAILED,
    EXIT_MISSING_DEPENDENCY,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_RUNTIME_FAILED,
    EXIT_USAGE,
    fail,
    fail_import,
    log_failure,
    set_up_logging,
)

BUILTIN_MODULES = [
    "pyfleet_tasks.echo",
    "pyfleet_tasks.xml_import",
    "pyfleet_tasks.csv_profile",
    "pyfleet_tasks.text_stats",
    "pyfleet_tasks.stats",
    "pyfleet_tasks.hash_digest",
]
DIAG_MODULE = "pyfleet_tasks.diag"

USAGE = """\
usage: python3 -m pyfleet [-h] [--module MODULE] [--diag] [--max-frame-bytes N] [--max-rss-bytes N] [--parent-pid PID] [--sched-batch] [--strict] [--stderr-mark TOKEN]

A pyfleet worker: the server starts these, and speaks msgpack frames to them on stdin and
stdout, so there is nothing to type here. To try a task, run the server (npm run dev) and
POST to it, or call it in a test: pyfleet.testing.call_task("name", input), README's
"Testing a task". To check that task modules import: node dist/server.js --check.

options:
  -h, --help           show this help message and exit
  --module MODULE      extra task module to import (repeatable)
  --diag               register diag.work
  --max-frame-bytes N  largest frame accepted or sent, in bytes (default: 64 MiB)
  --max-rss-bytes N    a reply sent while the worker's RSS is past N bytes says so (MAX_WORKER_RSS_MB; default 0: never)
  --parent-pid PID     the server's pid: exit at once if it is already gone
  --sched-batch        run as SCHED_BATCH (Linux): a worker woken by a call does not preempt the server
  --strict             a --module that registers no task stops the worker instead of a warning (--check)
  --stderr-mark TOKEN  mark where each call's output on stdout/stderr begins and ends (std_fds.py)
"""


class Options:
    """The parsed command line, with the defaults the server relies on."""

    def __init__(self) -> None:
        self.help = False
        self.module: list = []  # extra task modules, in command-line order
        self.diag = False
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.max_rss_bytes = 0
        self.parent_pid = 0
        self.sched_batch = False
        self.strict = False
        self.stderr_mark = ""


def parse_args(argv: list) -> Options:
    """Read the command line as argparse did (argparse itself costs every worker ~1.5 ms and 0.5 MB).

    A value follows its option as the next argument or after ``=``; a later
    --max-frame-bytes, --max-rss-bytes or --parent-pid wins. Raises ValueError with a one-line
    reason for anything else.
    """
    options = Options()
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in ("-h", "--help", "--diag", "--sched-batch", "--strict"):
            if equals:
                raise ValueError(f"argument {name}: ignored explicit argument {value!r}")
            if name == "--diag":
                options.diag = True
            elif name == "--sched-batch":
                options.sched_batch = True
            elif name == "--strict":
                options.strict = True
            else:
                options.help = True
            continue
        if name not in ("--module", "--max-frame-bytes", "--max-rss-bytes", "--parent-pid", "--stderr-mark"):
            raise ValueError(f"unrecognized argument {arg!r}")
        if not equals:
            value = next(args, None)
            # an option is not a value, a negative number is (as for argparse)
            if value is None or (value.startswith("-") and not value[1:].isdigit()):
                raise ValueError(f"argument {name}: expected one argument")
        if name == "--module":
            options.module.append(value)
            continue
        if name == "--stderr-mark":
            if not value.isascii() or not value.isalnum():
                raise ValueError(f"argument {name}: letters and digits only: {value!r}")
            options.stderr_mark = value
            continue
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"argument {name}: invalid int value: {value!r}") from None
        if name == "--max-frame-bytes":
            options.max_frame_bytes = number
        elif name == "--max-rss-bytes":
            options.max_rss_bytes = number
        else:
            options.parent_pid = number
    return options


def _modules_without_tasks(registry: "Any", names: list) -> list:  # noqa: F821 (no typing import at start-up)
    """The TASK_MODULES entries that bring no task, once all are imported: no registered task is
    defined in one or below it, none is among its names (re-exported from elsewhere), and it
    is not the package of another entry (TASK_MODULES=mytasks,mytasks.greeting)."""
    tasks = registry.all_tasks()
    functions = {id(t.fn) for t in tasks}
    homes = {str(getattr(t.fn, "__module__", "")) for t in tasks}
    without = []
    for name in dict.fromkeys(names):
        if any(home == name or home.startswith(name + ".") for home in homes):
            continue
        if any(other.startswith(name + ".") for other in names):
            continue
        module = sys.modules.get(name)
        if module is not None and any(id(value) in functions for value in list(vars(module).values())):
            continue
        without.append(name)
    return without


def _missing_module_hint(missing: "str | None") -> str:
    """What to do about a module a task module imports that is not there. When its package
    was found, the package is most likely another one of the same name earlier on the path."""
    parent, _, _ = (missing or "").rpartition(".")
    package = sys.modules.get(parent) if parent else None
    if package is not None:
        where = getattr(package, "__file__", None) or ", ".join(getattr(package, "__path__", []) or []) or "a built-in"
        return f"the package '{parent}' was found at {where} and has no module '{missing}': is another '{parent}' earlier on the path, or is it missing from yours?"
    return f"install the package that provides '{missing}'"


def _hidden_package_hint(name: str) -> "str | None":
    """Why TASK_MODULES' ``name`` is not found when a package above it was: a directory of that
    name without __init__.py in a PYTHONPATH entry holds the module, but a regular package of
    the same name elsewhere on the path (the standard library's ``test``) is what Python takes."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        package = sys.modules.get(".".join(parts[:depth]))
        if package is None:
            continue
        found = [os.path.realpath(p) for p in (getattr(package, "__path__", None) or [])]
        for entry in _pythonpath():
            mine = os.path.join(os.path.abspath(entry or "."), *parts[:depth])
            # Only where the module is: with it nowhere, the name is more likely wrong (mypkg.taks).
            holds = os.path.isfile(os.path.join(mine, parts[depth] + ".py")) or os.path.isdir(os.path.join(mine, parts[depth]))
            if holds and os.path.realpath(mine) not in found:
                where = getattr(package, "__file__", None) or ", ".join(found)
                return (f"the package '{'.'.join(parts[:depth])}' is found at {where}, not in {mine}: a directory without "
                        "__init__.py is a package only where no regular package of its name is found anywhere on the path; "
                        "rename yours")
        return None
    return None


# The runtime's own directory (workers/), on PYTHONPATH beside the task modules: it hides nothing.
RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pythonpath() -> list:
    return os.environ.get("PYTHONPATH", "").split(os.pathsep)


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
        shadow = found_in_pythonpath("msgpack", _pythonpath(), skip=RUNTIME_DIR)
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
    try:
        args = parse_args(sys.argv[1:])
    except ValueError as exc:
        fail(EXIT_USAGE, f"{exc}; {USAGE.splitlines()[0]}")
    if args.help:
        sys.stdout.write(USAGE)
        sys.stdout.flush()
        os._exit(EXIT_OK)
    if os.isatty(0):
        # Someone typed `python3 -m pyfleet` to try a task: it would write a binary frame to the
        # terminal and wait for frames nobody can type. The server's workers read a pipe.
        fail(EXIT_USAGE, "this is a pyfleet worker, which the server starts and speaks msgpack frames to on stdin: "
             "to try a task, run the server (npm run dev) and POST to it, or use pyfleet.testing.call_task in a test (python3 -m pyfleet --help)")
    # The worker's own options are not the tasks': code ported from a script that calls
    # argparse's parse_args() (at import or in a call) failed on --max-frame-bytes and the
    # rest, a SystemExit with "unrecognized arguments". It sees a command line with none.
    del sys.argv[1:]

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
    if args.stderr_mark:
        mark_calls(args.stderr_mark)
    set_up_logging()
    guard.watch()  # from here on, what tasks change in signal handlers, timers and cwd is noted

    _import_msgpack()

    from .errors import as_text
    from .frames import FrameError
    from .loop import serve
    from .protocol import ProtocolError

    from . import registry

    from .stdlib_shadows import shadow_message, stdlib_shadows

    # Fatal, not a warning: what it breaks fails later, at a call, far from the cause (and a
    # warning would repeat with every worker the pool starts).
    shadows = stdlib_shadows(_pythonpath(), skip=RUNTIME_DIR)
    if shadows:
        fail(EXIT_IMPORT_FAILED, shadow_message(*shadows[0]) + (f" (and {len(shadows) - 1} more such)" if len(shadows) > 1 else ""))

    modules = BUILTIN_MODULES + ([DIAG_MODULE] if args.diag else []) + args.module
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # The module itself or a package above it is missing: where it is looked for is
            # wrong. Something it imports is missing: that has to be installed.
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                # Where it was looked for, in full: a relative entry is read from the workers' directory (pyfleet's), not the shell's.
                hint = f"check TASK_MODULES and PYTHONPATH, which is {os.environ.get('PYTHONPATH', '')!r}; relative PYTHONPATH entries are resolved from the pyfleet directory, {os.getcwd()}"
                if name.endswith(".py"):  # a file named where a module is meant (a valid module name: package greeting, module py)
                    hint = f"TASK_MODULES takes module names, not files: write {name[:-3]}; {hint}"
                hint = _hidden_package_hint(name) or hint
                fail(EXIT_IMPORT_FAILED, f"task module '{name}' could not be imported: {exc} ({hint})")
            # Imported by the task's code: the traceback and the line say where from.
            fail_import(name, f"task module '{name}' could not be imported: {exc}", exc, _missing_module_hint(exc.name))
        except SystemExit as exc:  # not a clean exit: the worker has not said ready, and must say which module stopped it
            fail_import(name, f"task module '{name}' called sys.exit({as_text(exc.code)}) on import", exc)
        except BaseException as exc:  # KeyboardInterrupt too
            from .import_failure import exception_text

            detail = exception_text(exc)
            # `from . import x` in a module served on its own: Python's words say nothing of what to do.
            relative = isinstance(exc, ImportError) and "no known parent package" in str(exc)
            hint = (f"a relative import needs the module's package: put the directory above the package on PYTHONPATH "
                    f"and name the module with it (TASK_MODULES=yourpackage.{name})") if relative else ""
            fail_import(name, f"task module '{name}' raised {type(exc).__name__} on import" + (f": {detail}" if detail else ""), exc, hint)
    for name in _modules_without_tasks(registry, args.module):
        # A package whose __init__ imports none of its modules, say: TASK_MODULES=mytasks for mytasks/greeting.py.
        if hasattr(sys.modules.get(name), "__path__"):
            message = (
                f"task module '{name}' registered no task: name the module that holds the @task functions "
                f"(e.g. {name}.greeting for {name.replace('.', '/')}/greeting.py), or import them in its __init__"
            )
        else:  # a plain module: its functions lack the decorator, or it is not the module meant
            message = (
                f"task module '{name}' registered no task: it has no function decorated with @task "
                "(from pyfleet import task); check the decorator, or that TASK_MODULES names the module meant"
            )
        if args.strict:  # --check: a pipeline is where this mistake should stop
            fail(EXIT_IMPORT_FAILED, message)
        logging.getLogger("pyfleet").warning("%s", message)
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
