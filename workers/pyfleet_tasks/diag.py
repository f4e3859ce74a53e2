"""``diag.work``: does slow, heavy or failing things on request, for tests and benchmarks.

Registered only with DIAG_TASKS=1: it can exit the worker and hold memory.
"""

import os
import sys
import time

from pyfleet import TaskError, task

# Memory from alloc_mb is kept here on purpose: it plays a task that leaks,
# so that MAX_WORKER_RSS_MB recycling can be seen working.
_retained = []

MAX_MS = 600000
MAX_ALLOC_MB = 4096
MAX_PRINT = 65536

SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    "examples": [{"sleep_ms": 100, "cpu_ms": 50}],
    "additionalProperties": False,
    "properties": {
        "sleep_ms": {"type": "integer", "minimum": 0, "maximum": MAX_MS, "description": "sleep this long"},
        "cpu_ms": {"type": "integer", "minimum": 0, "maximum": MAX_MS, "description": "spin the CPU this long"},
        "alloc_mb": {"type": "integer", "minimum": 0, "maximum": MAX_ALLOC_MB, "description": "allocate and keep this many MiB"},
        "print": {"type": "string", "maxLength": MAX_PRINT, "description": "write this to stdout"},
        "exit": {"type": "integer", "minimum": 0, "maximum": 255, "description": "exit the worker with this code"},
        "raise": {"type": "string", "maxLength": 4096, "description": "raise RuntimeError with this message (500)"},
        "reject": {"type": "string", "maxLength": 4096, "description": "raise TaskError with this message (422)"},
    },
}

# What it did: pid always; each other field only when that step ran (a 0 skips sleep, cpu
# and alloc). exit, raise and reject never return.
OUTPUT_SCHEMA = {
    "type": "object",
    # What the input example above returns (the pid and the count of spins differ at each call).
    "examples": [{"pid": 4242, "slept_ms": 100, "cpu_ms": 50, "spins": 1250000}],
    "additionalProperties": False,
    "required": ["pid"],
    "properties": {
        "pid": {"type": "integer", "minimum": 1, "description": "the worker's process id"},
        "slept_ms": {"type": "integer", "minimum": 1, "maximum": MAX_MS, "description": "sleep_ms, when it slept"},
        "cpu_ms": {"type": "integer", "minimum": 1, "maximum": MAX_MS, "description": "cpu_ms, when it spun (with spins)"},
        "spins": {"type": "integer", "minimum": 0, "description": "loop turns in cpu_ms, when it spun"},
        "allocated_mb": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_ALLOC_MB,
            "description": "alloc_mb, when it allocated (with retained_mb)",
        },
        "retained_mb": {
            "type": "integer",
            "minimum": 1,
            "description": "MiB this worker holds from every alloc_mb so far, when it allocated",
        },
        "printed": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_PRINT,
            "description": "characters of print written (before the newline), when it printed",
        },
    },
}


@task("diag.work", schema=SCHEMA, output_schema=OUTPUT_SCHEMA, timeout_ms=30000)
def work(spec):
    """Sleep, burn CPU, allocate, print, exit, raise or reject, in that order; returns what it did."""
    done = {"pid": os.getpid()}
    if spec.get("sleep_ms"):
        time.sleep(spec["sleep_ms"] / 1000)
        done["slept_ms"] = spec["sleep_ms"]
    if spec.get("cpu_ms"):
        end = time.perf_counter() + spec["cpu_ms"] / 1000
        spins = 0
        while time.perf_counter() < end:
            spins += 1
        done["cpu_ms"] = spec["cpu_ms"]
        done["spins"] = spins
    if spec.get("alloc_mb"):
        # bytes filled with a non-zero value so every page is touched and counts in RSS
        _retained.append(b"\x01" * (spec["alloc_mb"] << 20))
        done["allocated_mb"] = spec["alloc_mb"]
        done["retained_mb"] = sum(len(block) for block in _retained) >> 20
    if "print" in spec:
        print(spec["print"])
        sys.stdout.flush()
        done["printed"] = len(spec["print"])
    if "exit" in spec:
        sys.stderr.flush()
        os._exit(spec["exit"])
    if "raise" in spec:
        raise RuntimeError(spec["raise"])
    if "reject" in spec:
        raise TaskError(spec["reject"], {"reason": "diag.work was asked to reject"})
    return done
