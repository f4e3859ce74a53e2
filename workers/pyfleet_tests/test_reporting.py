"""How a worker reports (pyfleet.reporting): one line per record, and log_failure's record on fd 2.

fail() and fail_import() end the process: test_main.py runs them in real workers.
"""

import logging
import os
import unittest

from pyfleet.reporting import LOG_FORMAT, OneLineFormatter, log_failure


def record(message, exc_info=None):
    return logging.LogRecord("pyfleet", logging.WARNING, __file__, 1, "%s", (message,), exc_info)


class OneLineFormatterTest(unittest.TestCase):
    def test_a_multi_line_message_and_its_traceback_stay_one_line(self):
        try:
            raise ValueError("bad\nvalue")
        except ValueError as exc:
            line = OneLineFormatter(LOG_FORMAT).format(record("first\nsecond", (ValueError, exc, exc.__traceback__)))
        self.assertNotIn("\n", line)
        self.assertTrue(line.startswith("WARNING pyfleet: first\u2028second\u2028Traceback (most recent call last):\u2028"), line)
        self.assertTrue(line.endswith("ValueError: bad\u2028value"), line)

    def test_line_breaks_are_line_separators_so_that_a_message_s_own_backslash_n_stays_as_it_is(self):
        line = OneLineFormatter(LOG_FORMAT).format(record("C:\\new\nnext", None))
        self.assertEqual(line, "WARNING pyfleet: C:\\new\u2028next")


class LogFailureTest(unittest.TestCase):
    def stderr_of(self, action):
        """What ``action`` writes to fd 2 (a pipe meanwhile)."""
        read_fd, write_fd = os.pipe()
        saved = os.dup(2)
        try:
            os.dup2(write_fd, 2)
            action()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            return pipe.read().decode()

    def test_one_error_record_with_the_traceback_written_to_fd_2(self):
        try:
            raise OSError(9, "Bad file descriptor")
        except OSError as exc:
            text = self.stderr_of(lambda: log_failure("the worker's runtime failed", exc))
        self.assertEqual(text.count("\n"), 1, text)
        self.assertTrue(text.startswith("ERROR pyfleet: the worker's runtime failed\u2028Traceback (most recent call last):\u2028"), text)
        self.assertTrue(text.endswith("OSError: [Errno 9] Bad file descriptor\n"), text)

    def test_it_never_raises_even_when_the_traceback_cannot_be_had(self):
        def broken():
            raise RuntimeError("the traceback is gone")

        text = self.stderr_of(lambda: log_failure("failed", ValueError("x"), broken))
        self.assertEqual(text, "", "nothing written, and nothing raised")


if __name__ == "__main__":
    unittest.main()
