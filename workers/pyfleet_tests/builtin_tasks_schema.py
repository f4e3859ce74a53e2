"""Shared checks for the built-in tasks' schemas, input and output: what Ajv 8 in strict mode will
accept, and the project's own rules for them (a description on every property, objects closed,
keywords from a short list the tests and the OpenAPI document know).

Not a test module itself (no test_ prefix); the test_* files of the tasks call it.
"""

import json
import math
import re

# The draft-07 keywords the built-in schemas use, plus pyfleet's own "bytes": the project's
# list, not Ajv's (which accepts more, exclusiveMinimum and const among them). A built-in task
# that needs another keyword adds it here (or to OUTPUT_KEYWORDS), once the server's schema
# handling has been checked for it (src/schema-cost.ts prices keywords).
ALLOWED_KEYWORDS = frozenset(
    (
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "uniqueItems", "minimum", "maximum", "minLength", "maxLength", "pattern", "enum", "anyOf",
        "description", "default", "examples", "bytes",
    )
)
# Ajv's strictTypes wants these next to a "type" they apply to.
_NEEDS_TYPE = {
    "minLength": "string", "maxLength": "string", "pattern": "string",
    "minimum": "integer number", "maximum": "integer number",
    "items": "array", "minItems": "array", "maxItems": "array", "uniqueItems": "array",
    "properties": "object", "required": "object", "additionalProperties": "object",
}


def _assert_known_keywords(test, unknown, path):
    test.assertFalse(
        unknown,
        f"{path} has keywords the built-in tasks do not use yet: {sorted(unknown)} (Ajv may accept them; "
        "to use one, add it to ALLOWED_KEYWORDS or OUTPUT_KEYWORDS in workers/pyfleet_tests/builtin_tasks_schema.py)",
    )


def assert_strict_schema(test, schema, path="schema"):
    """Fail ``test`` unless ``schema`` uses known keywords, typed as Ajv strict mode wants, and closes objects."""
    json.dumps(schema, allow_nan=False)
    test.assertIsInstance(schema, dict, path)
    unknown = set(schema) - ALLOWED_KEYWORDS
    _assert_known_keywords(test, unknown, path)
    for keyword, types in _NEEDS_TYPE.items():
        if keyword in schema:
            test.assertIn(schema.get("type"), types.split(), f"{path}.{keyword} needs a matching type")
    if schema.get("type") == "object":
        test.assertIs(schema.get("additionalProperties"), False, f"{path} must refuse unknown properties")
        for name in schema.get("required", []):
            test.assertIn(name, schema["properties"], f"{path} requires an undeclared {name}")
        for name, sub in schema["properties"].items():
            test.assertTrue(sub.get("description"), f"{path}.properties.{name} needs a description")
            assert_strict_schema(test, sub, f"{path}.properties.{name}")
    if "items" in schema:
        assert_strict_schema(test, schema["items"], f"{path}.items")
    for i, sub in enumerate(schema.get("anyOf", [])):
        assert_strict_schema(test, sub, f"{path}.anyOf[{i}]")
    if "bytes" in schema:
        test.assertIs(schema["bytes"], True, f"{path}.bytes")


# Output schemas describe values the tasks make, whose shape is sometimes the data's: beside
# the input schemas' keywords they use patternProperties and minProperties (keys a pattern
# fixes), and definitions with $ref (xml.import's records nest as deep as their document).
OUTPUT_KEYWORDS = ALLOWED_KEYWORDS | {"patternProperties", "minProperties", "definitions", "$ref"}
_OUTPUT_NEEDS_TYPE = {**_NEEDS_TYPE, "patternProperties": "object", "minProperties": "object"}
JSON_TYPES = frozenset(("null", "boolean", "object", "array", "number", "integer", "string"))


def _types(schema):
    """The schema's "type" as a list ([] when it has none)."""
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def _allows(types, wanted):
    """Whether ``types`` take a value of type ``wanted``, as Ajv reckons it ("number" takes integers)."""
    return wanted in types or (wanted == "integer" and "number" in types)


