"""Messages of the worker protocol (SPEC section 4) and their msgpack coding.

    worker -> server, once:  {t: "ready", v, pid, python, tasks: [...]}
    server -> worker:        {t: "call", id, task, input, requestId, timeoutMs}
    worker -> server:        {t: "result", id, value, rss?}
    worker -> server:        {t: "error", id, kind, type, message, details?, traceback?, rss?}
    (rss: the worker's RSS in bytes, only when past --max-rss-bytes: resident.py)

An error reply has a traceback when a task's code raised; the runtime's own replies have
none, and the server tells "this worker has no such task" (type UnknownTask, no traceback:
a reload removed it, a 404) from a task raising an exception of that name by it.
The names here are spelled as in src/pool/protocol.ts.
"""

from __future__ import annotations

import enum
import os
import sys

import msgpack


# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

PROTOCOL_VERSION = 1

MSG_READY = "ready"
MSG_CALL = "call"
MSG_RESULT = "result"
MSG_ERROR = "error"

KIND_REJECTED = "rejected"
KIND_FAILED = "failed"
KIND_TOO_LARGE = "too_large"

# The type of the runtime's reply to a call of a task this worker does not have.
UNKNOWN_TASK = "UnknownTask"


class ProtocolError(Exception):
    """A frame that decodes but is not a message we understand."""


_PACKED_AS_THEY_ARE = (dict, list, tuple, str, int, float, type(None), bytes)
_NO_TOLIST = object()


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _tolist(value: Any) -> Any:
    """What the ``tolist()`` of ``value``'s type makes of it, or _NO_TOLIST when it has none.
    It is task code, run after the call: what it raises is a TypeError, the result's failure."""
    tolist = getattr(type(value), "tolist", None)
    if not callable(tolist) or isinstance(value, memoryview):
        return _NO_TOLIST
    try:
        converted = tolist(value)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: not a reason to lose the worker
        try:
            detail = str(exc) if isinstance(exc, Exception) else ""
        except Exception:  # a task's exception whose __str__ is broken
            detail = ""
        raise TypeError(f"{_type_name(value)}.tolist() raised {type(exc).__name__}" + (f": {detail}" if detail else "")) from exc
    if converted is value:
        raise TypeError(f"a value of type {_type_name(value)} cannot be sent: its tolist() returns itself")
    if type(converted) is type(value):
        # np.longdouble and np.clongdouble: no Python number holds them, so tolist() makes
        # another of the same; converted again and again, it was a RecursionError blamed on
        # nesting (or, looking for where it is, a loop that never ended: a review).
        raise TypeError(
            f"a value of type {_type_name(value)} cannot be sent: its tolist() makes another {_type_name(value)} "
            "(wider than a Python float or complex?); convert it yourself, e.g. float(value)"
        )
    return converted


