"""Tests of the csv.profile task: type inference, per-column figures, dialects, and errors with line numbers."""

import math
import random
import re
import statistics
import unittest

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet import TaskError
from pyfleet_tasks import csv_profile, numeric
from pyfleet_tasks.csv_profile import profile

PEOPLE = (
    "id,name,score,active,joined\n"
    "1,Ann,3.5,yes,2024-01-15\n"
    "2,Bob,4,No,2023-12-01T09:30:00Z\n"
    "3,,2.5,TRUE,2024-02-29\n"
    "4,Ann,,false,\n"
)


def run(text, **options):
    """The task's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(csv_profile.OUTPUT_SCHEMA, profile({"csv": text, **options}))


def columns(text, **options):
    return {column["name"]: column for column in run(text, **options)["columns"]}


class ProfilesColumns(unittest.TestCase):
    def test_profiles_every_column_with_hand_checked_figures(self):
        result = run(PEOPLE)
        self.assertEqual(result["rows"], 4)
        self.assertEqual([c["name"] for c in result["columns"]], ["id", "name", "score", "active", "joined"])
        by_name = {c["name"]: c for c in result["columns"]}
        self.assertEqual(
            by_name["id"],
            {
                "name": "id", "type": "integer", "count": 4, "nulls": 0, "distinct": 4, "min": 1, "max": 4,
                "mean": 2.5, "stddev": math.sqrt(5 / 3),
                "top": [{"value": v, "count": 1} for v in ("1", "2", "3", "4")],
            },
        )
        self.assertEqual(
            by_name["name"],
            {
                "name": "name", "type": "string", "count": 3, "nulls": 1, "distinct": 2, "min": "Ann", "max": "Bob",
                "mean": None, "stddev": None,
                "top": [{"value": "Ann", "count": 2}, {"value": "Bob", "count": 1}],
            },
        )
        score = by_name["score"]
        self.assertEqual((score["type"], score["count"], score["nulls"]), ("number", 3, 1))
        self.assertEqual((score["min"], score["max"]), (2.5, 4.0))
        self.assertAlmostEqual(score["mean"], 10 / 3, places=15)
        self.assertAlmostEqual(score["stddev"], statistics.stdev([3.5, 4.0, 2.5]), places=15)
        active = by_name["active"]
        self.assertEqual((active["type"], active["count"], active["distinct"]), ("boolean", 4, 4))
        self.assertEqual((active["min"], active["max"], active["mean"]), ("No", "yes", None))
        joined = by_name["joined"]
        self.assertEqual((joined["type"], joined["count"], joined["nulls"]), ("date", 3, 1))
        self.assertEqual((joined["min"], joined["max"]), ("2023-12-01T09:30:00Z", "2024-02-29"))

    def test_lists_the_five_most_frequent_values_ties_in_order_of_first_appearance(self):
        top = columns("v\n" + "\n".join("b a b c a d e f g".split()))["v"]["top"]
        self.assertEqual(top, [{"value": v, "count": n} for v, n in [("b", 2), ("a", 2), ("c", 1), ("d", 1), ("e", 1)]])

    def test_trims_values_and_counts_blank_ones_as_nulls(self):
        column = columns("n\n 1 \n\t2\n   \n")["n"]
        # the blank line is skipped; the line of spaces is a null
        self.assertEqual((column["type"], column["count"], column["nulls"], column["min"]), ("integer", 2, 1, 1))
        column = columns("n,m\n 1 ,x\n  ,y\n")["n"]
        self.assertEqual((column["count"], column["nulls"]), (1, 1))

    def test_gives_the_mean_of_values_at_the_largest_float(self):
        column = columns("v\n1.7976931348623157e308\n1.7976931348623157e308\n1.7976931348623157e308\n")["v"]
        self.assertEqual((column["type"], column["mean"], column["stddev"]), ("number", 1.7976931348623157e308, 0.0))

    def test_profiles_a_column_of_nulls_as_string(self):
        column = columns("a,b\n1,\n2,\n")["b"]
        self.assertEqual(
            {k: column[k] for k in ("type", "count", "nulls", "distinct", "min", "max", "top")},
            {"type": "string", "count": 0, "nulls": 2, "distinct": 0, "min": None, "max": None, "top": []},
        )

    def test_infers_the_narrowest_type_that_fits_every_value(self):
        cases = {
            "integer": ["-3", "+4", "007"],
            "number": ["1", "2.5", "-.5", "1e3", "6."],
            "boolean": ["True", "NO", "yes", "false"],
            "date": ["2024-01-01", "2024-01-01 10:00", "2024-01-01T10:00:00.123+02:00"],
            "string": ["1", "x"],
        }
        for expected, values in cases.items():
            with self.subTest(expected):
                self.assertEqual(columns("v\n" + "\n".join(values))["v"]["type"], expected)

    def test_keeps_integers_beyond_javascripts_safe_range_as_numbers(self):
        self.assertEqual(columns("n\n9007199254740991\n1\n")["n"]["type"], "integer")
        big = columns("n\n9007199254740992\n1\n")["n"]
        self.assertEqual((big["type"], big["max"]), ("number", 9007199254740992.0))

    def test_treats_non_finite_numbers_and_impossible_dates_as_strings(self):
        self.assertEqual(columns("n\n1e400\n1\n")["n"]["type"], "string")
        self.assertEqual(columns("n\nnan\n1\n")["n"]["type"], "string")
        self.assertEqual(columns("n\ninf\n")["n"]["type"], "string")
        self.assertEqual(columns("d\n2023-02-29\n2024-01-01\n")["d"]["type"], "string")

    def test_compares_dates_in_time_taking_naive_ones_as_utc(self):
        column = columns("d\n2024-01-01T01:00:00+02:00\n2023-12-31T23:30:00\n2024-01-01\n")["d"]
        # 2024-01-01T01:00+02:00 is 2023-12-31T23:00Z, the earliest of the three
        self.assertEqual((column["min"], column["max"]), ("2024-01-01T01:00:00+02:00", "2024-01-01"))

    def test_computes_numeric_figures_over_repeated_values(self):
        values = [1.5, 1.5, 1.5, 2.0, 10.25, 2.0]
        column = columns("x\n" + "\n".join(map(str, values)))["x"]
        self.assertEqual(column["distinct"], 3)
        self.assertAlmostEqual(column["mean"], statistics.mean(values), places=14)
        self.assertAlmostEqual(column["stddev"], statistics.stdev(values), places=14)
        self.assertIsNone(columns("x\n5\n")["x"]["stddev"])

    def test_figures_over_runs_of_repeated_values_are_those_over_every_value_to_the_bit(self):
        # A column's sample is its distinct values and their counts, never expanded (numeric.Runs).
        top = 1.7976931348623157e308
        for distinct, counts in [
            ([0.1, 0.7, 0.3], [3, 1, 5]),
            ([1, -2, 9007199254740991], [1000, 1, 2]),
            ([-0.0, 0.0, 5e-324], [2, 3, 1]),
            ([top, 1.0], [3, 1]),  # the sum passes the float range: the mean is taken scaled down
            ([top, -top, 2.0], [4, 3, 2]),  # residuals pass it too
        ]:
            with self.subTest(distinct=distinct, counts=counts):
                runs = numeric.Runs(distinct, counts)
                full = [v for value, count in zip(distinct, counts) for v in [value] * count]
                self.assertEqual(list(runs), full)
                center = numeric.mean(full)
                self.assertEqual(numeric.mean(runs).hex(), center.hex())
                self.assertEqual(repr(numeric.sample_stddev(runs, center)), repr(numeric.sample_stddev(full, center)))

    def test_describes_its_input_with_a_strict_schema(self):
        assert_strict_schema(self, csv_profile.SCHEMA)

    def test_describes_its_output_with_a_strict_schema_that_each_kind_of_column_matches(self):
        assert_strict_output_schema(self, csv_profile.OUTPUT_SCHEMA)
        # run() checks every result; these are the shapes each kind of column takes.
        profiled = columns(
            "int,num,bool,date,text,empty,one,big\n"
            "1,1.5,yes,2024-01-01,a,,7,9007199254740993\n"
            "-2,2,No,2024-01-01T10:00:00Z,b,,,1\n"
            "3,1e3,true,2023-12-31 23:59,a,,,2\n"
        )
        self.assertEqual(
            {name: column["type"] for name, column in profiled.items()},
            {"int": "integer", "num": "number", "bool": "boolean", "date": "date", "text": "string",
             "empty": "string", "one": "integer", "big": "number"},
        )
        self.assertEqual([profiled["empty"][key] for key in ("min", "max", "mean", "stddev", "top")], [None, None, None, None, []])
        self.assertIsNone(profiled["one"]["stddev"])
        for values in (["1"], ["0.5", ".5"], ["2.0", "2"]):
            run("x\n" + "\n".join(values) + "\n")
        # What the schema refuses: a number where a column of strings has values as written.
        wrong = run(PEOPLE)
        wrong["columns"][1]["min"] = 1
        with self.assertRaisesRegex(AssertionError, "no branch of anyOf"):
            checked_output(csv_profile.OUTPUT_SCHEMA, wrong)


class ReadsDialects(unittest.TestCase):
    def test_ignores_a_bom_and_reads_crlf_and_quoted_newlines(self):
        result = run('\ufeffid,note\r\n1,"two\r\nlines, and ""quotes"""\r\n2,plain\r\n')
        self.assertEqual(result["rows"], 2)
        self.assertEqual(result["columns"][0]["name"], "id")
        self.assertEqual(result["columns"][1]["top"][0]["value"], 'two\r\nlines, and "quotes"')

    def test_sniffs_semicolons_tabs_and_pipes(self):
        for delimiter in ";\t|":
            with self.subTest(repr(delimiter)):
                text = delimiter.join("abc") + "\n" + delimiter.join("123") + "\n"
                self.assertEqual(list(columns(text)), ["a", "b", "c"])

    def test_is_not_fooled_by_delimiters_inside_quotes_or_decimal_commas(self):
        self.assertEqual(list(columns('name;note\n"Smith, J";"a, b, c"\n')), ["name", "note"])
        self.assertEqual(list(columns("a;b\n1,5;2,5\n3;4\n")), ["a", "b"])

    def test_falls_back_to_commas_for_a_single_column(self):
        self.assertEqual(run("word\nhello\nworld\n")["columns"][0]["name"], "word")

    def test_uses_the_delimiter_given_over_sniffing(self):
        self.assertEqual(list(columns("a;b\n1;2\n", delimiter=",")), ["a;b"])
        self.assertEqual(list(columns("a b\n1 2\n", delimiter=" ")), ["a", "b"])

    def test_names_columns_by_position_without_a_header(self):
        result = run("x,1\ny,2\n", header=False)
        self.assertEqual(result["rows"], 2)
        self.assertEqual([c["name"] for c in result["columns"]], ["column1", "column2"])
        self.assertEqual(result["columns"][1]["type"], "integer")

    def test_makes_empty_and_repeated_header_names_unique(self):
        names = [c["name"] for c in run(" a ,,a,a_2,a,\n1,2,3,4,5,6\n")["columns"]]
        self.assertEqual(names, ["a", "column2", "a_2", "a_2_2", "a_3", "column6"])

    def test_reads_a_last_line_without_a_newline(self):
        self.assertEqual(run("a\n1\n2")["rows"], 2)


