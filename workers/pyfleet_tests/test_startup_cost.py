"""What a worker loads, and when: its own runtime stays light, and everything
the tasks need is imported before it says ready (SPEC section 3), so no call
pays for an import.

The pool recycles workers and runs several, so the runtime's own start-up cost
is paid over and over; typing, inspect, argparse and friends stay out of it.
Each check runs in a fresh interpreter.
"""

import json
import textwrap
import unittest

from pyfleet_tests.worker_process import LiveWorker, parse_frames, run_python, run_worker, task_files

# Loaded by none of the worker runtime's modules.
NOT_IN_THE_RUNTIME = ("typing", "inspect", "dataclasses", "argparse", "platform", "decimal", "uuid", "asyncio")

PROBE_MODULE = '''
import sys

from pyfleet import task


@task("probe.modules")
def modules(_input):
    return sorted(sys.modules)
'''

ASYNC_MODULE = '''
from pyfleet import task


@task("probe.async")
async def asynchronous(_input):
    return "ran"
'''


class RuntimeImportTest(unittest.TestCase):
    def test_importing_the_runtime_loads_nothing_heavy(self):
        out = run_python(
            textwrap.dedent(
                f"""
                import json, sys
                import pyfleet, pyfleet.__main__, pyfleet.early_shadows, pyfleet.command_line, pyfleet.task_modules, pyfleet.loop, pyfleet.runner, pyfleet.protocol, pyfleet.conversion, pyfleet.js_values, pyfleet.unsendable, pyfleet.frames, pyfleet.registry, pyfleet.guard, pyfleet.watchers, pyfleet.forked_child
                print(json.dumps([name for name in {NOT_IN_THE_RUNTIME!r} if name in sys.modules]))
                """
            )
        )
        self.assertEqual(json.loads(out), [])


class WorkerTest(unittest.TestCase):
    def setUp(self):
        self.dir = task_files(self, {"probe_tasks.py": PROBE_MODULE, "async_tasks.py": ASYNC_MODULE})

    def test_calls_to_every_builtin_task_import_nothing(self):
        """The heavy parts (hashlib, defusedxml, text.stats's word regex) are ready before the first call."""
        # Beyond each built-in task's own examples (called below, whatever the tasks are), the paths
        # that load the most: every hash algorithm, a non-Latin text, XML that does not parse.
        # Each call with the reply it gets.
        paths = [
            ("text.stats", {"text": "नमस्ते दुनिया, one two"}, "result"),
            ("hash.digest", {"data": b"abc", "algorithms": ["sha256", "md5", "blake2b", "sha3_256", "sha1"]}, "result"),
            ("xml.import", {"xml": "<a><b>1</b></a>"}, "result"),
            ("xml.import", {"xml": "<a><b></a>"}, "error"),
            ("csv.profile", {"csv": "x,y\n1,2\n"}, "result"),
            ("stats.describe", {"values": [1, 2, 3]}, "result"),
            ("stats.regression", {"x": [0, 1, 2], "y": [1, 3, 5]}, "result"),
        ]
        worker = LiveWorker(["--module", "probe_tasks"], pythonpath=self.dir)
        self.addCleanup(worker.close)
        # The built-in tasks as the worker declares them (the ones BUILTIN_MODULES registers).
        builtin = [task for task in worker.ready["tasks"] if task["name"] not in ("probe.modules", "probe.async")]
        self.assertGreater(len(builtin), 1, worker.ready)
        examples = [(task["name"], example, "result") for task in builtin for example in (task["schema"] or {}).get("examples", [])]
        calls = paths + examples
        for task in builtin:
            self.assertIn(
                task["name"], {name for name, _, _ in calls},
                f"{task['name']} is never called: give its schema \"examples\" (workers/pyfleet_tasks), "
                "or add a call of it to `paths` in this test (workers/pyfleet_tests/test_startup_cost.py)",
            )
        before = worker.call("probe.modules", None)
        replies = [worker.call(name, value, timeout=10) for name, value, _ in calls]
        after = worker.call("probe.modules", None)
        self.assertEqual(worker.close()[0], 0)
        self.assertEqual(
            [(name, reply["t"]) for (name, _, _), reply in zip(calls, replies)],
            [(name, kind) for name, _, kind in calls],
            [reply.get("message") for reply in replies],
        )
        self.assertEqual(replies[0]["value"]["words"], 4)
        self.assertEqual(set(after["value"]) - set(before["value"]), set(), "a call imported a module")
        self.assertLessEqual({"hashlib", "defusedxml", "xml.etree.ElementTree"}, set(before["value"]))

    def test_a_worker_with_an_async_task_has_its_event_loop_before_the_first_call(self):
        code, stdout, stderr = run_worker(
            ["--module", "probe_tasks", "--module", "async_tasks"],
            calls=[("probe.modules", None), ("probe.async", None), ("probe.modules", None)],
            pythonpath=self.dir,
        )
        self.assertEqual(code, 0, stderr)
        _, before, ran, after = parse_frames(stdout)
        self.assertIn("asyncio", before["value"])
        self.assertEqual(ran["value"], "ran")
        self.assertEqual(set(after["value"]) - set(before["value"]), set())

    def test_a_worker_without_async_tasks_does_not_load_asyncio(self):
        code, stdout, stderr = run_worker(
            ["--module", "probe_tasks"], calls=[("probe.modules", None)], pythonpath=self.dir
        )
        self.assertEqual(code, 0, stderr)
        self.assertNotIn("asyncio", parse_frames(stdout)[1]["value"])


if __name__ == "__main__":
    unittest.main()
