"""The values a task returns that msgpack cannot carry (sets, dates, numpy's and pandas' values,
...), turned into ones it can, as a JSON client would expect them: the packer's ``default``.

The packer is protocol.py's; why a value cannot be sent at all is unsendable.py's to say.
"""

from __future__ import annotations

import enum
import os

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


_PACKED_AS_THEY_ARE = (dict, list, tuple, str, int, float, type(None), bytes)
NO_TOLIST = object()


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def tolist_of(value: Any) -> Any:
    """What the ``tolist()`` of ``value``'s type makes of it, or NO_TOLIST when it has none.
    It is task code, run after the call: what it raises is a TypeError, the result's failure."""
    tolist = getattr(type(value), "tolist", None)
    if not callable(tolist) or isinstance(value, memoryview):
        return NO_TOLIST
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


def to_msgpack(value: Any) -> Any:
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
    converted = tolist_of(value)
    if converted is not NO_TOLIST:
        # msgpack packs what this returns as it is: a datetime (np.datetime64's) is converted here.
        return converted if isinstance(converted, _PACKED_AS_THEY_ARE) else to_msgpack(converted)
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
        return None if is_pandas(value, "NaTType") else value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if is_pandas(value, "NAType"):
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
    elif callable(getattr(type(value), "__await__", None)):  # before __iter__: an asyncio Future has both
        hint = "; it is an awaitable (an asyncio Future or Task): make the task async def and return await value"
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


def is_pandas(value: Any, type_name: str) -> bool:
    """Whether ``value`` is of pandas' type ``type_name`` (NaTType, NAType), known by its name:
    pandas is not imported for it (nor a dependency)."""
    return _is_pandas_type(type(value), type_name)


def _is_pandas_type(kind: type, type_name: str) -> bool:
    return kind.__name__ == type_name and kind.__module__.startswith("pandas.")
