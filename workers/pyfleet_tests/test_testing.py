"""pyfleet.testing: a task author's way to call a task as a worker would."""

import asyncio
import datetime
import math
import sys
import textwrap
import traceback
import unittest

import msgpack

from pyfleet import TaskError, request_id, task
from pyfleet.testing import TaskCallError, call_task, check_examples
from pyfleet_tests.isolated_registry import IsolatedRegistryTest
from pyfleet_tests.worker_process import run_python


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
            return {
                "bytes_key": {b"k": 1}, "tuple_key": {(1, 2): 3}, "ext": msgpack.ExtType(5, b"x"), "object": object(),
                "deep": {"rows": [{"a": 1}, {"b": {b"k": 1}}]}, "deep_ext": [0, {"x": msgpack.ExtType(5, b"x")}],
            }[input]

        @task("t.async")
        async def asynchronous(input):
            return input * 2

    def test_the_input_arrives_as_the_server_sends_it_keys_and_big_integers_included(self):
        @task("t.echo")
        def echo(input):
            return {"input": input, "keys": list(input) if isinstance(input, dict) else None}

        got = call_task("t.echo", {"b": 1, "10": 2, "a": 3, "2": 4, 1: "one", None: "n", False: "f", 2.5: "x", "01": 5})
        # As JavaScript holds an object: keys are strings, array indices first in numeric order.
        self.assertEqual(got["keys"], ["1", "2", "10", "b", "a", "null", "false", "2.5", "01"])
        self.assertEqual(got["input"]["2"], 4)
        self.assertEqual(call_task("t.echo", {"k": {"1e-07": 1, 1e-7: 2}})["input"], {"k": {"1e-7": 2, "1e-07": 1}}, "a float key as JavaScript writes it")
        self.assertEqual(call_task("t.echo", [2**64, -(2**63) - 1, 10**400])["input"], [float(2**64), float(-(2**63) - 1), float("inf")], "past 64 bits: the float a JSON number parses to")
        self.assertEqual(call_task("t.echo", {2**64: 1})["keys"], ["18446744073709551616"], "and a key past 64 bits the text a JSON key is")

    def test_input_the_server_refuses_before_any_call_is_a_value_error(self):
        @task("t.echo")
        def echo(input):
            return input

        deep = []
        for _ in range(200):
            deep = [deep]
        self.assertEqual(call_task("t.echo", deep[0]), deep[0], "200 levels: taken")
        for value, why in [
            (deep, "nests deeper than 200 levels"),
            ({"a": {"__proto__": 1}}, "__proto__ key"),
            ({b"k": 1}, "dict key of type bytes"),
            ({(1, 2): 1}, "dict key of type tuple"),
            ([msgpack.ExtType(5, b"x")], "msgpack extension type"),
            ({"a": msgpack.Timestamp(1, 0)}, "msgpack extension type or timestamp"),
            ({"s": "\ud800"}, "lone surrogate"),
        ]:
            with self.assertRaisesRegex(ValueError, f"^the server would answer this input 400 INVALID_INPUT, before any call: .*{why}"):
                call_task("t.echo", value)

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
        if sys.version_info >= (3, 11):
            # What a failing test prints: where in the task it failed, not only call_task's own frame.
            printed = "".join(traceback.format_exception(caught.exception))
            self.assertIn("The task's traceback, as the server would log it:", printed)
            self.assertIn(caught.exception.traceback.rstrip(), printed)
            self.assertEqual(str(caught.exception), "500 TASK_FAILED: RuntimeError: kaput")

    def test_results_the_server_could_not_send_fail_here_too(self):
        for kind in ("bytes_key", "tuple_key", "ext", "object"):
            with self.subTest(kind=kind), self.assertRaises(TaskCallError) as caught:
                call_task("t.odd", kind)
            self.assertEqual(caught.exception.code, "TASK_FAILED")

    def test_a_key_or_extension_type_the_server_could_not_decode_is_said_with_where_it_is(self):
        expected = {
            "bytes_key": "the result has a bytes dict key; use str keys",
            "tuple_key": "the result has a tuple dict key [1,2]; use str keys",
            "deep": "the result has a bytes dict key at ['rows'][1]['b']; use str keys",
            "deep_ext": "the result holds a msgpack.ExtType at [1]['x'], which the server refuses",
        }
        for kind, message in expected.items():
            with self.subTest(kind=kind), self.assertRaises(TaskCallError) as caught:
                call_task("t.odd", kind)
            self.assertEqual(caught.exception.message, message)

    def test_a_result_over_the_frame_limit_is_result_too_large(self):
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.async", "x" * 2000, max_frame_bytes=1000)
        self.assertEqual((caught.exception.status, caught.exception.code), (500, "RESULT_TOO_LARGE"))

    def test_a_result_with_a_proto_key_comes_back_as_the_server_re_encodes_it(self):
        # Compared with a real server's msgpack answer: the key renamed by msgpackr, then JavaScript's value encoded.
        @task("t.proto")
        def proto(input):
            return {"b": {"__proto__": 1, "x": 2.0}, "k": {"2": 1, "a": 2, "1": 3}, "l": [1.5, 3.0], "bytes": b"ab"}

        result = call_task("t.proto", None)
        self.assertEqual(result, {"b": {"__proto_": 1, "x": 2}, "k": {"1": 3, "2": 1, "a": 2}, "l": [1.5, 3], "bytes": b"ab"})
        self.assertEqual(list(result["k"]), ["1", "2", "a"])
        self.assertIs(type(result["b"]["x"]), int)

        @task("t.plain")
        def plain(input):
            return {"k": {"2": 1, "a": 2, "1": 3}, "f": 2.0}

        # Without one, the worker's own bytes: floats stay floats, keys in the task's order.
        result = call_task("t.plain", None)
        self.assertEqual(list(result["k"]), ["2", "a", "1"])
        self.assertIs(type(result["f"]), float)

    def test_async_calls_share_one_event_loop_as_in_a_worker(self):
        # A new loop per call_task broke what binds to a loop at first use: "bound to a different event loop".
        lock = asyncio.Lock()

        @task("t.locked")
        async def locked(input):
            async def hold():
                async with lock:
                    await asyncio.sleep(0.001)

            await asyncio.gather(hold(), hold())
            return id(asyncio.get_running_loop())

        first = call_task("t.locked", None)
        self.assertEqual(call_task("t.locked", None), first, "the same loop")
        self.assertEqual(call_task("t.locked", None), first)

    def test_a_deep_result_comes_back_as_the_server_sends_it(self):
        # 450 levels: xml.import returns up to ~400 (200 elements, an object and an array each); the check for
        # __proto__ keys recursed twice a level and raised RecursionError where the server answers 200.
        @task("t.deep")
        def deep(input):
            value = {"leaf": 1}
            for _ in range(input):
                value = [value]
            return value

        result = call_task("t.deep", 450)
        for _ in range(450):
            result = result[0]
        self.assertEqual(result, {"leaf": 1})

    def test_the_frame_limit_counts_the_widest_call_id_a_long_lived_worker_sends(self):
        # A worker's ids grow (5 bytes of msgpack from 2^16 calls): a result that fits only beside id 1 is too large there.
        from pyfleet import protocol
        doubled = "x" * 2000
        beside_id_1 = len(protocol.encode(protocol.result(1, doubled)))
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.async", "x" * 1000, max_frame_bytes=beside_id_1)
        self.assertEqual(caught.exception.code, "RESULT_TOO_LARGE")
        self.assertEqual(call_task("t.async", "x" * 1000, max_frame_bytes=beside_id_1 + 4), doubled)

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
        self.assertRegex(caught.exception.message, r"^the details of the TaskError raised at pyfleet_tests/test_testing\.py, line \d+ cannot be sent: at \['\w+'\], an integer of 71 bits")

    def test_request_id_is_the_calls_in_the_task_its_asyncio_tasks_but_not_its_threads(self):
        import threading

        @task("t.ids")
        async def ids(_input):
            seen = {"task": request_id()}

            async def later():
                await asyncio.sleep(0)
                return request_id()

            seen["asyncio task"] = await asyncio.ensure_future(later())
            thread = threading.Thread(target=lambda: seen.setdefault("thread", request_id()))
            thread.start()
            thread.join()
            return seen

        self.assertIsNone(request_id(), "outside a call")
        self.assertEqual(call_task("t.ids", None, request_id="req-7"), {"task": "req-7", "asyncio task": "req-7", "thread": None})
        self.assertEqual(call_task("t.ids", None)["task"], "test", "call_task's default")
        self.assertIsNone(request_id(), "call_task leaves the test's context as it found it")

    def test_trace_headers_are_the_calls_in_the_task_and_its_asyncio_tasks_empty_without_any(self):
        import pyfleet

        @task("t.trace")
        async def trace(_input):
            async def later():
                await asyncio.sleep(0)
                return pyfleet.trace_headers()

            headers = pyfleet.trace_headers()
            headers["x-request-id"] = "mine"  # a copy: the next call gets them unchanged
            return [pyfleet.traceparent(), pyfleet.trace_headers(), await asyncio.ensure_future(later())]

        sent = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "rojo=00f067aa0ba902b7", "baggage": "tenant=acme"}
        self.assertEqual((pyfleet.traceparent(), pyfleet.trace_headers()), (None, {}), "outside a call")
        self.assertEqual(call_task("t.trace", None, trace_headers=sent), [sent["traceparent"], sent, sent])
        self.assertEqual(call_task("t.trace", None, trace_headers={"baggage": "k=v"}), [None, {"baggage": "k=v"}, {"baggage": "k=v"}], "baggage alone")
        self.assertEqual(call_task("t.trace", None), [None, {}, {}], "a client that sent none")
        self.assertEqual(call_task("t.trace", None, trace_headers={"traceparent": 5, "other": "x"}), [None, {}, {}], "only the three, as strings")
        self.assertEqual((pyfleet.traceparent(), pyfleet.trace_headers()), (None, {}), "call_task leaves the test's context as it found it")

    def test_fill_defaults_puts_missing_top_level_defaults_into_the_input(self):
        schema = {"type": "object", "properties": {
            "limit": {"type": "integer", "default": 10},
            "tags": {"type": "array", "default": []},
            "given": {"type": "string", "default": "unused"},
            "nested": {"type": "object", "properties": {"deep": {"type": "integer", "default": 1}}},
        }}

        @task("t.filled", schema=schema, fill_defaults=True)
        def filled(input):
            input["tags"].append("touched")  # must not change the next call's default
            return input

        @task("t.annotated", schema=schema)
        def annotated(input):
            return input

        self.assertEqual(call_task("t.filled", {"given": "x", "nested": {}}), {"given": "x", "nested": {}, "limit": 10, "tags": ["touched"]})
        self.assertEqual(call_task("t.filled", {"limit": 3}), {"limit": 3, "tags": ["touched"], "given": "unused"}, "a fresh list each call")
        self.assertEqual(call_task("t.annotated", {}), {}, "without fill_defaults a default is an annotation only")

        @task("t.as_sent", schema={"type": "object", "properties": {"pair": {"default": (1, [2])}, "ratio": {"default": 2.0}}}, fill_defaults=True)
        def as_sent(input):
            input["pair"][1].append(9)
            return [type(input["pair"]).__name__, type(input["ratio"]).__name__, input["pair"]]

        # As a client's value arrives: a list for a tuple, an int for an integral float; and fresh each call.
        self.assertEqual(call_task("t.as_sent", {}), ["list", "int", [1, [2, 9]]])
        self.assertEqual(call_task("t.as_sent", {}), ["list", "int", [1, [2, 9]]])

        @task("t.ordered", schema={"type": "object", "properties": {"a": {}, "2": {"default": 5}, "opts": {"default": {"b": 1, "10": 2}}}}, fill_defaults=True)
        def ordered(input):
            return [list(input), list(input["opts"])]

        # Filled or sent, the same order: a task cannot tell a default from a client's value.
        self.assertEqual(call_task("t.ordered", {"a": 1}), [["2", "a", "opts"], ["10", "b"]])
        self.assertEqual(call_task("t.ordered", {"a": 1, "2": 5, "opts": {"b": 1, "10": 2}}), [["2", "a", "opts"], ["10", "b"]])

    def test_an_unknown_name_is_a_key_error_listing_what_is_registered(self):
        with self.assertRaisesRegex(KeyError, r"no task named 't.nope' \(registered: t.async, t.boom, t.greet, t.odd\)"):
            call_task("t.nope", None)

    def test_the_current_event_loop_is_put_back_after_an_async_task(self):
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        asyncio.set_event_loop(loop)
        self.addCleanup(asyncio.set_event_loop, None)
        self.assertEqual(call_task("t.async", 2), 4)
        self.assertIs(asyncio.get_event_loop(), loop)
        self.assertEqual(loop.run_until_complete(asyncio.sleep(0, "still open")), "still open")

    def test_integral_floats_reach_the_task_as_ints_as_over_http(self):
        task("t.types")(lambda value: repr(value))
        cases = [
            (1.0, "1"), (-0.0, "0"), (1e3, "1000"), (2.0 ** 53, str(2 ** 53)), (-(2.0 ** 53), str(-(2 ** 53))),
            (0.5, "0.5"), (2.0 ** 54, repr(2.0 ** 54)), (float("inf"), "inf"), (True, "True"), (3, "3"),
        ]
        for value, seen in cases:
            with self.subTest(value=value):
                self.assertEqual(call_task("t.types", value), seen)
        self.assertEqual(call_task("t.types", {"a": [1.0, (2.5, 3.0)]}), "{'a': [1, [2.5, 3]]}")

    def test_an_error_without_a_message_reads_without_a_dangling_colon(self):
        task("t.interrupt")(lambda _input: _raise(KeyboardInterrupt()))
        with self.assertRaises(TaskCallError) as caught:
            call_task("t.interrupt", None)
        self.assertEqual(str(caught.exception), "500 TASK_FAILED: KeyboardInterrupt")