def _to_msgpack(value: Any) -> Any:
    """Types msgpack can't carry, turned into what a JSON client would expect."""
    if isinstance(value, (set, frozenset)):
        # Sorted where its members compare: a set's own order of str members changes from one
        # process to the next (hash randomisation), so two workers, or two test runs, would
        # send the same set in different orders.
        try:
            return sorted(value)
        except TypeError:  # members that do not compare (mixed types, dicts' keys...): as they come
            return list(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):  # msgpack hands over the ints it cannot carry itself
        if value < 0:
            raise OverflowError("an integer below -2^63 does not fit msgpack's 64 bits; send it as a str")
        raise OverflowError(f"an integer of {value.bit_length()} bits does not fit msgpack's 64; send it as a str")
    # numpy's arrays and scalars (np.int64, np.bool_: np.float64 is a float already), pandas'
    # Series, array.array: what they are made of, as lists and Python numbers.
    converted = _tolist(value)
    if converted is not _NO_TOLIST:
        # msgpack packs what this returns as it is: a datetime (np.datetime64's) is converted here.
        return converted if isinstance(converted, _PACKED_AS_THEY_ARE) else _to_msgpack(converted)
    # Imported only when a result holds a type msgpack lacks: together they
    # would cost every worker ~3 ms and ~0.9 MB at start (uuid pulls in platform).
    import datetime
    import decimal
    import uuid

    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        # pandas' NaT, a missing date, is a datetime whose isoformat() is "NaT": null, as NaN is
        # for JSON clients, numpy's NaT is (its tolist() makes None) and pandas' own to_json()
        # writes it, not a string no date parser reads. Known by its type, not by comparing it
        # with itself, which a task's own date class may answer otherwise (or raise).
        return None if _is_pandas(value, "NaTType") else value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if _is_pandas(value, "NAType"):
        return None  # pandas' NA (nullable dtypes), missing as NaT is: null, as to_json() writes it
    # Record types a task may return as they are: name the call that makes a dict of one.
    if isinstance(value, datetime.timedelta):  # numpy's timedelta64 in seconds' units makes one too
        hint = "; it is a timedelta: return value.total_seconds()"
    elif any(_is_pandas_type(kind, "DataFrame") for kind in type(value).__mro__):  # geopandas' GeoDataFrame too
        hint = "; it is a pandas DataFrame: return value.to_dict(orient=\"records\") (a list of rows as dicts)"
    elif hasattr(type(value), "__dataclass_fields__"):
        hint = "; it is a dataclass: return dataclasses.asdict(value)"
    elif isinstance(value, enum.Enum):
        hint = "; it is an Enum: return its .value (an IntEnum or a str Enum is sent as its value)"
    elif isinstance(value, os.PathLike):
        hint = "; it is a path: return str(value)"
    elif not isinstance(value, type) and callable(getattr(type(value), "model_dump", None)):
        hint = "; return value.model_dump(mode=\"json\") (pydantic)"
    elif _is_mapping(value):  # list() of one would keep its keys only
        hint = "; it is a mapping, not a dict: return dict(value)"
    elif callable(getattr(type(value), "__iter__", None)):  # a generator, a range, map(), dict.keys()
        hint = "; it is an iterable, not a list: return list(value)"
    else:
        hint = ""
    raise TypeError(f"a value of type {_type_name(value)} cannot be sent; use dicts, lists, str, numbers, bool, None or bytes{hint}")


def _is_mapping(value: Any) -> bool:
    """A Mapping (MappingProxyType, ChainMap, a task's own), or a sqlite3.Row (keys() and
    indexing by name, but no Mapping): what dict(value) turns into what JSON clients expect."""
    import collections.abc

    kind = type(value)
    return isinstance(value, collections.abc.Mapping) or (kind.__name__ == "Row" and kind.__module__ == "sqlite3")


def _is_pandas(value: Any, type_name: str) -> bool:
    """Whether ``value`` is of pandas' type ``type_name`` (NaTType, NAType), known by its name:
    pandas is not imported for it (nor a dependency)."""
    return _is_pandas_type(type(value), type_name)


def _is_pandas_type(kind: type, type_name: str) -> bool:
    return kind.__name__ == type_name and kind.__module__.startswith("pandas.")


# One packer for the worker's life: building one per message costs more than the message.
_packer = msgpack.Packer(use_bin_type=True, default=_to_msgpack, autoreset=True)

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
                _packer.pack({"t": "result", "id": 0, "value": value})
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


_TWO_TO_53 = 2 ** 53


def as_the_server_sends(value: Any) -> Any:
    """``value`` (as msgpack decoded it) as the server sends it on: integral floats within ±2^53
    made ints, and each dict as a JavaScript object holds it (keys as strings, in its order).

    Node decodes JSON and msgpack numbers alike to JavaScript numbers, and packs an
    integral one as a msgpack integer (src/pool/protocol.ts, wide-integers.ts); NaN,
    ±Infinity, fractions and floats past ±2^53 stay floats. A JavaScript object's keys are
    strings (``1``, ``None``, ``True`` are ``"1"``, ``"null"``, ``"true"``; the last of two
    keys that read alike wins), and those that are array indices (``"2"``, ``"10"``) come
    first, in numeric order, then the others in the order they came.
    """
    if type(value) is float:
        return int(value) if value.is_integer() and -_TWO_TO_53 <= value <= _TWO_TO_53 else value
    if type(value) is list:
        return [as_the_server_sends(item) for item in value]
    if type(value) is dict:
        converted = {}
        for key, item in value.items():
            converted[_js_key(key)] = as_the_server_sends(item)
        return in_js_order(converted)
    return value


