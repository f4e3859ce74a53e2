"""Tests of the hash.digest task: published test vectors, input forms, algorithm choice and bad base64."""

import base64
import hashlib
import re
import unittest

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet import TaskError
from pyfleet_tasks import hash_digest


def digest(input):
    """hash.digest's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(hash_digest.OUTPUT_SCHEMA, hash_digest.digest(input))


# Digests of b"abc" from FIPS 180-2 (sha1, sha256), RFC 1321 (md5), RFC 7693 (blake2b-512), FIPS 202 (sha3-256).
ABC = {
    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d",
    "md5": "900150983cd24fb0d6963f7d28e17f72",
    "blake2b": "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
    "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
    "sha3_256": "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
}


class Digests(unittest.TestCase):
    def test_matches_published_test_vectors_for_every_algorithm(self):
        result = digest({"data": b"abc", "algorithms": list(ABC)})
        self.assertEqual(result, {"size": 3, "digests": ABC})

    def test_uses_sha256_by_default(self):
        self.assertEqual(digest({"data": b"abc"}), {"size": 3, "digests": {"sha256": ABC["sha256"]}})
        empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        self.assertEqual(digest({"data": b""}), {"size": 0, "digests": {"sha256": empty}})

    def test_decodes_a_base64_string_to_the_same_bytes(self):
        self.assertEqual(digest({"data": "YWJj", "algorithms": ["md5"]}), {"size": 3, "digests": {"md5": ABC["md5"]}})
        self.assertEqual(digest({"data": ""})["size"], 0)

    def test_takes_a_comma_separated_string_keeping_order_and_dropping_repeats(self):
        result = digest({"data": b"abc", "algorithms": "md5,sha1,md5"})
        self.assertEqual(list(result["digests"].items()), [("md5", ABC["md5"]), ("sha1", ABC["sha1"])])

    def test_hashes_data_larger_than_one_chunk_like_hashlib_does(self):
        data = bytes(range(256)) * (3 * hash_digest.CHUNK_BYTES // 256 + 7)
        result = digest({"data": data, "algorithms": ["sha256", "blake2b"]})
        self.assertEqual(result["size"], len(data))
        self.assertEqual(result["digests"]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(result["digests"]["blake2b"], hashlib.blake2b(data).hexdigest())
        # base64 of the same data gives the same answer
        self.assertEqual(digest({"data": base64.b64encode(data).decode(), "algorithms": ["sha256", "blake2b"]}), result)


class RefusesBadInput(unittest.TestCase):
    def test_refuses_malformed_base64(self):
        cases = {
            "YWJ": "multiple of 4",
            "YWJj=": "multiple of 4",
            "YW Jj": "not valid base64",
            "YWJj\n": "not valid base64",
            "YW-_": "not valid base64",
            "YQ=a": "not valid base64",
            "====": "not valid base64",
            "Y===": "not valid base64",
            "YW==YWJj": "not valid base64",
            "\u00e9\u00e9==": "not valid base64",
        }
        for text, fragment in cases.items():
            with self.subTest(text=text):
                with self.assertRaisesRegex(TaskError, fragment):
                    digest({"data": text})

    def test_names_what_is_wrong_with_mime_or_unpadded_base64(self):
        # base64.encodebytes() breaks lines every 76 characters: the newline is named, not the length.
        mime = base64.encodebytes(bytes(range(256)) * 2).decode()
        with self.assertRaisesRegex(TaskError, r"the character '\\n'.*use base64\.b64encode\(\)"):
            digest({"data": mime})
        with self.assertRaisesRegex(TaskError, r"not a multiple of 4; if it is base64 without its padding, add ==$"):
            digest({"data": "YWJjZA"})
        self.assertEqual(digest({"data": "YWJjZA=="})["size"], 4)

    def test_refuses_unknown_algorithms_when_called_directly(self):
        with self.assertRaisesRegex(TaskError, "unknown hash algorithm 'crc32'"):
            digest({"data": b"", "algorithms": "sha1,crc32"})

    def test_describes_its_output_with_a_strict_schema_naming_each_digest_length(self):
        assert_strict_output_schema(self, hash_digest.OUTPUT_SCHEMA)
        digests = hash_digest.OUTPUT_SCHEMA["properties"]["digests"]["properties"]
        self.assertEqual(list(digests), list(hash_digest.ALGORITHMS))
        self.assertEqual(digest({"data": b"", "algorithms": list(hash_digest.ALGORITHMS)})["digests"].keys(), digests.keys())
        with self.assertRaisesRegex(AssertionError, "must match"):
            checked_output(hash_digest.OUTPUT_SCHEMA, {"size": 3, "digests": {"md5": ABC["sha1"]}})

    def test_schema_accepts_only_known_algorithm_names(self):
        assert_strict_schema(self, hash_digest.SCHEMA)
        string_form, array_form = hash_digest.SCHEMA["properties"]["algorithms"]["anyOf"]
        # Ajv compiles the pattern as a JavaScript RegExp, whose $ (unlike
        # Python's) never matches before a final newline.
        pattern = re.compile(string_form["pattern"].replace("$", r"\Z"))
        for good in ("sha1", "sha1,md5", "sha256,sha1,md5,blake2b,sha3_256", "md5,md5"):
            self.assertTrue(pattern.search(good), good)
        for bad in ("", "sha1,", ",sha1", "sha1, md5", "SHA1", "sha512", "sha1,md5x", "sha3-256", "md5\n"):
            self.assertFalse(pattern.search(bad), repr(bad))
        self.assertEqual(array_form["items"]["enum"], list(hash_digest.ALGORITHMS))


if __name__ == "__main__":
    unittest.main()
