"""``echo``: returns its input; measures the pool's own overhead."""

from pyfleet import task


@task("echo", schema={}, timeout_ms=5000)
def echo(value):
    """Return the input unchanged (any JSON or msgpack value; bytes stay bytes)."""
    return value
