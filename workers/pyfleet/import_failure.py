"""Where in a task's code a task module's import failed, read from the exception's traceback.

task_modules.py and reporting.py report the failure (the traceback, then the fatal line) and
import this module only then, so a worker that starts pays nothing for it.
"""

from __future__ import annotations

import os

from .early_shadows import STDLIB_DIR
from .places import place

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Optional

_PYFLEET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
# The standard library's own directory (lib-dynload is under it); stdlib_shadows.py uses it too.


def is_machinery(path: str) -> bool:
    """Whether code at ``path`` is importlib's (frozen), the standard library's or this runtime's."""
    return path.startswith(("<", STDLIB_DIR, _PYFLEET_DIR))


def is_task_code(frame: FrameType, package: str) -> bool:
    """Whether ``frame`` runs the task author's code: the task module's own top-level package,
    or any file that is neither machinery nor an installed package."""
    module = frame.f_globals.get("__name__")
    if isinstance(module, str) and (module == package or module.startswith(package + ".")):
        return True
    path = frame.f_code.co_filename
    return not is_machinery(path) and not {"site-packages", "dist-packages"} & set(path.split(os.sep))


def traceback_to_log(exc: BaseException, module: str) -> Optional[TracebackType]:
    """The traceback without the frames of the runtime and importlib that lead to the task's code
    (None if nothing else is left, as for a SyntaxError in the module itself)."""
    package = module.partition(".")[0]
    tb = exc.__traceback__
    while tb is not None and is_machinery(tb.tb_frame.f_code.co_filename) and not is_task_code(tb.tb_frame, package):
        tb = tb.tb_next
    return tb


def compiled_file_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a SyntaxError (IndentationError...) from compiling a source file: its
    own str() then ends with the file's base name and line, ``(syn.py, line 3)``."""
    return isinstance(exc, SyntaxError) and isinstance(exc.filename, str) and not exc.filename.startswith("<") and isinstance(exc.msg, str)


def exception_text(exc: BaseException) -> str:
    """What ``exc`` says, for the fatal line: a SyntaxError from a file without its ``(syn.py,
    line 3)``, which where_raised gives with the file's path (``at mytasks/syn.py, line 3``)."""
    if compiled_file_error(exc):
        return exc.msg  # type: ignore[attr-defined]
    from .errors import as_text

    return as_text(exc)


def where_raised(exc: BaseException, module: str) -> str:
    """``at mytasks/helper.py, line 3``: the innermost line of task code ``exc`` went through, or
    for a SyntaxError from compiling a file, that file's line; the path relative to its sys.path
    entry. "" if it went through none."""
    if compiled_file_error(exc):
        return _at(exc.filename, exc.lineno)  # type: ignore[attr-defined]
    package = module.partition(".")[0]
    innermost = None
    tb = exc.__traceback__
    while tb is not None:
        if is_task_code(tb.tb_frame, package):
            innermost = tb
        tb = tb.tb_next
    if innermost is None:
        return ""
    return _at(innermost.tb_frame.f_code.co_filename, innermost.tb_lineno)


def _at(path: str, number: Optional[int]) -> str:
    """``at mytasks/helper.py, line 3``, the path relative to the sys.path entry it is under."""
    return f"at {place(path, number)}"
