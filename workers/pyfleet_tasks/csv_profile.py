"""``csv.profile``: a profile of every column of a CSV text (type, counts, range, mean, top values).

Reading is the csv module's; the numeric summaries are stats.py's.
"""

import csv
import heapq  # noqa: F401  Counter.most_common imports it on first use; here it is imported before ready
import math
import re
from collections import Counter
from datetime import date, datetime, timezone
from itertools import islice

from pyfleet import TaskError, task
from pyfleet_tasks.numeric import Runs, mean, sample_stddev

SNIFF_DELIMITERS = ",;\t|"
SNIFF_SAMPLE_CHARS = 65536
SNIFF_RECORDS = 50
TOP_VALUES = 5
# Integers beyond 2**53 lose precision as JavaScript numbers; they are profiled as floats instead.
MAX_SAFE_INTEGER = 2**53 - 1
# Each column costs the worker about 500 bytes and its answer about 200, whatever its values:
# 1,000,000 columns (a 2 MB body) took 527 MB and 3.6 s, and a 16 MiB body several GB. Wider
# tables than this are rare, and their profile would not fit the default frame limit anyway.
MAX_COLUMNS = 10_000

_INTEGER = re.compile(r"[+-]?[0-9]+")
# The fraction is one optional group: as "[0-9]+\.?[0-9]*", a failing fullmatch of a long
# run of digits ("111...1x") tried every split of the run between the two: quadratic time.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLEANS = frozenset(("true", "false", "yes", "no"))
# ISO 8601 as people write it; fromisoformat then checks that the day and time exist.
_DATE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
# Physical lines as csv.reader wants them (\r\n, \r or \n kept); io.StringIO
# would first copy the whole text at 4 bytes a character.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    # The raw field alone: OpenAPI shows it as the raw body's example too, which carries no options.
    "examples": [{"csv": "name,age\nAda,36\nGrace,41\n"}],
    "additionalProperties": False,
    "required": ["csv"],
    "properties": {
        "csv": {"type": "string", "description": "the CSV text (RFC 4180 quoting; a leading BOM is ignored)"},
        "delimiter": {
            "type": "string",
            "pattern": '^[^"\\r\\n]$',
            "description": "field delimiter, one character; default: sniffed among , ; tab | (else ,)",
        },
        "header": {
            "type": "boolean",
            "default": True,
            "description": "whether the first row names the columns; if not they are column1, column2, ...",
        },
    },
}


def _column_schema(kinds, extreme, mean, stddev):
    """One kind of column profile: ``kinds`` its types, the others the schemas of min/max, mean and stddev."""
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "type", "count", "nulls", "distinct", "min", "max", "mean", "stddev", "top"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the header's name, or columnN"},
            "type": {"type": "string", "enum": kinds, "description": "the narrowest type that fits every non-empty value"},
            "count": {**count, "description": "non-empty values"},
            "nulls": {**count, "description": "empty values"},
            "distinct": {**count, "description": "distinct non-empty values"},
            "min": {**extreme, "description": "smallest value"},
            "max": {**extreme, "description": "largest value"},
            "mean": {**mean, "description": "arithmetic mean, numeric columns only"},
            "stddev": {**stddev, "description": "sample standard deviation from two values up, numeric columns only"},
            "top": {
                "type": "array",
                "maxItems": TOP_VALUES,
                "description": f"the {TOP_VALUES} most frequent values, ties in order of first appearance",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["value", "count"],
                    "properties": {
                        "value": {"type": "string", "minLength": 1, "description": "the value as written, trimmed"},
                        "count": {"type": "integer", "minimum": 1, "description": "how often it occurs"},
                    },
                },
            },
        },
    }


_NULL = {"type": "null"}
_STDDEV = {"type": ["number", "null"], "minimum": 0}

