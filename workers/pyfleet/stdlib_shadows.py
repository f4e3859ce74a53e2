"""Task code named like a standard-library module: found on PYTHONPATH before the standard
library, a ``csv.py`` beside the task modules is what every ``import csv`` gets, the
built-in ``csv.profile``'s included, which then fails at its first call with an
AttributeError that names neither file. Found at start instead, with what to do.
"""

from __future__ import annotations

import os
import sys

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Tuple


def stdlib_shadows(entries: Iterable[str], skip: str = "") -> List[Tuple[str, str]]:
    """``(name, path)`` of each module (``name.py``) or regular package (``name/__init__.py``)
    directly in one of ``entries`` (PYTHONPATH's, relative ones from the working directory)
    that is named like a standard-library module. ``skip``: a directory not to look in (the
    runtime's own). A directory without ``__init__.py`` is a namespace package, which Python
    takes only when no module of the name is found anywhere: it hides nothing."""
    names = getattr(sys, "stdlib_module_names", frozenset())
    found = []
    seen = set()
    for entry in entries:
        directory = os.path.abspath(entry or ".")
        if directory in seen or directory == skip:
            continue
        seen.add(directory)
        try:
            listing = sorted(os.listdir(directory))
        except OSError:  # missing, a file, a zip archive, unreadable: Python skips it too
            continue
        for item in listing:
            name, dot, extension = item.partition(".")
            if name not in names or name in ("__main__", "__future__"):
                continue
            path = os.path.join(directory, item)
            if dot and extension == "py" and os.path.isfile(path):
                found.append((name, path))
            elif not dot and os.path.isfile(os.path.join(path, "__init__.py")):
                found.append((name, os.path.join(path, "")))
    return found


def shadow_message(name: str, path: str) -> str:
    return (
        f"{path} is named like the standard library's {name} module and hides it: every 'import {name}' "
        f"in this worker (the standard library's own and the built-in tasks' included) gets this file "
        f"instead; rename it"
    )
