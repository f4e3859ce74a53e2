"""Where code is, as the runtime's messages say it: ``mytasks/shop.py, line 12``, the path
relative to the sys.path entry it is under (the module's own name, in file form)."""

from __future__ import annotations

import os
import sys

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


def place(path: str, line: Optional[int]) -> str:
    """``mytasks/helper.py, line 3``, the path relative to the sys.path entry it is under."""
    roots = [root for root in map(_absolute_dir, sys.path) if root]
    root = max((root for root in roots if path.startswith(root)), key=len, default="")
    return path[len(root):] + (f", line {line}" if line is not None else "")


def declared_at(fn: Any) -> Optional[str]:
    """Where a task function is declared (the line of its first decorator, as Python counts it),
    under the decorators that wrap it (``functools.wraps``); None for a callable without code."""
    for _ in range(100):  # a __wrapped__ that leads back to itself must not hang the start
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None:
            break
        fn = wrapped
    code = getattr(fn, "__code__", None)
    filename = getattr(code, "co_filename", None)
    line = getattr(code, "co_firstlineno", None)
    if not isinstance(filename, str) or filename.startswith("<") or not isinstance(line, int):
        return None  # a builtin, a partial, code made by exec() or compile()
    return place(filename, line)


def _absolute_dir(entry: object) -> str:
    """A sys.path entry as an absolute directory ending in a separator; "" for one that is not
    a string or cannot be made absolute (relative, with the working directory deleted)."""
    if not isinstance(entry, str):
        return ""
    try:
        return os.path.join(os.path.abspath(entry), "")
    except OSError:
        return ""
