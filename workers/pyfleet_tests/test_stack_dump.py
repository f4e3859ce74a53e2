"""stack_dump: the stacks of pending asyncio tasks, which faulthandler cannot see."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import unittest

from pyfleet import stack_dump


async def _innermost(future):
    return await future


async def _outer(future):
    return await _innermost(future)


class PendingTasksText(unittest.TestCase):
    def test_nothing_without_a_running_loop(self):
        self.assertEqual(stack_dump.pending_tasks_text(), "")

    def test_a_suspended_coroutine_chain_innermost_first_with_what_it_awaits(self):
        async def main():
            future = asyncio.get_running_loop().create_future()
            waiting = asyncio.create_task(_outer(future), name="the-call")
            await asyncio.sleep(0)
            text = stack_dump.pending_tasks_text()
            waiting.cancel()
            return text

        text = asyncio.run(main())
        block = text.split("Asyncio task 'the-call' (most recent call first):\n")[1].split("\n\n")[0].splitlines()
        self.assertRegex(block[0], r"^  awaiting <Future pending")
        self.assertRegex(block[1], r'^  File ".*test_stack_dump\.py", line \d+ in _innermost$')
        self.assertRegex(block[2], r'^  File ".*test_stack_dump\.py", line \d+ in _outer$')
        self.assertEqual(len(block), 3)
        # The task that asked is running, and listed too, at the line that asked.
        self.assertRegex(text, r"in main\n")

    def test_at_most_MAX_TASKS_tasks_and_a_count_of_the_rest(self):
        async def main():
            sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in range(stack_dump.MAX_TASKS + 5)]
            await asyncio.sleep(0)
            text = stack_dump.pending_tasks_text()
            for sleeper in sleepers:
                sleeper.cancel()
            return text

        text = asyncio.run(main())
        self.assertEqual(text.count("Asyncio task "), stack_dump.MAX_TASKS)
        self.assertIn("... and 6 more asyncio tasks", text)
        # The oldest first: asyncio.run's own task (the one a call runs in), then the rest in order made.
        names = [line.split("'")[1] for line in text.splitlines() if line.startswith("Asyncio task ")]
        numbers = [int(name[5:]) for name in names]
        self.assertEqual(numbers, sorted(numbers))
        self.assertIn("in main", text.split("Asyncio task ")[1], "the first shown is the one that made the others")

    def test_a_broken_repr_of_what_is_awaited_does_not_cost_the_dump(self):
        class Odd:
            def __repr__(self):
                raise RuntimeError("no repr")

        self.assertEqual(stack_dump._short_repr(Odd()), "<Odd>")
        self.assertEqual(len(stack_dump._short_repr("x" * 1000)), 203, "and a long one is cut")


class OnSigusr1(unittest.TestCase):
    def test_threads_then_asyncio_tasks_on_sigusr1_in_a_process_idle_in_select(self):
        # A process whose only coroutine waits for ever: faulthandler's part shows select(),
        # the Python part the coroutine's own line.
        script = textwrap.dedent(
            """
            import asyncio, os, sys
            from pyfleet import stack_dump

            async def stuck():
                await asyncio.get_running_loop().create_future()

            async def main():
                stack_dump.install()
                task = asyncio.create_task(stuck(), name="stuck-call")
                await asyncio.sleep(0)
                print("ready", flush=True)
                await task

            asyncio.run(main())
            """
        )
        workers = os.path.dirname(os.path.dirname(os.path.abspath(stack_dump.__file__)))
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": workers},
        )
        try:
            self.assertEqual(child.stdout.readline(), b"ready\n")
            child.send_signal(signal.SIGUSR1)
            stderr = b""
            while b"Asyncio task 'stuck-call'" not in stderr or not stderr.endswith(b"\n\n"):
                chunk = os.read(child.stderr.fileno(), 65536)
                self.assertTrue(chunk, f"stderr ended without the dump: {stderr!r}")
                stderr += chunk
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()
        text = stderr.decode()
        self.assertIn("most recent call first", text.split("Asyncio task")[0], "faulthandler's threads first")
        self.assertRegex(text, r"Asyncio task 'stuck-call' \(most recent call first\):\n  awaiting <Future pending[^\n]*\n  File \"<string>\", line 6 in stuck\n")


if __name__ == "__main__":
    unittest.main()
