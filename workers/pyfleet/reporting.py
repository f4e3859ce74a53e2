"""How a worker reports: its log records, one line each on stderr, and the one
``pyfleet-fatal:`` line it leaves when it cannot go on.

The server logs each stderr line as one entry at the level its prefix names, and
quotes the fatal line as the reason a worker stopped; the exit code says which
kind of failure it was (the server tells EXIT_PROTOCOL_ERROR from the rest).
"""

import logging
import os
import sys

from . import std_fds

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_IMPORT_FAILED = 3
EXIT_MISSING_DEPENDENCY = 4
EXIT_PROTOCOL_ERROR = 5
EXIT_RUNTIME_FAILED = 6  # the runtime itself broke (a task closed its protocol fds, say)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # the server reads the level from the start of the line
# A record's line breaks on stderr (OneLineFormatter); the server logs them as line breaks.
LINE_SEPARATOR = "\u2028"


def fail(code: int, line: str) -> "NoReturn":  # noqa: F821
    # One line, prefixed so the server can quote it as the reason the worker did not start:
    # line breaks (an exception's message may hold some) written as \n, and straight to fd 2,
    # which a task module that replaced sys.stderr cannot have redirected.
    text = line.replace("\r", "").replace("\n", "\\n")
    try:
        sys.stderr.flush()
    except BaseException:
        pass
    # At the start of a line, where the server looks for it: after a line left open, a newline first.
    start = "\n" if std_fds.open_line else ""
    os.write(2, f"{start}pyfleet-fatal: {text}\n".encode("utf-8", "backslashreplace"))
    os._exit(code)


def fail_import(module: str, line: str, exc: BaseException, hint: str = "") -> "NoReturn":  # noqa: F821
    """fail() with the traceback logged first, and the line ending with where in the task's code
    ``exc`` was raised: `` (at mytasks/helper.py, line 3)``.

    The traceback is one ERROR record, formatted as set_up_logging's are but written straight to
    fd 2 as fail() writes, so that a task module that removed the handlers, called
    logging.disable() or replaced sys.stderr before it failed cannot hide it. Reporting runs
    code the module may have broken too (logging's formatter patched, the working directory
    deleted): if it fails, the fatal line goes out without what it could not add.
    """
    from .import_failure import traceback_to_log, where_raised

    log_failure(f"task module '{module}' failed to import", exc, lambda: traceback_to_log(exc, module))
    try:
        where = where_raised(exc, module)
    except BaseException:
        where = ""
    notes = "; ".join(note for note in (where, hint) if note)
    fail(EXIT_IMPORT_FAILED, f"{line} ({notes})" if notes else line)


def log_failure(message: str, exc: BaseException, traceback_of: "Any" = None) -> None:  # noqa: F821
    """One ERROR record with ``exc``'s traceback, formatted as set_up_logging's are but written
    straight to fd 2 (what went to sys.stderr before comes first); never raises."""
    try:
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        record = logging.LogRecord("pyfleet", logging.ERROR, __file__, 0, "%s", (message,), None)
        record.exc_info = (type(exc), exc, traceback_of() if traceback_of is not None else exc.__traceback__)
        os.write(2, f"{OneLineFormatter(LOG_FORMAT).format(record)}\n".encode("utf-8", "backslashreplace"))
    except BaseException:
        pass


class OneLineFormatter(logging.Formatter):
    """``LEVEL logger: message``, one line per record: the server logs each stderr line as
    one entry at the level its prefix names, so a traceback or a multi-line message has its
    line breaks written as U+2028 (LINE SEPARATOR) and stays one entry at its record's level.
    The server gives them back as line breaks in its log (src/pool/worker-stderr.ts). Not
    ``\\n``, as they were: a task's own print of ``C:\\new`` or of a JSON string holds that
    too, and the server cannot tell a record's line from a print that looks like one."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip("\n").replace("\n", LINE_SEPARATOR)
        # After a partial line a task printed, the record starts a line of its own: glued to
        # that line it would be logged at its level (INFO) and with what it says cut in.
        return "\n" + text if std_fds.open_line else text


def log_thread_exception(args: "threading.ExceptHookArgs") -> None:  # noqa: F821
    """An exception that ends a thread a task started: one ERROR record, instead of a bare traceback."""
    if args.exc_type is SystemExit:
        return  # as threading's own hook: a thread may end itself with sys.exit()
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("pyfleet").error(
        "uncaught exception in thread %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def log_unraisable(unraisable: "sys.UnraisableHookArgs") -> None:
    """An exception Python can only report (an atexit handler's, a ``__del__``'s): one ERROR
    record, instead of a bare traceback the server would log line by line at INFO."""
    what = unraisable.err_msg or "Exception ignored in"
    logging.getLogger("pyfleet").error(
        "%s: %r", what, unraisable.object, exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    )


def set_up_logging() -> None:
    """Before the task modules are imported, so that what they log at import is formatted too."""
    import threading  # logging has imported it already

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    logging.captureWarnings(True)  # warnings.warn() from a task: a WARNING record, not an INFO line
    threading.excepthook = log_thread_exception
    sys.unraisablehook = log_unraisable