def assert_strict_output_schema(test, schema, path="output_schema", root=None, context=()):
    """Fail ``test`` unless Ajv 8 in strict mode compiles ``schema`` as an output schema, each property described.

    Beside what assert_strict_schema wants, allowed here as outputs need them: a type list of
    one type and "null" (strictTypes refuses other unions: ["string", "number"] needs anyOf);
    an object open to keys the code does not fix, but only by saying so, additionalProperties
    being false or the schema of those keys' values; local references into "definitions".
    ``context`` holds the types of the schema an anyOf is in, which strictTypes wants each
    branch's type within.
    """
    if root is None:
        json.dumps(schema, allow_nan=False)
        if schema is True or set(schema) <= {"examples"}:
            return  # anything (echo)
        root = schema
    test.assertIsInstance(schema, dict, path)
    unknown = set(schema) - OUTPUT_KEYWORDS
    _assert_known_keywords(test, unknown, path)
    if "$ref" in schema:
        test.assertEqual(set(schema), {"$ref"}, f"{path}: draft-07 ignores the keywords beside $ref")
        prefix, _, name = schema["$ref"].rpartition("/")
        test.assertEqual(prefix, "#/definitions", f"{path}.$ref must point into the root's definitions")
        test.assertIn(name, root.get("definitions", {}), f"{path}.$ref points to an undefined {name}")
        return
    if "definitions" in schema:
        test.assertIs(schema, root, f"{path}: definitions only at the root")
        for name, sub in schema["definitions"].items():
            assert_strict_output_schema(test, sub, f"{path}.definitions.{name}", root)
    types = _types(schema)
    test.assertTrue(all(t in JSON_TYPES for t in types), f"{path}.type {schema.get('type')!r}")
    test.assertEqual(len(types), len(set(types)), f"{path}.type repeats a type")
    if len(types) > 1:
        test.assertTrue(len(types) == 2 and "null" in types, f"{path}.type: a union other than [type, \"null\"] needs anyOf")
    if context and types:
        for t in types:
            test.assertTrue(_allows(context, t), f"{path}: type {t} not allowed in an anyOf of a {context} schema")
    for keyword, needed in _OUTPUT_NEEDS_TYPE.items():
        if keyword in schema:
            test.assertTrue(any(_allows(types, t) for t in needed.split()), f"{path}.{keyword} needs a matching type")
    if "object" in types:
        test.assertIn("additionalProperties", schema, f"{path} must say whether it takes other properties")
        extra = schema["additionalProperties"]
        if extra is not False:
            assert_strict_output_schema(test, extra, f"{path}.additionalProperties", root)
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            test.assertIn(name, properties, f"{path} requires an undeclared {name}")
        for pattern, sub in schema.get("patternProperties", {}).items():
            for name in properties:
                test.assertIsNone(re.search(pattern, name), f"{path}: strict mode refuses {name} matching {pattern}")
            assert_strict_output_schema(test, sub, f"{path}.patternProperties.{pattern}", root)
        for name, sub in properties.items():
            test.assertTrue(sub.get("description"), f"{path}.properties.{name} needs a description")
            assert_strict_output_schema(test, sub, f"{path}.properties.{name}", root)
    if "items" in schema:
        assert_strict_output_schema(test, schema["items"], f"{path}.items", root)
    for i, sub in enumerate(schema.get("anyOf", [])):
        assert_strict_output_schema(test, sub, f"{path}.anyOf[{i}]", root, tuple(types or context))
    if "enum" in schema:
        test.assertTrue(schema["enum"], f"{path}.enum is empty")
    if "bytes" in schema:
        test.assertIs(schema["bytes"], True, f"{path}.bytes")


def _json_types(value):
    """The JSON types a Python value takes on its way to the server (bytes: none; 2.0 arrives as 2)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("boolean",)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return ("integer", "number")
    if isinstance(value, float):
        return ("number",)
    if isinstance(value, str):
        return ("string",)
    if isinstance(value, (list, tuple)):
        return ("array",)
    if isinstance(value, dict):
        return ("object",)
    return ()


def _brief(value):
    """A short description of a value for a message: no repr of a whole record or a 16 MB string."""
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, (dict, list, tuple, bytes, bytearray)):
        return f"a {type(value).__name__} of {len(value)}"
    return repr(value)


def output_problem(schema, value, root=None, path="result"):
    """Why ``value`` does not match ``schema`` (the keywords output schemas use), or None.

    A small stand-in for the server's Ajv (VALIDATE_RESULTS=1), so that the unit tests check
    their results too; the end-to-end tests check them with Ajv itself.
    """
    root = schema if root is None else root
    while isinstance(schema, dict) and "$ref" in schema:  # a loop, not a call: records nest 200 deep
        schema = root["definitions"][schema["$ref"].rpartition("/")[2]]
    if schema is True or schema == {}:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value}, which JSON cannot carry"
    types = _types(schema)
    if types and not set(types) & set(_json_types(value)):
        return f"{path} must be {' or '.join(types)}, not {_brief(value)}"
    if "bytes" in schema and isinstance(value, (bytes, bytearray)) != schema["bytes"]:
        return f"{path} must {'' if schema['bytes'] else 'not '}be bytes"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}, not {value!r}"
    if "anyOf" in schema:
        problems = []
        for sub in schema["anyOf"]:
            problem = output_problem(sub, value, root, path)
            if problem is None:
                break
            problems.append(problem)
        else:
            return f"{path} matches no branch of anyOf: {'; '.join(problems)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path} must be >= {schema['minimum']}, not {value}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path} must be <= {schema['maximum']}, not {value}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return f"{path} has {len(value)} characters, out of [{schema.get('minLength', 0)}, {schema.get('maxLength')}]"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{path} must match {schema['pattern']}, not {_brief(value)}"
    if isinstance(value, (list, tuple)):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{path} has {len(value)} items, out of [{schema.get('minItems', 0)}, {schema.get('maxItems')}]"
        for i, item in enumerate(value):
            problem = output_problem(schema.get("items", True), item, root, f"{path}/{i}")
            if problem:
                return problem
    if isinstance(value, dict):
        missing = [name for name in schema.get("required", []) if name not in value]
        if missing:
            return f"{path} must have {missing[0]}"
        if len(value) < schema.get("minProperties", 0):
            return f"{path} must have at least {schema['minProperties']} properties"
        for name, item in value.items():
            if not isinstance(name, str):
                return f"{path} has the key {name!r}, not a string"
            subs = [sub for pattern, sub in schema.get("patternProperties", {}).items() if re.search(pattern, name)]
            if name in schema.get("properties", {}):
                subs.append(schema["properties"][name])
            elif not subs:
                subs.append(schema.get("additionalProperties", True))
            for sub in subs:
                if sub is False:
                    return f"{path} must not have {name}"
                problem = output_problem(sub, item, root, f"{path}/{name}")
                if problem:
                    return problem
    return None


def checked_output(schema, value):
    """``value`` itself if it matches ``schema``; AssertionError otherwise. For the tests' run() helpers."""
    problem = output_problem(schema, value)
    if problem is not None:
        raise AssertionError(f"the result does not match the output schema: {problem}")
    return value


def assert_matches_output_schema(test, schema, value):
    """Fail ``test`` if ``value`` (a task's result) does not match its output schema ``schema``."""
    problem = output_problem(schema, value)
    if problem is not None:
        test.fail(f"the result does not match the output schema: {problem}")
