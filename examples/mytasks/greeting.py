# mytasks/greeting.py
from pyfleet import task, TaskError

@task(
    "greet",
    schema={                      # JSON schema of the input, checked in Node before a worker is borrowed
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1}},
        "examples": [{"name": "Ada"}],   # in the OpenAPI document; checked against the schema at start
    },
    output_schema={               # JSON schema of the result: for clients (GET /api/tasks, OpenAPI),
        "type": "object",         # and checked against every result with VALIDATE_RESULTS=1 (npm run dev)
        "required": ["greeting"],
        "properties": {"greeting": {"type": "string"}},
        "examples": [{"greeting": "hello, Ada"}],   # what the input's example returns
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
