"""``echo``: returns its input; measures the pool's own overhead."""

from pyfleet import task

SCHEMA = {}
# Anything: the input comes back as it came.
OUTPUT_SCHEMA = {}


@task("echo", schema=SCHEMA, output_schema=OUTPUT_SCHEMA, timeout_ms=5000)
def echo(value):
    """Return the input unchanged (any JSON or msgpack value; bytes stay bytes)."""
    return value
