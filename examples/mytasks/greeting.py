# mytasks/greeting.py
from pyfleet import task, TaskError

@task(
    "greet",
    schema={                      # JSON schema of the input, checked in Node before a worker is borrowed
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1}},
    },
    timeout_ms=2000,              # default: TASK_TIMEOUT_MS
    max_concurrency=None,         # at most this many workers at once (default: all)
    # raw=("text/plain",), raw_field="name",   # accept a raw body as the "name" field
)
def greet(input):
    """Greets someone by name (the first paragraph is the task's description)."""
    if input["name"] == "nobody":
        raise TaskError("nobody cannot be greeted", {"field": "name"})   # 422, message shown to the client
    return {"greeting": f"hello, {input['name']}"}
