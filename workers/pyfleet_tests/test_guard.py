"""What a task leaves behind does not reach the calls after it: real workers, one per test."""

import io
import os
import sys
import unittest

from pyfleet import forked_child, task
from pyfleet.std_fds import text_stream
from pyfleet.testing import call_task
from pyfleet_tests.isolated_registry import IsolatedRegistryTest
from pyfleet_tests.worker_process import LiveWorker, parse_frames, run_worker, task_files

LEFTOVER_TASKS = '''
import io
import os
import signal
import subprocess
import sys
import time

from pyfleet import task


@task("g.stdin")
def read_stdin(_input):
    try:
        line = input()
    except EOFError:
        line = None
    head = subprocess.run(["head", "-c", "3"], capture_output=True, timeout=5).stdout
    return {"read": sys.stdin.read(), "input": line, "head": head}


@task("g.debugger")
def debugger(_input):
    import pdb

    pdb.set_trace()  # left in by mistake: not breakpoint(), which PYTHONBREAKPOINT=0 would skip
    return "went on"


@task("g.cat")
def background_cat(_input):
    subprocess.Popen(["cat"], stdout=subprocess.DEVNULL)
    time.sleep(0.2)  # long enough for it to read whatever fd 0 gives it
    return "started"


@task("g.fork")
def fork(_input):
    pid = os.fork()
    if pid == 0:
        return "from the child"
    os.waitpid(pid, 0)  # the child is done (and would have replied) before the parent replies
    return "from the worker"


@task("g.fork_exit")
def fork_exit(code):
    pid = os.fork()
    if pid == 0:
        sys.exit(code)  # raised inside the task, in the child
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@task("g.detach")
def rewrap_stdout(_input):
    sys.stdout = io.TextIOWrapper(sys.stdout.detach(), encoding="latin-1", line_buffering=True)
    print("through the new wrapper")
    return "rewrapped"


@task("g.partial")
def partial_output(_input):
    sys.stdout.write("progress 50%")
    sys.stderr.buffer.write(b"ERRBYTES")
    return "written"


@task("g.close")
def close_streams(_input):
    sys.stdout.close()
    sys.stderr.close()
    sys.stdin.close()
    print("printed after closing")
    return "closed"


@task("g.replace")
def replace_streams(_input):
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    sys.stdin = io.StringIO("not the worker's")
    return "replaced"


@task("g.rewrap_buffers")
def rewrap_buffers(_input):
    # The usual way to force an encoding, and the wrappers then dropped: collected, they close what they wrap.
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    print("through a wrapper of sys.stdout.buffer")
    sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding="utf-8", line_buffering=True)
    io.TextIOWrapper(sys.stdin.buffer).read()
    sys.stdout.close()
    sys.stderr.close()
    return "rewrapped"


@task("g.print")
def say(text):
    print(text)
    print(text, file=sys.stderr)
    import logging
    logging.getLogger("g").warning("logged %s", text)
    return sys.stdin.read()


@task("g.alarm")
def leave_alarm(_input):
    def on_alarm(signum, frame):
        raise TimeoutError("the alarm a previous call left")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    return "armed"


@task("g.ignore_term")
def ignore_term(_input):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return "ignored"


@task("g.handlers")
def handlers(_input):
    """Whether SIGALRM and SIGTERM have their default handlers, SIGUSR1 the runtime's stack dump,
    and SIGUSR2 is ignored."""
    from pyfleet import stack_dump

    defaults = [signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGALRM, signal.SIGTERM)]
    return [*defaults, signal.getsignal(signal.SIGUSR1) == stack_dump.on_signal, signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN]


@task("g.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return "slept"


@task("g.chdir")
def chdir(path):
    os.chdir(path)
    return os.getcwd()


@task("g.cwd")
def cwd(_input):
    return os.getcwd()


@task("g.close_fd")
def close_fd(fd):
    os.close(fd)
    return "closed"


@task("g.close_copies_of_stderr")
def close_copies_of_stderr(_input):
    """Closes every fd above 2 open on what fd 2 is (the runtime keeps its copies there)."""
    target = os.fstat(2)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            same = fd > 2 and (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (target.st_dev, target.st_ino)
        except OSError:
            continue
        if same:
            os.close(fd)
    return "closed"


@task("g.close_fd_2_with_a_timer")
def close_fd_2_with_a_timer(_input):
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # would end the worker (SIGALRM) unless undone
    os.close(2)
    return "closed"


@task("g.close_fd_through_a_file")
def close_fd_through_a_file(how):
    fd, path = how["fd"], how["path"]
    if how["way"] == "with open":
        with open(fd, "w") as f:
            f.write("written through a file object\\n")
    elif how["way"] == "os.fdopen":
        os.fdopen(fd, "w").close()
    elif how["way"] == "collected":
        open(fd, "w").write("written through a file object\\n")  # closed when collected, at once in CPython
    elif how["way"] == "closefd positional":
        open(fd, "w", -1, None, None, None, True).close()
    elif how["way"] == "io.open":
        io.open(fd, "rb").close()
    with open(path, "w") as f:  # the lowest free fd: the closed one, were it closed
        print("printed in the same call")
        return f.fileno()


@task("g.open_like_the_builtin")
def open_like_the_builtin(path):
    import inspect
    import pickle

    class Holder:
        opener = open  # a builtin does not bind as a method

    with Holder().opener(path, "w") as f:
        f.write("through a class attribute")
    return {
        "pickled": pickle.loads(pickle.dumps(open)) is open,
        "signature": str(inspect.signature(open)).startswith("(file, mode='r'"),
        "name": open.__name__,
        "read": open(path).read(),
    }


@task("g.pipe_on_closed_std_fds")
def pipe_on_closed_std_fds(_input):
    # The pipes subprocess makes take the lowest free fds: 0 and 1, which are the task's now.
    os.close(0)
    os.close(1)
    return subprocess.run(["cat"], input=b"through fds 0 and 1", stdout=subprocess.PIPE, timeout=5).stdout


@task("g.write_file")
def write_file(path):
    with open(path, "w") as f:
        print("printed while the file is open")
        f.write("the task's data\\n")
        return f.fileno()


@task("g.keep_file_on_fd_1")
def keep_file_on_fd_1(path):
    global KEPT
    os.close(1)
    KEPT = open(path, "w")
    return KEPT.fileno()


@task("g.event_loop")
def event_loop(how):
    import asyncio

    async def one():
        return 1

    if how == "run":
        return asyncio.run(one())
    loop = asyncio.get_event_loop()
    value = loop.run_until_complete(one())
    if how == "close":
        loop.close()
    return value
'''


