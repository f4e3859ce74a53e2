# test_greeting.py: PYTHONPATH=/path/to/pyfleet/workers:$PWD /usr/bin/python3 -m unittest test_greeting
# (or whichever interpreter npm ci reported using, such as .venv/bin/python: it must import msgpack)
import unittest
import mytasks.greeting                      # importing the module registers its tasks
from pyfleet.testing import TaskCallError, call_task, check_examples

class GreetTest(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(call_task("greet", {"name": "Ada"}), {"greeting": "hello, Ada"})

    def test_examples_return_what_they_show(self):   # the schemas' examples, as OpenAPI shows them
        check_examples("greet")

    def test_refuses_nobody(self):
        with self.assertRaises(TaskCallError) as caught:
            call_task("greet", {"name": "nobody"})
        self.assertEqual((caught.exception.status, caught.exception.details), (422, {"field": "name"}))
