"""pyfleet worker runtime. Task authors need only ``task`` and ``TaskError`` (and
``request_id()``, the id of the HTTP request whose call is running,
``trace_headers()``, its client's W3C trace context to send on, and
``time_remaining()``, the seconds until its answer is no longer wanted):

    from pyfleet import task, TaskError

    @task("greet", schema={
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    })
    def greet(input):
        return {"hello": input["name"]}

README.md ("Writing a task") has the rest: schemas, errors, limits, testing.
"""

import sys as _sys

# `python -m pyfleet` importing its package (the only time argv[0] is "-m" here): a worker is
# starting, and a standard-library module its own imports below may find on PYTHONPATH
# instead would break it without naming the file (early_shadows.py). A task's `import pyfleet`
# pays nothing.
if _sys.argv[:1] == ["-m"]:
    from .early_shadows import watch as _watch

    _watch()

from .context import request_id, time_remaining, trace_headers, traceparent
from .errors import TaskError
from .registry import task

__all__ = ["task", "TaskError", "request_id", "time_remaining", "trace_headers", "traceparent"]
