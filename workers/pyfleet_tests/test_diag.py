"""Tests of diag.work's return value: what it did, as its output schema describes it."""

import contextlib
import io
import os
import unittest

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet_tasks import diag


def work(spec):
    """diag.work's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        result = checked_output(diag.OUTPUT_SCHEMA, diag.work(spec))
    return result, printed.getvalue()


class ReportsWhatItDid(unittest.TestCase):
    def test_reports_only_its_pid_when_asked_for_nothing_or_zeros(self):
        for spec in ({}, {"sleep_ms": 0, "cpu_ms": 0, "alloc_mb": 0}):
            with self.subTest(spec=spec):
                self.assertEqual(work(spec), ({"pid": os.getpid()}, ""))

    def test_reports_each_step_that_returns(self):
        retained = len(diag._retained)
        try:
            result, printed = work({"sleep_ms": 1, "cpu_ms": 1, "alloc_mb": 1, "print": "héllo"})
        finally:
            del diag._retained[retained:]
        self.assertEqual(printed, "héllo\n")
        self.assertEqual(
            {key: value for key, value in result.items() if key not in ("spins", "retained_mb")},
            {"pid": os.getpid(), "slept_ms": 1, "cpu_ms": 1, "allocated_mb": 1, "printed": 5},
        )
        self.assertGreaterEqual(result["spins"], 0)
        self.assertGreaterEqual(result["retained_mb"], 1)
        self.assertEqual(work({"print": ""}), ({"pid": os.getpid(), "printed": 0}, "\n"))

    def test_describes_its_input_and_output_with_strict_schemas(self):
        assert_strict_schema(self, diag.SCHEMA)
        assert_strict_output_schema(self, diag.OUTPUT_SCHEMA)
        with self.assertRaisesRegex(AssertionError, "must not have"):
            checked_output(diag.OUTPUT_SCHEMA, {"pid": 1, "exit": 3})


if __name__ == "__main__":
    unittest.main()
