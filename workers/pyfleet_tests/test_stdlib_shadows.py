"""Task code named like a standard-library module stops the worker at start, naming the file;
names that hide nothing (built-in modules, namespace directories, the standard library's own
directory) do not."""

import json
import os
import subprocess
import sys
import unittest
import zipfile

from pyfleet.reporting import EXIT_IMPORT_FAILED, EXIT_MISSING_DEPENDENCY
from pyfleet_tests.worker_process import run_worker, task_files

TASK = "from pyfleet import task\n\n\n@task('mine')\ndef mine(input):\n    return input\n"
WORKERS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIND = "import json, os, sys; from pyfleet.stdlib_shadows import stdlib_shadows; print(json.dumps(stdlib_shadows(os.environ['PYTHONPATH'].split(os.pathsep)[1:])))"


def shadows(*entries, cwd=None):
    """What stdlib_shadows finds in a fresh interpreter whose PYTHONPATH is the runtime, then ``entries``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([WORKERS, *entries]))
    done = subprocess.run([sys.executable, "-c", FIND], env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    return [tuple(pair) for pair in json.loads(done.stdout)]


class FindTest(unittest.TestCase):
    def test_modules_and_regular_packages_named_like_the_standard_library_are_found(self):
        directory = task_files(self, {
            "csv.py": TASK,
            "calendar/__init__.py": "",
            "statistics/helpers.py": "",    # no __init__.py: a namespace package, which loses to the real module
            "time.py": TASK,                # built in: found before any path entry
            "json.txt": "",
            "greeting.py": TASK,
        })
        self.assertEqual(shadows(directory, directory, "/no/such/dir", ""), [
            ("calendar", os.path.join(directory, "calendar", "__init__.py")),
            ("csv", os.path.join(directory, "csv.py")),
        ])

    def test_a_compiled_module_and_a_zip_archive_shadow_too(self):
        directory = task_files(self, {"src/csv.py": TASK})
        with zipfile.ZipFile(os.path.join(directory, "lib.zip"), "w") as archive:
            archive.writestr("calendar.py", TASK)
        os.makedirs(os.path.join(directory, "compiled"))
        import py_compile
        py_compile.compile(os.path.join(directory, "src", "csv.py"), cfile=os.path.join(directory, "compiled", "csv.pyc"))
        self.assertEqual(shadows(os.path.join(directory, "compiled"), os.path.join(directory, "lib.zip")), [
            ("calendar", os.path.join(directory, "lib.zip", "calendar.py")),
            ("csv", os.path.join(directory, "compiled", "csv.pyc")),
        ])

    def test_the_standard_library_directory_itself_hides_nothing(self):
        self.assertEqual(shadows(os.path.dirname(os.__file__)), [])

    def test_relative_entries_are_read_from_the_working_directory(self):
        directory = task_files(self, {"tasks/statistics.py": TASK})
        self.assertEqual(shadows("tasks", cwd=directory), [("statistics", os.path.join(directory, "tasks", "statistics.py"))])


class WorkerTest(unittest.TestCase):
    def assertStopsNaming(self, shadow, source, fatal):
        """A worker with ``shadow`` (written with ``source``) beside a task module on PYTHONPATH stops at
        start with EXIT_IMPORT_FAILED and the line ``fatal(path of the shadow)``; its stderr is returned."""
        directory = task_files(self, {shadow: source, "greeting.py": TASK})
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, EXIT_IMPORT_FAILED, stderr)
        self.assertIn(f"pyfleet-fatal: {fatal(os.path.join(directory, shadow))}", stderr)
        return stderr

    def test_a_worker_with_a_shadowing_file_on_pythonpath_stops_at_start_saying_which_and_why(self):
        # csv.py would otherwise be what the built-in csv.profile imports: it would fail at its first call.
        self.assertStopsNaming("csv.py", TASK, lambda path: (
            f"{path} is named like the standard library's csv module and hides it: every 'import csv' in this worker "
            "(the standard library's own and the built-in tasks' included) gets this file instead; rename it"
        ))

    def test_a_file_named_like_msgpack_stops_the_worker_naming_it(self):
        # Imported before the standard library's names are looked at: it has a check of its own.
        stderr = self.assertStopsNaming("msgpack.py", "x = 1\n", lambda path: (
            f"{path} is named like the msgpack package that workers speak to the server with, and hides it (it has no Packer): "
            "every 'import msgpack' in this worker gets this file instead; rename it"
        ))
        self.assertNotIn("Traceback", stderr)

    def test_a_msgpack_py_that_fails_to_import_is_named_with_what_it_raised(self):
        for source, raised in (("import does_not_exist_zz\n", "ModuleNotFoundError: No module named 'does_not_exist_zz'"),
                               ("raise ValueError('boom')\n", "ValueError: boom")):
            with self.subTest(raised=raised):
                self.assertStopsNaming("msgpack.py", source, lambda path: (
                    f"{path}, in a PYTHONPATH entry, is what 'import msgpack' finds, and importing it raised {raised}; "
                    "if it is not the msgpack package, rename it"
                ))

    def test_a_directory_named_msgpack_without_init_hides_nothing(self):
        # A namespace package loses to the installed msgpack, further down the path.
        directory = task_files(self, {"msgpack/notes.txt": "", "greeting.py": TASK})
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, 0, stderr)

    def test_a_directory_named_msgpack_without_init_and_no_msgpack_installed_is_the_missing_package(self):
        # The namespace package imports, with no Packer and no file to name: what is wrong is
        # that msgpack is not installed (installed, it wins over the directory, as above).
        directory = task_files(self, {
            "msgpack/notes.txt": "",
            "greeting.py": TASK,
            # Runs before anything else (on PYTHONPATH): 'import msgpack' looks only in this directory.
            "sitecustomize.py": (
                "import os, sys\nfrom importlib.machinery import PathFinder\n\n\n"
                "class OnlyHere:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'msgpack':\n"
                "            return PathFinder.find_spec(name, [os.path.dirname(__file__)])\n"
                "        return None\n\n\n"
                "sys.meta_path.insert(0, OnlyHere())\n"
            ),
        })
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, EXIT_MISSING_DEPENDENCY, stderr)
        self.assertRegex(stderr, r"pyfleet-fatal: the Python package 'msgpack' is not importable by \S+; install it")
        self.assertNotIn("Traceback", stderr)

    def test_a_module_the_runtime_imports_itself_stops_the_worker_naming_the_file_not_with_a_nameless_error(self):
        # The runtime's own imports get the file before the check can look: it broke them with
        # "module 'logging' has no attribute 'getLogger'", naming no file (early_shadows.py).
        for shadow in ("logging.py", "signal.py", "struct.py", "contextvars.py", "enum.py"):
            with self.subTest(shadow=shadow):
                name = shadow[:-3]
                stderr = self.assertStopsNaming(shadow, "X = 1\n", lambda path: (
                    f"{path} is named like the standard library's {name} module and hides it: every 'import {name}' in this worker "
                    "(the standard library's own and the built-in tasks' included) gets this file instead; rename it"
                ))
                self.assertIn("Traceback", stderr, "Python's own traceback first, for the record")
                self.assertTrue(stderr.rstrip("\n").split("\n")[-1].startswith("pyfleet-fatal: "), "the reason last")

    def test_a_module_the_runtime_imported_without_breaking_is_found_too(self):
        # traceback.py is imported at start and not called then: the worker would have served.
        self.assertStopsNaming("traceback.py", "X = 1\n", lambda path: (
            f"{path} is named like the standard library's traceback module and hides it: every 'import traceback' in this worker "
            "(the standard library's own and the built-in tasks' included) gets this file instead; rename it"
        ))

    def test_importing_pyfleet_elsewhere_installs_no_hook(self):
        out = subprocess.run([sys.executable, "-c", "import sys; hook = sys.excepthook; import pyfleet; print(sys.excepthook is hook)"],
                             cwd=WORKERS, capture_output=True, text=True, timeout=30, check=True).stdout
        self.assertEqual(out.strip(), "True")

    def test_a_worker_without_one_starts(self):
        directory = task_files(self, {"greeting.py": TASK, "test/helpers.py": "", "site/__init__.py": "", "time.py": ""})
        code, _, stderr = run_worker(["--module", "greeting"], pythonpath=directory)
        self.assertEqual(code, 0, stderr)
        self.assertNotIn("hides it", stderr)


if __name__ == "__main__":
    unittest.main()
