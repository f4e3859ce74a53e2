"""What a worker does not load at start: heavy imports wait for the first call that needs them.

The pool recycles workers and runs several, so start-up cost is paid over and
over; these tests keep typing, inspect, hashlib, defusedxml and the text.stats
word regex out of a fresh worker. Each check runs in a fresh interpreter.
"""

import json
import os
import tempfile
import textwrap
import unittest

from tests.worker_process import parse_frames, run_python, run_worker

# Loaded by none of the worker runtime and built-in task modules at import.
HEAVY = (
    "typing", "inspect", "dataclasses", "argparse", "logging", "hashlib", "_hashlib", "defusedxml",
    "xml.etree.ElementTree", "pyexpat", "platform", "decimal", "uuid", "asyncio", "traceback",
)

PROBE_MODULE = '''
import sys

from pyfleet import task


@task("probe.state")
def state(heavy):
    text_stats = sys.modules["pyfleet_tasks.text_stats"]
    return {
        "loaded": [name for name in heavy if name in sys.modules],
        "wordRegexBuilt": text_stats._word_pattern is not None,
    }
'''


class ImportTest(unittest.TestCase):
    def test_importing_the_runtime_and_builtin_tasks_loads_nothing_heavy(self):
        out = run_python(
            textwrap.dedent(
                f"""
                import json, sys
                import pyfleet, pyfleet.__main__, pyfleet.loop, pyfleet.protocol, pyfleet.frames
                import pyfleet_tasks.echo, pyfleet_tasks.xml_import, pyfleet_tasks.csv_profile
                import pyfleet_tasks.text_stats, pyfleet_tasks.stats, pyfleet_tasks.hash_digest, pyfleet_tasks.diag
                print(json.dumps({{
                    "loaded": [name for name in {HEAVY!r} if name in sys.modules],
                    "wordRegexBuilt": pyfleet_tasks.text_stats._word_pattern is not None,
                }}))
                """
            )
        )
        self.assertEqual(json.loads(out), {"loaded": [], "wordRegexBuilt": False})

    def test_the_first_call_imports_what_it_needs(self):
        out = run_python(
            textwrap.dedent(
                """
                import json, sys
                from pyfleet_tasks import hash_digest, text_stats, xml_import
                text_stats.text_stats({"text": "नमस्ते"})
                first = text_stats._word_pattern
                words = text_stats.text_stats({"text": "नमस्ते दुनिया"})["words"]
                before = {name: name in sys.modules for name in ("hashlib", "defusedxml")}
                digest = hash_digest.digest({"data": b"abc", "algorithms": "md5"})
                xml = xml_import.import_xml({"xml": "<a><b>1</b></a>"})
                print(json.dumps({
                    "sameRegex": first is not None and text_stats._word() is first,
                    "words": words,
                    "before": before,
                    "after": {name: name in sys.modules for name in ("hashlib", "defusedxml")},
                    "digest": digest,
                    "xml": xml,
                }))
                """
            )
        )
        self.assertEqual(
            json.loads(out),
            {
                "sameRegex": True,
                "words": 2,
                "before": {"hashlib": False, "defusedxml": False},
                "after": {"hashlib": True, "defusedxml": True},
                "digest": {"size": 3, "digests": {"md5": "900150983cd24fb0d6963f7d28e17f72"}},
                "xml": {"root": "a", "count": 1, "records": [{"#text": "1"}]},
            },
        )


class WorkerTest(unittest.TestCase):
    def test_a_fresh_worker_loads_heavy_modules_only_when_a_call_needs_them(self):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "probe_tasks.py"), "w") as f:
                f.write(PROBE_MODULE)
            code, stdout, stderr = run_worker(
                ["--module", "probe_tasks"],
                calls=[
                    ("probe.state", list(HEAVY)),
                    ("text.stats", {"text": "one two"}),
                    ("hash.digest", {"data": b"abc"}),
                    ("xml.import", {"xml": "<a><b/></a>"}),
                    ("probe.state", list(HEAVY)),
                ],
                pythonpath=directory,
            )
        self.assertEqual(code, 0, stderr)
        _, before, text, digest, xml, after = parse_frames(stdout)
        self.assertEqual(before["value"], {"loaded": [], "wordRegexBuilt": False})
        self.assertEqual(text["value"]["words"], 2)
        self.assertEqual(len(digest["value"]["digests"]["sha256"]), 64)
        self.assertEqual(xml["value"]["count"], 1)
        self.assertTrue(after["value"]["wordRegexBuilt"])
        self.assertLessEqual({"hashlib", "defusedxml", "xml.etree.ElementTree"}, set(after["value"]["loaded"]))


if __name__ == "__main__":
    unittest.main()
