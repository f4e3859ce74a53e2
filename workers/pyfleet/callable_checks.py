"""The checks ``@task`` makes on the function it registers, without inspect (a worker
that imported inspect would pay for it at every start): that it takes one argument,
the input, and is no generator. Each raises TypeError at import with a message that
names the task and says what to fix.
"""

from __future__ import annotations

import sys
from types import CodeType, FunctionType, MethodType

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Code flags, as in inspect: *args, a generator, an async generator.
CO_VARARGS = 0x04
CO_GENERATOR = 0x20
CO_ASYNC_GENERATOR = 0x200


def check_callable(name: str, fn: Any) -> None:
    """Refuse what could never be called as ``fn(input)``.

    Without inspect (see the top of this module): the code object's argument
    counts, seen through bound methods, staticmethods and functools.partial. A
    callable without Python code (a builtin, a C type's method) is taken on trust.
    """
    if isinstance(fn, type):
        # Called as a constructor: its Python __init__ (or __new__) must take the input; a
        # builtin type (str, list, dict) is taken on trust like any callable without Python code.
        init, new = fn.__init__, fn.__new__
        if init is object.__init__ and new is object.__new__:
            raise TypeError(f"task {name!r}: {describe_callable(fn)} is a class whose constructor takes no argument; decorate a function that takes the input")
        constructor = init if isinstance(init, FunctionType) else new if isinstance(new, FunctionType) else None
        if constructor is None:
            return
        fn = MethodType(constructor, fn)  # self or cls is bound, as a call binds it
    if not callable(fn):
        raise TypeError(f"task {name!r}: {fn!r} is not callable; decorate a function that takes the input")
    partial = getattr(sys.modules.get("functools"), "partial", None)
    target, bound, keywords = fn, 0, set()
    while True:
        if isinstance(target, MethodType):
            target, bound = target.__func__, bound + 1
        elif isinstance(target, staticmethod):
            target = target.__func__
        elif partial is not None and isinstance(target, partial):
            target, bound, keywords = target.func, bound + len(target.args), keywords | set(target.keywords)
        elif not isinstance(target, FunctionType) and isinstance(getattr(type(target), "__call__", None), FunctionType):
            target, bound = type(target).__call__, bound + 1  # an instance of a class with a Python __call__
        else:
            break
    code = getattr(target, "__code__", None)
    if not isinstance(target, FunctionType) or not isinstance(code, CodeType):
        return
    where = describe_callable(target)
    if code.co_flags & (CO_GENERATOR | CO_ASYNC_GENERATOR):
        raise TypeError(f"task {name!r}: {where} is a generator (it yields), whose result cannot be sent; return a list instead")
    positional = code.co_varnames[: code.co_argcount]
    first_default = code.co_argcount - len(target.__defaults__ or ())
    free = range(bound, code.co_argcount)  # the parameters the call's one argument and the defaults must fill
    if not free and not code.co_flags & CO_VARARGS:
        given = f" besides the {bound} already bound" if bound else ""
        # def f(*, input): the input comes as the one positional argument, never by name.
        kind = "positional argument" if code.co_kwonlyargcount else "argument"
        hint = " (the input is passed by position: drop the *)" if code.co_kwonlyargcount else ""
        raise TypeError(f"task {name!r}: {where} takes no {kind}{given}; a task function takes one, the input{hint}")
    if free and positional[free[0]] in keywords:
        raise TypeError(f"task {name!r}: {where} would get its parameter {positional[free[0]]!r} from functools.partial and the input both")
    required = [positional[index] for index in free if index < first_default and positional[index] not in keywords]
    kwonly = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    required_kwonly = [arg for arg in kwonly if arg not in (target.__kwdefaults__ or {}) and arg not in keywords]
    if len(required) > 1 or required_kwonly:
        hint = " (a method? register a bound method, task(name)(obj.method), or a function)" if positional[:1] == ("self",) and not bound else ""
        raise TypeError(
            f"task {name!r}: {where} requires {', '.join(required + required_kwonly)}; "
            f"a task function is called with one argument, the input, so give the others defaults{hint}"
        )


def describe_callable(fn: Any) -> str:
    qualname = getattr(fn, "__qualname__", None)
    return f"{qualname}()" if isinstance(qualname, str) else repr(fn)