def _raise(exc):
    raise exc


class FreshProcessTest(unittest.TestCase):
    def test_a_thread_without_an_event_loop_is_left_without_one(self):
        """Not set to None: in a fresh process get_event_loop() still makes one, as before call_task."""
        out = run_python(textwrap.dedent(
            """
            import asyncio, warnings
            from pyfleet import task
            from pyfleet.testing import call_task

            @task("t.async")
            async def double(x):
                return x * 2

            print(call_task("t.async", 2), flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "There is no current event loop"
                loop = asyncio.get_event_loop()
            print(loop.is_closed(), flush=True)
            """
        ))
        self.assertEqual(out, "4\nFalse\n")


class TimeRemainingTest(IsolatedRegistryTest):
    def test_time_remaining_counts_down_from_call_tasks_timeout_ms_or_the_tasks_own_and_is_none_without_either(self):
        from pyfleet import time_remaining

        @task("t.left")
        def left(_input):
            return time_remaining()

        @task("t.left_own", timeout_ms=500)
        def left_own(_input):
            return time_remaining()

        self.assertIsNone(call_task("t.left", None), "no limit known")
        self.assertIsNone(time_remaining(), "outside a call")
        given = call_task("t.left", None, timeout_ms=2000)
        self.assertTrue(0 < given <= 2.0, given)
        own = call_task("t.left_own", None)
        self.assertTrue(0 < own <= 0.5, own)
        self.assertLessEqual(call_task("t.left_own", None, timeout_ms=100), 0.1, "a client's budget, shorter than the task's timeout")
        self.assertLessEqual(call_task("t.left_own", None, timeout_ms=60_000), 0.5, "a budget past the task's timeout: the timeout, as the server sends")
        with self.assertRaisesRegex(ValueError, "timeout_ms must be a positive integer"):
            call_task("t.left", None, timeout_ms=0)
        self.assertIsNone(time_remaining(), "reset after the call")


