"""A standard-library module the runtime imports itself, shadowed by a file in a PYTHONPATH
entry (a ``logging.py`` beside the task modules): the worker breaks before the shadow check
of task_modules.py can run, with an error that names neither file ("module 'logging' has
no attribute 'getLogger'"). When the runtime starts (``python -m pyfleet``), the package
installs ``watch()``'s excepthook first thing: a start that breaks with such a module
imported ends with the fatal line the check would have written.

Only ``os`` and ``sys`` here (frozen or built in: nothing on PYTHONPATH can hide them), and
nothing of the runtime's: this module must work when any other one is shadowed.
"""

import os
import sys

STDLIB_DIR = os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "")
# reporting.EXIT_IMPORT_FAILED (reporting.py imports logging, which may be the shadow).
_EXIT_IMPORT_FAILED = 3


def roots(entries, skip):
    """The PYTHONPATH entries that can hide a module, as directories ending in a separator:
    relative ones from the working directory (an empty one is the working directory, as for
    Python); ``skip`` (the runtime's own directory) and the standard library's left out."""
    found = []
    for entry in entries:
        directory = os.path.join(os.path.abspath(entry or "."), "")
        # A PYTHONPATH entry in the standard library's own directory (some images set one) hides nothing.
        if directory != os.path.join(skip, "") and not directory.startswith(STDLIB_DIR) and directory not in found:
            found.append(directory)
    return found


def imported_shadows(entries, skip=""):
    """``(name, file)`` for each standard-library module name already imported from one of
    ``entries`` (PYTHONPATH's): by the runtime itself, before any check could look."""
    where = tuple(roots(entries, skip))
    if not where:
        return []
    found = []
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str) and path.startswith(where):
            found.append((name, path))
    return found


def shadow_message(name, where):
    return (
        f"{where} is named like the standard library's {name} module and hides it: every 'import {name}' "
        f"in this worker (the standard library's own and the built-in tasks' included) gets this file "
        f"instead; rename it"
    )


def watch():
    """Until the worker is ready: an exception nobody caught is printed as Python prints it, and
    then, if a standard-library module was imported from PYTHONPATH, explained by the fatal line."""
    previous = sys.excepthook

    def explain(kind, value, traceback):
        previous(kind, value, traceback)
        runtime_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # its own PYTHONPATH entry hides nothing
        shadows = imported_shadows(os.environ.get("PYTHONPATH", "").split(os.pathsep), runtime_dir)
        if shadows:
            more = f" (and {len(shadows) - 1} more such)" if len(shadows) > 1 else ""
            line = (shadow_message(*shadows[0]) + more).replace("\n", "\\n")
            try:
                sys.stderr.flush()
            except BaseException:
                pass
            # After the traceback, which ends its line: the server reads the fatal prefix at a line's start.
            os.write(2, f"pyfleet-fatal: {line}\n".encode("utf-8", "backslashreplace"))
            os._exit(_EXIT_IMPORT_FAILED)

    sys.excepthook = explain