class WorkerTest(unittest.TestCase):
    def setUp(self):
        self.dir = task_files(self, {"leftover_tasks.py": LEFTOVER_TASKS})

    def calls(self, *calls):
        """Run the calls on one worker; return (values or error messages, stderr)."""
        code, stdout, stderr = run_worker(["--module", "leftover_tasks"], calls=calls, pythonpath=self.dir)
        self.assertEqual(code, 0, stderr)
        replies = parse_frames(stdout)[1:]
        self.assertEqual([reply["id"] for reply in replies], list(range(1, len(calls) + 1)), f"one reply per call, in order: {replies}\n{stderr}")
        return [reply.get("value", reply.get("message")) for reply in replies], stderr


class StdinTest(WorkerTest):
    """fd 0 carries the server's calls; tasks and their processes must neither wait on it nor read from it."""

    def live_worker(self):
        worker = LiveWorker(["--module", "leftover_tasks"], pythonpath=self.dir)
        self.addCleanup(worker.close)
        return worker

    def test_a_task_and_its_processes_read_end_of_file_from_stdin(self):
        worker = self.live_worker()
        self.assertEqual(worker.call("g.stdin", None)["value"], {"read": "", "input": None, "head": b""})
        self.assertEqual(worker.call("echo", "next call")["value"], "next call")
        code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)

    def test_a_debugger_left_in_a_task_quits_at_once_and_the_log_says_why(self):
        values, stderr = self.calls(("g.debugger", None), ("g.sleep", 0))
        self.assertTrue(values[0].startswith("a debugger was started (breakpoint(), pdb.set_trace()) in a worker, which has no terminal"), values[0])
        self.assertIn("pyfleet.testing.call_task", values[0])
        self.assertEqual(values[1], "slept", "the worker goes on")

    def test_a_background_process_does_not_take_the_next_calls(self):
        worker = self.live_worker()
        self.assertEqual(worker.call("g.cat", None)["value"], "started")
        for i in range(5):
            self.assertEqual(worker.call("echo", i)["value"], i)


