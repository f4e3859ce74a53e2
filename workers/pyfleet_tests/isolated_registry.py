"""A TestCase base for tests that register tasks in this process.

Not a test module itself (no test_ prefix). Each test starts with an empty
registry and the tasks registered before it (the built-ins, if imported) are
put back afterwards, so tests neither see nor leak each other's tasks.
"""

import unittest

from pyfleet import registry


class IsolatedRegistryTest(unittest.TestCase):
    def setUp(self):
        self.saved = dict(registry._tasks)
        registry.clear()

    def tearDown(self):
        registry.clear()
        registry._tasks.update(self.saved)
