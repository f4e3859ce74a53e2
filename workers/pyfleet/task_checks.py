"""The checks ``@task`` makes on its options (schemas, limits, raw types, defaults);
callable_checks.py checks the function.

Each raises ValueError at import (TypeError for a wrong kind of value) with a
message that names the task and says what to fix, so that a mistake
stops the worker at start instead of failing every call, or making the server
refuse the worker's task list without saying which task is wrong.
"""

from __future__ import annotations

import math

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional, Tuple

# The largest integer a JSON client (and the server's msgpack decoder) reads exactly.
MAX_SAFE_INTEGER = 2**53 - 1

# What a Python type in a schema most likely meant.
_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def check_count(name: str, field: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SAFE_INTEGER):
        raise ValueError(f"task {name!r}: {field} must be a positive integer or None, not {value!r}")


def check_schema(name: str, schema: Any, field: str = "schema") -> Any:
    """The schema to declare: ``{}`` for None; a dict or a bool of JSON values otherwise.

    ``field`` is the decorator's argument it came from (``schema`` or ``output_schema``), for the messages.
    """
    if schema is None:
        return {}
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"task {name!r}: {field} must be a JSON schema, a dict (or a bool), not the {type(schema).__name__} {schema!r}")
    problem = json_problem(schema, field) or type_name_problem(schema, field) or keyword_problem(schema, field)
    if problem is not None:
        raise ValueError(f"task {name!r}: {problem}")
    return schema


# JSON Schema's type names, and the names a Python (or another language's) habit writes for them.
_SCHEMA_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_MEANT_TYPE = {"int": "integer", "long": "integer", "float": "number", "double": "number", "decimal": "number",
               "str": "string", "text": "string", "bool": "boolean", "dict": "object", "map": "object",
               "list": "array", "tuple": "array", "none": "null", "nonetype": "null", "nil": "null"}
# Keywords whose values are data, not schemas (a {"type": "circle"} there is a value). And
# `dependencies` when it is not a map (Ajv refuses that): as a map it is a name map below.
_VALUE_KEYWORDS = frozenset(("default", "const", "enum", "examples", "dependencies"))


# Keywords whose values map names to schemas: their keys are names (a property may be called "type").
_SCHEMA_MAPS = frozenset(("properties", "patternProperties", "definitions", "$defs", "dependencies"))


def subschemas(schema: Any, path: str, depth: int = 0) -> Iterator[Tuple[Dict[str, Any], str]]:
    """Every schema (a dict) in ``schema``, itself included, with its path, depth first: the
    values of keywords that hold data (``default``, ``enum``...) are not walked into, and the
    keys of name maps (``properties``...) are names, not keywords."""
    if depth >= 100:
        return
    if isinstance(schema, list):
        for index, child in enumerate(schema):
            yield from subschemas(child, f"{path}[{index}]", depth + 1)
        return
    if not isinstance(schema, dict):
        return
    yield schema, path
    for key, child in schema.items():
        if key in _SCHEMA_MAPS and isinstance(child, dict):
            for name, sub in child.items():
                if not isinstance(sub, list):  # draft-07's dependencies may list property names
                    yield from subschemas(sub, f"{path}[{key!r}][{name!r}]", depth + 1)
        elif key not in _VALUE_KEYWORDS:
            yield from subschemas(child, f"{path}[{key!r}]", depth + 1)


def type_name_problem(schema: Any, path: str) -> Optional[str]:
    """A `type` that names no JSON Schema type ("int", "str"), said with the one meant; or None.

    Ajv would refuse it too, at the server's start, with errors about its meta-schema only.
    """
    for node, where in subschemas(schema, path):
        types = node.get("type")
        for given in types if isinstance(types, list) else [types]:
            if isinstance(given, str) and given not in _SCHEMA_TYPES:
                meant = _MEANT_TYPE.get(given.lower(), given.lower() if given.lower() in _SCHEMA_TYPES else None)
                hint = f": write {meant!r}" if meant is not None else ""
                return f"{where}['type'] is {given!r}, which is no JSON Schema type (one of {', '.join(_SCHEMA_TYPES)}){hint}"
    return None


