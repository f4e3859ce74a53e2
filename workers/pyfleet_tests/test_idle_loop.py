"""Between calls, a worker runs its event loop while asyncio tasks wait on it (Runner.wait_for_call)."""

import os
import threading
import time
import unittest

from pyfleet_tests.worker_process import LiveWorker, task_files

REFRESHER = """
    import asyncio
    from pyfleet import task

    TICKS = {"n": 0}

    async def refresh():
        while True:
            TICKS["n"] += 1
            await asyncio.sleep(0.01)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.create_task(refresh())

    @task("ref.ticks")
    def ticks(input):
        return TICKS["n"]

    @task("ref.stop_loop")
    def stop_loop(input):
        loop = asyncio.get_event_loop()
        loop.call_later(0.02, loop.stop)
        return "scheduled"

    @task("ref.exit_later")
    def exit_later(input):
        async def stop():
            raise SystemExit(3)
        asyncio.get_event_loop().create_task(stop())
        return "scheduled"
"""


class BetweenCallsTest(unittest.TestCase):
    def worker(self, source, module):
        directory = task_files(self, {f"{module}.py": source})
        worker = LiveWorker(["--module", module], pythonpath=directory)
        self.addCleanup(worker.close)
        return worker

    def ticks_grow_between_sync_calls(self, worker):
        first = worker.call("ref.ticks", None)["value"]
        deadline = time.monotonic() + 10
        while True:
            time.sleep(0.05)  # between calls: a sync call itself never runs the loop
            now = worker.call("ref.ticks", None)["value"]
            if now >= first + 3:
                return now
            self.assertLess(time.monotonic(), deadline, f"the refresher did not run between calls: {first} then {now}")

    def test_a_refresher_started_at_import_runs_between_sync_calls(self):
        worker = self.worker(REFRESHER, "refresher_tasks")
        self.ticks_grow_between_sync_calls(worker)
        self.assertEqual(worker.call("echo", "still answers")["value"], "still answers")
        code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)

    def test_a_background_task_raising_system_exit_between_calls_is_logged_and_the_worker_goes_on(self):
        worker = self.worker(REFRESHER, "refresher_tasks")
        self.assertEqual(worker.call("ref.exit_later", None)["value"], "scheduled")
        self.ticks_grow_between_sync_calls(worker)
        code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)
        self.assertIn("ERROR pyfleet: between calls, a background asyncio task raised SystemExit: 3; logged here, the worker goes on", stderr)


    def test_a_background_loop_stop_between_calls_is_logged_and_the_loop_runs_on(self):
        worker = self.worker(REFRESHER, "refresher_tasks")
        self.assertEqual(worker.call("ref.stop_loop", None)["value"], "scheduled")
        time.sleep(0.3)  # no call for a while: the stop comes while the worker waits for one, not as one arrives
        self.ticks_grow_between_sync_calls(worker)
        code, stderr = worker.close()
        self.assertEqual(code, 0, stderr)
        self.assertIn("WARNING pyfleet: between calls, a background asyncio task stopped the event loop (Event loop stopped before Future completed.); it runs on", stderr)


class WaitForCallTest(unittest.TestCase):
    """Runner.wait_for_call on its own, with a pipe for the calls' fd."""

    def runner(self):
        from pyfleet.runner import Runner

        runner = Runner()
        self.addCleanup(runner.close)
        return runner

    def pipe(self):
        read_fd, write_fd = os.pipe()
        self.addCleanup(os.close, read_fd)
        self.addCleanup(os.close, write_fd)
        return read_fd, write_fd

    def test_with_nothing_on_the_loop_it_returns_at_once(self):
        runner = self.runner()
        runner._event_loop()
        read_fd, write_fd = self.pipe()
        # Nothing is sent: had it waited for the fd, only this (a safety net, not a time limit) would end the wait.
        unblock = threading.Timer(10, os.write, (write_fd, b"x"))
        unblock.start()
        self.addCleanup(unblock.cancel)
        runner.wait_for_call(read_fd)
        self.assertFalse(unblock.finished.is_set(), "it waited for a call although nothing was on the loop")

    def test_it_runs_waiting_tasks_until_the_fd_is_readable_and_leaves_the_bytes_unread(self):
        runner = self.runner()
        loop = runner._event_loop()
        ticks = []

        async def tick():
            import asyncio

            while True:
                ticks.append(1)
                await asyncio.sleep(0.005)

        background = loop.create_task(tick())
        read_fd, write_fd = self.pipe()
        threading.Timer(0.2, os.write, (write_fd, b"x")).start()
        runner.wait_for_call(read_fd)
        self.assertGreaterEqual(len(ticks), 5, "the task ran while the call was awaited")
        self.assertEqual(os.read(read_fd, 10), b"x", "the call's bytes are left for read_frame")
        background.cancel()
        # Let the cancellation finish, or the garbage collector reports a pending task later.
        import asyncio

        loop.run_until_complete(asyncio.wait([background]))


if __name__ == "__main__":
    unittest.main()