class WithoutMsgpackTest(unittest.TestCase):
    def test_an_interpreter_without_msgpack_is_told_which_to_use(self):
        out = run_python(textwrap.dedent(
            """
            import sys
            sys.modules["msgpack"] = None  # as an interpreter without the package: its import fails
            try:
                import pyfleet.testing
            except ModuleNotFoundError as exc:
                print(exc.name, exc, flush=True)
            """
        ))
        self.assertTrue(out.startswith(f"msgpack pyfleet.testing needs the msgpack package, which {sys.executable} does not have: run the tests with the interpreter the workers use"), out)


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



class CheckExamplesTest(IsolatedRegistryTest):
    def test_every_builtin_task_returns_its_output_example(self):
        import importlib

        from pyfleet import registry
        from pyfleet.task_modules import BUILTIN_MODULES

        # Registered by the first import, here or in another test module (then among those put aside).
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        registry._tasks.update(self.saved)
        # The tasks of BUILTIN_MODULES, whatever they are (diag.work is DIAG_MODULE's: its pid and
        # count of spins differ at each call, so it has no example to return exactly).
        names = [t.name for t in registry.all_tasks() if t.fn.__module__ in BUILTIN_MODULES]
        self.assertEqual(
            sorted({registry.get(name).fn.__module__ for name in names}), sorted(BUILTIN_MODULES),
            "each built-in module registers a task",
        )
        for name in names:
            with self.subTest(task=name):
                self.assertGreaterEqual(check_examples(name), 1)

    def test_a_result_that_differs_is_named_with_its_place(self):
        @task("t.add", schema={"examples": [{"a": 1, "b": 2}, {"a": 0.1, "b": 0.2}]}, output_schema={"examples": [{"sum": 3}, {"sum": 0.3}]})
        def add(input):
            return {"sum": input["a"] + input["b"]}

        self.assertEqual(check_examples("t.add"), 2, "0.1 + 0.2 is 0.3, to floating point's rounding")

        @task("t.off", schema={"examples": [{"a": [1, 2]}]}, output_schema={"examples": [{"a": [1, 3]}]})
        def off(input):
            return input

        with self.assertRaisesRegex(AssertionError, r"^task 't.off', example 0: the result differs from its output example at /a/1: "):
            check_examples("t.off")

        @task("t.kind", schema={"examples": ["1"]}, output_schema={"examples": [1]})
        def kind(input):
            return input

        with self.assertRaisesRegex(AssertionError, r"at its root: '1' != 1$"):
            check_examples("t.kind")

    def test_nan_and_infinity_match_the_null_json_clients_get_for_them(self):
        # JSON has no NaN: an example can only say null, which is what JSON answers write.
        @task("t.spread", schema={"examples": [[1.5], [1, 2]]}, output_schema={"examples": [{"std": None, "slope": None}, {"std": 0.5, "slope": 1}]})
        def spread(values):
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
            return {"std": std / math.sqrt(2) if len(values) > 1 else std, "slope": 1 if len(values) > 1 else -math.inf}

        self.assertEqual(check_examples("t.spread"), 2)

        @task("t.finite", schema={"examples": [0]}, output_schema={"examples": [None]})
        def finite(value):
            return 0.0

        with self.assertRaisesRegex(AssertionError, r"at its root: 0.0 != None$", msg="a finite float is no null"):
            check_examples("t.finite")

        @task("t.nan_for_number", schema={"examples": [0]}, output_schema={"examples": [0]})
        def nan_for_number(value):
            return math.nan

        with self.assertRaisesRegex(AssertionError, r"at its root: nan != 0$", msg="and NaN is no number"):
            check_examples("t.nan_for_number")

    def test_examples_missing_or_unpaired_are_said(self):
        @task("t.none")
        def none(input):
            return input

        with self.assertRaisesRegex(ValueError, r"declares no examples"):
            check_examples("t.none")

        @task("t.unpaired", schema={"examples": [1, 2]}, output_schema={"examples": [1]})
        def unpaired(input):
            return input

        with self.assertRaisesRegex(ValueError, r"has 2 input example\(s\) and 1 output example\(s\)"):
            check_examples("t.unpaired")
        with self.assertRaisesRegex(KeyError, r"no task named 't.nothing'"):
            check_examples("t.nothing")


if __name__ == "__main__":
    unittest.main()