def in_js_order(value: Dict[str, Any]) -> Dict[str, Any]:
    """``value`` with its keys in a JavaScript object's order: array indices ("2", "10") first,
    in numeric order, then the others in the order they came. ``value`` itself when already so."""
    indices = sorted((key for key in value if _is_array_index(key)), key=int)
    if not indices:
        return value
    return {**{key: value[key] for key in indices}, **{key: item for key, item in value.items() if not _is_array_index(key)}}


def _js_key(key: Any) -> Any:
    """A dict key as a JavaScript object's property name: the text JavaScript gives the value."""
    if type(key) is str:
        return key
    if key is None or type(key) is bool:
        return "null" if key is None else "true" if key else "false"
    if type(key) is int:
        return str(key)
    if type(key) is float:
        return _js_number_text(key)
    return key  # bytes, a tuple: the server refuses such a key (testing.py says so first)


def _is_array_index(key: Any) -> bool:
    """A property name JavaScript orders first: the canonical text of an integer from 0 to 2^32 - 2."""
    return type(key) is str and key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def _js_number_text(number: float) -> str:
    """What JavaScript's String(number) gives (ECMAScript's Number::toString), from repr's shortest digits."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + (int(exponent) if exponent else 0) - (len(whole + fraction) - len(digits))  # value = 0.digits × 10^point
    digits = digits.rstrip("0")
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    rest = "." + digits[1:] if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{rest}e{'+' if point - 1 >= 0 else '-'}{abs(point - 1)}"


def encode(message: Dict[str, Any]) -> bytes:
    return _packer.pack(message)


def decode(body: bytes) -> Dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"frame is not valid msgpack: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("frame is not a message map with a 't' field")
    return message


def ready(tasks: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "t": MSG_READY,
        "v": PROTOCOL_VERSION,
        "pid": os.getpid(),
        # what platform.python_version() says ("3.11.2", "3.13.0rc1"), without importing platform
        "python": sys.version.split()[0],
        "tasks": tasks,
    }


def result(call_id: int, value: Any) -> Dict[str, Any]:
    # In this order, value last: the server sends a msgpack client the value's bytes as
    # written here, found after the first two keys (src/pool/protocol.ts, resultValueBytes).
    return {"t": MSG_RESULT, "id": call_id, "value": value}


def with_rss(reply: Dict[str, Any], rss: int) -> Dict[str, Any]:
    """``reply`` saying the worker's RSS (past MAX_WORKER_RSS_MB: resident.py), before a result's
    value, which stays last (see result())."""
    return {"t": reply["t"], "id": reply["id"], "rss": rss, **{key: item for key, item in reply.items() if key not in ("t", "id")}}


def error(call_id: int, kind: str, type_name: str, message: str, details: Optional[Any] = None) -> Dict[str, Any]:
    body = {"t": MSG_ERROR, "id": call_id, "kind": kind, "type": type_name, "message": message}
    if details is not None:
        body["details"] = details
    return body


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
                if not isinstance(key, (str, int, float, bool)) and key is not None:
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
            emit(_js_number_text(value))
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
    """A value neither msgpack nor _to_msgpack can carry (what _to_msgpack raises for)."""
    if item is None or isinstance(item, (str, bytes, bytearray, memoryview, bool, float, dict, list, tuple, set, frozenset)) or _is_pandas(item, "NAType"):
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
                converted = _tolist(item)
            except TypeError:  # the packer met it too: its exception says what went wrong
                return f"the value at {path}" if path else "the value"
            if converted is not _NO_TOLIST:
                stack.append((converted, path))  # an array: where in it the problem is
                continue
        if isinstance(item, (dict, list, tuple, set, frozenset)) and id(item) not in seen:
            seen.add(id(item))
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in reversed(list(children)):
                if problem is _is_unencodable_str and isinstance(key, str) and not key.isascii() and _is_unencodable_str(key) is not None:
                    return f"a key of {path}" if path else "a key"
                stack.append((child, f"{path}[{repr(key)}]"))
    return otherwise