class ForkTest(WorkerTest):
    def test_a_forked_child_that_returns_ends_without_replying(self):
        values, stderr = self.calls(("g.fork", None), ("echo", "after"), ("g.fork", None))
        self.assertEqual(values, ["from the worker", "after", "from the worker"])
        self.assertIn("WARNING pyfleet: task 'g.fork': a process it forked (pid ", stderr)
        self.assertIn("returned from the task; it exits here with status 0 (end a child with os._exit)", stderr)


class ForkExitTest(WorkerTest):
    def test_a_forked_child_that_calls_sys_exit_exits_with_its_code(self):
        values, stderr = self.calls(("g.fork_exit", 3), ("g.fork_exit", None), ("echo", "after"))
        self.assertEqual(values, [3, 0, "after"])
        self.assertIn("called sys.exit(); it exits here with status 3", stderr)

    def test_the_status_is_the_one_python_gives_each_kind_of_code(self):
        # sys.exit(not ok) is common; a string is printed, and the status is 1 whatever it says.
        values, _ = self.calls(("g.fork_exit", False), ("g.fork_exit", True), ("g.fork_exit", "3"), ("g.fork_exit", 256 + 7))
        self.assertEqual(values, [0, 1, 1, 7])
        # A code past a C long (which no call's input can carry): Python exits -1, 255.
        self.assertEqual([forked_child.child_status(SystemExit(code)) for code in (2**70, -(2**70), 2**40 + 3)], [255, 255, 3])


class StreamsTest(WorkerTest):
    def test_detaching_stdout_to_rewrap_it_leaves_later_prints_working(self):
        values, stderr = self.calls(("g.detach", None), ("g.print", "still printed"))
        self.assertEqual(values, ["rewrapped", ""])
        self.assertIn("through the new wrapper\n", stderr)
        self.assertIn("still printed\nstill printed\n", stderr)

    def test_wrapping_the_streams_buffers_leaves_later_prints_and_reads_working(self):
        # sys.stdout's buffer was closed with the task's wrapper: every later print failed ("I/O operation on
        # closed file"); with stderr's, the runtime's warning about the replaced stream killed the worker.
        values, stderr = self.calls(("g.rewrap_buffers", None), ("g.print", "still printed"), ("g.print", "again"))
        self.assertEqual(values, ["rewrapped", "", ""])
        self.assertIn("through a wrapper of sys.stdout.buffer\n", stderr)
        self.assertIn("still printed\nstill printed\nWARNING g: logged still printed\n", stderr)
        self.assertIn("again\nagain\n", stderr)

    def test_output_without_a_newline_and_binary_writes_reach_stderr_at_once(self):
        # Unbuffered, as before: the worker ends with os._exit, which flushes nothing.
        values, stderr = self.calls(("g.partial", None))
        self.assertEqual(values, ["written"])
        self.assertIn("progress 50%ERRBYTES", stderr)

    def test_closing_stdout_stderr_or_stdin_breaks_nothing(self):
        values, stderr = self.calls(("g.close", None), ("g.print", "later"))
        self.assertEqual(values, ["closed", ""])
        for line in ("printed after closing\n", "later\nlater\nWARNING g: logged later\n"):
            self.assertIn(line, stderr)

    def test_replaced_streams_are_put_back_after_the_call_with_one_warning_per_task(self):
        values, stderr = self.calls(("g.replace", None), ("g.print", "one"), ("g.replace", None), ("g.print", "two"))
        self.assertEqual(values, ["replaced", "", "replaced", ""])
        self.assertIn("one\none\nWARNING g: logged one\n", stderr)
        self.assertIn("two\ntwo\nWARNING g: logged two\n", stderr)
        warning = (
            "WARNING pyfleet: task 'g.replace' replaced sys.stdin; replaced sys.stdout; replaced sys.stderr; "
            "undone after the call (logged once per task and worker)\n"
        )
        self.assertEqual(stderr.count(warning), 1, stderr)


