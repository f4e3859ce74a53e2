"""``hash.digest``: hex digests of binary data with the chosen hash algorithms.

Hashing is hashlib's; this module decodes the input and picks the algorithms.
"""

import binascii
import hashlib
import re

from pyfleet import TaskError, task

ALGORITHMS = ("sha256", "sha1", "md5", "blake2b", "sha3_256")
DEFAULT_ALGORITHM = "sha256"
# hashlib releases the GIL for each update over 2 KiB; 1 MiB slices of a
# memoryview copy nothing and keep each update short.
CHUNK_BYTES = 1 << 20

_NAME = "(?:" + "|".join(ALGORITHMS) + ")"

SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    "examples": [{"data": "aGVsbG8=", "algorithms": ["sha256", "md5"]}],
    "additionalProperties": False,
    "required": ["data"],
    "properties": {
        "data": {
            "description": "the data: bytes (msgpack bin, or the raw application/octet-stream body) or a base64 string",
            # string first: a base64 string must not be taken for anything else
            "anyOf": [{"type": "string"}, {"bytes": True}],
        },
        "algorithms": {
            "description": f"hash algorithms, as a list or comma-separated (sha1,md5); any of {', '.join(ALGORITHMS)}",
            "default": [DEFAULT_ALGORITHM],
            # The string form comes first so that a query string's "sha1,md5"
            # is never coerced into a one-element array and then refused.
            "anyOf": [
                {"type": "string", "pattern": f"^{_NAME}(?:,{_NAME})*$"},
                {
                    "type": "array",
                    "items": {"type": "string", "enum": list(ALGORITHMS)},
                    "minItems": 1,
                    "maxItems": len(ALGORITHMS),
                    "uniqueItems": True,
                },
            ],
        },
    },
}

# Hex digits per digest: twice hashlib's digest_size (blake2b is its 64-byte variant, 128 digits).
HEX_LENGTHS = {name: 2 * hashlib.new(name, usedforsecurity=False).digest_size for name in ALGORITHMS}

OUTPUT_SCHEMA = {
    "type": "object",
    # What the input example above returns (a test calls each example and compares).
    "examples": [
        {
            "size": 5,
            "digests": {
                "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "md5": "5d41402abc4b2a76b9719d911017c592",
            },
        }
    ],
    "additionalProperties": False,
    "required": ["size", "digests"],
    "properties": {
        "size": {"type": "integer", "minimum": 0, "description": "bytes hashed (after base64 decoding)"},
        "digests": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "description": "lowercase hex digest per algorithm asked, in the order asked",
            "properties": {
                name: {
                    "type": "string",
                    "pattern": f"^[0-9a-f]{{{length}}}$",
                    "description": f"the {name} digest, {length} hex digits",
                }
                for name, length in HEX_LENGTHS.items()
            },
        },
    },
}


@task(
    "hash.digest",
    schema=SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    timeout_ms=10000,
    raw=("application/octet-stream",),
    raw_field="data",
)
def digest(input):
    """Hash data with sha256 (default), sha1, md5, blake2b or sha3_256: {size, digests: {algorithm: hex}}.

    ``data`` is bytes or a base64 string (standard alphabet with padding,
    no whitespace). ``algorithms`` is a list or a comma-separated string;
    digests come back in the order asked, repeated names once. blake2b is
    the 64-byte variant.
    """
    data = _decode(input["data"])
    names = _algorithms(input.get("algorithms", [DEFAULT_ALGORITHM]))
    # usedforsecurity=False keeps md5 and sha1 available on FIPS-mode OpenSSL builds.
    hashers = {name: hashlib.new(name, usedforsecurity=False) for name in names}
    view = memoryview(data)
    for offset in range(0, len(view), CHUNK_BYTES):
        chunk = view[offset : offset + CHUNK_BYTES]
        for hasher in hashers.values():
            hasher.update(chunk)
    return {"size": len(data), "digests": {name: hasher.hexdigest() for name, hasher in hashers.items()}}


# Standard base64 as RFC 4648 writes it: the alphabet, then at most two "=" at the very
# end; with the length a multiple of 4, nothing else is valid. (binascii's strict_mode
# says the same, but only from Python 3.11, and lets a stray "=" after a whole group by.)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _decode(data):
    if isinstance(data, str):
        # The alphabet first: base64.encodebytes() (MIME) puts a newline every 76 characters,
        # and its length message named a symptom, not the newline.
        if not _BASE64.fullmatch(data):
            bad = next((c for c in data if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
            where = f"the character {bad!r}" if bad is not None else "an \"=\" before the end"
            hint = " (line breaks, as base64.encodebytes() and MIME write them, must be taken out: use base64.b64encode())" if bad in ("\n", "\r") else ""
            raise TaskError(f"data is not valid base64: {where} (A-Z, a-z, 0-9, + and /, then at most two = at the end){hint}")
        if len(data) % 4:
            missing = 4 - len(data) % 4
            padding = f"; if it is base64 without its padding, add {'=' * missing}" if missing < 3 else ""
            raise TaskError(f"data is not valid base64: its length ({len(data)}) is not a multiple of 4{padding}")
        return binascii.a2b_base64(data)
    return data


def _algorithms(requested):
    names = requested.split(",") if isinstance(requested, str) else requested
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown:  # the schema already refuses these; a direct caller gets the same answer
        raise TaskError(f"unknown hash algorithm {unknown[0]!r}; choose from {', '.join(ALGORITHMS)}")
    return list(dict.fromkeys(names))
