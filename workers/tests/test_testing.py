"""pyfleet.testing: a task author's way to call a task as a worker would."""

import datetime
import textwrap
import unittest

import msgpack

from pyfleet import TaskError, task
from pyfleet.testing import TaskCallError, call_task
from tests.isolated_registry import IsolatedRegistryTest
from tests.worker_process import run_python


class BrokenStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


class RejectWithoutInit(TaskError):
    def __init__(self, field):
        self.field = field


class CallTaskTest(IsolatedRegistryTest):
    def setUp(self):
        super().setUp()

        @task("t.greet")
        def greet(input):
            if input["name"] == "nobody":
                raise TaskError("nobody cannot be greeted", {"field": "name"})
            return {"greeting": f"hello, {input['name']}", "on": datetime.date(2026, 11, 28), "tags": {"a"}}

        @task("t.boom")
        def boom(input):
            raise RuntimeError("kaput")

        @task("t.odd")
        def odd(input):
            return {"bytes_key": {b"k": 1}, "tuple_key": {(1, 2): 3}, "ext": msgpack.ExtType(5, b"x"), "object": object()}[input]

        @task("t.async")
        async def asynchronous(input):
            return input * 2

    def test_returns_the_value_after_the_msgpack_round_trip(self):
        # Dates become ISO strings and sets lists, as a client would see them.
        self.assertEqual(call_task("t.greet", {"name": "Ada"}), {"greeting": "hello, Ada", "on": "2026-11-28", "tags": ["a"]})
        self.assertEqual(call_task("t.async", 21), 42)

    def test_a_task_error_is_a_422_with_its_message_and_details(self):
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.greet", {"name": "nobody"})
        error = caught.exception
        self.assertEqual((error.status, error.code, error.type), (422, "TASK_REJECTED_INPUT", "TaskError"))
        self.assertEqual((error.message, error.details), ("nobody cannot be greeted", {"field": "name"}))

    def test_any_other_exception_is_a_500_with_the_traceback_the_server_would_log(self):
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.boom", None)
        self.assertEqual((caught.exception.status, caught.exception.code, caught.exception.type), (500, "TASK_FAILED", "RuntimeError"))
        self.assertIn("kaput", caught.exception.traceback)

    def test_results_the_server_could_not_send_fail_here_too(self):
        for kind in ("bytes_key", "tuple_key", "ext", "object"):
            with self.subTest(kind=kind), self.assertRaises(TaskCallError) as caught:
                call_task("t.odd", kind)
            self.assertEqual(caught.exception.code, "TASK_FAILED")

    def test_a_result_over_the_frame_limit_is_result_too_large(self):
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.async", "x" * 2000, max_frame_bytes=1000)
        self.assertEqual((caught.exception.status, caught.exception.code), (500, "RESULT_TOO_LARGE"))

    def test_what_would_break_the_protocol_gets_the_status_http_gives(self):
        """Over HTTP these are answered as below, and the worker stays; here too, never a raw exception."""
        cases = {
            "broken str": (BrokenStr(), (500, "TASK_FAILED", "BrokenStr", "BrokenStr()")),
            "no super init": (RejectWithoutInit("email"), (422, "TASK_REJECTED_INPUT", "RejectWithoutInit", "email")),
            "int message": (TaskError(42), (422, "TASK_REJECTED_INPUT", "TaskError", "42")),
            "bytes message": (TaskError(b"bad"), (422, "TASK_REJECTED_INPUT", "TaskError", "bad")),
        }
        for index, (case, (exc, expected)) in enumerate(cases.items()):
            with self.subTest(case=case):
                task(f"t.raise{index}")(lambda _input, exc=exc: _raise(exc))
                with self.assertRaises(TaskCallError) as caught:
                    call_task(f"t.raise{index}", None)
                error = caught.exception
                self.assertEqual((error.status, error.code, error.type, error.message), expected)

    def test_unsendable_task_error_details_are_a_500_that_says_why(self):
        task("t.details")(lambda _input: _raise(TaskError("bad", {"n": 2 ** 70})))
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.details", None)
        self.assertEqual((caught.exception.status, caught.exception.code), (500, "TASK_FAILED"))
        self.assertRegex(caught.exception.message, r"^the details of the TaskError cannot be sent: an integer of 71 bits")

    def test_an_unknown_name_is_a_key_error_listing_what_is_registered(self):
        with self.assertRaisesRegex(KeyError, r"no task named 't.nope' \(registered: t.async, t.boom, t.greet, t.odd\)"):
            call_task("t.nope", None)


def _raise(exc):
    raise exc


class ForkTest(unittest.TestCase):
    def test_a_forked_child_that_returns_from_the_task_ends_there(self):
        """It must not hand its result to the test, nor go on to run the rest of the suite."""
        out = run_python(textwrap.dedent(
            """
            import os
            from pyfleet import task
            from pyfleet.testing import call_task

            @task("t.fork")
            def fork(_input):
                pid = os.fork()
                if pid:
                    os.waitpid(pid, 0)
                return "child" if pid == 0 else "parent"

            print(call_task("t.fork", None), flush=True)
            print("rest of the suite", flush=True)
            """
        ))
        self.assertEqual(out, "parent\nrest of the suite\n")


if __name__ == "__main__":
    unittest.main()