def old_unique_names(header):
    """csv_profile._unique_names before its per-name counter: quadratic, the reference for the new one."""
    names = []
    seen = set()
    for i, raw in enumerate(header, start=1):
        base = raw.strip() or f"column{i}"
        name, suffix = base, 2
        while name in seen:
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(name)
        names.append(name)
    return names


# csv_profile._NUMBER before its fraction became one group: quadratic on a long run of digits that fails.
OLD_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class HostileCsv(unittest.TestCase):
    """Inputs that took quadratic time, half a minute to many minutes each; no timed assertion, the suite would hang."""

    def test_numbers_50000_repeats_of_one_column_name(self):
        # 50,000 columns named "a": minutes with the old names (8,000 took 4 s)
        count = 50_000
        self.assertEqual(csv_profile._unique_names(["a"] * count), ["a"] + [f"a_{n}" for n in range(2, count + 1)])
        self.assertEqual(csv_profile._unique_names(["a_3", *["a"] * count])[-1], f"a_{count + 1}")
        widest = csv_profile.MAX_COLUMNS  # through the task, as wide as it takes
        result = run(",".join(["a"] * widest) + "\n" + ",".join(["1"] * widest) + "\n")
        self.assertEqual(result["columns"][-1]["name"], f"a_{widest}")

    def test_names_columns_as_the_old_suffix_search_did(self):
        rng = random.Random(20240611)
        names = ["a", "a_2", "a_3", "a_2_2", "a_1", "a_02", "a_", "_2", "b", "b_2", "", " ", " a ",
                 "column1", "column2", "column2_2", "column3_2"]
        for _ in range(20_000):
            header = [rng.choice(names) for _ in range(rng.randrange(24))]
            self.assertEqual(csv_profile._unique_names(header), old_unique_names(header), header)

    def test_profiles_100000_digits_and_a_letter_as_a_string(self):
        # minutes with the old pattern (16,000 digits took 4 s)
        column = columns("v\n" + "1" * 100_000 + "x\n" + "1" * 50_000 + "." + "2" * 50_000 + "e5x\n")["v"]
        self.assertEqual((column["type"], column["distinct"]), ("string", 2))

    def test_matches_numbers_as_the_old_pattern_did(self):
        rng = random.Random(20240612)
        for _ in range(50_000):
            text = "".join(rng.choice("0123456789.eE+-x") for _ in range(rng.randrange(9)))
            self.assertEqual(bool(csv_profile._NUMBER.fullmatch(text)), bool(OLD_NUMBER.fullmatch(text)), text)

    def test_profiles_integers_of_over_4300_digits_as_numbers_or_strings(self):
        # int() refuses them (ValueError): the CSV used to fail as an internal error
        column = columns("n\n" + "0" * 5000 + "7\n-" + "0" * 5000 + "42\n")["n"]
        self.assertEqual((column["type"], column["min"], column["max"]), ("number", -42.0, 7.0))
        self.assertEqual(columns("n\n" + "1" * 5000 + "\n")["n"]["type"], "string")  # inf as a float
        self.assertEqual(columns("n\n" + "9" * 5000 + "\n1.5\n")["n"]["type"], "string")
        self.assertEqual(columns("n\n" + "1" * 4300 + "\n")["n"]["type"], "string")  # int() takes it, unsafe


