"""The worker runtime against in-memory streams: frames, messages, the call loop."""

import asyncio
import dataclasses
import datetime
import decimal
import enum
import functools
import gc
import logging
import importlib.util
import inspect
import io
import os
import pathlib
import platform
import sys
import struct
import unittest
import time
import uuid

import msgpack

import pyfleet.errors
from pyfleet import TaskError, protocol, registry, task
from pyfleet.frames import FrameError, read_frame, write_frame
from pyfleet.loop import encode_reply, serve
from pyfleet.resident import ResidentSize
from pyfleet.unsendable import value_depth_limit
from pyfleet_tests.isolated_registry import IsolatedRegistryTest


def frame(message):
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def read_all_frames(data, max_frame_bytes=1 << 20):
    stream = io.BytesIO(data)
    out = []
    while True:
        body = read_frame(stream, max_frame_bytes)
        if body is None:
            return out
        out.append(msgpack.unpackb(body, raw=False))


class FramesTest(unittest.TestCase):
    def test_round_trip(self):
        out = io.BytesIO()
        write_frame(out, b"abc")
        self.assertEqual(read_frame(io.BytesIO(out.getvalue()), 10), b"abc")

    def test_a_frame_of_exactly_the_limit_is_read(self):
        self.assertEqual(read_frame(io.BytesIO(b"\x00\x00\x00\x0a" + b"x" * 10), 10), b"x" * 10)
        with self.assertRaisesRegex(FrameError, "frame of 11 bytes is over the limit of 10"):
            read_frame(io.BytesIO(b"\x00\x00\x00\x0b" + b"x" * 11), 10)

    def test_eof_at_boundary_is_none(self):
        self.assertIsNone(read_frame(io.BytesIO(b""), 10))

    def test_cut_header_raises(self):
        with self.assertRaises(FrameError):
            read_frame(io.BytesIO(b"\x00\x00"), 10)

    def test_cut_body_raises(self):
        with self.assertRaises(FrameError):
            read_frame(io.BytesIO(b"\x00\x00\x00\x05ab"), 10)

    def test_length_over_limit_raises_before_reading_body(self):
        stream = io.BytesIO(b"\x00\x00\x00\x0bhello world")
        with self.assertRaises(FrameError):
            read_frame(stream, 10)
        self.assertEqual(stream.tell(), 4, "only the header was read")


class TimeRemainingTest(IsolatedRegistryTest):
    def test_the_calls_time_counts_from_when_its_frame_began_to_arrive_not_from_when_it_was_read_whole(self):
        from pyfleet import time_remaining
        from pyfleet.runner import Runner

        @task("t.left")
        def left(_input):
            return time_remaining()

        runner = Runner()
        try:
            arrived = time.monotonic() - 0.4  # a large body that took 0.4 s to come through the pipe
            reply = runner.run({"t": "call", "id": 1, "task": "t.left", "input": None, "requestId": "r", "timeoutMs": 1000}, arrived)
            self.assertLessEqual(reply["value"], 0.6)
            reply = runner.run({"t": "call", "id": 2, "task": "t.left", "input": None, "requestId": "r", "timeoutMs": 1000})
            self.assertTrue(0.6 < reply["value"] <= 1.0, reply)
            self.assertIsNone(runner.run({"t": "call", "id": 3, "task": "t.left", "input": None, "requestId": "r"})["value"], "no limit sent: none")
        finally:
            runner.close()

    def test_read_frame_timed_gives_the_time_its_header_came(self):
        from pyfleet.frames import read_frame_timed

        out = io.BytesIO()
        write_frame(out, b"abc")
        before = time.monotonic()
        body, arrived = read_frame_timed(io.BytesIO(out.getvalue()), 10)
        self.assertEqual(body, b"abc")
        self.assertTrue(before <= arrived <= time.monotonic())


class RegistryTest(IsolatedRegistryTest):
    def test_duplicate_names_fail_at_import(self):
        task("dup")(lambda x: x)
        with self.assertRaises(ValueError):
            task("dup")(lambda x: x)

    def test_bad_names_and_limits_are_refused(self):
        for bad in ["", "has space", "a/b", "x" * 65]:
            with self.assertRaises(ValueError):
                task(bad)
        with self.assertRaises(ValueError):
            task("t", timeout_ms=0)
        with self.assertRaises(ValueError):
            task("t", raw=("text/plain",))
        with self.assertRaisesRegex(TypeError, r"^task 't': fill_defaults must be True or False, not 1$"):
            task("t", fill_defaults=1)
        no_default = {"type": "object", "properties": {"a": {"type": "integer"}, "n": {"type": "object", "properties": {"b": {"default": 1}}}}}
        with self.assertRaisesRegex(ValueError, r"^task 't': fill_defaults=True, but no property in the schema's top-level \"properties\" has a \"default\" to fill"):
            task("t", schema=no_default, fill_defaults=True)

    def test_describe_uses_first_doc_paragraph(self):
        @task("documented", raw=("text/plain",), raw_field="text", max_concurrency=2)
        def documented(x):
            """First line
            continues here.

            Details not shown."""

        info = registry.get("documented").describe()
        self.assertEqual(info["doc"], "First line continues here.")
        self.assertEqual(info["raw"], ["text/plain"])
        self.assertEqual(info["rawField"], "text")
        self.assertEqual(info["maxConcurrency"], 2)
        self.assertEqual(info["module"], __name__, "the module that defines it")
        self.assertRegex(info["source"], r"^pyfleet_tests/test_runtime\.py, line \d+$", "the file and line, relative to the sys.path entry")

    def test_source_is_where_the_decorator_is_under_functools_wraps_and_none_without_code(self):
        import functools

        from pyfleet.places import declared_at

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(x):
                return fn(x)

            return wrapper

        line = sys._getframe().f_lineno + 2

        @task("wrapped.source")
        @logged
        def wrapped(x):
            return x

        self.assertEqual(registry.get("wrapped.source").describe()["source"], f"pyfleet_tests/test_runtime.py, line {line}")
        self.assertIsNone(declared_at(functools.partial(print, 1)))
        self.assertIsNone(declared_at(len))
        namespace = {}
        exec("def made(x):\n    return x", namespace)
        self.assertIsNone(declared_at(namespace["made"]), "code made by exec() has no file")
        looped = lambda x: x  # noqa: E731
        looped.__wrapped__ = looped
        self.assertRegex(declared_at(looped), r"test_runtime\.py, line \d+$", "a __wrapped__ that leads back to itself ends")

    def test_first_paragraph_matches_inspect_cleandoc(self):
        docs = [
            "",
            "One line.",
            "   Leading spaces, trailing newline.\n",
            "First line\n    continues here.\n\n    Details not shown.",
            "\n    Starts on the second line\n    and goes on.\n\n    More.\n    ",
            "First\n      deeper\n    shallower\n\n",
            "Tabs\n\tindented\n\tlines\n\n\tnext",
            "Blank line with spaces\n    first\n        \n    second paragraph?",
            "\n\n\n",
            "Only one paragraph\n    over\n    three lines",
        ]
        for doc in docs:
            with self.subTest(doc=doc):
                expected = inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")
                self.assertEqual(registry.first_paragraph(doc), expected)
                self.assertEqual(registry.clean_doc(doc), inspect.cleandoc(doc))

    def test_is_coroutine_function_matches_inspect(self):
        async def coroutine(x):
            return x

        def plain(x):
            return x

        async def agen(x):
            yield x

        class Methods:
            async def run(self, x):
                return x

            async def __call__(self, x):
                return x

        candidates = [
            coroutine, plain, agen, lambda x: x, len, Methods().run, Methods, Methods(),
            functools.partial(coroutine, 1), functools.partial(functools.partial(plain, 1)),
            functools.partial(Methods().run, 1), asyncio.sleep,
        ]
        for fn in candidates:
            with self.subTest(fn=fn):
                self.assertEqual(registry.is_coroutine_function(fn), inspect.iscoroutinefunction(fn))
        self.assertTrue(registry.is_coroutine_function(functools.partial(coroutine, 1)))

    def test_a_task_is_read_only(self):
        @task("frozen")
        def frozen(x):
            return x

        registered = registry.get("frozen")
        with self.assertRaises(AttributeError):
            registered.name = "other"
        with self.assertRaises(AttributeError):
            registered.extra = 1
        with self.assertRaises(AttributeError):
            del registered.fn
        self.assertEqual(registered.name, "frozen")
        self.assertFalse(registered.is_async)


