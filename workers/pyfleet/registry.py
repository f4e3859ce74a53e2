"""Task registration: the ``@task`` decorator and the table of loaded tasks.

It owns names, schemas and limits; running tasks is the loop's job.
"""

from __future__ import annotations

import sys
from types import CodeType, MethodType

from .callable_checks import check_callable, describe_callable
from .places import declared_at
from .task_checks import check_count, check_raw_field, check_schema, content_types, defaults_to_fill

# typing, inspect and dataclasses would add ~3 MB to every worker (and the pool
# recycles workers), so they are for type checkers only: annotations here are
# never evaluated at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

# A task name is also a URL path segment and a Prometheus label value.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
MAX_NAME_LENGTH = 64

CO_COROUTINE = 0x80  # inspect.CO_COROUTINE: the code flag of an ``async def``


class Task:
    """A registered task. Read-only once made: assigning an attribute raises AttributeError."""

    __slots__ = ("name", "fn", "doc", "docstring", "schema", "output_schema", "timeout_ms", "raw", "raw_field", "max_concurrency", "is_async", "defaults")

    name: str
    fn: Callable[[Any], Any]
    doc: str  # the docstring's first paragraph, on one line: the task's description
    docstring: str  # the whole docstring, cleaned as inspect.cleandoc does: the OpenAPI document's description
    schema: Dict[str, Any]
    output_schema: Optional[Dict[str, Any]]  # None: not declared (anything may come back)
    timeout_ms: Optional[int]
    raw: Sequence[str]
    raw_field: Optional[str]
    max_concurrency: Optional[int]
    is_async: bool
    defaults: Tuple[Tuple[str, Any], ...]  # what fill_defaults puts into an input that lacks it; () without it

    def __init__(
        self,
        name: str,
        fn: Callable[[Any], Any],
        doc: str,
        schema: Dict[str, Any],
        timeout_ms: Optional[int],
        raw: Sequence[str],
        raw_field: Optional[str],
        max_concurrency: Optional[int],
        is_async: bool = False,
        defaults: Tuple[Tuple[str, Any], ...] = (),
        output_schema: Optional[Dict[str, Any]] = None,
        docstring: str = "",
    ) -> None:
        init = object.__setattr__
        init(self, "name", name)
        init(self, "fn", fn)
        init(self, "doc", doc)
        init(self, "docstring", docstring or doc)
        init(self, "schema", schema)
        init(self, "output_schema", output_schema)
        init(self, "timeout_ms", timeout_ms)
        init(self, "raw", raw)
        init(self, "raw_field", raw_field)
        init(self, "max_concurrency", max_concurrency)
        init(self, "is_async", is_async)
        init(self, "defaults", defaults)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a Task is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a Task is read-only")

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, fn={self.fn!r}, is_async={self.is_async!r})"

    def describe(self) -> Dict[str, Any]:
        """The task as listed in the ``ready`` message (camelCase keys, as in SPEC section 4)."""
        return {
            "name": self.name,
            "doc": self.doc,
            "docstring": self.docstring,
            "schema": self.schema,
            # Checked by the server against results only with VALIDATE_RESULTS=1; documented always.
            "outputSchema": self.output_schema,
            "timeoutMs": self.timeout_ms,
            "raw": list(self.raw),
            "rawField": self.raw_field,
            "maxConcurrency": self.max_concurrency,
            # Where it is defined, for the server's messages about it (a schema Ajv refuses).
            "module": self.fn.__module__ if isinstance(getattr(self.fn, "__module__", None), str) else None,
            # The file and line of its declaration (``mytasks/shop.py, line 12``), for the same messages.
            "source": declared_at(self.fn),
        }


_tasks: Dict[str, Task] = {}


def first_paragraph(doc: str) -> str:
    """``inspect.cleandoc(doc).split("\\n\\n")[0].replace("\\n", " ")``, without importing inspect:
    the first paragraph (up to an empty line), its lines joined with single spaces."""
    return clean_doc(doc).split("\n\n")[0].replace("\n", " ")


