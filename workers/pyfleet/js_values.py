"""Values as the server, in JavaScript, holds and sends them on: integral floats as ints, dict
keys as a JavaScript object's property names, in its order. For what must look as if the server
sent it: call_task's input and result (testing.py), the defaults filled into an input (runner.py).
"""

from __future__ import annotations

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict


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
        return js_number_text(key)
    return key  # bytes, a tuple: the server refuses such a key (testing.py says so first)


def _is_array_index(key: Any) -> bool:
    """A property name JavaScript orders first: the canonical text of an integer from 0 to 2^32 - 2."""
    return type(key) is str and key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def js_number_text(number: float) -> str:
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
