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

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sleep_ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "sleep this long"},
        "cpu_ms": {"type": "integer", "minimum": 0, "maximum": 600000, "description": "spin the CPU this long"},
        "alloc_mb": {"type": "integer", "minimum": 0, "maximum": 4096, "description": "allocate and keep this many MiB"},
        "print": {"type": "string", "maxLength": 65536, "description": "write this to stdout"},
        "exit": {"type": "integer", "minimum": 0, "maximum": 255, "description": "exit the worker with this code"},
        "raise": {"type": "string", "maxLength": 4096, "description": "raise RuntimeError with this message (500)"},
        "reject": {"type": "string", "maxLength": 4096, "description": "raise TaskError with this message (422)"},
    },
}


@task("diag.work", schema=SCHEMA, timeout_ms=30000)
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