def _raise(exc, _input):
    raise exc


# Where _raise raises: what a TaskError's unsendable details are said to come from.
RAISED = f" raised at pyfleet_tests/test_runtime.py, line {_raise.__code__.co_firstlineno + 1}"


class LoopTest(unittest.TestCase):
    def setUp(self):
        self.saved = dict(registry._tasks)
        registry.clear()

        @task("double")
        def double(x):
            return x * 2

        @task("reject")
        def reject(x):
            raise TaskError("bad input", {"line": 3})

        @task("crash")
        def crash(x):
            raise KeyError("oops")

        @task("slow_async")
        async def slow_async(x):
            await asyncio.sleep(0.001)
            return {"async": x}

        @task("unencodable")
        def unencodable(x):
            return object()

        @task("noisy")
        def noisy(x):
            print("this goes to stderr, never into the frame stream")
            return "quiet"

    def tearDown(self):
        registry.clear()
        registry._tasks.update(self.saved)

    def run_calls(self, *calls, max_rss_bytes=0):
        stdin = io.BytesIO(b"".join(frame({"t": "call", "id": i + 1, "task": name, "input": value, "requestId": f"r{i}"}) for i, (name, value) in enumerate(calls)))
        stdout = io.BytesIO()
        serve(stdin, stdout, 1 << 20, max_rss_bytes=max_rss_bytes)
        return read_all_frames(stdout.getvalue())

    def test_a_reply_says_the_workers_rss_only_when_it_is_past_max_rss_bytes(self):
        own = ResidentSize().bytes()
        self.assertGreater(own, 1 << 20, "this process's RSS, from /proc/self/statm")
        _, double, reject, unencodable, too_large = self.run_calls(
            ("double", 21), ("reject", None), ("unencodable", None), ("double", "x" * 600_000), max_rss_bytes=1)
        self.assertEqual(double["value"], 42)
        # Past a limit of 1 byte: every reply says so, error replies and those made for a result
        # that cannot be sent or is over the frame limit too (the worker must still be recycled).
        for reply in (double, reject, unencodable, too_large):
            self.assertGreater(reply["rss"], 1 << 20)
        self.assertEqual(unencodable["kind"], "failed")
        self.assertEqual(too_large["kind"], "too_large")
        _, under = self.run_calls(("double", 1), max_rss_bytes=1 << 40)
        self.assertEqual(under, {"t": "result", "id": 1, "value": 2}, "under the limit, the frame is as ever")
        _, off = self.run_calls(("double", 1))
        self.assertNotIn("rss", off, "no limit (MAX_WORKER_RSS_MB=0): never")

    def test_the_rss_is_still_read_after_a_task_closed_its_descriptor(self):
        resident = ResidentSize()
        before = resident.bytes()
        os.close(resident._fd)  # as a task's os.closerange(3, ...) would
        grown = bytearray(32 << 20)
        grown[::4096] = b"\x01" * len(grown[::4096])  # touched: resident
        self.assertGreaterEqual(resident.bytes(), before + (30 << 20), "opened again, and read fresh")
        os.close(resident._fd)
        # A file of the task's own that took the descriptor's number is neither read as statm nor closed.
        with open(__file__, "rb") as theirs:
            resident._fd = theirs.fileno()
            self.assertGreater(resident.bytes(), 1 << 20)
            self.assertNotEqual(resident._fd, theirs.fileno())
            self.assertEqual(theirs.read(3), b'"""', "the task's file, still open, where it was")
        del grown

    def test_ready_comes_first_with_version_and_tasks(self):
        ready, = self.run_calls()
        self.assertEqual(ready["t"], "ready")
        self.assertEqual(ready["v"], 1)
        self.assertEqual(sorted(t["name"] for t in ready["tasks"]), ["crash", "double", "noisy", "reject", "slow_async", "unencodable"])

    def test_results_and_errors_in_order(self):
        _, double, reject, crash, unknown = self.run_calls(("double", 21), ("reject", None), ("crash", None), ("missing", None))
        self.assertEqual(double, {"t": "result", "id": 1, "value": 42})
        self.assertEqual(reject["kind"], "rejected")
        self.assertEqual(reject["message"], "bad input")
        self.assertEqual(reject["details"], {"line": 3})
        self.assertEqual(crash["kind"], "failed")
        self.assertEqual(crash["type"], "KeyError")
        self.assertIn("Traceback", crash["traceback"])
        self.assertEqual(unknown["kind"], "failed")

    def test_a_tracebacks_first_frame_is_the_tasks_not_the_runtimes_that_called_it(self):
        @task("fails_async")
        async def fails_async(x):
            raise ValueError("async")

        _, crash, failed_async = self.run_calls(("crash", None), ("fails_async", None))
        for reply, task_line in ((crash, ", in crash"), (failed_async, ", in fails_async")):
            frames = [line for line in reply["traceback"].splitlines() if line.startswith("  File ")]
            self.assertIn(task_line, frames[0], reply["traceback"])
            self.assertNotIn("pyfleet/loop.py", reply["traceback"])
            self.assertNotIn("pyfleet/runner.py", reply["traceback"])
            self.assertNotIn("base_events.py", reply["traceback"])

    def test_async_tasks_run(self):
        _, reply = self.run_calls(("slow_async", 5))
        self.assertEqual(reply["value"], {"async": 5})

    def test_base_exceptions_from_a_task_are_failures_and_the_worker_goes_on(self):
        raised = {
            "interrupt": KeyboardInterrupt(),
            "exit": SystemExit(2),
            "generator_exit": GeneratorExit(),
            "base": BaseException("bare"),
        }
        for name, exc in raised.items():
            task(name)(functools.partial(_raise, exc))

        @task("cancelled")
        async def cancelled(x):
            raise asyncio.CancelledError()

        names = [*raised, "cancelled"]
        _, *replies, after = self.run_calls(*[(name, None) for name in names], ("double", 4))
        for name, reply in zip(names, replies):
            self.assertEqual(reply["kind"], "failed", name)
            self.assertIn("Traceback", reply["traceback"], name)
        self.assertEqual([r["type"] for r in replies], ["KeyboardInterrupt", "SystemExit", "GeneratorExit", "BaseException", "CancelledError"])
        self.assertEqual(after["value"], 8, "the worker still answers")

    def test_unencodable_result_is_a_failure_not_a_crash(self):
        _, reply, after = self.run_calls(("unencodable", None), ("double", 1))
        self.assertEqual(reply["kind"], "failed")
        self.assertEqual(after["value"], 2)

    def test_result_over_the_frame_limit_is_too_large(self):
        body = encode_reply(protocol.result(1, "x" * 2000), 1000)
        reply = msgpack.unpackb(body, raw=False)
        self.assertEqual(reply["kind"], "too_large")

    def test_big_integers_and_other_types(self):
        _, reply = self.run_calls(("double", 2 ** 62))
        self.assertEqual(reply["value"], 2 ** 63)
        body = encode_reply(protocol.result(1, 2 ** 70), 1 << 20)
        self.assertEqual(msgpack.unpackb(body, raw=False)["kind"], "failed")

    def test_types_msgpack_lacks_are_sent_as_a_json_client_expects(self):
        when = datetime.datetime(2024, 5, 6, 7, 8, 9)
        ident = uuid.UUID(int=1)
        value = {
            "datetime": when, "date": when.date(), "time": when.time(), "decimal": decimal.Decimal("1.50"),
            "uuid": ident, "set": {3}, "frozenset": frozenset(), "bytearray": bytearray(b"ab"), "view": memoryview(b"cd"),
        }
        reply = msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)
        self.assertEqual(
            reply["value"],
            {
                "datetime": "2024-05-06T07:08:09", "date": "2024-05-06", "time": "07:08:09", "decimal": "1.50",
                "uuid": str(ident), "set": [3], "frozenset": [], "bytearray": b"ab", "view": b"cd",
            },
        )

    def test_a_set_is_sent_sorted_where_its_members_compare_so_every_worker_sends_it_alike(self):
        # str hashes differ from one process to the next: without sorting, the order would too.
        members = {f"tag-{i}" for i in range(50)}
        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"tags": members, "mixed": {1, "a"}}), 1 << 20), raw=False)
        self.assertEqual(reply["value"]["tags"], sorted(members))
        self.assertCountEqual(reply["value"]["mixed"], [1, "a"], "members that do not compare: all sent, in any order")

    def test_arrays_and_scalars_with_tolist_are_sent_as_what_it_returns(self):
        import array

        class Scalar:  # as numpy's np.int64 and np.bool_, which are no int or bool
            def __init__(self, value):
                self.value = value

            def tolist(self):
                return self.value

        value = {"array": array.array("d", [1.5, 2.0]), "int64": Scalar(7), "bool_": Scalar(True), "nested": [Scalar([Scalar(1)])]}
        reply = msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)
        self.assertEqual(reply["value"], {"array": [1.5, 2.0], "int64": 7, "bool_": True, "nested": [[1]]})

        class Flag(enum.IntEnum):
            ON = 1

        class Row(list):
            pass

        class Point:
            pass

        def message(value):
            return msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False).get("message")

        self.assertEqual(
            msgpack.unpackb(encode_reply(protocol.result(1, Scalar(Row([Flag.ON, 2]))), 1 << 20), raw=False)["value"], [1, 2],
            "subclasses of what msgpack packs, as it packs them",
        )
        unsendable = "a value of type pyfleet_tests.test_runtime.LoopTest.test_arrays_and_scalars_with_tolist_are_sent_as_what_it_returns.<locals>.Point cannot be sent"
        self.assertTrue(message({"a": array.array("i", [1]), "p": Point()}).startswith(f"the result cannot be sent: at ['p'], {unsendable}"))
        self.assertTrue(message({"rows": [Scalar([1, Point()])]}).startswith(f"the result cannot be sent: at ['rows'][0][1], {unsendable}"), "inside an array")

        @dataclasses.dataclass
        class Order:
            sku: str

        class Model:  # pydantic's BaseModel, as far as the hint goes
            def model_dump(self, mode="python"):
                return {}

        self.assertTrue(message(Order("a")).endswith("use dicts, lists, str, numbers, bool, None or bytes; it is a dataclass: return dataclasses.asdict(value)"))
        self.assertTrue(message(Model()).endswith("; return value.model_dump(mode=\"json\") (pydantic)"))
        self.assertTrue(message(Model).endswith("use dicts, lists, str, numbers, bool, None or bytes"), "the class is no model to dump")

        class Colour(enum.Enum):
            RED = "red"

        self.assertTrue(message({"c": Colour.RED}).endswith("; it is an Enum: return its .value (an IntEnum or a str Enum is sent as its value)"))
        self.assertTrue(message(pathlib.PurePosixPath("/tmp/x")).endswith("; it is a path: return str(value)"))
        for iterable in ((n for n in range(3)), range(3), map(str, [1]), {"a": 1}.keys(), iter([1])):
            self.assertTrue(message({"it": iterable}).endswith("; it is an iterable, not a list: return list(value)"), type(iterable))
        # An asyncio Future is iterable too (its __iter__ is __await__), and list() of it raises.
        import asyncio

        loop = asyncio.new_event_loop()
        future = loop.create_future()
        self.assertTrue(message(future).endswith("; it is an awaitable (an asyncio Future or Task): make the task async def and return await value"))
        loop.close()
        import collections
        import sqlite3
        import types

        connection = sqlite3.connect(":memory:")
        connection.row_factory = sqlite3.Row
        row = connection.execute("select 1 as n").fetchone()
        for mapping in (types.MappingProxyType({"a": 1}), collections.ChainMap({"a": 1}), row):
            self.assertTrue(message({"m": mapping}).endswith("; it is a mapping, not a dict: return dict(value)"), type(mapping))
        connection.close()

        class Itself:
            def tolist(self):
                return self

        class Exits:
            def tolist(self):
                raise SystemExit(3)

        self.assertRegex(message({"x": [Itself()]}), r"^the result cannot be sent: at \['x'\]\[0\], a value of type \S+Itself cannot be sent: its tolist\(\) returns itself$")
        self.assertRegex(message({"e": Exits()}), r"^the result cannot be sent: at \['e'\], \S+Exits\.tolist\(\) raised SystemExit$", "the call's failure, not the worker's")
        try:
            import numpy
        except ImportError:
            return  # not a dependency: the stand-ins above are what the runtime sees of it
        value = {"matrix": numpy.arange(4).reshape(2, 2), "int64": numpy.int64(2**40), "bool_": numpy.bool_(False), "when": numpy.datetime64("2026-01-02")}
        reply = msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)
        self.assertEqual(reply["value"], {"matrix": [[0, 1], [2, 3]], "int64": 2**40, "bool_": False, "when": "2026-01-02"})

    def test_numpy_and_pandas_values_without_a_python_equivalent_are_said_or_sent_as_missing(self):
        def reply(value):
            return msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)

        class Wide:  # as np.longdouble: its tolist() makes another np.longdouble, no Python float
            def tolist(self):
                return Wide()

        # It was a RecursionError blamed on nesting, or a search for where it is that never ended.
        self.assertRegex(
            reply({"fit": [1.0, Wide()]})["message"],
            r"^the result cannot be sent: at \['fit'\]\[1\], a value of type \S+Wide cannot be sent: its tolist\(\) makes another \S+Wide "
            r"\(wider than a Python float or complex\?\); convert it yourself, e\.g\. float\(value\)$",
        )

        # pandas' types, known by their names (pandas is no dependency): NaT is a datetime whose isoformat() is "NaT".
        NaTType = type("NaTType", (datetime.datetime,), {"__module__": "pandas._libs.tslibs.nattype", "isoformat": lambda self, *args: "NaT"})
        NAType = type("NAType", (), {"__module__": "pandas._libs.missing"})
        DataFrame = type("DataFrame", (), {"__module__": "pandas.core.frame"})
        GeoDataFrame = type("GeoDataFrame", (DataFrame,), {"__module__": "geopandas.geodataframe"})

        class Odd(datetime.date):  # a task's own date class, unequal to itself: still a date (a review)
            def __eq__(self, other):
                return False

            def __ne__(self, other):
                raise ValueError("no comparing")

            __hash__ = datetime.date.__hash__

        when = datetime.datetime(2026, 1, 2)
        self.assertEqual(
            reply({"days": [when, NaTType(2000, 1, 1), Odd(2026, 3, 4)], "sales": [1, NAType()]})["value"],
            {"days": ["2026-01-02T00:00:00", None, "2026-03-04"], "sales": [1, None]},
        )
        for frame in (DataFrame(), GeoDataFrame()):
            self.assertTrue(reply({"df": frame})["message"].endswith("; it is a pandas DataFrame: return value.to_dict(orient=\"records\") (a list of rows as dicts)"))
        self.assertTrue(reply({"took": datetime.timedelta(seconds=5)})["message"].endswith("; it is a timedelta: return value.total_seconds()"))
        self.assertEqual(
            reply(type("NAType", (), {"__module__": "mylib"})())["message"].split("; ")[0],
            "the result cannot be sent: a value of type mylib.NAType cannot be sent",
            "a type of that name elsewhere is not pandas'",
        )
        try:
            import numpy
            import pandas
        except ImportError:
            return  # not dependencies: the stand-ins above are what the runtime sees of them
        frame = pandas.DataFrame({"day": pandas.to_datetime(["2026-01-02", None]), "sales": pandas.array([1, None], dtype="Int64")})
        self.assertEqual(reply(frame.to_dict(orient="records"))["value"], [{"day": "2026-01-02T00:00:00", "sales": 1}, {"day": None, "sales": None}])
        self.assertRegex(reply([numpy.longdouble(1.5)])["message"], r"at \[0\], a value of type numpy\.(longdouble|float128) cannot be sent: its tolist\(\) makes another")
        self.assertTrue(reply(frame)["message"].endswith("it is a pandas DataFrame: return value.to_dict(orient=\"records\") (a list of rows as dicts)"))

    def test_a_type_that_cannot_be_sent_is_named_with_its_module(self):
        class Point:
            pass

        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"p": Point()}), 1 << 20), raw=False)
        self.assertEqual(
            reply["message"],
            "the result cannot be sent: at ['p'], a value of type pyfleet_tests.test_runtime.LoopTest."
            "test_a_type_that_cannot_be_sent_is_named_with_its_module.<locals>.Point cannot be sent; "
            "use dicts, lists, str, numbers, bool, None or bytes",
        )

    def test_ready_names_the_python_version_as_platform_does(self):
        ready, = self.run_calls()
        self.assertEqual(ready["python"], platform.python_version())

    def test_non_call_message_is_a_protocol_error(self):
        stdin = io.BytesIO(frame({"t": "bogus"}))
        with self.assertRaises(protocol.ProtocolError):
            serve(stdin, io.BytesIO(), 1 << 20)


class BrokenStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ is broken")


class NonStrStr(Exception):
    def __str__(self):
        return 42


class RejectWithoutInitBrokenStr(TaskError):
    def __init__(self):  # no super().__init__(): replies.rejected falls back to str(exc)
        pass

    def __str__(self):
        raise RuntimeError("no str")


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr either")


class RejectWithoutInit(TaskError):
    def __init__(self, field):  # does not call super().__init__: no .message
        self.field = field


class RejectWithBrokenMessage(TaskError):
    @property
    def message(self):
        raise RuntimeError("the message property is broken")

    @message.setter
    def message(self, value):
        pass


class FailureReplyTest(unittest.TestCase):
    """Whatever a task raises, and whatever that exception is like, the worker sends one well-formed reply and goes on."""

    def setUp(self):
        self.saved = dict(registry._tasks)
        registry.clear()
        task("double")(lambda x: x * 2)

    def tearDown(self):
        registry.clear()
        registry._tasks.update(self.saved)

    def replies(self, *raised):
        """Register a task per exception, call each, then double: return the replies (double's last)."""
        for index, exc in enumerate(raised):
            task(f"raise{index}")(functools.partial(_raise, exc))
        stdin = io.BytesIO(b"".join(
            frame({"t": "call", "id": i + 1, "task": name, "input": 2, "requestId": "r"})
            for i, name in enumerate([*(f"raise{i}" for i in range(len(raised))), "double"])
        ))
        stdout = io.BytesIO()
        serve(stdin, stdout, 1 << 26)
        _, *replies = read_all_frames(stdout.getvalue(), 1 << 26)
        self.assertEqual(replies[-1]["value"], 4, "the worker still answers")
        for reply in replies[:-1]:
            self.assertIsInstance(reply["message"], str, reply)
            self.assertIsInstance(reply["type"], str, reply)
        return replies[:-1]

    def test_an_exception_whose_str_breaks_is_a_failure_with_a_message(self):
        broken, non_str, unprintable = self.replies(BrokenStr("a"), NonStrStr(), Unprintable())
        self.assertEqual((broken["kind"], broken["type"], broken["message"]), ("failed", "BrokenStr", "BrokenStr('a')"))
        self.assertEqual((non_str["kind"], non_str["type"], non_str["message"]), ("failed", "NonStrStr", "NonStrStr()"))
        self.assertEqual((unprintable["kind"], unprintable["message"]), ("failed", "<unprintable Unprintable>"))
        self.assertIn("Traceback", unprintable["traceback"])

    def test_a_task_error_subclass_without_super_init_is_still_a_rejection(self):
        reply, = self.replies(RejectWithoutInit("email"))
        self.assertEqual((reply["kind"], reply["type"], reply["message"]), ("rejected", "RejectWithoutInit", "email"))
        self.assertNotIn("details", reply)

    def test_an_error_while_building_the_reply_is_a_plain_failure(self):
        reply, = self.replies(RejectWithBrokenMessage("x"))
        self.assertEqual((reply["kind"], reply["type"]), ("failed", "RuntimeError"))
        self.assertIn("could not be reported", reply["message"])
        self.assertIn("the message property is broken", reply["traceback"])

    def test_task_error_messages_are_always_str(self):
        self.assertEqual(TaskError(42).message, "42")
        self.assertEqual(TaskError().message, "the task refused its input", "no message: still a 422, not a TypeError's 500")
        self.assertEqual(TaskError(None).message, "None")
        self.assertEqual(TaskError(b"caf\xc3\xa9").message, "café")
        self.assertEqual(TaskError(b"\xff").message, "\ufffd")
        self.assertEqual(TaskError(ValueError("Expecting value: line 1")).message, "Expecting value: line 1")
        self.assertEqual(str(TaskError(42)), "42")
        number, none, raw = self.replies(TaskError(42), TaskError(None), TaskError(b"bytes"))
        self.assertEqual([r["message"] for r in (number, none, raw)], ["42", "None", "bytes"])
        self.assertEqual({r["kind"] for r in (number, none, raw)}, {"rejected"})

    def test_a_task_error_message_whose_str_breaks_shows_the_client_no_repr(self):
        class Broken:
            def __str__(self):
                raise RuntimeError("no str")

        # The default repr would show the client a memory address (<...Broken object at 0x7f...>).
        self.assertEqual(TaskError(Broken()).message, "<unprintable Broken>")
        without_init, = self.replies(RejectWithoutInitBrokenStr())
        self.assertEqual((without_init["kind"], without_init["message"]), ("rejected", "<unprintable RejectWithoutInitBrokenStr>"))

    def test_a_message_set_to_a_non_str_afterwards_is_sent_as_str(self):
        exc = TaskError("first")
        exc.message = 7
        reply, = self.replies(exc)
        self.assertEqual((reply["kind"], reply["message"]), ("rejected", "7"))

    def test_unsendable_task_error_details_say_so(self):
        big, odd = self.replies(TaskError("bad", {"n": 2 ** 70}), TaskError("bad", {"o": object()}))
        self.assertEqual((big["kind"], big["type"]), ("failed", "OverflowError"))
        self.assertEqual(big["message"], f"the details of the TaskError{RAISED} cannot be sent: at ['n'], an integer of 71 bits does not fit msgpack's 64; send it as a str")
        self.assertEqual(odd["message"], f"the details of the TaskError{RAISED} cannot be sent: at ['o'], a value of type object cannot be sent; use dicts, lists, str, numbers, bool, None or bytes")

    def test_an_exit_raised_while_the_result_is_converted_fails_the_call_not_the_worker(self):
        class Interrupts:
            def __lt__(self, other):
                raise KeyboardInterrupt

        class Exits(datetime.date):
            def isoformat(self):
                raise SystemExit(2)

        task("sorts")(lambda _input: {"s": {Interrupts(), Interrupts()}})
        task("dates")(lambda _input: [Exits(2026, 1, 1)])
        stdin = io.BytesIO(b"".join(frame({"t": "call", "id": i, "task": name, "input": 2, "requestId": "r"}) for i, name in enumerate(["sorts", "dates", "double"], 1)))
        stdout = io.BytesIO()
        serve(stdin, stdout, 1 << 26)
        _, sorts, dates, double = read_all_frames(stdout.getvalue())
        self.assertEqual((sorts["kind"], sorts["type"]), ("failed", "KeyboardInterrupt"))
        self.assertTrue(sorts["message"].startswith("the result cannot be sent"), sorts["message"])
        self.assertEqual((dates["kind"], dates["type"]), ("failed", "SystemExit"))
        self.assertEqual(double["value"], 4, "the worker goes on")

    def test_an_unsendable_result_says_what_it_is(self):
        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"n": -(2 ** 64)}), 1 << 20), raw=False)
        self.assertEqual(reply["message"], "the result cannot be sent: at ['n'], an integer below -2^63 does not fit msgpack's 64 bits; send it as a str")
        reply = msgpack.unpackb(encode_reply(protocol.result(1, [type]), 1 << 20), raw=False)
        self.assertEqual(reply["message"], "the result cannot be sent: at [0], a value of type type cannot be sent; use dicts, lists, str, numbers, bool, None or bytes")
        # Deep in a large result, past values that convert (dates, sets, Decimal): the path finds it.
        import datetime
        import decimal
        rows = [{"n": i, "when": datetime.date(2026, 1, 1), "tags": {"a"}, "price": decimal.Decimal("1.5")} for i in range(100)]
        rows.append({"n": 100, "ts": datetime.timedelta(days=1)})
        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"rows": rows}), 1 << 20), raw=False)
        self.assertEqual(reply["message"], "the result cannot be sent: at ['rows'][100]['ts'], a value of type datetime.timedelta cannot be sent; use dicts, lists, str, numbers, bool, None or bytes; it is a timedelta: return value.total_seconds()")
        reply = msgpack.unpackb(encode_reply(protocol.result(1, type), 1 << 20), raw=False)
        self.assertEqual(reply["message"], "the result cannot be sent: a value of type type cannot be sent; use dicts, lists, str, numbers, bool, None or bytes", "the value itself: no path")

    def test_a_huge_message_is_cut_and_the_reply_keeps_type_and_traceback(self):
        failed, rejected = self.replies(ValueError("m" * 40_000_000), TaskError("r" * 1_000_000))
        self.assertEqual((failed["kind"], failed["type"]), ("failed", "ValueError"))
        self.assertEqual(failed["message"], "m" * 65536 + " [truncated: 40,000,000 characters in all]")
        self.assertLessEqual(len(failed["traceback"]), 66 * 1024)
        self.assertTrue(failed["traceback"].startswith("Traceback (most recent call last):"), failed["traceback"][:100])
        self.assertIn("\nValueError: " + "m" * (1024 - len("ValueError: ")) + "...", failed["traceback"], "its line cut to 1 KiB")
        self.assertEqual((rejected["kind"], rejected["message"]), ("rejected", "r" * 65536 + " [truncated: 1,000,000 characters in all]"))

    def test_a_tracebacks_lines_are_cut_then_their_number_keeping_every_exception_line(self):
        group = ExceptionGroup("six causes", [ValueError(f"cause-{i} " + "m" * 15_000) for i in range(6)])
        lines_of_one, failed = self.replies(ValueError("\n".join(["x"] * 40_000)), group)
        for i in range(6):
            self.assertRegex(failed["traceback"], f"\\| ValueError: cause-{i} m+\\.\\.\\.\\n", "every cause's line, cut")
        self.assertTrue(all(len(line) <= 1024 + 3 for line in failed["traceback"].split("\n")))
        lines = lines_of_one["traceback"].split("\n")
        self.assertLessEqual(len(lines), 1001)
        self.assertIn("[... 39,", lines_of_one["traceback"])
        self.assertEqual(lines[-2:], ["x", ""], "the end kept")

    def test_an_error_reply_over_the_frame_limit_says_it_is_the_error(self):
        reply = msgpack.unpackb(encode_reply(protocol.error(1, "rejected", "TaskError", "m", {"rows": "x" * 2000}), 1000), raw=False)
        self.assertEqual(reply["kind"], "too_large")
        self.assertRegex(reply["message"], r"^the TaskError reply is \d+ bytes, over the limit of 1000")

    def test_a_lone_surrogate_in_a_message_is_escaped_and_the_error_kept(self):
        name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
        failed, rejected, other = self.replies(
            ValueError("cannot parse " + name), TaskError("bad \ud800", {"line": 1}), KeyError("x\udce9\ud800")
        )
        self.assertEqual((failed["kind"], failed["type"], failed["message"]), ("failed", "ValueError", "cannot parse caf\\xe9.txt"))
        self.assertIn("ValueError: cannot parse caf\\xe9.txt", failed["traceback"], "the task's own traceback, not the packer's")
        self.assertIn("_raise", failed["traceback"])
        self.assertEqual((rejected["kind"], rejected["message"], rejected["details"]), ("rejected", "bad \\ud800", {"line": 1}))
        self.assertEqual(other["message"], "'x\\udce9\\ud800'")

    def test_a_lone_surrogate_in_a_result_or_details_is_a_failure_that_says_where(self):
        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"files": ["a", "caf\udce9"]}), 1 << 20), raw=False)
        self.assertEqual((reply["kind"], reply["type"]), ("failed", "UnicodeEncodeError"))
        self.assertTrue(reply["message"].startswith("the result cannot be sent: the str at ['files'][1] holds a lone surrogate"), reply["message"])
        reply = msgpack.unpackb(encode_reply(protocol.error(1, "rejected", "TaskError", "m", {"caf\udce9": 1}), 1 << 20), raw=False)
        self.assertTrue(reply["message"].startswith("the details of the TaskError cannot be sent: a key holds a lone surrogate"), reply["message"])

    def test_keys_the_server_cannot_decode_in_details_are_blamed_on_the_details(self):
        tuple_key, bytes_key, mixed, huge = self.replies(
            TaskError("bad", {(1, 2): "x"}), TaskError("bad", {"at": {b"k": 1}}),
            TaskError("bad", {(b"ab", 2.5, (1, "x"), None, True): 1}), TaskError("bad", {(b"\0" * 8 * 1024 * 1024, "y" * 1000): 1}),
        )
        self.assertEqual((tuple_key["kind"], tuple_key["type"]), ("failed", "UndecodableDetails"))
        self.assertEqual(tuple_key["message"], f"the details of the TaskError{RAISED} has a tuple dict key [1,2]; use str keys")
        # As the server writes a result's (test/pool/protocol.test.ts has the same key and text), and
        # only the first 100 characters built: megabytes of bytes in a key are their length.
        self.assertEqual(mixed["message"], f'the details of the TaskError{RAISED} has a tuple dict key [<2 bytes>,2.5,[1,"x"],null,true]; use str keys')
        self.assertEqual(huge["message"], f'the details of the TaskError{RAISED} has a tuple dict key [<8388608 bytes>,"' + "y" * 79 + '...; use str keys')
        self.assertEqual(bytes_key["message"], f"the details of the TaskError{RAISED} has a bytes dict key at ['at']; use str keys")

    def test_keys_the_packer_makes_str_or_numbers_of_are_fine_in_details_as_in_results(self):
        # A date or Decimal key was taken for one the server cannot decode: a 500 where a 422 was meant.
        date_key, decimal_key, frozenset_key = self.replies(
            TaskError("some days are missing", {datetime.date(2024, 1, 31): "no readings"}),
            TaskError("bad", {"at": {decimal.Decimal("1.50"): 1}}), TaskError("bad", {frozenset({1}): 1}),
        )
        self.assertEqual((date_key["kind"], date_key["details"]), ("rejected", {"2024-01-31": "no readings"}))
        self.assertEqual((decimal_key["kind"], decimal_key["details"]), ("rejected", {"at": {"1.50": 1}}))
        self.assertEqual((frozenset_key["kind"], frozenset_key["type"]), ("failed", "UndecodableDetails"), "sent as an array: still refused")
        self.assertEqual(frozenset_key["message"], f"the details of the TaskError{RAISED} has a frozenset dict key; use str keys")

    def test_an_unsendable_value_has_no_traceback_of_the_packers_unless_the_tasks_code_ran_in_it(self):
        # The packer's and conversion.py's frames alone read as pyfleet failing, and said nothing the message does not.
        for value in (datetime.timedelta(days=1), {"big": 2**70}, {"r": range(3)}):
            with self.subTest(value=value):
                reply = msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)
                self.assertEqual(reply["kind"], "failed")
                self.assertTrue(reply["message"].startswith("the result cannot be sent: "), reply["message"])
                self.assertTrue(reply["traceback"].startswith("(no traceback: the value was returned, not raised"), reply["traceback"])

        class Day(datetime.date):
            def isoformat(self):
                raise ValueError("not a day of ours")

        (details,) = self.replies(TaskError("bad details", {"d": object()}))[:1]
        self.assertTrue(details["message"].startswith(f"the details of the TaskError{RAISED} cannot be sent: "), details["message"])
        self.assertTrue(details["traceback"].startswith("(no traceback of the conversion: the details were converted after the task had raised"),
                        f"a raised error's details are not said to be returned: {details['traceback']}")

        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"d": Day(2024, 1, 1)}), 1 << 20), raw=False)
        self.assertEqual((reply["type"], reply["message"]), ("ValueError", "the result cannot be sent: not a day of ours"))
        self.assertIn(", in isoformat\n", reply["traceback"], "the task's own method, which raised, is shown")

    def test_a_value_in_a_set_is_placed_where_the_sorted_set_puts_it(self):
        reply = msgpack.unpackb(encode_reply(protocol.result(1, {"ids": {1, 3, 2**70}}), 1 << 20), raw=False)
        self.assertEqual(reply["kind"], "failed")
        self.assertTrue(reply["message"].startswith("the result cannot be sent: at ['ids'][2], an integer of 71 bits"), reply["message"])

    def test_too_deep_or_cyclic_values_say_so(self):
        limit = value_depth_limit()  # msgpack's: 510 or 511 on 1.0, 1,024 on 1.2
        self.assertGreaterEqual(limit, 510)
        deep = []
        for _ in range(limit - 1):
            deep = [deep]
        # Read by its first bytes: msgpack 1.2's unpacker stops short of what its packer writes.
        self.assertIn(b"\xa1t\xa6result", encode_reply(protocol.result(1, deep), 1 << 20)[:16], "the deepest that can be sent")
        cyclic = {"a": []}
        cyclic["a"].append(cyclic)
        for which, value in enumerate(([deep], {"k": deep}, cyclic)):
            reply = msgpack.unpackb(encode_reply(protocol.result(1, value), 1 << 20), raw=False)
            self.assertEqual(reply["kind"], "failed", which)
            self.assertLess(reply["traceback"].count("\n"), 12, "the packer's last frames, not one pair per level")
            self.assertTrue(reply["message"].startswith(
                f"the result cannot be sent: it is nested more than {limit} levels deep (msgpack {'.'.join(map(str, msgpack.version))}'s limit), or contains itself; "
            ), reply["message"])

    def test_integers_past_64_bits_say_which_way(self):
        fits = msgpack.unpackb(encode_reply(protocol.result(1, [-(2 ** 63), 2 ** 64 - 1]), 1 << 20), raw=False)
        self.assertEqual(fits["value"], [-(2 ** 63), 2 ** 64 - 1])
        low = msgpack.unpackb(encode_reply(protocol.result(1, -(2 ** 63) - 1), 1 << 20), raw=False)
        self.assertEqual(low["message"], "the result cannot be sent: an integer below -2^63 does not fit msgpack's 64 bits; send it as a str")

    def test_a_task_error_from_a_second_copy_of_pyfleet_is_still_a_rejection(self):
        """What a task gets by re-importing pyfleet (importlib.reload, sys.modules entries removed)."""
        spec = importlib.util.spec_from_file_location("pyfleet.errors", pyfleet.errors.__file__)
        copy = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copy)
        self.assertIsNot(copy.TaskError, TaskError)

        class Subclass(copy.TaskError):
            pass

        reply, subclass = self.replies(copy.TaskError("x", {"f": 1}), Subclass("y"))
        self.assertEqual((reply["kind"], reply["type"], reply["message"], reply["details"]), ("rejected", "TaskError", "x", {"f": 1}))
        self.assertEqual((subclass["kind"], subclass["message"]), ("rejected", "y"))

    @unittest.skipIf(sys.version_info < (3, 11), "exception groups and asyncio.TaskGroup are Python 3.11+")
    def test_task_errors_in_an_exception_group_are_a_rejection_and_anything_else_with_them_a_failure(self):
        async def child_rejects():
            raise TaskError("bad child input", {"field": "x"})

        async def grouped():
            async with asyncio.TaskGroup() as group:  # what wraps a child's TaskError in an ExceptionGroup
                group.create_task(child_rejects())

        try:
            asyncio.run(grouped())
        except BaseException as exc:  # the ExceptionGroup TaskGroup raises
            from_task_group = exc
        nested = ExceptionGroup("outer", [ExceptionGroup("inner", [TaskError("first")]), TaskError("second")])
        deep = TaskError("deepest")
        for _ in range(5000):  # past the recursion limit: walked without recursion
            deep = ExceptionGroup("level", [deep])
        mixed = ExceptionGroup("g", [TaskError("bad"), ValueError("broken")])
        task_group, nested_reply, mixed_reply, deep_reply = self.replies(from_task_group, nested, mixed, deep)
        self.assertEqual((task_group["kind"], task_group["type"], task_group["message"], task_group["details"]),
                         ("rejected", "TaskError", "bad child input", {"field": "x"}))
        self.assertEqual((nested_reply["kind"], nested_reply["message"]), ("rejected", "first"))
        self.assertEqual((mixed_reply["kind"], mixed_reply["type"]), ("failed", "ExceptionGroup"))
        self.assertEqual((deep_reply["kind"], deep_reply["message"]), ("rejected", "deepest"))


