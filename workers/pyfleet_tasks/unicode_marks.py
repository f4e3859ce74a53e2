"""Every combining mark (Unicode categories Mn, Mc, Me) as a regex class body, for text.stats.

Python's \\w leaves marks out, which would cut Devanagari or Thai words apart
at every vowel sign, so text.stats adds them to its word class. Finding them
is a scan of 130,000 code points (~40 ms of CPU), too slow for every worker
start, and the pool replaces workers all the time; so the scan's result is kept
for each Unicode version a supported Python has, one module per version in
``pyfleet_tasks/mark_tables/`` (u13_0_0 for Python 3.10, u14_0_0 for 3.11,
u15_0_0 for 3.12, u15_1_0 for 3.13), and only another
version is scanned at import, with a warning. When a new Python brings a new
Unicode version, write its table with
``python3 -m pyfleet_tasks.unicode_marks > pyfleet_tasks/mark_tables/u<version>.py``
(pyfleet_tests/test_text_stats.py checks the running version's table against a scan).
"""

import importlib
import logging
import unicodedata


def table_module(version: str) -> str:
    """The module that keeps the table for a Unicode version."""
    return "pyfleet_tasks.mark_tables.u" + version.replace(".", "_")


def scan() -> str:
    """The class body, from the running Python's own Unicode database."""
    ranges = []
    # Marks live below U+20000 and in the variation selectors supplement; each
    # block is scanned to one past its end, so a run of marks closes inside it.
    for first, end in ((0x300, 0x20000), (0xE0100, 0xE01F0)):
        start = None
        for code in range(first, end + 1):
            is_mark = code < end and unicodedata.category(chr(code)).startswith("M")
            if is_mark and start is None:
                start = code
            elif not is_mark and start is not None:
                ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
                start = None
    return "".join(ranges)


def mark_ranges() -> str:
    """The kept table for the running Unicode version, else a fresh scan (and a warning)."""
    version = unicodedata.unidata_version
    try:
        return importlib.import_module(table_module(version)).MARK_RANGES
    except ModuleNotFoundError:
        pass
    logging.getLogger(__name__).warning(
        "no kept table of combining marks for Unicode %s (this Python's): scanning at every worker start (~40 ms); "
        "write one with python3 -m pyfleet_tasks.unicode_marks > pyfleet_tasks/mark_tables/u%s.py",
        version,
        version.replace(".", "_"),
    )
    return scan()


if __name__ == "__main__":
    ranges = scan()
    pairs = [ranges[i : i + 21] for i in range(0, len(ranges), 21)]  # one "\\Uxxxxxxxx-\\Uyyyyyyyy" each
    print(f'"""Combining marks of Unicode {unicodedata.unidata_version}: written by python3 -m pyfleet_tasks.unicode_marks."""')
    print()
    print(f'UNIDATA_VERSION = "{unicodedata.unidata_version}"')
    print("MARK_RANGES = (")
    for i in range(0, len(pairs), 3):
        print('    "' + "".join(pairs[i : i + 3]).replace("\\", "\\\\") + '"')
    print(")")