OUTPUT_SCHEMA = {
    "type": "object",
    # What the input example above returns (a test calls each example and compares).
    "examples": [
        {
            "rows": 2,
            "columns": [
                {
                    "name": "name", "type": "string", "count": 2, "nulls": 0, "distinct": 2, "min": "Ada", "max": "Grace",
                    "mean": None, "stddev": None, "top": [{"value": "Ada", "count": 1}, {"value": "Grace", "count": 1}],
                },
                {
                    "name": "age", "type": "integer", "count": 2, "nulls": 0, "distinct": 2, "min": 36, "max": 41,
                    "mean": 38.5, "stddev": 3.5355339059327378, "top": [{"value": "36", "count": 1}, {"value": "41", "count": 1}],
                },
            ],
        }
    ],
    "additionalProperties": False,
    "required": ["rows", "columns"],
    "properties": {
        "rows": {"type": "integer", "minimum": 1, "description": "data rows (not the header, nor blank lines)"},
        "columns": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_COLUMNS,
            "description": "one profile per column, in order; its kind decides what min, max, mean and stddev hold",
            "items": {
                "anyOf": [
                    # Every value a safe integer: min and max are integers.
                    _column_schema(["integer"], {"type": "integer"}, {"type": ["number", "null"]}, _STDDEV),
                    _column_schema(["number"], {"type": "number"}, {"type": ["number", "null"]}, _STDDEV),
                    # min and max are values as written (null for a column of nulls only); no mean or stddev.
                    _column_schema(["boolean", "date", "string"], {"type": ["string", "null"], "minLength": 1}, _NULL, _NULL),
                ],
            },
        },
    },
}


@task("csv.profile", schema=SCHEMA, output_schema=OUTPUT_SCHEMA, timeout_ms=30000, raw=("text/csv",), raw_field="csv")
def profile(input):
    """Profile each column of a CSV text: inferred type, counts, distinct values, min, max, mean, stddev, top values.

    Values are trimmed; an empty value is a null. ``type`` is the first of
    integer, number, boolean (true/false/yes/no, any case), date (ISO 8601
    date or date-time) and string that fits every non-null value; a column of
    nulls only is string. ``min``/``max`` are numbers for numeric columns,
    else values as given (dates compared in time, naive ones as UTC; other
    types by code point). ``mean``/``stddev`` (sample) are for numeric
    columns, stddev from two values up. ``top`` is the 5 most frequent
    values, ties in order of first appearance. Blank lines are skipped.
    Header names are trimmed; an empty one becomes ``columnN`` and a repeated
    one ``name_2``, ``name_3``, ... Every record must have as many fields as
    the first, at most 10,000; error details give the 1-based line where a
    record starts.
    """
    text = input["csv"]
    if text.startswith("\ufeff"):
        text = text[1:]
    delimiter = input.get("delimiter") or _sniff_delimiter(text)
    reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)

    names = None
    columns = None  # per column: Counter of non-null values, in order of first appearance
    nulls = None
    rows = 0
    header_line = 1
    for record, start_line in _records(reader):
        if not record:  # a blank line
            continue
        if columns is None:
            if len(record) > MAX_COLUMNS:
                raise TaskError(
                    f"line {start_line} has {len(record)} fields; csv.profile profiles at most {MAX_COLUMNS} columns",
                    {"line": start_line},
                )
            columns = [Counter() for _ in record]
            nulls = [0] * len(record)
            if input.get("header", True):
                names = _unique_names(record)
                header_line = start_line
                continue
            names = [f"column{i}" for i in range(1, len(record) + 1)]
        if len(record) != len(columns):
            raise TaskError(
                f"line {start_line} has {_fields(len(record))}, expected {len(columns)}", {"line": start_line}
            )
        rows += 1
        for i, value in enumerate(record):
            value = value.strip()
            if value:
                columns[i][value] += 1
            else:
                nulls[i] += 1
    if columns is None:
        raise TaskError("the CSV is empty", {"line": 1})
    if rows == 0:
        raise TaskError(f"the CSV has a header (line {header_line}) but no data rows", {"line": header_line})
    return {"rows": rows, "columns": [_profile_column(*c) for c in zip(names, columns, nulls)]}


def _fields(count):
    return "1 field" if count == 1 else f"{count} fields"


def _records(reader):
    """(record, line where it starts) pairs; csv.Error becomes TaskError naming that line."""
    start_line = 1
    try:
        for record in reader:
            yield record, start_line
            start_line = reader.line_num + 1
    except csv.Error as error:
        message = f"unreadable CSV in the record starting on line {start_line}: {error}"
        raise TaskError(message, {"line": start_line}) from None


