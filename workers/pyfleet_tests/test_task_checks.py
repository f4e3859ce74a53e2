"""What @task refuses at import, and how it says so: every message names the task and what to fix."""

import functools
import importlib
import re
import types
import unittest

from pyfleet import registry, task
from pyfleet_tests.isolated_registry import IsolatedRegistryTest


def takes_input(input):
    """Takes the input."""
    return input


class RegistrationTest(IsolatedRegistryTest):
    def assertRefused(self, exc_type, pattern, name="t", fn=takes_input, **options):
        with self.assertRaisesRegex(exc_type, pattern):
            task(name, **options)(fn)
        self.assertIsNone(registry.get(name), "nothing was registered")


class TwiceTest(RegistrationTest):
    def test_a_name_registered_twice_names_both_modules(self):
        task("t")(takes_input)
        other = types.FunctionType(takes_input.__code__, {}, "elsewhere")
        other.__module__ = "mytasks.other"
        with self.assertRaisesRegex(ValueError, r"^task 't' is registered twice \(pyfleet_tests\.test_task_checks and mytasks\.other\)$"):
            task("t")(other)
        registry.clear()
        task("t")(functools.partial(takes_input))
        with self.assertRaisesRegex(ValueError, r"^task 't' is registered twice \(pyfleet_tests\.test_task_checks and mytasks\.other\)$", msg="partials: their functions' modules, not functools"):
            task("t")(functools.partial(other))

    def test_a_built_in_tasks_name_taken_again_says_so_and_how_to_name_yours(self):
        def in_module(module):
            fn = types.FunctionType(takes_input.__code__, {}, "echo")
            fn.__module__ = module
            return fn

        task("echo")(in_module("pyfleet_tasks.echo"))
        with self.assertRaisesRegex(ValueError, r"^task 'echo' is registered twice \(pyfleet_tasks\.echo and mytasks\.shop\): 'echo' is a built-in task's name; give yours a prefix of your own \('mytasks\.echo'\)$"):
            task("echo")(in_module("mytasks.shop"))

    def test_one_module_twice_says_how_to_load_it_afresh(self):
        task("t")(takes_input)
        module = importlib.import_module("pyfleet_tests.test_task_checks")
        with self.assertRaisesRegex(ValueError, r"^task 't' is registered twice \(pyfleet_tests\.test_task_checks and pyfleet_tests\.test_task_checks\): two of its functions have that name, or the module was imported again \(importlib\.reload, %autoreload\); to load it afresh in a REPL or a test, call pyfleet\.registry\.clear\(\) first"):
            task("t")(module.takes_input)
        registry.clear()
        task("t")(takes_input)  # as the message says
        self.assertIs(registry.get("t").fn, takes_input)


