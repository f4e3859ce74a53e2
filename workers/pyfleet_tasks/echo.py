"""``echo``: returns its input; measures the pool's own overhead."""

from pyfleet import task

# Any value; the example is what OpenAPI shows a client (Swagger UI's "Try it out").
SCHEMA = {"examples": [{"a": [1, 2, 3]}]}
# Anything: the input comes back as it came.
OUTPUT_SCHEMA = {"examples": [{"a": [1, 2, 3]}]}


@task("echo", schema=SCHEMA, output_schema=OUTPUT_SCHEMA, timeout_ms=5000)
def echo(value):
    """Return the input unchanged (any JSON or msgpack value; bytes stay bytes)."""
    return value
