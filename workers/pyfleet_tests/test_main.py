"""The worker's start (pyfleet.__main__, command_line, task_modules): parsing, --help, usage errors,
logging set-up, task modules that fail to import or register no task, output, the clean stop."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from pyfleet.command_line import parse_args
from pyfleet.frames import DEFAULT_MAX_FRAME_BYTES
from pyfleet.task_modules import BUILTIN_MODULES, DIAG_MODULE
from pyfleet.reporting import EXIT_IMPORT_FAILED, EXIT_PROTOCOL_ERROR, EXIT_RUNTIME_FAILED, EXIT_USAGE
from pyfleet_tests.worker_process import WORKERS_DIR, frame, parse_frames, run_python, run_worker, task_files


def server_lines(stderr):
    """A worker's stderr split as the server splits it: at "\\n" only. splitlines() would also
    split at U+2028, which is how a logging record writes its own line breaks (reporting.py)."""
    return stderr.strip("\n").split("\n")


class BuiltinModulesTest(unittest.TestCase):
    def test_every_module_of_pyfleet_tasks_with_a_task_is_imported_by_workers(self):
        # A new built-in task module left out of BUILTIN_MODULES would simply never be served.
        package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyfleet_tasks")
        with_tasks = []
        for name in sorted(os.listdir(package)):
            if name.endswith(".py"):
                with open(os.path.join(package, name), encoding="utf-8") as f:
                    if "@task(" in f.read():
                        with_tasks.append(f"pyfleet_tasks.{name[:-3]}")
        self.assertGreaterEqual(len(with_tasks), 7)
        self.assertEqual(sorted(with_tasks), sorted(BUILTIN_MODULES + [DIAG_MODULE]))


class BuiltinSchemasTest(unittest.TestCase):
    """Read from a worker's ready message (one worker for both tests), so that a new built-in
    task is checked whether or not its own test file remembers to (diag has none)."""

    @classmethod
    def setUpClass(cls):
        code, stdout, stderr = run_worker(["--diag"])
        assert code == 0, stderr
        cls.declared = parse_frames(stdout)[0]["tasks"]

    def test_every_builtin_task_declares_a_strict_closed_schema_but_echo(self):
        from pyfleet_tests.builtin_tasks_schema import assert_strict_schema

        tasks = {task["name"]: task["schema"] for task in self.declared}
        self.assertEqual(set(tasks.pop("echo")), {"examples"}, "echo takes anything: its schema is its example alone")
        self.assertGreaterEqual(len(tasks), 7)
        for name, schema in tasks.items():
            with self.subTest(task=name):
                assert_strict_schema(self, schema, name)

    def test_every_builtin_task_declares_a_strict_output_schema_echos_open(self):
        from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema

        tasks = {task["name"]: task["outputSchema"] for task in self.declared}
        self.assertEqual(set(tasks.pop("echo")), {"examples"}, "echo returns anything")
        self.assertGreaterEqual(len(tasks), 7)
        for name, schema in tasks.items():
            with self.subTest(task=name):
                self.assertEqual(schema.get("type"), "object", f"{name} returns an object")
                assert_strict_output_schema(self, schema, f"{name} output")


class ParseArgsTest(unittest.TestCase):
    def test_defaults(self):
        options = parse_args([])
        self.assertEqual(
            (options.module, options.diag, options.max_frame_bytes, options.parent_pid, options.help, options.sched_batch, options.strict),
            ([], False, DEFAULT_MAX_FRAME_BYTES, 0, False, False, False),
        )

    def test_every_option_as_the_server_passes_them(self):
        options = parse_args(
            ["--max-frame-bytes", "1048576", "--parent-pid", "4242", "--diag", "--module", "a.b", "--module", "c", "--sched-batch", "--strict",
             "--stderr-mark", "9f8e7d6c5b4a3210"]
        )
        self.assertEqual(options.stderr_mark, "9f8e7d6c5b4a3210")
        self.assertTrue(options.sched_batch)
        self.assertTrue(options.strict)
        self.assertEqual(options.max_frame_bytes, 1048576)
        self.assertEqual(options.parent_pid, 4242)
        self.assertTrue(options.diag)
        self.assertEqual(options.module, ["a.b", "c"], "repeatable, in command-line order")

    def test_values_after_equals_and_the_last_number_wins(self):
        options = parse_args(["--module=x", "--max-frame-bytes=10", "--max-frame-bytes", "20", "--parent-pid=-1"])
        self.assertEqual((options.module, options.max_frame_bytes, options.parent_pid), (["x"], 20, -1))

    def test_help(self):
        self.assertTrue(parse_args(["-h"]).help)
        self.assertTrue(parse_args(["--diag", "--help"]).help)

    def test_bad_arguments_raise_value_error_with_a_reason(self):
        cases = {
            ("--bogus",): "unrecognized argument '--bogus'",
            ("stray",): "unrecognized argument 'stray'",
            ("--module",): "argument --module: expected one argument",
            ("--module", "--diag"): "argument --module: expected one argument",
            ("--parent-pid",): "argument --parent-pid: expected one argument",
            ("--max-frame-bytes", "ten"): "argument --max-frame-bytes: invalid int value: 'ten'",
            ("--parent-pid=1.5",): "argument --parent-pid: invalid int value: '1.5'",
            ("--diag=yes",): "argument --diag: ignored explicit argument 'yes'",
            ("--sched-batch=1",): "argument --sched-batch: ignored explicit argument '1'",
            ("--stderr-mark",): "argument --stderr-mark: expected one argument",
            ("--stderr-mark", "a b"): "argument --stderr-mark: letters and digits only: 'a b'",
            ("--stderr-mark=\n",): "argument --stderr-mark: letters and digits only: '\\n'",
            ("--stderr-mark=",): "argument --stderr-mark: letters and digits only: ''",
        }
        for argv, reason in cases.items():
            with self.subTest(argv=argv):
                with self.assertRaises(ValueError) as caught:
                    parse_args(list(argv))
                self.assertEqual(str(caught.exception), reason)


class CommandLineTest(unittest.TestCase):
    def test_help_prints_usage_and_exits_0(self):
        code, stdout, stderr = run_worker(["--help"])
        self.assertEqual(code, 0)
        self.assertTrue(stdout.startswith(b"usage: python3 -m pyfleet [-h] [--module MODULE] [--diag]"), stdout)
        self.assertIn(b"pyfleet.testing.call_task", stdout, "where to go to try a task")
        for option in (b"--module MODULE", b"--diag", b"--max-frame-bytes N", b"--parent-pid PID"):
            self.assertIn(option, stdout)
        self.assertEqual(stderr, "")

    def test_run_in_a_terminal_it_says_what_it_is_and_where_to_try_a_task(self):
        import pty
        import subprocess
        import sys

        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        try:
            done = subprocess.run([sys.executable, "-m", "pyfleet"], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  stdin=terminal, capture_output=True, timeout=30)
        finally:
            os.close(terminal)
        self.assertEqual(done.returncode, EXIT_USAGE)
        self.assertEqual(done.stdout, b"", "no frame written to the terminal")
        self.assertRegex(done.stderr.decode(), r"^pyfleet-fatal: this is a pyfleet worker, .*pyfleet\.testing\.call_task")

    def test_bad_arguments_exit_2_with_one_fatal_line(self):
        for argv in (["--bogus"], ["--max-frame-bytes", "x"], ["--module"]):
            with self.subTest(argv=argv):
                code, stdout, stderr = run_worker(argv)
                self.assertEqual(code, EXIT_USAGE)
                self.assertEqual(stdout, b"", "no ready message")
                lines = server_lines(stderr)
                self.assertEqual(len(lines), 1, stderr)
                self.assertTrue(lines[0].startswith("pyfleet-fatal: "), stderr)
                self.assertIn("usage: python3 -m pyfleet", lines[0])
        _, _, stderr = run_worker(["--bogus"])
        self.assertIn("unrecognized argument '--bogus'", stderr)

    def test_good_options_start_a_worker_that_answers(self):
        code, stdout, stderr = run_worker(
            ["--max-frame-bytes", "100000", "--parent-pid", str(os.getpid()), "--diag", "--module", "pyfleet_tasks.echo"],
            calls=[("echo", {"a": 1})],
        )
        self.assertEqual(code, 0, stderr)
        ready, echo = parse_frames(stdout)
        self.assertEqual(ready["t"], "ready")
        self.assertIn("diag.work", [t["name"] for t in ready["tasks"]])
        self.assertEqual(echo["value"], {"a": 1})

    def test_max_frame_bytes_is_applied(self):
        code, stdout, stderr = run_worker(["--max-frame-bytes=1000"], calls=[("echo", "x" * 2000)])
        self.assertEqual(code, EXIT_PROTOCOL_ERROR)
        self.assertEqual(parse_frames(stdout)[0]["t"], "ready")
        self.assertRegex(stderr, r"^pyfleet-fatal: protocol error: frame of \d+ bytes is over the limit of 1000\n$")


@unittest.skipUnless(hasattr(os, "SCHED_BATCH"), "SCHED_BATCH is Linux only")
class SchedBatchTest(unittest.TestCase):
    """--sched-batch (WORKER_SCHED_BATCH=1) puts the worker process itself under SCHED_BATCH."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        with open(os.path.join(self.dir.name, "sched_probe.py"), "w") as f:
            f.write(textwrap.dedent(
                """
                import os
                from pyfleet import task

                @task("sched.policy")
                def policy(_input):
                    return os.sched_getscheduler(0)
                """
            ))

    def policy(self, *flags):
        code, stdout, stderr = run_worker(
            [*flags, "--module", "sched_probe"], calls=[("sched.policy", None)], pythonpath=self.dir.name
        )
        self.assertEqual(code, 0, stderr)
        if "SCHED_BATCH is not available" in stderr:
            self.skipTest(stderr.strip())  # refused here (seccomp): the worker said so and ran on
        self.assertEqual(stderr, "")
        return parse_frames(stdout)[1]["value"]

    def test_with_the_flag_the_worker_runs_as_sched_batch(self):
        self.assertEqual(self.policy("--sched-batch"), os.SCHED_BATCH)

    def test_without_it_the_worker_keeps_the_policy_it_inherited(self):
        self.assertEqual(self.policy(), os.sched_getscheduler(0))


