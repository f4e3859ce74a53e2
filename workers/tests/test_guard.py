"""What a task leaves behind does not reach the calls after it: real workers, one per test."""

import os
import tempfile
import unittest

from pyfleet import guard
from tests.worker_process import LiveWorker, parse_frames, run_worker

LEFTOVER_TASKS = '''
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


@task("g.cat")
def background_cat(_input):
    subprocess.Popen(["cat"], stdout=subprocess.DEVNULL)
    time.sleep(0.2)  # long enough for it to read whatever fd 0 gives it
    return "started"


@task("g.close")
def close_streams(_input):
    sys.stdout.close()
    sys.stderr.close()
    sys.stdin.close()
    print("printed after closing")
    return "closed"


@task("g.print")
def say(text):
    print(text)
    print(text, file=sys.stderr)
    import logging
    logging.getLogger("g").warning("logged %s", text)
    return sys.stdin.read()
'''


class WorkerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        with open(os.path.join(self.dir.name, "leftover_tasks.py"), "w") as f:
            f.write(LEFTOVER_TASKS)

    def calls(self, *calls):
        """Run the calls on one worker; return (values or error messages, stderr)."""
        code, stdout, stderr = run_worker(["--module", "leftover_tasks"], calls=calls, pythonpath=self.dir.name)
        self.assertEqual(code, 0, stderr)
        replies = parse_frames(stdout)[1:]
        self.assertEqual([reply["id"] for reply in replies], list(range(1, len(calls) + 1)), f"one reply per call, in order: {replies}\n{stderr}")
        return [reply.get("value", reply.get("message")) for reply in replies], stderr


class StdinTest(WorkerTest):
    """fd 0 carries the server's calls; tasks and their processes must neither wait on it nor read from it."""

    def live_worker(self):
        worker = LiveWorker(["--module", "leftover_tasks"], pythonpath=self.dir.name)
        self.addCleanup(worker.close)
        return worker

    def test_a_task_and_its_processes_read_end_of_file_from_stdin(self):
        worker = self.live_worker()
        self.assertEqual(worker.call("g.stdin", None)["value"], {"read": "", "input": None, "head": b""})
        self.assertEqual(worker.call("echo", "next call")["value"], "next call")
        code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)

    def test_a_background_process_does_not_take_the_next_calls(self):
        worker = self.live_worker()
        self.assertEqual(worker.call("g.cat", None)["value"], "started")
        for i in range(5):
            self.assertEqual(worker.call("echo", i)["value"], i)


class StreamsTest(WorkerTest):
    def test_closing_stdout_stderr_or_stdin_breaks_nothing(self):
        values, stderr = self.calls(("g.close", None), ("g.print", "later"))
        self.assertEqual(values, ["closed", ""])
        for line in ("printed after closing\n", "later\nlater\nWARNING g: logged later\n"):
            self.assertIn(line, stderr)


class StdStreamTest(unittest.TestCase):
    def test_a_std_stream_survives_close(self):
        read_fd, write_fd = os.pipe()
        self.addCleanup(os.close, read_fd)
        self.addCleanup(os.close, write_fd)
        stream = guard.text_stream(write_fd, "w")
        stream.write("before ")
        stream.close()
        with stream:
            stream.write("after\n")
        self.assertFalse(stream.closed)
        self.assertEqual(os.read(read_fd, 100), b"before after\n")


if __name__ == "__main__":
    unittest.main()