class OptionsTest(RegistrationTest):
    def test_numbers_must_be_positive_integers_and_not_bools(self):
        for field in ("timeout_ms", "max_concurrency"):
            for bad in (True, False, 0, -1, 1.5, "5", 2**53):
                with self.subTest(field=field, value=bad):
                    self.assertRefused(ValueError, rf"^task 't': {field} must be a positive integer or None, not {bad!r}$", **{field: bad})
        task("t", timeout_ms=2**31, max_concurrency=1)(takes_input)
        self.assertEqual(registry.get("t").timeout_ms, 2**31)

    def test_a_schema_is_a_dict_or_a_bool(self):
        self.assertRefused(ValueError, r"^task 't': schema must be a JSON schema, a dict \(or a bool\), not the str 'object'$", schema="object")
        self.assertRefused(ValueError, r"^task 't': schema must be .* not the list \[\]$", schema=[])
        for index, schema in enumerate((True, False, {})):
            with self.subTest(schema=schema):
                task(f"ok{index}", schema=schema)(takes_input)
                self.assertIs(registry.get(f"ok{index}").describe()["schema"], schema)

    def test_an_output_schema_is_checked_as_the_input_schema_and_declared_as_outputSchema(self):
        self.assertRefused(ValueError, r"^task 't': output_schema must be a JSON schema, a dict \(or a bool\), not the str 'object'$", output_schema="object")
        self.assertRefused(ValueError, r"^task 't': output_schema\['properties'\]\['n'\]\['type'\] is 'int', which is no JSON Schema type .*write 'integer'", output_schema={"type": "object", "properties": {"n": {"type": "int"}}})
        self.assertRefused(ValueError, r"^task 't': output_schema\['x'\] is a set; a schema holds only", output_schema={"x": {1}})
        shape = {"type": "object", "properties": {"n": {"type": "integer"}}}
        task("shaped", output_schema=shape)(takes_input)
        self.assertIs(registry.get("shaped").describe()["outputSchema"], shape)
        task("unshaped")(takes_input)
        self.assertIsNone(registry.get("unshaped").describe()["outputSchema"], "none declared: null, not {}")
        task("anything", output_schema=True)(takes_input)
        self.assertIs(registry.get("anything").describe()["outputSchema"], True)
        self.assertRefused(ValueError, r"^task 't': output_schema=False accepts no result \(every call would be a 500 RESULT_INVALID with VALIDATE_RESULTS=1\); "
                                       r"describe what the task returns, or leave output_schema out$", output_schema=False)

    def test_keywords_that_do_not_mean_what_they_were_written_for_are_refused_saying_what_to_write(self):
        for field in ("schema", "output_schema"):
            with self.subTest(field=field):
                self.assertRefused(ValueError, rf"^task 't': {field}\['properties'\]\['x'\] has 'nullable', which is OpenAPI 3\.0's and not JSON Schema's .*: write \"type\": \[\"number\", \"null\"\] instead$",
                                   **{field: {"type": "object", "properties": {"x": {"type": "number", "nullable": True}}}})
                self.assertRefused(ValueError, r"has 'nullable', .*: drop it: \"type\" allows null already$", **{field: {"type": ["string", "null"], "nullable": True}})
                self.assertRefused(ValueError, r"\['dependencies'\]\['a'\] has 'nullable'", **{field: {"type": "object", "dependencies": {"a": {"nullable": True}, "b": ["a"]}}})
                self.assertRefused(ValueError, rf"^task 't': {field} has both \"bytes\": true and \"type\": 'string'; a binary value is none of JSON's types",
                                   **{field: {"bytes": True, "type": "string"}})
                # The server reads schemas as JavaScript numbers: an id past 2**53 in const or enum took its rounded neighbour for it.
                self.assertRefused(ValueError, rf"^task 't': {field}\['properties'\]\['id'\]\['enum'\] holds 9007199254740993, an integer past 2\*\*53: .* rounds? it to 9007199254740992, and would take that value for it; write such ids as strings",
                                   **{field: {"type": "object", "properties": {"id": {"enum": [1, 9007199254740993]}}}})
                self.assertRefused(ValueError, r"\['const'\] holds -9007199254740995", **{field: {"const": {"a": [-9007199254740995]}}})
        task("exact", schema={"type": "object", "properties": {"id": {"enum": [2**53, -(2**53)], "maximum": 2**63 - 1}}, "default": {"id": 2**60}})(takes_input)
        # Properties so named are names, not keywords; "nullable": false says nothing JSON Schema does not.
        task("named", schema={"type": "object", "properties": {"nullable": {"type": "boolean"}, "bytes": {"bytes": True}, "s": {"type": "string", "nullable": False}}})(takes_input)
        self.assertIsNotNone(registry.get("named"))

    def test_a_schema_holds_json_values_only_and_the_message_points_at_the_bad_one(self):
        cases = {
            "python type": ({"properties": {"n": {"type": int}}}, r"schema\['properties'\]\['n'\]\['type'\] is the Python type int; a schema is JSON: write 'integer'"),
            "set": ({"enum": {1, 2}}, r"schema\['enum'\] is a set; a schema holds only dicts, lists, str, numbers, bool and None"),
            "key": ({"properties": {1: {}}}, r"schema\['properties'\] has the key 1; JSON keys are str"),
            "huge int": ({"maximum": 2**64}, r"schema\['maximum'\] is an integer beyond 64 bits"),
            # Published as null in GET /api/tasks, while the server would validate and fill with the NaN itself.
            "nan default": ({"properties": {"x": {"type": "number", "default": float("nan")}}},
                            r"schema\['properties'\]\['x'\]\['default'\] is nan; JSON has no NaN or infinity: use a finite number, or leave the keyword out"),
            "infinite bound": ({"maximum": float("inf")}, r"schema\['maximum'\] is inf; JSON has no NaN or infinity: .*"),
            "in a list": ({"anyOf": [{"type": "string"}, {"type": str}]}, r"schema\['anyOf'\]\[1\]\['type'\] is the Python type str; a schema is JSON: write 'string'"),
        }
        for case, (schema, message) in cases.items():
            with self.subTest(case=case):
                self.assertRefused(ValueError, rf"^task 't': {message}$", schema=schema)
        for given, meant in (("int", "integer"), ("str", "string"), ("Number", "number"), ("dict", "object")):
            with self.subTest(type=given):
                self.assertRefused(ValueError, rf"^task 't': schema\['properties'\]\['n'\]\['type'\] is '{given}', which is no JSON Schema type \(one of array, boolean, integer, null, number, object, string\): write '{meant}'$",
                                   schema={"type": "object", "properties": {"n": {"type": given}}})
        self.assertRefused(ValueError, r"^task 't': schema\['anyOf'\]\[0\]\['type'\] is 'thing', which is no JSON Schema type \(one of .*\)$", schema={"anyOf": [{"type": ["string", "thing"]}]})
        # A value that happens to have a "type" key is data, not a schema.
        task("shapes", schema={"type": "object", "default": {"type": "circle"}, "properties": {"type": {"type": "string", "enum": ["circle"]}},
                               "dependencies": {"type": ["radius"]}})(takes_input)
        looped = {}
        looped["self"] = looped
        self.assertRefused(ValueError, r"nested 100 deep \(does the schema contain itself\?\)", schema=looped)
        task("t", schema={"type": "object", "properties": {"x": {"enum": [1, 2.5, None, True, "s"]}}, "items": ({"type": "string"},)})(takes_input)

    def test_an_unknown_option_names_the_one_meant(self):
        options = "its options are schema, output_schema, timeout_ms, raw, raw_field, max_concurrency, fill_defaults"
        cases = [
            ("timeout", "did you mean timeout_ms? "),
            ("max_concurency", "did you mean max_concurrency? "),
            ("raw_fields", "did you mean raw_field? "),
            ("input_schema", "did you mean schema? "),  # not output_schema, which its spelling is closest to
            ("retries", ""),
        ]
        for option, meant in cases:
            with self.subTest(option=option):
                with self.assertRaisesRegex(TypeError, f"^task 'kw': @task has no option '{option}'; {re.escape(meant + options)}$"):
                    task("kw", **{option: 1})
        self.assertIsNone(registry.get("kw"), "nothing was registered")

    def test_options_given_positionally_are_refused_saying_they_are_keywords(self):
        cases = [
            (({"type": "object"},), "schema={...}"),
            ((True,), "schema={...}"),
            ((5000,), "timeout_ms=5000"),
            (("text/plain", "text"), "raw='text/plain', raw_field=..."),
            ((["text/csv"],), "raw=['text/csv'], raw_field=..."),
            ((None,), "schema={...}, timeout_ms=..."),
        ]
        for args, example in cases:
            with self.subTest(args=args):
                with self.assertRaisesRegex(
                    TypeError,
                    r"^task 'pos': every argument after the name is a keyword \(schema, output_schema, timeout_ms, raw, raw_field, max_concurrency, fill_defaults\): "
                    rf"write @task\('pos', {re.escape(example)}\)$",
                ):
                    task("pos", *args)
        self.assertIsNone(registry.get("pos"), "nothing was registered")
        task("pos", schema={"type": "object"}, timeout_ms=5000)(takes_input)
        self.assertEqual((registry.get("pos").schema, registry.get("pos").timeout_ms), ({"type": "object"}, 5000))

    def test_dot_names_are_refused_as_unreachable(self):
        for name in (".", ".."):
            with self.subTest(name=name):
                self.assertRefused(ValueError, rf"^task name '{name}' cannot be used: clients resolve it away in the URL path", name=name)
        task(".hidden")(takes_input)
        task("a..b")(takes_input)

    def test_raw_may_be_one_content_type(self):
        task("t", raw="text/plain", raw_field="text")(takes_input)
        self.assertEqual(registry.get("t").describe()["raw"], ["text/plain"])
        self.assertRefused(ValueError, r"^task 't2': raw must be a content type or a list of them, not 5$", name="t2", raw=5, raw_field="x")
        self.assertRefused(ValueError, r"^task 't2': raw content type 5 must look like", name="t2", raw=[5], raw_field="x")
        # Each matched no request, its parameters and wildcards being compared as they are (a 415 for every body).
        for bad in ("text/plain; charset=utf-8", "text/*", "*/*", "Text/Plain", " text/plain", "text/", "text/plain/x"):
            with self.subTest(raw=bad):
                self.assertRefused(ValueError, r"without parameters or wildcards", name="t3", raw=[bad], raw_field="x")
        task("t4", raw=["application/vnd.api+json", "text/x-c++src"], raw_field="x")(takes_input)

    def test_raw_field_needs_raw_and_raw_needs_raw_field(self):
        self.assertRefused(ValueError, r"^task 't': raw_field 'text' needs raw, the content types whose body goes there$", raw_field="text")
        self.assertRefused(ValueError, r"^task 't': raw content types need raw_field", raw=("text/plain",))
        self.assertRefused(ValueError, r"^task 't': raw_field must be the name of an input field, not ''$", raw=("text/plain",), raw_field="")

    def test_a_schema_that_refuses_every_raw_call_is_refused(self):
        raw = {"raw": "text/plain", "raw_field": "text"}
        self.assertRefused(ValueError, r"^task 't': a raw body arrives as the object \{'text': body\}, which the schema's type 'string' refuses$", schema={"type": "string"}, **raw)
        self.assertRefused(ValueError, r"^task 't': schema false refuses every input", schema=False, **raw)
        self.assertRefused(
            ValueError, r"^task 't': raw_field 'text' is not among the schema's properties and additionalProperties is false",
            schema={"type": "object", "additionalProperties": False, "properties": {"top": {"type": "integer"}}}, **raw,
        )
        # What a raw call can pass: the field listed, other object types, pattern properties, required query options.
        for index, schema in enumerate([
            {"type": "object", "additionalProperties": False, "properties": {"text": {"type": "string"}}},
            {"type": ["object", "null"]},
            {"type": "object", "additionalProperties": False, "patternProperties": {"^t": {}}},
            {"type": "object", "required": ["text", "top"]},
            True,
        ]):
            with self.subTest(schema=schema):
                task(f"ok{index}", schema=schema, **raw)(takes_input)


    def test_a_raw_field_whose_type_refuses_the_body_is_refused(self):
        props = lambda field: {"type": "object", "properties": {"data": field}}  # noqa: E731
        self.assertRefused(
            ValueError, r"^task 't': an application/octet-stream body arrives in 'data' as bytes, which the field's type 'string' refuses; declare it \{'bytes': True\}$",
            schema=props({"type": "string"}), raw="application/octet-stream", raw_field="data",
        )
        self.assertRefused(
            ValueError, r"^task 't': a text/plain body arrives in 'data' as a str, which the field's bytes: True refuses$",
            schema=props({"bytes": True}), raw="text/plain", raw_field="data",
        )
        self.assertRefused(
            ValueError, r"^task 't': a text/csv body arrives in 'data' as a str, which the field's type 'integer' refuses$",
            schema=props({"type": "integer"}), raw="text/csv", raw_field="data",
        )
        # Both kinds of body: a field that takes either (as hash.digest's does).
        task("both", schema=props({"anyOf": [{"type": "string"}, {"bytes": True}]}), raw=("application/octet-stream", "text/plain"), raw_field="data")(takes_input)
        task("bytes", schema=props({"bytes": True, "description": "d"}), raw="application/octet-stream", raw_field="data")(takes_input)
        task("nullable", schema=props({"type": ["string", "null"], "minLength": 1}), raw="text/plain", raw_field="data")(takes_input)

    def test_json_and_msgpack_are_never_raw(self):
        for content_type in ("application/json", "application/msgpack", "application/x-msgpack", "application/vnd.msgpack"):
            with self.subTest(content_type=content_type):
                self.assertRefused(
                    ValueError, rf"^task 't': raw content type '{content_type}' is always parsed into the input itself, never passed raw; leave it out",
                    raw=("text/plain", content_type), raw_field="text",
                )


