"""One call of one task in a fresh process: the "spawn" baseline's worker.

    python3 bench/baselines/spawn_task.py <task>  < input.json  > result.json

Runs the same task function as pyfleet, as a one-script-per-call design would:
a fresh interpreter imports the module that defines the task, runs it once
and prints the result as JSON. To be fair to that design, it does not import
pyfleet's runtime (whose registry pulls in typing, inspect and dataclasses,
~20 ms): a small stand-in provides ``task`` and ``TaskError``.
Exit 3 for a TaskError (the caller answers 422), 1 for anything else.
"""

import importlib
import json
import sys
import types

MODULES = {
    "echo": "pyfleet_tasks.echo",
    "xml.import": "pyfleet_tasks.xml_import",
    "csv.profile": "pyfleet_tasks.csv_profile",
    "text.stats": "pyfleet_tasks.text_stats",
    "stats.describe": "pyfleet_tasks.stats",
    "stats.regression": "pyfleet_tasks.stats",
    "hash.digest": "pyfleet_tasks.hash_digest",
    "diag.work": "pyfleet_tasks.diag",
}


class TaskError(Exception):
    def __init__(self, message, details=None):
        super().__init__(message)
        self.message = message
        self.details = details


_functions = {}


def task(name, **_options):
    def register(fn):
        _functions[name] = fn
        return fn

    return register


def main() -> int:
    stand_in = types.ModuleType("pyfleet")
    stand_in.task = task
    stand_in.TaskError = TaskError
    sys.modules["pyfleet"] = stand_in

    name = sys.argv[1]
    importlib.import_module(MODULES[name])
    value = json.load(sys.stdin.buffer)
    try:
        result = _functions[name](value)
    except TaskError as exc:
        sys.stderr.write(exc.message)
        return 3
    sys.stdout.write(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
