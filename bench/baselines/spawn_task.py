"""One call of one task in a fresh process: the "spawn" baseline's worker.

    python3 bench/baselines/spawn_task.py <task>  < input.json  > result.json

Imports only the module that defines the task (as a one-script-per-task
design would), runs it once and prints the result as JSON. Exit 3 for a
TaskError (the caller answers 422), 1 for anything else.
"""

import importlib
import json
import sys

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


def main() -> int:
    name = sys.argv[1]
    importlib.import_module(MODULES[name])
    from pyfleet import TaskError, registry

    value = json.load(sys.stdin.buffer)
    try:
        result = registry.get(name).fn(value)
    except TaskError as exc:
        sys.stderr.write(exc.message)
        return 3
    sys.stdout.write(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