class RefusesBadCsv(unittest.TestCase):
    def assertRefused(self, text, line, fragment, **options):
        with self.assertRaises(TaskError) as caught:
            run(text, **options)
        self.assertEqual(caught.exception.details, {"line": line})
        self.assertIn(fragment, caught.exception.message)

    def test_refuses_more_columns_than_it_profiles(self):
        # each column costs memory whatever it holds: a 2 MB body of a million took 527 MB
        wide = csv_profile.MAX_COLUMNS + 1
        self.assertRefused("\n" + ",".join(["a"] * wide) + "\n1\n", 2, f"line 2 has {wide} fields; csv.profile profiles at most 10000 columns")
        self.assertRefused(",".join(["1"] * wide), 1, "at most 10000 columns", header=False)

    def test_names_the_line_where_a_ragged_record_starts(self):
        self.assertRefused("a,b,c\n1,2,3\n4,5\n", 3, "line 3 has 2 fields, expected 3")
        self.assertRefused("a,b\n1\n", 2, "line 2 has 1 field, expected 2")
        # the quoted newline and the blank line still count as lines
        self.assertRefused('a,b\r\n1,"multi\r\nline"\r\n\r\n2,3,4\r\n', 5, "line 5 has 3 fields")
        self.assertRefused("1,2\n3,4,5\n", 2, "expected 2", header=False)

    def test_refuses_empty_input_at_line_1(self):
        for text in ("", "\ufeff", "\n\n\r\n"):
            with self.subTest(repr(text)):
                self.assertRefused(text, 1, "empty")

    def test_refuses_a_header_without_rows(self):
        self.assertRefused("a,b\r\n", 1, "no data rows")
        self.assertRefused("\n\na,b\n\n", 3, "header (line 3)")

    def test_refuses_an_unterminated_quote_at_the_line_it_opens(self):
        self.assertRefused('a,b\n1,2\n3,"open\nmore\n', 3, "unexpected end of data")

    def test_refuses_text_after_a_closing_quote(self):
        self.assertRefused('a,b\n1,"x"y\n', 2, "expected after")

    def test_refuses_a_field_over_the_csv_modules_size_limit(self):
        self.assertRefused("a\n" + "x" * 200_000 + "\n", 2, "field larger than field limit")


if __name__ == "__main__":
    unittest.main()
