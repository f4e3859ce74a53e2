"""Task code named like a standard-library module: found on PYTHONPATH before the standard
library, a ``csv.py`` beside the task modules is what every ``import csv`` gets, the
built-in ``csv.profile``'s included, which then fails at its first call with an
AttributeError that names neither file. Found at start instead, with what to do.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import FrozenImporter, PathFinder

from .early_shadows import imported_shadows, roots, shadow_message  # noqa: F401 - shadow_message is task_modules.py's

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Tuple



def found_in_pythonpath(name: str, entries: Iterable[str], skip: str = "") -> Optional[str]:
    """Where ``import name`` would find a module inside one of ``entries`` (PYTHONPATH's), or None
    when it would find an installed one, or none. For a module that failed to import: the
    worker's own dependencies are imported before stdlib_shadows can look."""
    import importlib.util

    try:
        origin = getattr(importlib.util.find_spec(name), "origin", None) or ""
    except Exception:  # the spec of a broken package may itself raise
        return None
    return origin if any(origin.startswith(root) for root in roots(entries, skip)) else None


def stdlib_shadows(entries: Iterable[str], skip: str = "") -> List[Tuple[str, str]]:
    """``(name, where)`` for each standard-library module name that this interpreter would
    import from one of ``entries`` (PYTHONPATH's; relative ones from the working directory),
    ``skip`` (the runtime's own directory) excepted: asked of the import system's path finder, so a
    ``time.py`` hides nothing (``time`` is built in and found first), a directory without
    ``__init__.py`` neither (a namespace package loses to the real module), while a ``csv.pyc``,
    an extension module or a zip archive's ``csv.py`` do. A module already imported is not
    asked: that import is done, and it is one only if its file is in one of ``entries`` (the
    runtime imported it, and had not broken on it)."""
    where = roots(entries, skip)
    if not where:
        return []
    found = imported_shadows(entries, skip)
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        # Built-in and frozen modules are found before any path entry is looked at.
        if name in sys.modules or name in sys.builtin_module_names or name in ("__main__", "__future__"):
            continue
        # Only the PYTHONPATH entries are asked (whose listings the path finder caches): 2 ms
        # for the ~270 names, where importlib.util.find_spec, asking every sys.path entry, took 190.
        spec = PathFinder.find_spec(name, where)
        if spec is None or FrozenImporter.find_spec(name) is not None:
            continue
        # A namespace package (a directory without __init__.py) has no location: it loses to
        # the standard library's module, found further down the path.
        if spec.has_location and isinstance(spec.origin, str):
            found.append((name, spec.origin))
    return sorted(found)