def keyword_problem(schema: Any, path: str) -> Optional[str]:
    """A keyword Ajv takes but that does not mean what it was written for; or None.

    - ``nullable`` is OpenAPI 3.0's, not JSON Schema's: Ajv reads it, but the OpenAPI 3.1
      document (JSON Schema 2020-12) does not, so generated clients would not allow the null.
    - ``"bytes": True`` beside a ``type``: a binary value is none of JSON's types.
    """
    for node, where in subschemas(schema, path):
        if node.get("nullable") is True:  # false says what JSON Schema says anyway
            types = node.get("type")
            listed = types if isinstance(types, list) else [types] if isinstance(types, str) else []
            if "null" in listed:
                advice = "drop it: \"type\" allows null already"
            elif listed:
                advice = f"write \"type\": {json_list([*listed, 'null'])} instead"
            else:
                advice = "add \"null\" to the value's \"type\" list instead (\"type\": [\"string\", \"null\"])"
            return f"{where} has 'nullable', which is OpenAPI 3.0's and not JSON Schema's (the OpenAPI 3.1 document would not allow the null): {advice}"
        for keyword in ("const", "enum"):
            wide = _wide_integer(node.get(keyword)) if keyword in node else None
            if wide is not None:
                return (
                    f"{where}[{keyword!r}] holds {wide}, an integer past 2**53: the server reads schemas as JavaScript numbers, "
                    f"which round it to {float(wide):.0f}, and would take that value for it; write such ids as strings (\"type\": \"string\")"
                )
        if node.get("bytes") is True and "type" in node:
            return (
                f"{where} has both \"bytes\": true and \"type\": {node['type']!r}; a binary value is none of JSON's types: "
                f"drop \"type\" (for bytes or a string, write \"anyOf\": [{{\"bytes\": true}}, {{\"type\": \"string\"}}])"
            )
    return None


def _wide_integer(value: Any, depth: int = 0) -> Optional[int]:
    """The first integer past ±2**53 in ``value`` (a const or enum, JSON already), or None."""
    if type(value) is int:
        return value if abs(value) > 2**53 else None
    if depth < 100 and isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            wide = _wide_integer(item, depth + 1)
            if wide is not None:
                return wide
    return None


