"""Why a reply's value (a result, or a TaskError's details) cannot be sent, and where in it the
problem is: what the packer refused (why_unsendable), and what the server could not decode
(undecodable: a TaskError's details, and call_task's results). Converting values is conversion.py's.
"""

from __future__ import annotations

import msgpack

from .conversion import NO_TOLIST, is_pandas, to_msgpack, tolist_of
from .js_values import js_number_text
from .protocol import encode

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional


# How deep a reply's value or details may nest (lists and dicts within each other): past it
# the packer says "recursion limit exceeded" (or, pure-Python msgpack 1.2's, Python's own
# RecursionError). It depends on msgpack's version and build (511 levels on Debian 12's
# msgpack 1.0, 1,024 on PyPI's 1.2), so it is found by trying, once, the first time a reply
# is refused for it: never on the path of a call that succeeds.
_value_depth_limit: Optional[int] = None


def value_depth_limit() -> int:
    global _value_depth_limit
    if _value_depth_limit is None:
        def fits(depth: int) -> bool:
            value: List[Any] = []
            for _ in range(depth - 1):
                value = [value]
            try:
                encode({"t": "result", "id": 0, "value": value})
            except (ValueError, RecursionError):
                return False
            return True

        low, high = 1, 2  # fits(low), and high is the next depth to try
        while high <= 1 << 14 and fits(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        _value_depth_limit = low
    return _value_depth_limit


def undecodable(value: Any, what: str) -> Optional[str]:
    """What in ``value`` (as msgpack decoded it) the server cannot turn into a JavaScript value, if anything.

    Dict keys other than str, int, float, bool or None (bytes, a tuple that came
    back as a list) and msgpack.ExtType: msgpackr refuses them.
    """
    # Paths written as _find writes them (["a"][2]), built only for containers: this walks every value.
    stack = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, msgpack.ExtType):
            return f"{what} holds a msgpack.ExtType{_at(path)}, which the server refuses"
        if isinstance(item, dict):
            for key, child in item.items():
                if not _is_key_the_server_decodes(key):
                    kind = "tuple" if isinstance(key, (tuple, list)) else type(key).__name__
                    shown = f" {_key_text(key)}" if kind == "tuple" else ""
                    return f"{what} has a {kind} dict key{shown}{_at(path)}; use str keys"
                if isinstance(child, (dict, list, tuple, msgpack.ExtType)):
                    stack.append((child, f"{path}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            for index, child in enumerate(item):
                if isinstance(child, (dict, list, tuple, msgpack.ExtType)):
                    stack.append((child, f"{path}[{index}]"))
    return None


def _is_key_the_server_decodes(key: Any) -> bool:
    """Whether a dict key, as the packer sends it, is one msgpackr takes: a str, a number, a bool
    or None, also once the packer's default has made one of it (a date's ISO text, a Decimal's
    number, a numpy scalar's value), as it does for a result's keys."""
    if isinstance(key, (str, int, float, bool)) or key is None:
        return True
    if isinstance(key, (bytes, bytearray, memoryview, tuple, list, dict, msgpack.ExtType)):
        return False  # packed as they are (bin, array, map, ext): no conversion makes them a scalar
    try:
        converted = to_msgpack(key)
    except Exception:  # a key the packer could not carry either: not this check's to explain
        return False
    return isinstance(converted, (str, int, float, bool)) or converted is None


_KEY_TEXT_MAX = 100


def _key_text(key: Any) -> str:
    """A tuple dict key as the server's message shows one (src/pool/protocol.ts, keyText): which
    values made it (the columns of a pandas groupby over several) says where it came from. JSON-like,
    bytes as ``<N bytes>``, at most 100 characters, and no more built than that (a key may hold
    megabytes of bytes). Other types than the server sees (str, numbers, bool, None, bytes, tuples)
    show as ``{...}``."""
    import json

    parts: List[str] = []
    length = 0

    def emit(text: str) -> None:
        nonlocal length
        parts.append(text)
        length += len(text)

    def add(value: Any) -> bool:
        if isinstance(value, (tuple, list)):
            emit("[")
            for index, item in enumerate(value):
                if index:
                    emit(",")
                if not add(item):
                    return False
            emit("]")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            emit(f"<{len(value)} bytes>")
        elif isinstance(value, str):
            emit(json.dumps(value[: _KEY_TEXT_MAX + 1], ensure_ascii=False))
        elif isinstance(value, bool) or value is None:
            emit("true" if value is True else "false" if value is False else "null")
        elif isinstance(value, int):
            emit(str(value))
        elif isinstance(value, float):
            emit(js_number_text(value))
        else:
            emit("{...}")
        return length <= _KEY_TEXT_MAX

    add(key)
    text = "".join(parts)
    return text if len(text) <= _KEY_TEXT_MAX else text[: _KEY_TEXT_MAX - 3] + "..."


def _at(path: str) -> str:
    return f" at {path}" if path else ""


def why_unsendable(value: Any, exc: Exception) -> str:
    """What a reply's value (or details) holds that the packer refused with ``exc``, said for the
    log ("" when the exception says it already)."""
    if isinstance(exc, RecursionError) or (isinstance(exc, ValueError) and "recursion limit" in str(exc)):
        return f"it is nested more than {value_depth_limit()} levels deep (msgpack {'.'.join(map(str, msgpack.version))}'s limit), or contains itself; "
    if isinstance(exc, UnicodeEncodeError):
        where = _find(value, _is_unencodable_str, "a str")
        return f"{where} holds a lone surrogate, which UTF-8 cannot carry (bytes decoded with errors='surrogateescape'? send bytes, or decode with errors='replace'): "
    if isinstance(exc, (TypeError, OverflowError)):
        # Said only where it is: the exception says what it is and what to do.
        where = _find(value, _is_unsendable, "")
        return f"at {where[len('the value at '):]}, " if where.startswith("the value at ") else ""
    return ""


def _is_unencodable_str(item: Any) -> Optional[str]:
    if not isinstance(item, str):
        return None
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        return "the str"
    return None


def _is_unsendable(item: Any) -> Optional[str]:
    """A value neither msgpack nor conversion.to_msgpack can carry (what to_msgpack raises for)."""
    if item is None or isinstance(item, (str, bytes, bytearray, memoryview, bool, float, dict, list, tuple, set, frozenset)) or is_pandas(item, "NAType"):
        return None
    if isinstance(item, int):
        return "the value" if not -(2**63) <= item < 2**64 else None
    if callable(getattr(type(item), "tolist", None)):
        return None  # _find looks at what tolist() makes of it
    import datetime
    import decimal
    import uuid

    return None if isinstance(item, (datetime.datetime, datetime.date, datetime.time, decimal.Decimal, uuid.UUID)) else "the value"


def _find(value: Any, problem: Any, otherwise: str) -> str:
    """Where, in ``value``, the first item ``problem`` names is: ``the str at ["a"][2]``; keys are
    looked at for unencodable text only. ``otherwise`` when nothing is found."""
    stack = [(value, "")]
    seen = set()
    while stack:
        item, path = stack.pop()
        found = problem(item)
        if found is not None:
            return f"{found} at {path}" if path else found
        if problem is _is_unsendable and not isinstance(item, (dict, list, tuple, set, frozenset)):
            try:
                converted = tolist_of(item)
            except TypeError:  # the packer met it too: its exception says what went wrong
                return f"the value at {path}" if path else "the value"
            if converted is not NO_TOLIST:
                stack.append((converted, path))  # an array: where in it the problem is
                continue
        if isinstance(item, (dict, list, tuple, set, frozenset)) and id(item) not in seen:
            seen.add(id(item))
            # A set's members in the order they are sent (sorted, where they compare): the index said is the one the client sees.
            children = item.items() if isinstance(item, dict) else enumerate(_as_sent(item) if isinstance(item, (set, frozenset)) else item)
            for key, child in reversed(list(children)):
                if problem is _is_unencodable_str and isinstance(key, str) and not key.isascii() and _is_unencodable_str(key) is not None:
                    return f"a key of {path}" if path else "a key"
                stack.append((child, f"{path}[{repr(key)}]"))
    return otherwise


def _as_sent(members: Any) -> List[Any]:
    """A set's members in the packer's order (conversion.to_msgpack), or as they come where sorting raised."""
    try:
        return list(to_msgpack(members))
    except Exception:  # a member's own __lt__ may raise anything
        return list(members)