class AwaitableResultTest(IsolatedRegistryTest):
    def test_an_async_def_behind_a_plain_decorator_is_awaited(self):
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(input):
                return fn(input)

            return wrapper

        @task("wrapped_async")
        @logged
        async def wrapped_async(x):
            await asyncio.sleep(0)
            return x + 1

        self.assertFalse(registry.get("wrapped_async").is_async)
        stdin = io.BytesIO(frame({"t": "call", "id": 1, "task": "wrapped_async", "input": 1, "requestId": "r"}))
        stdout = io.BytesIO()
        serve(stdin, stdout, 1 << 20)
        _, reply = read_all_frames(stdout.getvalue())
        self.assertEqual(reply["value"], 2)


def serve_calls(*calls):
    """Serve the calls on one in-memory worker loop; return the replies."""
    stdin = io.BytesIO(b"".join(
        frame({"t": "call", "id": i + 1, "task": name, "input": value, "requestId": f"r{i}"}) for i, (name, value) in enumerate(calls)
    ))
    stdout = io.BytesIO()
    serve(stdin, stdout, 1 << 20)
    return read_all_frames(stdout.getvalue())[1:]


class EventLoopTest(IsolatedRegistryTest):
    """A task cannot break the worker's event loop, nor the thread's current loop, for the calls after it."""

    def setUp(self):
        super().setUp()
        previous = asyncio.get_event_loop_policy()._local.__dict__.copy()
        self.addCleanup(lambda: (vars(asyncio.get_event_loop_policy()._local).clear(), vars(asyncio.get_event_loop_policy()._local).update(previous)))

        async def one():
            return 1

        @task("e.async")
        async def asynchronous(x):
            await asyncio.sleep(0)
            return x

        @task("e.close")
        def close_the_loop(_input):
            loop = asyncio.get_event_loop()
            value = loop.run_until_complete(one())
            loop.close()
            return value

        @task("e.run")
        def run(_input):
            return asyncio.run(one())

        @task("e.get")
        def get(_input):
            return asyncio.get_event_loop().run_until_complete(one())

        @task("e.set")
        def set_another(_input):
            loop = asyncio.new_event_loop()
            self.addCleanup(loop.close)
            asyncio.set_event_loop(loop)
            return "set"

    def values(self, *calls):
        return [reply.get("value", reply.get("message")) for reply in serve_calls(*calls)]

    def test_a_sync_task_that_closes_the_loop_gets_a_new_one_and_one_warning(self):
        with self.assertLogs("pyfleet", "WARNING") as logs:
            values = self.values(
                ("e.async", 1), ("e.close", None), ("e.async", 2), ("e.get", None), ("e.close", None), ("e.async", 3)
            )
        self.assertEqual(values, [1, 1, 2, 1, 1, 3])
        self.assertEqual(logs.output, [
            "WARNING:pyfleet:task 'e.close' closed the worker's event loop (a new one replaces it; asyncio tasks left on "
            "the old one are lost); undone after the call (logged once per task and worker)",
        ])

    def test_asyncio_run_leaves_a_current_loop_for_the_next_call(self):
        self.assertEqual(self.values(("e.run", None), ("e.get", None), ("e.async", 4), ("e.run", None), ("e.get", None)), [1, 1, 4, 1, 1])

    def test_another_loop_left_current_is_replaced_by_the_workers(self):
        with self.assertLogs("pyfleet", "WARNING") as logs:
            self.assertEqual(self.values(("e.set", None), ("e.async", 5), ("e.get", None)), ["set", 5, 1])
        self.assertIn("task 'e.set' left another asyncio event loop as the thread's current one", logs.output[0])

    def test_a_loop_a_task_module_made_current_at_import_is_adopted_not_replaced(self):
        registry.clear()
        loop = asyncio.new_event_loop()  # what a module might do at import: its queue and producer live on it
        self.addCleanup(loop.close)
        asyncio.set_event_loop(loop)
        queue = asyncio.Queue()

        async def produce():
            for n in range(3):
                await queue.put(n)

        loop.create_task(produce())
        task("e.fetch")(lambda _input: asyncio.get_event_loop().run_until_complete(asyncio.wait_for(queue.get(), 1)))
        with self.assertNoLogs("pyfleet", "WARNING"):
            self.assertEqual(self.values(("e.fetch", None), ("e.fetch", None)), [0, 1])

    def test_a_worker_without_async_tasks_heals_once_asyncio_is_used(self):
        registry.clear()
        task("e.close")(lambda _input: _close_current_loop())
        task("e.run")(lambda _input: asyncio.run(asyncio.sleep(0, 2)))
        task("e.get")(lambda _input: asyncio.get_event_loop().run_until_complete(asyncio.sleep(0, 3)))
        with self.assertLogs("pyfleet", "WARNING"):
            values = self.values(("e.close", None), ("e.get", None), ("e.close", None), ("e.run", None), ("e.get", None))
        self.assertEqual(values, [1, 3, 1, 2, 3])