def _sniff_delimiter(text):
    """The candidate splitting the first records into equally many fields, the most fields winning; else ",".

    Not csv.Sniffer: its quote-guessing regex takes seconds on 64 KB of
    stray quotes, and it picks oddly on short samples. The csv.reader used
    here reads the sample in linear time and honours quoting.
    """
    sample = text[:SNIFF_SAMPLE_CHARS]
    best, best_width = ",", 1
    for candidate in SNIFF_DELIMITERS:
        try:
            reader = csv.reader(_lines(sample), delimiter=candidate)
            records = [record for record in islice(reader, SNIFF_RECORDS) if record]
        except csv.Error:
            continue
        if len(text) > len(sample) and len(records) > 1:
            records.pop()  # may be cut short by the sample's end
        widths = {len(record) for record in records}
        if len(widths) == 1 and max(widths) > best_width:
            best, best_width = candidate, max(widths)
    return best


def _lines(text):
    return (match.group() for match in _LINE.finditer(text))


def _unique_names(header):
    """Trimmed names, an empty one as columnN, a taken one with the first free suffix (name_2, name_3, ...).

    The suffix to try next is kept per name: counting from 2 again for each
    repeat took quadratic time on a header of one name repeated.
    """
    names = []
    seen = set()
    next_suffix = {}  # base name -> the suffix to try next; every lower one is taken (seen only grows)
    for i, raw in enumerate(header, start=1):
        base = raw.strip() or f"column{i}"
        name = base
        if name in seen:
            suffix = next_suffix.get(base, 2)
            name = f"{base}_{suffix}"
            while name in seen:
                suffix += 1
                name = f"{base}_{suffix}"
            next_suffix[base] = suffix + 1
        seen.add(name)
        names.append(name)
    return names


def _profile_column(name, counter, nulls):
    kind, parse = _infer_type(counter)
    column = {
        "name": name,
        "type": kind,
        "count": sum(counter.values()),
        "nulls": nulls,
        "distinct": len(counter),
        "min": None,
        "max": None,
        "mean": None,
        "stddev": None,
        "top": [{"value": value, "count": count} for value, count in counter.most_common(TOP_VALUES)],
    }
    if not counter:
        return column
    if kind in ("integer", "number"):
        # Counter keys are distinct values: parsed once each, and the sample left as runs of them
        # (expanded to a list of every cell, a 16 MiB column of one value took 395 MB with its
        # deviations). When none repeats, the list is the sample, and quicker to read than runs of one.
        values = [parse(text) for text in counter]
        sample = values if len(values) == column["count"] else Runs(values, counter.values())
        column["min"], column["max"] = min(values), max(values)
        center = mean(sample)
        column["mean"] = center if math.isfinite(center) else None
        column["stddev"] = sample_stddev(sample, center)
    else:
        key = _date_key if kind == "date" else None
        column["min"], column["max"] = min(counter, key=key), max(counter, key=key)
    return column


def _infer_type(counter):
    """The narrowest type that fits every distinct value, and its parser."""
    values = counter.keys()
    if not values:
        return "string", None
    if _all_safe_integers(values):
        return "integer", int
    if all(_NUMBER.fullmatch(v) and math.isfinite(float(v)) for v in values):
        return "number", float
    if all(v.lower() in _BOOLEANS for v in values):
        return "boolean", None
    if all(_date_key(v) is not None for v in values):
        return "date", None
    return "string", None


def _all_safe_integers(values):
    try:
        return all(_INTEGER.fullmatch(v) and abs(int(v)) <= MAX_SAFE_INTEGER for v in values)
    except ValueError:
        # int() refuses a text of over 4,300 digits (Python's guard against its quadratic time): no
        # safe integer, unless thousands of zeros lead it, and then it is profiled as a number.
        return False


def _date_key(text):
    """A comparable datetime for an ISO 8601 date or date-time (naive taken as UTC), or None."""
    if not _DATE.fullmatch(text):
        return None
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # a day or hour that does not exist, like 2023-02-30
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
