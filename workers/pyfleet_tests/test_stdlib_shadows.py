"""Task code named like a standard-library module stops the worker at start, naming the file."""

import os
import unittest

from pyfleet.reporting import EXIT_IMPORT_FAILED
from pyfleet.stdlib_shadows import stdlib_shadows
from pyfleet_tests.worker_process import run_worker, task_files

TASK = "from pyfleet import task\n\n\n@task('mine')\ndef mine(input):\n    return input\n"


class FindTest(unittest.TestCase):
    def test_modules_and_regular_packages_named_like_the_standard_library_are_found(self):
        directory = task_files(self, {
            "csv.py": TASK,
            "calendar/__init__.py": "",
            "test/helpers.py": "",          # no __init__.py: a namespace package, which hides nothing
            "json.txt": "",                 # not a module
            "mytasks/__init__.py": "",
            "greeting.py": TASK,
        })
        found = stdlib_shadows([directory, directory, "/no/such/dir", ""])
        self.assertEqual(found, [("calendar", os.path.join(directory, "calendar", "")), ("csv", os.path.join(directory, "csv.py"))])

    def test_the_skipped_directory_is_not_looked_in(self):
        directory = task_files(self, {"csv.py": TASK})
        self.assertEqual(stdlib_shadows([directory], skip=directory), [])

    def test_relative_entries_are_read_from_the_working_directory(self):
        directory = task_files(self, {"tasks/statistics.py": TASK})
        before = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, before)
        self.assertEqual(stdlib_shadows(["tasks"]), [("statistics", os.path.join(directory, "tasks", "statistics.py"))])


class WorkerTest(unittest.TestCase):
    def test_a_worker_with_a_shadowing_file_on_pythonpath_stops_at_start_saying_which_and_why(self):
        # csv.py would otherwise be what the built-in csv.profile imports: it would fail at its first call.
        directory = task_files(self, {"csv.py": TASK, "greeting.py": TASK})
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertIn(
            f"pyfleet-fatal: {os.path.join(directory, 'csv.py')} is named like the standard library's csv module and hides it: "
            "every 'import csv' in this worker (the standard library's own and the built-in tasks' included) gets this file instead; rename it",
            stderr,
        )

    def test_a_worker_without_one_starts(self):
        directory = task_files(self, {"greeting.py": TASK, "test/helpers.py": ""})
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertNotIn("hides it", stderr)


if __name__ == "__main__":
    unittest.main()