def json_list(values: List[Any]) -> str:
    """A list of type names as JSON writes it: ["number", "null"]."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def json_problem(value: Any, path: str, depth: int = 0) -> Optional[str]:
    """What in ``value`` cannot travel as JSON (through msgpack) to the server, or None."""
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, float):
        # msgpack carries them, but the document is JSON: GET /api/tasks would publish null, while
        # the server validates (and fills defaults) with the NaN itself.
        return None if math.isfinite(value) else f"{path} is {value!r}; JSON has no NaN or infinity: use a finite number, or leave the keyword out"
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**64 else f"{path} is an integer beyond 64 bits"
    if depth >= 100:
        return f"{path} is nested 100 deep (does the schema contain itself?)"
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}; JSON keys are str"
            problem = json_problem(child, f"{path}[{key!r}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            problem = json_problem(child, f"{path}[{index}]", depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, type) and value in _JSON_TYPE_NAMES:
        return f"{path} is the Python type {value.__name__}; a schema is JSON: write {_JSON_TYPE_NAMES[value]!r}"
    return f"{path} is a {type(value).__name__}; a schema holds only dicts, lists, str, numbers, bool and None"


def content_types(name: str, raw: Any) -> tuple:
    if isinstance(raw, str):
        raw = (raw,)
    try:
        raw = tuple(raw)
    except TypeError:
        raise ValueError(f"task {name!r}: raw must be a content type or a list of them, not {raw!r}") from None
    for content_type in raw:
        if not isinstance(content_type, str) or not _is_media_type(content_type):
            # The server compares a request's type, its parameters left aside, with it exactly: "text/plain;
            # charset=utf-8" or "text/*" were accepted here and then matched no request (each a 415).
            raise ValueError(
                f"task {name!r}: raw content type {content_type!r} must look like 'type/subtype' in lower case, "
                "without parameters or wildcards (a request's charset is read from its own content-type)"
            )
        if content_type in _STRUCTURED_TYPES:
            raise ValueError(
                f"task {name!r}: raw content type {content_type!r} is always parsed into the input itself, never passed raw; "
                "leave it out (every task takes JSON and msgpack bodies)"
            )
    return raw


# RFC 9110's token characters in lower case, without "*": a type or subtype of a media type to match exactly.
_MEDIA_TYPE_CHARS = frozenset("!#$%&'+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def _is_media_type(content_type: str) -> bool:
    kind, slash, subtype = content_type.partition("/")
    return bool(slash and kind and subtype) and _MEDIA_TYPE_CHARS.issuperset(kind) and _MEDIA_TYPE_CHARS.issuperset(subtype)


# Bodies the server parses whatever a task declares (src/routes/body.ts), and the one raw type
# that arrives as bytes rather than text.
_STRUCTURED_TYPES = ("application/json", "application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
_BYTES_TYPE = "application/octet-stream"


def defaults_to_fill(name: str, fill_defaults: Any, schema: Any) -> tuple:
    """For ``fill_defaults=True``: the (field, default) pairs of the schema's top-level
    ``properties``, which the runtime puts into an input that lacks them. Empty otherwise."""
    if not isinstance(fill_defaults, bool):
        raise TypeError(f"task {name!r}: fill_defaults must be True or False, not {fill_defaults!r}")
    if not fill_defaults:
        return ()
    properties = schema.get("properties") if isinstance(schema, dict) else None
    # As a client's value would arrive: through msgpack (tuples become lists) and with integral
    # floats as ints (the server sends them so), so that a task cannot tell who supplied it.
    import msgpack

    from .js_values import as_the_server_sends

    def as_sent(value: Any) -> Any:
        return as_the_server_sends(msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False, strict_map_key=False))

    pairs = tuple(
        (field, as_sent(sub["default"]))
        for field, sub in (properties or {}).items()
        if isinstance(sub, dict) and "default" in sub
    )
    if not pairs:
        raise ValueError(
            f"task {name!r}: fill_defaults=True, but no property in the schema's top-level \"properties\" has a "
            "\"default\" to fill (nested objects' defaults are not filled)"
        )
    return pairs


def check_raw_field(name: str, raw: tuple, raw_field: Any, schema: Any) -> None:
    """raw and raw_field come together, and the schema lets a raw call through: {raw_field: body, ...query}."""
    if raw_field is not None and (not isinstance(raw_field, str) or not raw_field):
        raise ValueError(f"task {name!r}: raw_field must be the name of an input field, not {raw_field!r}")
    if not raw:
        if raw_field is not None:
            raise ValueError(f"task {name!r}: raw_field {raw_field!r} needs raw, the content types whose body goes there")
        return
    if raw_field is None:
        raise ValueError(f"task {name!r}: raw content types need raw_field, the input field the body goes to")
    if schema is False:
        raise ValueError(f"task {name!r}: schema false refuses every input, so no raw body could get through")
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind is not None and kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise ValueError(
            f"task {name!r}: a raw body arrives as the object {{{raw_field!r}: body}}, which the schema's type {kind!r} refuses"
        )
    properties = schema.get("properties")
    field = properties.get(raw_field) if isinstance(properties, dict) else None
    if isinstance(field, dict):
        _check_raw_field_type(name, raw, raw_field, field)
    if (
        schema.get("additionalProperties") is False
        and "patternProperties" not in schema
        and not (isinstance(properties, dict) and raw_field in properties)
    ):
        raise ValueError(
            f"task {name!r}: raw_field {raw_field!r} is not among the schema's properties and additionalProperties is false, "
            "so every raw call would be refused; add it to properties"
        )


def _check_raw_field_type(name: str, raw: tuple, raw_field: str, field: dict) -> None:
    """An application/octet-stream body arrives as bytes, any other raw body as str: a field
    schema that refuses one of them would refuse every such call."""
    kind = field.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else None
    if _BYTES_TYPE in raw and (kinds is not None or field.get("bytes") is False):
        raise ValueError(
            f"task {name!r}: an {_BYTES_TYPE} body arrives in {raw_field!r} as bytes, which the field's "
            + (f"type {kind!r}" if kinds is not None else "bytes: False") + " refuses; declare it {'bytes': True}"
        )
    texts = [t for t in raw if t != _BYTES_TYPE]
    if texts and ((kinds is not None and "string" not in kinds) or field.get("bytes") is True):
        raise ValueError(
            f"task {name!r}: a {texts[0]} body arrives in {raw_field!r} as a str, which the field's "
            + (f"type {kind!r}" if kinds is not None and "string" not in kinds else "bytes: True") + " refuses"
        )
