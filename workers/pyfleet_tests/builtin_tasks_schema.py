"""Shared check for the built-in tasks' input schemas: what Ajv 8 in strict mode will accept.

Not a test module itself (no test_ prefix); the test_* files of the tasks call it.
"""

import json

# The draft-07 keywords the built-in schemas use, plus pyfleet's own "bytes".
ALLOWED_KEYWORDS = frozenset(
    (
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "uniqueItems", "minimum", "maximum", "minLength", "maxLength", "pattern", "enum", "anyOf",
        "description", "default", "bytes",
    )
)
# Ajv's strictTypes wants these next to a "type" they apply to.
_NEEDS_TYPE = {
    "minLength": "string", "maxLength": "string", "pattern": "string",
    "minimum": "integer number", "maximum": "integer number",
    "items": "array", "minItems": "array", "maxItems": "array", "uniqueItems": "array",
    "properties": "object", "required": "object", "additionalProperties": "object",
}


def assert_strict_schema(test, schema, path="schema"):
    """Fail ``test`` unless ``schema`` uses known keywords, typed as Ajv strict mode wants, and closes objects."""
    json.dumps(schema, allow_nan=False)
    test.assertIsInstance(schema, dict, path)
    unknown = set(schema) - ALLOWED_KEYWORDS
    test.assertFalse(unknown, f"{path} has keywords Ajv strict mode rejects: {sorted(unknown)}")
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