class FunctionTest(RegistrationTest):
    def test_task_without_parentheses_says_how_to_use_it(self):
        with self.assertRaisesRegex(TypeError, r'^@task needs the task\'s name: use @task\("name"\) above takes_input\(\)$'):
            task(takes_input)

    def test_a_function_that_cannot_take_exactly_the_input_is_refused(self):
        def no_args():
            pass

        def two(a, b):
            pass

        def keyword_only(a, *, k):
            pass

        def generator(input):
            yield input

        def input_by_name(*, input):
            pass

        async def async_generator(input):
            yield input

        class Methods:
            def run(self, input):
                pass

        class NoInput:
            def __init__(self):
                pass

        cases = {
            no_args: r"no_args\(\) takes no argument; a task function takes one, the input$",
            input_by_name: r"input_by_name\(\) takes no positional argument; a task function takes one, the input \(the input is passed by position: drop the \*\)$",
            two: r"two\(\) requires a, b; a task function is called with one argument, the input, so give the others defaults$",
            keyword_only: r"keyword_only\(\) requires a, k; ",
            generator: r"generator\(\) is a generator \(it yields\), whose result cannot be sent; return a list instead",
            async_generator: r"async_generator\(\) is a generator",
            Methods.run: r"Methods.run\(\) requires self, input; .* \(a method\? register a bound method, task\(name\)\(obj.method\), or a function\)",
            Methods: r"Methods\(\) is a class whose constructor takes no argument; decorate a function that takes the input",
            NoInput: r"NoInput.__init__\(\) takes no argument besides the 1 already bound",
            5: r"5 is not callable",
            functools.partial(two, a=1): r"two\(\) would get its parameter 'a' from functools.partial and the input both",
            functools.partial(two, 1, 2): r"two\(\) takes no argument besides the 2 already bound",
        }
        for fn, message in cases.items():
            with self.subTest(fn=fn):
                self.assertRefused(TypeError, rf"^task 't': .*{message}", fn=fn)

    def test_what_can_take_the_input_is_accepted(self):
        def defaults(a, b=1, *, k=2):
            return a

        def varargs(*args, **kwargs):
            return args

        def two(a, b):
            return a, b

        class Service:
            """A callable object."""

            def run(self, input):
                return input

            def __call__(self, input):
                return input

            @staticmethod
            def static(input):
                return input

        class Record(dict):
            """A class whose constructor takes the input: calling it is the task."""

            def __init__(self, input):
                super().__init__(seen=input)

        class Made:
            def __new__(cls, input):
                return {"made": input}

        accepted = [
            defaults, varargs, lambda x: x, len, Service().run, Service(), Service.static, staticmethod(takes_input),
            functools.partial(two, 1), functools.partial(two, b=1), functools.partial(Service().run), print,
            Record, Made, str, list,
        ]
        for index, fn in enumerate(accepted):
            with self.subTest(fn=fn):
                task(f"ok{index}")(fn)

    def test_a_partials_description_is_its_functions_docstring(self):
        task("t")(functools.partial(takes_input))
        self.assertEqual(registry.get("t").doc, "Takes the input.")


if __name__ == "__main__":
    unittest.main()
