"""The task modules a worker imports at start (the built-in ones, --diag's, --module's, in
that order), with the checks around them: task code named like a standard-library module
first, then each import, whose failure says what to do, then the modules that brought no task.
How a failure is reported is reporting.py's; where in a task's code it was raised, import_failure.py's.
"""

import importlib
import logging
import os
import sys

from . import registry
from .errors import as_text
from .reporting import EXIT_IMPORT_FAILED, fail, fail_import

BUILTIN_MODULES = [
    "pyfleet_tasks.echo",
    "pyfleet_tasks.xml_import",
    "pyfleet_tasks.csv_profile",
    "pyfleet_tasks.text_stats",
    "pyfleet_tasks.stats",
    "pyfleet_tasks.hash_digest",
]
DIAG_MODULE = "pyfleet_tasks.diag"

# The runtime's own directory (workers/), on PYTHONPATH beside the task modules: it hides nothing.
RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pythonpath() -> list:
    return os.environ.get("PYTHONPATH", "").split(os.pathsep)


def import_task_modules(extra: list, diag: bool, strict: bool) -> None:
    """Imports the built-in task modules, diag's with ``diag``, then ``extra`` (--module's, in
    command-line order), or ends the worker saying which failed and why. A module of ``extra``
    that registers no task is a warning, or with ``strict`` (--check) the worker's failure."""
    from .stdlib_shadows import shadow_message, stdlib_shadows

    # Fatal, not a warning: what it breaks fails later, at a call, far from the cause (and a
    # warning would repeat with every worker the pool starts).
    shadows = stdlib_shadows(pythonpath(), skip=RUNTIME_DIR)
    if shadows:
        fail(EXIT_IMPORT_FAILED, shadow_message(*shadows[0]) + (f" (and {len(shadows) - 1} more such)" if len(shadows) > 1 else ""))

    for name in BUILTIN_MODULES + ([DIAG_MODULE] if diag else []) + extra:
        _import(name)
    for name in _modules_without_tasks(registry, extra):
        # A package whose __init__ imports none of its modules, say: TASK_MODULES=mytasks for mytasks/greeting.py.
        if hasattr(sys.modules.get(name), "__path__"):
            message = (
                f"task module '{name}' registered no task: name the module that holds the @task functions "
                f"(e.g. {name}.greeting for {name.replace('.', '/')}/greeting.py), or import them in its __init__"
            )
        else:  # a plain module: its functions lack the decorator, or it is not the module meant
            message = (
                f"task module '{name}' registered no task: it has no function decorated with @task "
                "(from pyfleet import task); check the decorator, or that TASK_MODULES names the module meant"
            )
        if strict:  # --check: a pipeline is where this mistake should stop
            # Said as such: "did not start" alone read as a broken worker, and the server then
            # started from the same settings, with a warning.
            fail(EXIT_IMPORT_FAILED, message + " (--check fails on this; a server would start, and warn of it)")
        logging.getLogger("pyfleet").warning("%s", message)


def _import(name: str) -> None:
    """Imports the task module ``name``, or ends the worker with one fatal line that names it,
    says what went wrong and, where it can, what to do."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # The module itself or a package above it is missing: where it is looked for is
        # wrong. Something it imports is missing: that has to be installed.
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            # Where it was looked for, in full: a relative entry is read from the workers' directory (pyfleet's), not the shell's.
            hint = f"check TASK_MODULES and PYTHONPATH, which is {os.environ.get('PYTHONPATH', '')!r}; relative PYTHONPATH entries are resolved from the pyfleet directory, {os.getcwd()}"
            if name.endswith(".py"):  # a file named where a module is meant (a valid module name: package greeting, module py)
                hint = f"TASK_MODULES takes module names, not files: write {name[:-3]}; {hint}"
            hint = _hidden_package_hint(name) or hint
            fail(EXIT_IMPORT_FAILED, f"task module '{name}' could not be imported: {exc} ({hint})")
        # Imported by the task's code: the traceback and the line say where from.
        fail_import(name, f"task module '{name}' could not be imported: {exc}", exc, _missing_module_hint(exc.name))
    except SystemExit as exc:  # not a clean exit: the worker has not said ready, and must say which module stopped it
        fail_import(name, f"task module '{name}' called sys.exit({as_text(exc.code)}) on import", exc)
    except BaseException as exc:  # KeyboardInterrupt too
        from .import_failure import exception_text

        detail = exception_text(exc)
        # `from . import x` in a module served on its own: Python's words say nothing of what to do.
        relative = isinstance(exc, ImportError) and "no known parent package" in str(exc)
        hint = (f"a relative import needs the module's package: put the directory above the package on PYTHONPATH "
                f"and name the module with it (TASK_MODULES=yourpackage.{name})") if relative else ""
        fail_import(name, f"task module '{name}' raised {type(exc).__name__} on import" + (f": {detail}" if detail else ""), exc, hint)


def _modules_without_tasks(registry: "Any", names: list) -> list:  # noqa: F821 (no typing import at start-up)
    """The TASK_MODULES entries that bring no task, once all are imported: no registered task is
    defined in one or below it, none is among its names (re-exported from elsewhere), and it
    is not the package of another entry (TASK_MODULES=mytasks,mytasks.greeting)."""
    tasks = registry.all_tasks()
    functions = {id(t.fn) for t in tasks}
    homes = {str(getattr(t.fn, "__module__", "")) for t in tasks}
    without = []
    for name in dict.fromkeys(names):
        if any(home == name or home.startswith(name + ".") for home in homes):
            continue
        if any(other.startswith(name + ".") for other in names):
            continue
        module = sys.modules.get(name)
        if module is not None and any(id(value) in functions for value in list(vars(module).values())):
            continue
        without.append(name)
    return without


def _missing_module_hint(missing: "str | None") -> str:
    """What to do about a module a task module imports that is not there. When its package
    was found, the package is most likely another one of the same name earlier on the path."""
    if missing is None:  # raised by hand (`raise ModuleNotFoundError("the optional backend is missing")`): its words say it
        return ""
    parent, _, _ = missing.rpartition(".")
    package = sys.modules.get(parent) if parent else None
    if package is not None:
        where = getattr(package, "__file__", None) or ", ".join(getattr(package, "__path__", []) or []) or "a built-in"
        return f"the package '{parent}' was found at {where} and has no module '{missing}': is another '{parent}' earlier on the path, or is it missing from yours?"
    return f"install the package that provides '{missing}'"


def _hidden_package_hint(name: str) -> "str | None":
    """Why TASK_MODULES' ``name`` is not found when a package above it was: a directory of that
    name without __init__.py in a PYTHONPATH entry holds the module, but a regular package of
    the same name elsewhere on the path (the standard library's ``test``) is what Python takes."""
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        package = sys.modules.get(".".join(parts[:depth]))
        if package is None:
            continue
        found = [os.path.realpath(p) for p in (getattr(package, "__path__", None) or [])]
        for entry in pythonpath():
            mine = os.path.join(os.path.abspath(entry or "."), *parts[:depth])
            # Only where the module is: with it nowhere, the name is more likely wrong (mypkg.taks).
            holds = os.path.isfile(os.path.join(mine, parts[depth] + ".py")) or os.path.isdir(os.path.join(mine, parts[depth]))
            if holds and os.path.realpath(mine) not in found:
                where = getattr(package, "__file__", None) or ", ".join(found)
                return (f"the package '{'.'.join(parts[:depth])}' is found at {where}, not in {mine}: a directory without "
                        "__init__.py is a package only where no regular package of its name is found anywhere on the path; "
                        "rename yours")
        return None
    return None