class SignalsTest(WorkerTest):
    def test_a_timer_running_before_the_call_is_not_cancelled_after_a_call_that_read_or_reset_it(self):
        # A task module's own timer, started at import; a call reads it the usual way, alarm(0) then alarm(r).
        directory = task_files(self, {"module_timer_tasks.py": (
            "import signal\nfrom pyfleet import task\n\n"
            "signal.signal(signal.SIGALRM, lambda *_: None)\n"
            "signal.setitimer(signal.ITIMER_REAL, 30, 30)\n\n\n"
            "@task('t.read')\ndef read(_input):\n    return list(signal.getitimer(signal.ITIMER_REAL))\n\n\n"
            "@task('t.polite')\ndef polite(_input):\n    left = signal.alarm(0)\n    signal.alarm(left)\n    return left\n"
        )})
        code, stdout, stderr = run_worker(["--module", "module_timer_tasks"], calls=(("t.read", None), ("t.polite", None), ("t.read", None)), pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        first, left, after = [reply.get("value") for reply in parse_frames(stdout)[1:]]
        self.assertEqual((first[1], left), (30, 30), "running at import; the call read 30 s left")
        self.assertGreater(after[0], 0, f"still running after the call, as the call left it (alarm() has no interval): {after}")
        self.assertNotIn("timer running (cancelled)", stderr)

    def test_a_pending_alarm_and_its_handler_do_not_outlive_the_call(self):
        values, stderr = self.calls(("g.alarm", None), ("g.sleep", 0.3), ("g.handlers", None), ("g.alarm", None), ("g.sleep", 0.3))
        self.assertEqual(values[:2], ["armed", "slept"])
        self.assertEqual(values[2][:3], [True, True, True])
        self.assertEqual(values[3:], ["armed", "slept"])
        self.assertEqual(stderr.count("WARNING pyfleet: task 'g.alarm' "), 1, stderr)
        self.assertIn("left the signal.alarm/ITIMER_REAL timer running (cancelled)", stderr)
        self.assertIn("changed the SIGALRM handler", stderr)

    def test_the_handlers_a_worker_depends_on_are_put_back_and_others_kept(self):
        values, stderr = self.calls(("g.ignore_term", None), ("g.handlers", None))
        # SIGTERM is how the server stops a worker, SIGUSR1 how it asks for the stacks of a
        # call past its timeout; SIGUSR2 is the task's own business (libraries set handlers
        # once and rely on them: asyncio's child watchers, say).
        self.assertEqual(values[1], [True, True, True, True])
        self.assertIn("changed the SIGTERM handler", stderr)
        self.assertIn("changed the SIGUSR1 handler, which writes the stacks of a call past its timeout to the log", stderr)
        self.assertNotIn("SIGUSR2", stderr)


OWN_SIGUSR1_TASKS = '''
import signal

from pyfleet import task


def mine(signum, frame):
    pass


signal.signal(signal.SIGUSR1, mine)  # at import: the module's own, kept (docs say it loses the dump)


@task("own.touch")
def touch(_input):
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, old)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    return "touched"


@task("own.handler")
def handler(_input):
    return signal.getsignal(signal.SIGUSR1).__name__
'''


class OwnSigusr1Test(unittest.TestCase):
    def test_a_module_that_set_its_own_sigusr1_handler_at_import_gets_it_back_after_a_call_changed_it(self):
        directory = task_files(self, {"own_sigusr1_tasks.py": OWN_SIGUSR1_TASKS})
        code, stdout, stderr = run_worker(["--module", "own_sigusr1_tasks"], calls=[("own.handler", None), ("own.touch", None), ("own.handler", None)], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        values = [reply.get("value") for reply in parse_frames(stdout)[1:]]
        self.assertEqual(values, ["mine", "touched", "mine"], stderr)
        self.assertIn("changed the SIGUSR1 handler; undone after the call", stderr)


class WorkingDirectoryTest(WorkerTest):
    def test_a_task_that_changes_directory_changes_it_for_itself_only(self):
        values, stderr = self.calls(("g.cwd", None), ("g.chdir", self.dir), ("g.cwd", None))
        start, moved, after = values
        self.assertEqual(os.path.realpath(moved), os.path.realpath(self.dir))
        self.assertEqual(after, start)
        self.assertIn("WARNING pyfleet: task 'g.chdir' changed the working directory (os.chdir); undone after the call", stderr)


class StdFdsTest(WorkerTest):
    """fd 0 stays /dev/null and fd 1 stays stderr's, whatever a call closed or put there."""

    def test_a_closed_fd_1_is_put_back_so_a_later_file_does_not_get_print_output(self):
        for task in ("g.close_fd",):
            with self.subTest(task=task):
                path = os.path.join(self.dir, f"{task}.txt")
                values, stderr = self.calls((task, 1), ("g.write_file", path))
                self.assertNotEqual(values[1], 1, "the file did not land on fd 1")
                with open(path) as f:
                    self.assertEqual(f.read(), "the task's data\n")
                self.assertIn("printed while the file is open", stderr)
                self.assertIn(f"WARNING pyfleet: task {task!r} closed fd 1 (stdout, which goes on to stderr); undone after the call", stderr)

    def test_a_file_object_made_on_fd_0_1_or_2_does_not_close_it(self):
        # The way most code closes fd 1 by accident: open(1, "w") in a with block, or left to the collector.
        for fd, way in ((1, "with open"), (1, "os.fdopen"), (1, "collected"), (2, "closefd positional"), (0, "io.open")):
            with self.subTest(fd=fd, way=way):
                path = os.path.join(self.dir, f"{fd}-{way}.txt")
                values, stderr = self.calls(("g.close_fd_through_a_file", {"fd": fd, "path": path, "way": way}))
                self.assertNotEqual(values[0], fd, "the task's file did not land on the fd the file object had")
                self.assertGreater(values[0], 2)
                with open(path) as f:
                    self.assertEqual(f.read(), "")
                self.assertIn("printed in the same call", stderr)
                self.assertNotIn("undone after the call", stderr, "nothing was closed, so nothing is put back")
                if fd == 1 and way != "os.fdopen":
                    self.assertIn("written through a file object", stderr)

    def test_the_open_that_keeps_them_behaves_as_the_builtin(self):
        path = os.path.join(self.dir, "holder.txt")
        values, stderr = self.calls(("g.open_like_the_builtin", path))
        self.assertEqual(values[0], {"pickled": True, "signature": True, "name": "open", "read": "through a class attribute"}, stderr)

    def test_a_task_that_closed_fds_0_and_1_owns_the_files_it_makes_on_them(self):
        # Its pipes land on 0 and 1 and must close as usual: cat would wait forever for end-of-file.
        values, stderr = self.calls(("g.pipe_on_closed_std_fds", None), ("echo", "after"))
        self.assertEqual(values, [b"through fds 0 and 1", "after"], stderr)
        self.assertIn("closed fd 0 (stdin, /dev/null)", stderr)

    def test_when_the_runtimes_copies_are_closed_too_the_rest_is_still_undone_and_the_worker_lives(self):
        values, stderr = self.calls(
            ("g.close_copies_of_stderr", None), ("g.close_fd_2_with_a_timer", None), ("g.sleep", 0.5), ("g.sleep", 0)
        )
        self.assertEqual(values, ["closed", "closed", "slept", "slept"], stderr)

    def test_a_closed_fd_0_is_put_back_as_dev_null(self):
        path = os.path.join(self.dir, "data.txt")
        values, stderr = self.calls(("g.close_fd", 0), ("g.write_file", path), ("g.stdin", None))
        self.assertNotEqual(values[1], 0)
        self.assertEqual(values[2], {"read": "", "input": None, "head": b""})
        self.assertIn("task 'g.close_fd' closed fd 0 (stdin, /dev/null); undone after the call", stderr)

    def test_a_file_left_on_fd_1_is_replaced_and_the_warning_says_it_is_closed(self):
        kept, later = os.path.join(self.dir, "kept.txt"), os.path.join(self.dir, "later.txt")
        values, stderr = self.calls(("g.keep_file_on_fd_1", kept), ("g.write_file", later), ("g.keep_file_on_fd_1", kept))
        self.assertEqual(values[0], 1)
        with open(kept) as f:
            self.assertEqual(f.read(), "", "print() went to stderr, not into the task's file")
        self.assertEqual(stderr.count("printed while the file is open"), 1)
        self.assertEqual(stderr.count("put a file of its own on fd 1"), 1, "once per task and kind")
        self.assertIn(
            "task 'g.keep_file_on_fd_1' put a file of its own on fd 1 (stdout, which goes on to stderr) "
            "(os.dup2, or open() after closing it); putting fd 1 back closes that file", stderr,
        )


class EventLoopTest(WorkerTest):
    def test_a_closed_or_unset_event_loop_is_put_back_for_the_next_call(self):
        values, stderr = self.calls(
            ("g.event_loop", "close"), ("g.event_loop", "get"), ("g.event_loop", "close"), ("g.event_loop", "run"), ("g.event_loop", "get"),
        )
        self.assertEqual(values, [1, 1, 1, 1, 1])
        self.assertEqual(stderr.count("WARNING pyfleet: task 'g.event_loop' closed the worker's event loop"), 1, stderr)


class InProcessTest(IsolatedRegistryTest):
    """pyfleet.testing.call_task puts streams back too; the worker's own streams cannot be closed."""

    def test_call_task_puts_back_a_replaced_stdout(self):
        @task("t.capture")
        def capture(_input):
            sys.stdout = io.StringIO()
            return "captured"

        before = sys.stdout
        with self.assertLogs("pyfleet", "WARNING") as logs:
            self.assertEqual(call_task("t.capture", None), "captured")
        self.assertIs(sys.stdout, before)
        self.assertEqual(logs.output, ["WARNING:pyfleet:task 't.capture' replaced sys.stdout; undone after the call (logged once per task and worker)"])

    def test_a_std_stream_survives_close(self):
        read_fd, write_fd = os.pipe()
        self.addCleanup(os.close, read_fd)
        self.addCleanup(os.close, write_fd)
        stream = text_stream(write_fd, "w")
        stream.write("before ")
        stream.close()
        with stream:
            stream.write("after\n")
        self.assertFalse(stream.closed)
        self.assertEqual(os.read(read_fd, 100), b"before after\n")


if __name__ == "__main__":
    unittest.main()


class WatchedFaulthandlerTest(unittest.TestCase):
    def test_a_signal_number_of_the_wrong_type_raises_as_faulthandler_does_and_notes_nothing(self):
        import faulthandler

        from pyfleet import watchers

        noted = watchers.changes.pop("faulthandler", None)
        try:
            for wrapper, real in ((watchers._fh_register_watched, faulthandler.register), (watchers._fh_unregister_watched, faulthandler.unregister)):
                with self.subTest(real.__name__):
                    self.assertRaises(TypeError, real, "10")
                    # int("10") in the wrapper made it 10, registered; int("x") a ValueError.
                    self.assertRaises(TypeError, wrapper, "10")
                    self.assertRaises(TypeError, wrapper, "x")
            self.assertNotIn("faulthandler", watchers.changes)
        finally:
            if noted is not None:
                watchers.changes["faulthandler"] = noted