class InheritedFdsTest(unittest.TestCase):
    """An fd the server inherited without close-on-exec (a launcher's lock file) is closed by each
    worker at start, so neither it nor the processes its tasks start hold it."""

    def test_an_inherited_fd_is_closed_at_start_and_the_worker_serves(self):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "fd_probe.py"), "w") as f:
                f.write(textwrap.dedent(
                    """
                    import os
                    from pyfleet import task

                    @task("fd.links")
                    def links(_input):
                        found = {}
                        for name in os.listdir("/proc/self/fd"):
                            try:
                                found[name] = os.readlink(f"/proc/self/fd/{name}")
                            except OSError:
                                pass
                        return found
                    """
                ))
            read_end, write_end = os.pipe()
            self.addCleanup(os.close, read_end)
            self.addCleanup(os.close, write_end)
            held = os.readlink(f"/proc/self/fd/{write_end}")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [directory, os.environ.get("PYTHONPATH")])))
            done = subprocess.run(
                [sys.executable, "-m", "pyfleet", "--module", "fd_probe"], cwd=WORKERS_DIR,
                input=frame({"t": "call", "id": 1, "task": "fd.links", "input": None, "requestId": "r1"}),
                capture_output=True, env=env, pass_fds=(write_end,), timeout=30,
            )
            self.assertEqual(done.returncode, 0, done.stderr)
            links = parse_frames(done.stdout)[1]["value"]
            self.assertNotIn(held, links.values(), f"the inherited pipe ({held}) is still open in the worker: {links}")
            self.assertIn("0", links, "its own fds are kept")