def clean_doc(doc: str) -> str:
    """``inspect.cleandoc(doc)``, without importing inspect: tabs expanded, the first line's
    leading space dropped, the common indent of the other non-blank lines removed, blank
    lines at either end dropped."""
    lines = doc.expandtabs().split("\n")
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.lstrip()]
    margin = min(indents, default=0)
    lines = [lines[0].lstrip()] + [line[margin:] for line in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)`` without importing inspect.

    True for an ``async def`` function, also behind bound methods and
    functools.partial; False for anything else callable (a class whose
    ``__call__`` is async included, as inspect says).
    """
    fn = _underlying(fn)
    # inspect.markcoroutinefunction (Python 3.12+) marks a plain function that returns an awaitable.
    mark = getattr(sys.modules.get("inspect"), "_is_coroutine_mark", None)
    if mark is not None and getattr(fn, "_is_coroutine_marker", None) is mark:
        return True
    code = getattr(fn, "__code__", None)
    return isinstance(code, CodeType) and bool(code.co_flags & CO_COROUTINE)


# @task's keyword options, in its signature's order (for the messages on a mistake).
TASK_OPTIONS = ("schema", "output_schema", "timeout_ms", "raw", "raw_field", "max_concurrency", "fill_defaults")
# Names other frameworks use, which spelling alone would match to the wrong option (input_schema: output_schema).
_OPTIONS_BY_OTHER_NAMES = {"input_schema": "schema", "timeout": "timeout_ms", "content_type": "raw", "content_types": "raw"}


def task(
    name: str,
    *misplaced: NoReturn,  # caught below, to say what to write instead of Python's "takes 1 positional argument"
    schema: Optional[Dict[str, Any]] = None,
    output_schema: Optional[Dict[str, Any]] = None,
    timeout_ms: Optional[int] = None,
    raw: Sequence[str] = (),
    raw_field: Optional[str] = None,
    max_concurrency: Optional[int] = None,
    fill_defaults: bool = False,
    **unknown: NoReturn,  # caught below, to name the option meant instead of Python's "unexpected keyword argument"
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register ``fn(input)`` as the task ``name``.

    - ``schema``: JSON schema of the input (a dict of JSON values, or a bool),
      checked by the server before any worker is borrowed (default: anything).
    - ``output_schema``: JSON schema of the return value (default: none).
      Listed in GET /api/tasks and the OpenAPI document, so clients know the
      result's shape; the server checks results against it when
      VALIDATE_RESULTS=1 (``npm run dev`` sets it), answering 500
      RESULT_INVALID to a result it refuses. Binary values match
      ``{"bytes": true}``, as in ``schema``.
    - ``timeout_ms``: per-call limit (default: the server's TASK_TIMEOUT_MS).
    - ``raw``: a content type, or a list of them, whose body becomes the input
      field ``raw_field`` (bytes for application/octet-stream, str otherwise);
      other fields then come from the query string.
    - ``max_concurrency``: most workers this task may hold at once
      (default: all of them).
    - ``fill_defaults``: put the ``default`` of each top-level property of the
      schema into an input that lacks it, before the call (default: no; a
      ``default`` is then an annotation only).

    The function takes one argument, the input, and may be ``async def``. It
    returns anything msgpack can carry. Every mistake here raises at import,
    naming the task and what to fix, so the worker does not start.
    """
    if callable(name):
        raise TypeError(f"@task needs the task's name: use @task(\"name\") above {describe_callable(name)}")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or not set(name) <= _NAME_CHARS:
        raise ValueError(f"task name {name!r} must be 1-{MAX_NAME_LENGTH} characters of [A-Za-z0-9._-]")
    if name in (".", ".."):
        raise ValueError(f"task name {name!r} cannot be used: clients resolve it away in the URL path /api/tasks/{name}")
    if misplaced:
        first = misplaced[0]
        if isinstance(first, (dict, bool)):
            example = "schema={...}"
        elif isinstance(first, int):
            example = f"timeout_ms={first!r}"
        elif isinstance(first, (str, list, tuple)):
            example = f"raw={first!r}, raw_field=..."
        else:
            example = "schema={...}, timeout_ms=..."
        raise TypeError(
            f"task {name!r}: every argument after the name is a keyword ({', '.join(TASK_OPTIONS)}): write @task({name!r}, {example})"
        )
    if unknown:
        import difflib  # only for this mistake: not worth every worker's start

        option = next(iter(unknown))
        close = [_OPTIONS_BY_OTHER_NAMES[option]] if option in _OPTIONS_BY_OTHER_NAMES else difflib.get_close_matches(option, TASK_OPTIONS, n=1, cutoff=0.6)
        meant = f"did you mean {close[0]}? " if close else ""
        raise TypeError(f"task {name!r}: @task has no option {option!r}; {meant}its options are {', '.join(TASK_OPTIONS)}")
    check_count(name, "timeout_ms", timeout_ms)
    check_count(name, "max_concurrency", max_concurrency)
    schema = check_schema(name, schema)
    if output_schema is not None:
        output_schema = check_schema(name, output_schema, "output_schema")
        if output_schema is False:  # no value is valid: with VALIDATE_RESULTS every call would fail
            raise ValueError(f"task {name!r}: output_schema=False accepts no result (every call would be a 500 RESULT_INVALID with "
                             "VALIDATE_RESULTS=1); describe what the task returns, or leave output_schema out")
    raw = content_types(name, raw)
    check_raw_field(name, raw, raw_field, schema)
    defaults = defaults_to_fill(name, fill_defaults, schema)

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in _tasks:
            # The modules of the functions behind partials and bound methods: a partial's own is functools.
            before, now = (getattr(_underlying(f), "__module__", None) for f in (_tasks[name].fn, fn))
            # One module twice: a name given to two functions of it, or the module run again
            # (importlib.reload, IPython's %autoreload, a REPL testing with call_task).
            again = (f": two of its functions have that name, or the module was imported again (importlib.reload, %autoreload); "
                     f"to load it afresh in a REPL or a test, call pyfleet.registry.clear() first, then import it") if before == now else ""
            # A task of the user's named like a built-in one: say that the name is taken, and how to choose one.
            if before != now and str(before).startswith("pyfleet_tasks."):
                again = f": {name!r} is a built-in task's name; give yours a prefix of your own ('{str(now).split('.')[0]}.{name}')"
            raise ValueError(f"task {name!r} is registered twice ({before} and {now}){again}")
        check_callable(name, fn)
        doc = _doc_of(fn)
        _tasks[name] = Task(
            name=name,
            fn=fn,
            doc=first_paragraph(doc),
            docstring=clean_doc(doc),
            schema=schema,
            timeout_ms=timeout_ms,
            raw=raw,
            raw_field=raw_field,
            max_concurrency=max_concurrency,
            is_async=is_coroutine_function(fn),
            defaults=defaults,
            output_schema=output_schema,
        )
        return fn

    return register


def _underlying(fn: Any) -> Any:
    """The function behind bound methods and functools.partial objects, however nested."""
    partial = getattr(sys.modules.get("functools"), "partial", None)  # no functools loaded: no partial exists
    while True:
        if isinstance(fn, MethodType):
            fn = fn.__func__
        elif partial is not None and isinstance(fn, partial):
            fn = fn.func
        else:
            return fn


def _doc_of(fn: Any) -> str:
    """The function's docstring, also through functools.partial (whose own is about partial)."""
    doc = getattr(_underlying(fn), "__doc__", None)
    return doc if isinstance(doc, str) else ""


def get(name: str) -> Optional[Task]:
    return _tasks.get(name)


def all_tasks() -> List[Task]:
    return sorted(_tasks.values(), key=lambda t: t.name)


def clear() -> None:
    """Forget every task: for tests, and for a REPL importing task modules afresh (call_task
    knows only the tasks of the modules imported in its process, never the built-ins)."""
    _tasks.clear()