def _close_current_loop():
    loop = asyncio.get_event_loop()
    value = loop.run_until_complete(asyncio.sleep(0, 1))
    loop.close()
    return value


def collect_tasks(logs):
    """Have asyncio log its own "Task exception was never retrieved" now, into ``logs``: the
    records' tracebacks keep the finished tasks alive, and GC would log it in a later test."""
    for record in logs.records:
        record.exc_info = None
    gc.collect()


class BackgroundExitTest(IsolatedRegistryTest):
    """SystemExit or KeyboardInterrupt from an asyncio task that is not the call's own does not fail the call running."""

    def setUp(self):
        super().setUp()

        @task("b.leave")
        async def leave(raised):
            async def background():
                await asyncio.sleep(0.05)
                raise {"exit": SystemExit(1), "interrupt": KeyboardInterrupt()}[raised]

            asyncio.get_running_loop().create_task(background())
            return "left"

        @task("b.sleep")
        async def sleep(seconds):
            await asyncio.sleep(seconds)
            return "slept"

        @task("b.gather")
        async def gather(_input):
            async def slow():
                await asyncio.sleep(0.1)

            async def bad():
                raise SystemExit(3)

            await asyncio.gather(slow(), bad())

        @task("b.shield")
        async def shield(_input):
            async def bad():
                await asyncio.sleep(0)
                raise SystemExit(3)

            await asyncio.shield(bad())

        @task("b.exit")
        async def own_exit(_input):
            await asyncio.sleep(0)
            sys.exit(2)

    def test_an_exit_left_by_an_earlier_call_is_logged_and_the_later_call_succeeds(self):
        for raised, described in (("exit", "SystemExit: 1"), ("interrupt", "KeyboardInterrupt")):
            with self.subTest(raised=raised), self.assertLogs(level="ERROR") as logs:
                left, slept, after = serve_calls(("b.leave", raised), ("b.sleep", 0.2), ("b.sleep", 0))
                collect_tasks(logs)
            self.assertEqual((left["value"], slept["value"], after["value"]), ("left", "slept", "slept"))
            ours = [line for line in logs.output if line.startswith("ERROR:pyfleet:")]
            self.assertEqual(len(ours), 1, logs.output)
            self.assertTrue(ours[0].startswith(
                f"ERROR:pyfleet:task 'b.sleep': while it ran, a background asyncio task (left running by an earlier call, "
                f"or started by this one and not awaited) raised {described}; logged here"
            ), ours[0])

    def test_a_loop_stop_while_a_call_runs_does_not_fail_it_and_its_code_does_not_run_on_after_its_reply(self):
        finished = []

        @task("b.stopper")
        async def stopper(_input):
            async def stop_soon():
                await asyncio.sleep(0.05)
                asyncio.get_running_loop().stop()

            asyncio.get_running_loop().create_task(stop_soon())
            return "started"

        @task("b.stops_itself")
        async def stops_itself(_input):
            asyncio.get_running_loop().stop()
            await asyncio.sleep(0.05)
            finished.append("stops_itself")
            return "ran on"

        @task("b.innocent")
        async def innocent(_input):
            await asyncio.sleep(0.2)
            finished.append("innocent")
            return "innocent"

        with self.assertLogs(level="WARNING") as logs:
            started, innocent_reply, itself = serve_calls(("b.stopper", None), ("b.innocent", None), ("b.stops_itself", None))
        self.assertEqual((started["value"], innocent_reply["value"], itself["value"]), ("started", "innocent", "ran on"), "no 500")
        self.assertEqual(finished, ["innocent", "stops_itself"], "each finished within its own call")
        self.assertIn("WARNING:pyfleet:task 'b.innocent': while it ran, an asyncio task called loop.stop(); the loop was run again until the call ended", logs.output)

    def test_a_task_s_own_runtime_error_is_still_its_failure(self):
        @task("b.raises")
        async def raises(_input):
            await asyncio.sleep(0)
            raise RuntimeError("its own")

        (reply,) = serve_calls(("b.raises", None))
        self.assertEqual((reply["kind"], reply["type"], reply["message"]), ("failed", "RuntimeError", "its own"))

    def test_an_exit_in_a_task_the_call_awaits_fails_the_call_and_is_not_logged_as_background(self):
        for name in ("b.gather", "b.shield"):
            with self.subTest(task=name), self.assertLogs(level="ERROR") as logs:
                logging.getLogger("test").error("(assertLogs wants one record)")
                awaited, later = serve_calls((name, None), ("b.sleep", 0.2))
                collect_tasks(logs)
            self.assertEqual((awaited["kind"], awaited["type"], awaited["message"]), ("failed", "SystemExit", "3"))
            self.assertEqual(later["value"], "slept")
            self.assertEqual([line for line in logs.output if line.startswith("ERROR:pyfleet:")], [], "its own failure, not a background task's")

    def test_the_calls_own_exit_is_still_its_failure(self):
        own, after = serve_calls(("b.exit", None), ("b.sleep", 0))
        self.assertEqual((own["kind"], own["type"], own["message"]), ("failed", "SystemExit", "2"))
        self.assertEqual(after["value"], "slept")


if __name__ == "__main__":
    unittest.main()