class LoggingSetUpTest(unittest.TestCase):
    """logging is configured before the task modules are imported, in the format the server reads."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        with open(os.path.join(self.dir.name, "logging_tasks.py"), "w") as f:
            f.write(
                textwrap.dedent(
                    '''
                    import logging

                    from pyfleet import task

                    log = logging.getLogger("logging_tasks")
                    log.warning("imported")


                    @task("logging.say")
                    def say(input):
                        log.info("info %s", input)
                        log.warning("warning %s", input)
                        return None
                    '''
                )
            )

    def test_a_task_module_that_imports_logging_gets_the_level_prefixed_format(self):
        code, stdout, stderr = run_worker(
            ["--module", "logging_tasks"], calls=[("logging.say", "hello")], pythonpath=self.dir.name
        )
        self.assertEqual(code, 0, stderr)
        self.assertEqual(parse_frames(stdout)[1]["t"], "result")
        self.assertIn("INFO logging_tasks: info hello\n", stderr)
        self.assertIn("WARNING logging_tasks: warning hello\n", stderr)

    def test_records_logged_while_task_modules_import_are_formatted_too(self):
        code, _, stderr = run_worker(["--module", "logging_tasks"], pythonpath=self.dir.name)
        self.assertEqual(code, 0, stderr)
        self.assertIn("WARNING logging_tasks: imported\n", stderr)


class ModuleWithoutTasksTest(unittest.TestCase):
    """A --module that registers no task (a package whose __init__ imports none of its modules): a
    warning when serving, the worker's failure with --strict (the server's --check)."""

    def setUp(self):
        self.dir = task_files(self, {"mytasks/__init__.py": "", "loud/__init__.py": "print('loading', end='')\n", "mytasks/greeting.py": """
            from pyfleet import task

            @task("greet")
            def greet(input):
                return input
        """})
        self.hint = "task module 'mytasks' registered no task: name the module that holds the @task functions (e.g. mytasks.greeting for mytasks/greeting.py), or import them in its __init__"

    def test_serving_warns_and_goes_on(self):
        code, stdout, stderr = run_worker(["--module", "mytasks"], pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(parse_frames(stdout)[0]["t"], "ready")
        self.assertIn(f"WARNING pyfleet: {self.hint}\n", stderr)

    def test_strict_stops_the_worker_with_the_same_words_and_says_a_server_would_start(self):
        code, stdout, stderr = run_worker(["--strict", "--module", "mytasks"], pythonpath=self.dir)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertEqual(stdout, b"")
        self.assertEqual(server_lines(stderr)[-1], f"pyfleet-fatal: {self.hint} (--check fails on this; a server would start, and warn of it)")

    def test_strict_passes_a_package_beside_its_module_in_either_order_and_a_module_that_re_exports(self):
        directory = task_files(self, {
            "mytasks/__init__.py": "", "mytasks/greeting.py": "from pyfleet import task\n\n@task('greet')\ndef greet(input):\n    return input\n",
            "agg/__init__.py": "", "agg/api.py": "from mytasks.greeting import greet\n",
        })
        for modules in (["mytasks", "mytasks.greeting"], ["mytasks.greeting", "mytasks"], ["mytasks.greeting", "agg.api"], ["mytasks.greeting", "mytasks.greeting"]):
            with self.subTest(modules=modules):
                argv = ["--strict"] + [arg for name in modules for arg in ("--module", name)]
                code, _, stderr = run_worker(argv, pythonpath=directory)
                self.assertEqual(code, 0, stderr)
                self.assertNotIn("registered no task", stderr)

    def test_a_plain_module_without_tasks_is_told_about_the_decorator_not_about_packages(self):
        directory = task_files(self, {"plain.py": "def greet(input):\n    return input\n"})
        code, _, stderr = run_worker(["--strict", "--module", "plain"], pythonpath=directory)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertEqual(server_lines(stderr)[-1], (
            "pyfleet-fatal: task module 'plain' registered no task: it has no function decorated with @task "
            "(from pyfleet import task); check the decorator, or that TASK_MODULES names the module meant (--check fails on this; a server would start, and warn of it)"
        ))

    def test_the_fatal_line_starts_a_line_after_output_left_open(self):
        code, _, stderr = run_worker(["--strict", "--module", "loud"], pythonpath=self.dir)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertEqual(server_lines(stderr)[-2:], ["loading", "pyfleet-fatal: task module 'loud' registered no task: name the module that holds the @task functions (e.g. loud.greeting for loud/greeting.py), or import them in its __init__ (--check fails on this; a server would start, and warn of it)"])

    def test_a_file_name_given_for_a_module_is_told_to_drop_py(self):
        code, _, stderr = run_worker(["--module", "greeting.py"], pythonpath=os.path.join(self.dir, "mytasks"))
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertRegex(
            server_lines(stderr)[-1],
            r"^pyfleet-fatal: task module 'greeting\.py' could not be imported: No module named 'greeting\.py'; "
            r"'greeting' is not a package \(TASK_MODULES takes module names, not files: write greeting; "
            r"check TASK_MODULES and PYTHONPATH, which is '[^']*" + re.escape(os.path.join(self.dir, "mytasks")) + r"[^']*'; "
            r"relative PYTHONPATH entries are resolved from the pyfleet directory, /\S*\)$",
        )

    def test_a_misspelt_module_beside_an_unrelated_directory_of_its_package_name_gets_the_usual_advice(self):
        found = task_files(self, {"mypkg/__init__.py": "", "mypkg/tasks.py": ""})
        other = task_files(self, {"mypkg/notes.txt": ""})
        code, _, stderr = run_worker(["--module", "mypkg.taks"], pythonpath=f"{found}{os.pathsep}{other}")
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertIn("No module named 'mypkg.taks' (check TASK_MODULES and PYTHONPATH", server_lines(stderr)[-1])

    def test_a_relative_import_in_a_module_served_without_its_package_says_to_name_the_package(self):
        directory = task_files(self, {"shop/__init__.py": "", "shop/helper.py": "X = 1\n", "shop/rel.py": "from .helper import X\n"})
        code, _, stderr = run_worker(["--module", "rel"], pythonpath=os.path.join(directory, "shop"))
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertEqual(server_lines(stderr)[-1], (
            "pyfleet-fatal: task module 'rel' raised ImportError on import: attempted relative import with no known parent package "
            "(at rel.py, line 1; a relative import needs the module's package: put the directory above the package on PYTHONPATH "
            "and name the module with it (TASK_MODULES=yourpackage.rel))"
        ))
        code, _, stderr = run_worker(["--module", "shop.rel"], pythonpath=directory)
        self.assertEqual(code, 0, "named with its package, it imports")

    def test_a_namespace_directory_named_like_a_standard_library_package_is_told_to_rename(self):
        # test/ without __init__.py: the standard library's regular package test is what Python takes.
        if importlib.util.find_spec("test") is None:
            self.skipTest("this Python has no standard-library test package (Debian: libpython3-testsuite)")
        directory = task_files(self, {"test/shop_tasks.py": "from pyfleet import task\n@task('shop.one')\ndef one(x):\n    return x\n"})
        code, _, stderr = run_worker(["--module", "test.shop_tasks"], pythonpath=directory)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertRegex(
            server_lines(stderr)[-1],
            r"^pyfleet-fatal: task module 'test\.shop_tasks' could not be imported: No module named 'test\.shop_tasks' "
            r"\(the package 'test' is found at \S+/test/__init__\.py, not in " + re.escape(os.path.join(directory, "test")) + r": "
            r"a directory without __init__\.py is a package only where no regular package of its name is found anywhere on the path; rename yours\)$",
        )

    def test_strict_passes_a_module_with_tasks(self):
        code, stdout, stderr = run_worker(["--strict", "--module", "mytasks.greeting"], pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        self.assertIn("greet", [t["name"] for t in parse_frames(stdout)[0]["tasks"]])


class CrashStackTest(unittest.TestCase):
    """A worker that crashes in C code (a segfault, an abort) prints every thread's Python stack
    to stderr first, which the server logs under the call's request id: without it, the log
    said only that the worker was killed by SIGSEGV."""

    def test_a_segfault_leaves_the_stack_of_the_task_that_caused_it(self):
        directory = task_files(self, {"crashing_tasks.py": """
            import ctypes

            from pyfleet import task


            def read_address_zero():
                return ctypes.string_at(0)


            @task("crash.segv")
            def segv(value):
                return read_address_zero()
        """})
        code, _, stderr = run_worker(["--module", "crashing_tasks"], [("crash.segv", None)], pythonpath=directory)
        self.assertEqual(code, -signal.SIGSEGV, stderr)
        self.assertIn("Fatal Python error: Segmentation fault", stderr)
        self.assertRegex(stderr, r'File ".*crashing_tasks.py", line 8 in read_address_zero\n\s+File ".*crashing_tasks.py", line 13 in segv')


class OutputTasks:
    """Tasks that write to stdout and stderr in every way, for the tests of a worker's output."""

    def setUp(self):
        self.dir = task_files(self, {"output_tasks.py": """
            import logging
            import sys

            from pyfleet import task

            sys.stdout.write("imported, no newline")


            @task("out.partial")
            def partial(text):
                sys.stdout.write(text)


            @task("out.line")
            def line(text):
                print(text)


            @task("out.bytes")
            def raw_bytes(text):
                sys.stdout.buffer.write(memoryview(text.encode()))


            @task("out.silent")
            def silent(_input):
                return 1


            @task("out.fork_prints")
            def fork_prints(_input):
                import os
                pid = os.fork()
                if pid == 0:
                    print("from the forked child")
                    os._exit(0)
                os.waitpid(pid, 0)


            @task("out.dunder")
            def dunder(text):
                print(text, file=sys.__stderr__)


            @task("out.prints_when_sent")
            def prints_when_sent(_input):
                import datetime

                class Noisy(datetime.date):
                    def isoformat(self):
                        print("converting the result")
                        return super().isoformat()

                return Noisy(2026, 12, 1)


            @task("out.progress_then_error")
            def progress_then_error(_input):
                for step in range(3):
                    print(f"\\rprogress {step}/3", end="")
                logging.getLogger("output_tasks").error("something went wrong")
        """})


