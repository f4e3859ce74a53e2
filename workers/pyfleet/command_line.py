"""The worker's command line: the options the server passes (parsed here without argparse),
--help, and the refusal to run in a terminal. What each option does is the start-up's
(__main__.py); a usage error is reported as every failure is (reporting.py).
"""

import os
import sys

from .frames import DEFAULT_MAX_FRAME_BYTES
from .reporting import EXIT_OK, EXIT_USAGE, fail

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


# The options without a value, and those whose value is an int: the Options field each sets.
_FLAGS = {"--diag": "diag", "--sched-batch": "sched_batch", "--strict": "strict", "--help": "help", "-h": "help"}
_NUMBERS = {"--max-frame-bytes": "max_frame_bytes", "--max-rss-bytes": "max_rss_bytes", "--parent-pid": "parent_pid"}


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
        if name in _FLAGS:
            if equals:
                raise ValueError(f"argument {name}: ignored explicit argument {value!r}")
            setattr(options, _FLAGS[name], True)
            continue
        if name not in ("--module", "--stderr-mark", *_NUMBERS):
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
        setattr(options, _NUMBERS[name], number)
    return options


def take_options() -> Options:
    """The worker's options, read from sys.argv and then taken off it. --help is answered, and a
    usage error or a terminal on stdin ends the worker with EXIT_USAGE and one fatal line."""
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
    return args
