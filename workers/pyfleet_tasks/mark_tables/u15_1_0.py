"""Combining marks of Unicode 15.1.0: the same as 15.0.0's (15.1 added none; pyfleet_tests/test_text_stats.py checks this against a scan on Python 3.13)."""

from pyfleet_tasks.mark_tables.u15_0_0 import MARK_RANGES

UNIDATA_VERSION = "15.1.0"
__all__ = ["MARK_RANGES", "UNIDATA_VERSION"]