class OutputLinesTest(OutputTasks, unittest.TestCase):
    """The server logs a worker's stderr line by line, each line with the request it came from:
    a line a task leaves open is ended after its call, and a log record starts a line of its own."""

    def test_each_call_and_each_record_starts_a_line(self):
        calls = [
            ("out.partial", "first call, no newline"), ("out.line", "second call"),
            ("out.bytes", "third call, bytes"), ("out.line", "fourth call"),
            ("out.progress_then_error", None), ("out.partial", "last, no newline"),
        ]
        code, stdout, stderr = run_worker(["--module", "output_tasks"], calls=calls, pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        self.assertEqual([message["t"] for message in parse_frames(stdout)], ["ready"] + ["result"] * len(calls))
        self.assertEqual(stderr.split("\n"), [
            "imported, no newline", "first call, no newline", "second call", "third call, bytes", "fourth call",
            "\rprogress 0/3\rprogress 1/3\rprogress 2/3", "ERROR output_tasks: something went wrong",
            "last, no newline", "",
        ])


class CallOutputMarksTest(OutputTasks, unittest.TestCase):
    """With --stderr-mark, a call's output on stdout/stderr comes between a line naming the call
    and an end line: the server reads a line that comes after the call's reply, but before
    the end line, as that call's, not the call it sent next (src/pool/call-output-marks.ts)."""

    def test_each_call_that_writes_is_marked_and_one_that_does_not_is_not(self):
        calls = [
            ("out.partial", "first call, no newline"), ("out.line", "second call"), ("out.partial", ""),
            ("out.bytes", "fourth call, bytes"), ("out.silent", None), ("out.progress_then_error", None),
        ]
        code, stdout, stderr = run_worker(["--module", "output_tasks", "--stderr-mark", "T0k3n"], calls=calls, pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        self.assertEqual([message["t"] for message in parse_frames(stdout)], ["ready"] + ["result"] * len(calls))
        self.assertEqual(stderr.split("\n"), [
            "imported, no newline",
            "\x1eT0k3n call 1", "first call, no newline", "\x1eT0k3n end",
            "\x1eT0k3n call 2", "second call", "\x1eT0k3n end",
            # call 3 wrote an empty string: marks around nothing (a write is not looked into)
            "\x1eT0k3n call 3", "\x1eT0k3n end",
            "\x1eT0k3n call 4", "fourth call, bytes", "\x1eT0k3n end",
            # call 5 wrote nothing: no marks
            "\x1eT0k3n call 6", "\rprogress 0/3\rprogress 1/3\rprogress 2/3", "ERROR output_tasks: something went wrong", "\x1eT0k3n end",
            "",
        ])

    def test_a_forked_child_writes_no_marks_and_what_is_written_while_the_reply_is_made_is_the_calls(self):
        calls = [("out.fork_prints", None), ("out.dunder", "to sys.__stderr__"), ("out.prints_when_sent", None), ("out.line", "last")]
        code, stdout, stderr = run_worker(["--module", "output_tasks", "--stderr-mark", "T0k3n"], calls=calls, pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        self.assertEqual([m.get("value") for m in parse_frames(stdout)[1:]], [None, None, "2026-12-01", None])
        self.assertEqual(stderr.split("\n"), [
            "imported, no newline",
            # the child's own copy of the call's state would have opened call 1 and never closed it
            "from the forked child",
            "\x1eT0k3n call 2", "to sys.__stderr__", "\x1eT0k3n end",
            "\x1eT0k3n call 3", "converting the result", "\x1eT0k3n end",
            "\x1eT0k3n call 4", "last", "\x1eT0k3n end",
            "",
        ])

    def test_a_mark_starts_a_line_after_output_another_thread_left_open(self):
        output = run_python(textwrap.dedent("""
            import os
            from pyfleet import std_fds

            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            std_fds.mark_calls("abc")
            out = std_fds.LineTrackingFileIO(2, "w", closefd=False)
            out.write(b"a thread's partial line")
            std_fds.begin_call_output(7)
            out.write(b"the call's line\\n")
            out.write(b"and its partial one")
            std_fds.end_open_line()
            std_fds.end_call_output()
            std_fds.begin_call_output(8)
            std_fds.end_call_output()
            os.close(2)
            os.close(write_end)
            print(repr(os.read(read_end, 1000)))
        """))
        self.assertEqual(output.strip(), repr(
            b"a thread's partial line\n\x1eabc call 7\nthe call's line\nand its partial one\n\x1eabc end\n"
        ))


class OutputFromThreadsTest(unittest.TestCase):
    def test_a_thread_writing_partial_lines_during_calls_breaks_nothing(self):
        # The open-line flag is set by any thread at any moment, also while a call's changes
        # are undone: it once sat in guard.changes, and the undoing tripped over it.
        directory = task_files(self, {"chatty_tasks.py": """
            import os
            import sys
            import threading
            import time

            from pyfleet import task

            def chatter():
                while True:
                    sys.stderr.write("x")
                    time.sleep(0.0002)

            threading.Thread(target=chatter, daemon=True).start()


            @task("chatty.call")
            def call(_input):
                sys.stdout.write("p")
                os.chdir(os.getcwd())  # a change to undo after each call
                return 1
        """})
        calls = [("chatty.call", None)] * 600
        code, stdout, stderr = run_worker(["--module", "chatty_tasks"], calls=calls, pythonpath=directory, timeout=60)
        self.assertEqual(code, 0, stderr[-2000:])
        self.assertEqual([m.get("value") for m in parse_frames(stdout)[1:]], [1] * 600)
        self.assertEqual(stderr.count("putting its worker back in order"), 0, "the undoing after a call tripped")
        self.assertEqual(stderr.count("Traceback"), 0)


class CommandLineOfTasksTest(unittest.TestCase):
    def test_tasks_see_a_command_line_without_the_workers_options_so_argparse_in_ported_code_finds_none(self):
        directory = task_files(self, {"script_tasks.py": """
            import argparse
            import sys

            from pyfleet import task

            parser = argparse.ArgumentParser()
            parser.add_argument("--verbose", action="store_true")
            OPTIONS = parser.parse_args()  # as a script ported from `python3 script.py` does at import


            @task("script.argv")
            def argv(_input):
                return [len(sys.argv), parser.parse_args().verbose, OPTIONS.verbose]
        """})
        code, stdout, stderr = run_worker(["--module", "script_tasks"], calls=[("script.argv", None)], pythonpath=directory, timeout=20)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(parse_frames(stdout)[1]["value"], [1, False, False])


class ExitHandlersTest(unittest.TestCase):
    """A worker that stops cleanly (stdin closed) runs the atexit handlers of its task modules."""

    def test_atexit_handlers_run_and_logging_is_flushed(self):
        directory = task_files(self, {"exiting_tasks.py": """
            import atexit
            import logging
            import sys
            import threading
            import time

            from pyfleet import task

            log = logging.getLogger("exiting_tasks")
            atexit.register(lambda: log.warning("flushed at exit"))
            # A thread left running must not hold the worker's exit.
            threading.Thread(target=time.sleep, args=(60,)).start()


            @task("exiting.noop")
            def noop(_input):
                return 1
        """})
        code, stdout, stderr = run_worker(["--module", "exiting_tasks"], calls=[("exiting.noop", None)], pythonpath=directory, timeout=20)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(parse_frames(stdout)[1]["value"], 1)
        self.assertTrue(stderr.endswith("WARNING exiting_tasks: flushed at exit\n"), stderr)

    def test_handlers_see_the_event_loop_open_a_failing_one_is_one_error_record_and_child_processes_are_not_waited_for(self):
        directory = task_files(self, {"closing_tasks.py": """
            import asyncio
            import atexit
            import multiprocessing
            import os
            import time

            from pyfleet import task

            async def close_client():
                await asyncio.sleep(0)
                print("client closed")

            atexit.register(lambda: asyncio.get_event_loop().run_until_complete(close_client()))
            atexit.register(lambda: 1 / 0)


            def sleep_detached():
                os.closerange(0, 4096)  # the test's pipes: it reads them to their end
                time.sleep(60)


            @task("closing.start_child")
            def start_child(_input):
                child = multiprocessing.get_context("fork").Process(target=sleep_detached)
                child.start()
                return child.pid
        """})
        started = time.monotonic()
        code, stdout, stderr = run_worker(["--module", "closing_tasks"], calls=[("closing.start_child", None)], pythonpath=directory, timeout=20)
        child = parse_frames(stdout)[1]["value"]
        self.addCleanup(lambda: os.kill(child, signal.SIGKILL))  # the server would kill the worker's process group
        self.assertEqual(code, 0, stderr)
        self.assertLess(time.monotonic() - started, 15, "the worker did not wait for its child process")
        lines = server_lines(stderr)
        # atexit runs handlers last registered first.
        error = [line for line in lines if line.startswith("ERROR pyfleet: Exception ignored in atexit callback")]
        self.assertEqual(len(error), 1, stderr)
        self.assertIn("ZeroDivisionError", error[0])
        self.assertIn("client closed", lines)
        self.assertNotIn("Event loop is closed", stderr)


class ImportFailureTest(unittest.TestCase):
    """A task module that stops the worker at import: its traceback as one ERROR record, then one
    fatal line that names the module, what it raised and the line of task code it came from."""

    def assert_fatal_lines(self, cases):
        """Each ``stopping_tasks.py`` source in ``cases`` stops the worker with that fatal line last."""
        for source, fatal in cases.items():
            with self.subTest(source=source):
                self.assertEqual(self.start_with(source)[-1], fatal)

    def start_with(self, source, files=None, module="stopping_tasks"):
        """Start a worker with ``module``, ``stopping_tasks.py`` being ``source`` and ``files`` more files
        (relative path: source); return its stderr lines, checked to end with the fatal line."""
        self.dir = task_files(self, {"stopping_tasks.py": source, **(files or {})})
        code, stdout, stderr = run_worker(["--module", module], pythonpath=self.dir)
        self.assertEqual((code, stdout), (EXIT_IMPORT_FAILED, b""), stderr)
        lines = server_lines(stderr)
        self.assertTrue(lines and lines[-1].startswith("pyfleet-fatal: "), stderr)
        return lines

    def test_sys_exit_and_keyboard_interrupt_at_import_name_the_module(self):
        cases = {
            "import sys; sys.exit(0)": "pyfleet-fatal: task module 'stopping_tasks' called sys.exit(0) on import (at stopping_tasks.py, line 1)",
            "raise SystemExit('bye')": "pyfleet-fatal: task module 'stopping_tasks' called sys.exit(bye) on import (at stopping_tasks.py, line 1)",
            "raise KeyboardInterrupt": "pyfleet-fatal: task module 'stopping_tasks' raised KeyboardInterrupt on import (at stopping_tasks.py, line 1)",
            # One line even when the message has several, and even when the module silenced sys.stderr.
            "import io, sys; sys.stderr = io.StringIO(); raise ValueError('bad config:\\n  key x missing')":
                "pyfleet-fatal: task module 'stopping_tasks' raised ValueError on import: bad config:\\n  key x missing (at stopping_tasks.py, line 1)",
        }
        self.assert_fatal_lines(cases)

    def test_a_registration_mistake_names_the_module_the_task_the_field_and_the_line(self):
        lines = self.start_with(
            """
            from pyfleet import task

            @task("flagged", timeout_ms=True)
            def flagged(input):
                return input
            """
        )
        self.assertEqual(
            lines[-1],
            "pyfleet-fatal: task module 'stopping_tasks' raised ValueError on import: "
            "task 'flagged': timeout_ms must be a positive integer or None, not True (at stopping_tasks.py, line 4)",
        )

    def test_options_given_positionally_say_they_are_keywords(self):
        lines = self.start_with('from pyfleet import task\n\n@task("pos", {"type": "object"})\ndef pos(input):\n    return input\n')
        self.assertEqual(
            lines[-1],
            "pyfleet-fatal: task module 'stopping_tasks' raised TypeError on import: task 'pos': every argument after the name "
            "is a keyword (schema, output_schema, timeout_ms, raw, raw_field, max_concurrency, fill_defaults): write @task('pos', schema={...}) (at stopping_tasks.py, line 3)",
        )

    def test_an_error_in_a_module_it_imports_is_logged_with_its_traceback_then_located(self):
        lines = self.start_with("", {
            "bad/__init__.py": "",
            "bad/nested.py": "from bad import helper\n",
            "bad/helper.py": 'CONFIG = {}; CONFIG["limit"]\n',
        }, module="bad.nested")
        self.assertEqual(len(lines), 2, lines)
        logged, fatal = lines
        self.assertEqual(fatal, "pyfleet-fatal: task module 'bad.nested' raised KeyError on import: 'limit' (at bad/helper.py, line 1)")
        # One record for the server's log, from the task module's first line to the exception: not
        # through importlib and the runtime, whose frames say nothing about the task's code.
        self.assertTrue(
            logged.startswith(
                "ERROR pyfleet: task module 'bad.nested' failed to import\u2028Traceback (most recent call last):\u2028"
                f'  File "{self.dir}/bad/nested.py", line 1, in <module>\u2028    from bad import helper\u2028'
                f'  File "{self.dir}/bad/helper.py", line 1, in <module>\u2028'
            ),
            logged,
        )
        self.assertTrue(logged.endswith("\u2028KeyError: 'limit'"), logged)

    def test_the_location_is_the_innermost_line_of_task_code_not_of_the_standard_library(self):
        cases = [
            ('import json\n\njson.loads("{")\n', "json/decoder.py", "raised JSONDecodeError on import: "
             "Expecting property name enclosed in double quotes: line 1 column 2 (char 1) (at stopping_tasks.py, line 3)"),
            ("import argparse\nargparse.ArgumentParser().parse_args(['--x'])\n", "argparse.py", "called sys.exit(2) on import (at stopping_tasks.py, line 2)"),
        ]
        for source, library_file, end in cases:
            with self.subTest(source=source):
                lines = self.start_with(source)
                self.assertEqual(lines[-1], f"pyfleet-fatal: task module 'stopping_tasks' {end}")
                self.assertIn(library_file, lines[-2], "the traceback goes on into the library")

    def test_a_module_that_broke_what_reporting_uses_still_gets_its_fatal_line(self):
        cases = {
            # logging's formatter patched: no traceback record, but the fatal line and its location.
            "import logging\nlogging.Formatter.formatException = None\nraise ValueError('x')\n":
                "pyfleet-fatal: task module 'stopping_tasks' raised ValueError on import: x (at stopping_tasks.py, line 3)",
            # A relative sys.path entry and the working directory deleted: abspath() cannot work.
            "import os, sys, tempfile\nd = tempfile.mkdtemp()\nos.chdir(d)\nos.rmdir(d)\nsys.path.append('rel')\nraise ValueError('y')\n":
                "pyfleet-fatal: task module 'stopping_tasks' raised ValueError on import: y (at stopping_tasks.py, line 6)",
        }
        self.assert_fatal_lines(cases)

    def test_the_traceback_is_logged_even_if_the_module_turned_logging_off(self):
        lines = self.start_with("import logging\nlogging.getLogger().handlers.clear()\nlogging.disable(logging.CRITICAL)\nraise ValueError('x')\n")
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r"^ERROR pyfleet: task module 'stopping_tasks' failed to import\u2028Traceback .*\u2028ValueError: x$")

    def test_a_missing_dependency_is_located_where_it_is_imported(self):
        lines = self.start_with("import helpers\n", {"helpers.py": "\nimport no_such_dependency_for_pyfleet\n"})
        self.assertEqual(
            lines[-1],
            "pyfleet-fatal: task module 'stopping_tasks' could not be imported: No module named 'no_such_dependency_for_pyfleet' "
            "(at helpers.py, line 2; install the package that provides 'no_such_dependency_for_pyfleet')",
        )
        self.assertIn("ModuleNotFoundError", lines[0])

    def test_a_module_not_found_error_raised_by_hand_gets_no_hint_about_a_package_named_none(self):
        lines = self.start_with("raise ModuleNotFoundError('the optional backend is missing')\n")
        self.assertEqual(
            lines[-1],
            "pyfleet-fatal: task module 'stopping_tasks' could not be imported: the optional backend is missing (at stopping_tasks.py, line 1)",
        )

    def test_a_module_missing_from_a_package_that_was_found_names_where_the_package_was_found(self):
        # The usual cause: another package of the same name earlier on the path (a "tests" of the user's).
        lines = self.start_with("import helpers\n", {"helpers.py": "import json.fixtures_for_pyfleet\n"})
        self.assertRegex(
            lines[-1],
            r"^pyfleet-fatal: task module 'stopping_tasks' could not be imported: No module named 'json\.fixtures_for_pyfleet' "
            r"\(at helpers\.py, line 1; the package 'json' was found at /\S+/json/__init__\.py and has no module 'json\.fixtures_for_pyfleet': "
            r"is another 'json' earlier on the path, or is it missing from yours\?\)$",
        )

    def test_a_syntax_error_names_its_file_with_the_path_from_its_pythonpath_entry_and_its_line(self):
        cases = (("x = (\n", {}), ("import helpers\n", {"helpers.py": "\nx = (\n"}), ("import pkg.helpers\n", {"pkg/__init__.py": "", "pkg/helpers.py": "\nx = (\n"}))
        for source, files in cases:
            with self.subTest(source=source):
                lines = self.start_with(source, files)
                self.assertRegex(lines[-1], r"^pyfleet-fatal: task module 'stopping_tasks' raised SyntaxError on import: '\(' was never closed \(at (stopping_tasks|helpers|pkg/helpers)\.py, line \d\)$")
                self.assertRegex(lines[0], r'^ERROR pyfleet: task module \'stopping_tasks\' failed to import\u2028.*  File ".*(stopping_tasks|helpers)\.py", line \d\u2028')
                self.assertNotIn("importlib", lines[0])


class EmptyModuleTest(unittest.TestCase):
    """A TASK_MODULES entry that registers nothing is almost always the wrong name: say so."""

    def test_a_package_whose_init_imports_no_task_gets_a_warning(self):
        directory = task_files(self, {
            "mytasks/__init__.py": "",
            "mytasks/greeting.py": "from pyfleet import task\n\n\n@task('greet')\ndef greet(input):\n    return input\n",
        })
        code, _, stderr = run_worker(["--module", "mytasks"], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertIn("WARNING pyfleet: task module 'mytasks' registered no task: name the module that holds the @task functions (e.g. mytasks.greeting", stderr)
        code, _, stderr = run_worker(["--module", "mytasks.greeting", "--module", "mytasks"], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertNotIn("registered no task", stderr, "the package holds a task imported before it")


class RuntimeFailureTest(unittest.TestCase):
    """The runtime itself failing (a task closed its protocol fds) ends in one record and one fatal line."""

    def test_a_task_that_closes_the_protocol_fds_ends_the_worker_with_one_record_and_a_fatal_line(self):
        # By number, one at a time: os.closerange leaves them open (the next test).
        directory = task_files(self, {
            "closing_tasks.py": "import os\nfrom pyfleet import task\n\n\n@task('c.close_all')\ndef close_all(input):\n"
                                "    for fd in range(3, 256):\n        try:\n            os.close(fd)\n        except OSError:\n            pass\n    return 'gone'\n",
        })
        code, stdout, stderr = run_worker(["--module", "closing_tasks"], calls=[("c.close_all", None)], pythonpath=directory)
        self.assertEqual(code, EXIT_RUNTIME_FAILED, stderr)
        lines = server_lines(stderr)
        self.assertEqual(len(lines), 2, stderr)  # not a traceback of a dozen lines, each logged on its own
        self.assertRegex(lines[0], r"^ERROR pyfleet: the worker's runtime failed\u2028Traceback \(most recent call last\):\u2028.*OSError: \[Errno 9\] Bad file descriptor$")
        self.assertRegex(lines[1], r"^pyfleet-fatal: the runtime failed: OSError: \[Errno 9\] Bad file descriptor \(did a task close or replace the worker's protocol fds, \d+ and \d+\?\)$")


class CloseRangeTest(unittest.TestCase):
    """os.closerange, the idiom for closing every inherited descriptor, leaves the protocol's pipes open."""

    def test_closing_every_descriptor_from_3_up_leaves_the_worker_serving(self):
        directory = task_files(self, {
            "closing_tasks.py": "import os\nfrom pyfleet import task\n\n\n@task('c.close_all')\ndef close_all(input):\n"
                                "    os.closerange(input, 4096)\n    return 'closed'\n",
        })
        code, stdout, stderr = run_worker(["--module", "closing_tasks"], calls=[("c.close_all", 3), ("c.close_all", 0), ("echo", "still here")], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertEqual([reply.get("value") for reply in parse_frames(stdout)[1:]], ["closed", "closed", "still here"], stderr)
        self.assertNotIn("pyfleet-fatal", stderr)


class OneLinePerRecordTest(unittest.TestCase):
    """The server logs each stderr line as one entry at the level its prefix names."""

    def test_warnings_tracebacks_and_thread_exceptions_are_one_line_at_their_level(self):
        directory = task_files(self, {
            "noisy_tasks.py": """
                import logging
                import threading
                import warnings

                from pyfleet import task

                @task("noisy")
                def noisy(_input):
                    warnings.warn("deprecated input")
                    try:
                        1 / 0
                    except ZeroDivisionError:
                        logging.getLogger("noisy").exception("division\\nfailed")
                    thread = threading.Thread(target=lambda: {}["missing"], name="helper")
                    thread.start()
                    thread.join()
                    return "done"
                """,
        })
        code, stdout, stderr = run_worker(["--module", "noisy_tasks"], calls=[("noisy", None)], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(parse_frames(stdout)[1]["value"], "done")
        warning, logged, thread = server_lines(stderr)
        self.assertRegex(warning, r"^WARNING py\.warnings: .*noisy_tasks\.py:\d+: UserWarning: deprecated input\u2028  +warnings\.warn")
        self.assertRegex(logged, r"^ERROR noisy: division\u2028failed\u2028Traceback \(most recent call last\):\u2028  File .*\u2028ZeroDivisionError: division by zero$")
        self.assertRegex(thread, r"^ERROR pyfleet: uncaught exception in thread helper\u2028Traceback .*\u2028KeyError: 'missing'$")


if __name__ == "__main__":
    unittest.main()
