"""Task registration: the ``@task`` decorator and the table of loaded tasks.

It owns names, schemas and limits; running tasks is the loop's job.
"""

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

# A task name is also a URL path segment and a Prometheus label value.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[[Any], Any]
    doc: str
    schema: Dict[str, Any]
    timeout_ms: Optional[int]
    raw: Sequence[str]
    raw_field: Optional[str]
    max_concurrency: Optional[int]
    is_async: bool = field(default=False)

    def describe(self) -> Dict[str, Any]:
        """The task as listed in the ``ready`` message (camelCase keys, as in SPEC section 4)."""
        return {
            "name": self.name,
            "doc": self.doc,
            "schema": self.schema,
            "timeoutMs": self.timeout_ms,
            "raw": list(self.raw),
            "rawField": self.raw_field,
            "maxConcurrency": self.max_concurrency,
        }


_tasks: Dict[str, Task] = {}


def task(
    name: str,
    *,
    schema: Optional[Dict[str, Any]] = None,
    timeout_ms: Optional[int] = None,
    raw: Sequence[str] = (),
    raw_field: Optional[str] = None,
    max_concurrency: Optional[int] = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``fn(input)`` as the task ``name``.

    - ``schema``: JSON schema of the input, checked by the server before any
      worker is borrowed (default: anything).
    - ``timeout_ms``: per-call limit (default: the server's TASK_TIMEOUT_MS).
    - ``raw``: content types whose body becomes the input field ``raw_field``
      (bytes for application/octet-stream, str otherwise); other fields then
      come from the query string.
    - ``max_concurrency``: most workers this task may hold at once
      (default: all of them).

    The function may be ``async def``. It returns anything msgpack can carry.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or not set(name) <= _NAME_CHARS:
        raise ValueError(f"task name {name!r} must be 1-{MAX_NAME_LENGTH} characters of [A-Za-z0-9._-]")
    if timeout_ms is not None and (not isinstance(timeout_ms, int) or timeout_ms <= 0):
        raise ValueError(f"task {name}: timeout_ms must be a positive integer")
    if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency <= 0):
        raise ValueError(f"task {name}: max_concurrency must be a positive integer")
    if raw and not raw_field:
        raise ValueError(f"task {name}: raw content types need raw_field, the input field the body goes to")
    for content_type in raw:
        if "/" not in content_type or content_type != content_type.strip().lower():
            raise ValueError(f"task {name}: raw content type {content_type!r} must look like 'type/subtype' in lower case")

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in _tasks:
            raise ValueError(f"task {name!r} is registered twice ({_tasks[name].fn.__module__} and {fn.__module__})")
        _tasks[name] = Task(
            name=name,
            fn=fn,
            doc=inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " "),
            schema=schema if schema is not None else {},
            timeout_ms=timeout_ms,
            raw=tuple(raw),
            raw_field=raw_field,
            max_concurrency=max_concurrency,
            is_async=inspect.iscoroutinefunction(fn),
        )
        return fn

    return register


def get(name: str) -> Optional[Task]:
    return _tasks.get(name)


def all_tasks() -> List[Task]:
    return sorted(_tasks.values(), key=lambda t: t.name)


def clear() -> None:
    """Forget every task (tests only)."""
    _tasks.clear()
