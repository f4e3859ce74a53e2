"""Tests of the text.stats task: counts, Unicode, top terms and Flesch reading ease."""

import importlib
import os
import random
import re
import unicodedata
import unittest
from unittest import mock

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet_tasks import text_stats as module
from pyfleet_tasks import unicode_marks
from pyfleet_tasks.text_stats import text_stats


def run(text, **options):
    """The task's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(module.OUTPUT_SCHEMA, text_stats({"text": text, **options}))


def terms(result):
    return [(entry["term"], entry["count"]) for entry in result["topTerms"]]


class CountsText(unittest.TestCase):
    def test_counts_words_sentences_and_paragraphs_of_a_hand_checked_text(self):
        result = run(
            "The cat sat on the mat. The cat didn’t care!\n\nA second paragraph, with state-of-the-art ideas? Yes."
        )
        self.assertEqual(result["words"], 17)
        self.assertEqual(result["sentences"], 4)
        self.assertEqual(result["paragraphs"], 2)
        self.assertEqual(
            terms(result),
            [("cat", 2), ("sat", 1), ("mat", 1), ("care", 1), ("second", 1), ("paragraph", 1),
             ("state-of-the-art", 1), ("ideas", 1), ("yes", 1)],
        )

    def test_scores_a_pangram_by_flesch_with_hand_counted_syllables(self):
        result = run("The quick brown fox jumps over the lazy dog.")
        # 9 words, 1 sentence, 11 syllables (over and lazy have two):
        # 206.835 - 1.015 * 9 - 84.6 * 11 / 9 = 94.3
        self.assertEqual(result["fleschReadingEase"], 94.3)
        self.assertEqual(result["averageWordLength"], round(35 / 9, 2))
        self.assertEqual((result["characters"], result["charactersNoSpaces"]), (44, 36))

    def test_returns_zeros_and_nulls_for_text_without_words(self):
        empty = {
            "characters": 0, "charactersNoSpaces": 0, "words": 0, "sentences": 0, "paragraphs": 0,
            "averageWordLength": None, "topTerms": [], "fleschReadingEase": None,
        }
        self.assertEqual(run(""), empty)
        self.assertEqual(run(" \n\n\t"), {**empty, "characters": 4})
        self.assertEqual(run("... !?")["sentences"], 0)

    def test_ends_sentences_only_before_a_space_or_the_end(self):
        self.assertEqual(run("Pi is 3.14 today. Visit example.com now!")["sentences"], 2)
        self.assertEqual(run('He said "stop." Then left')["sentences"], 2)
        self.assertEqual(run("No terminator at all")["sentences"], 1)

    def test_splits_paragraphs_at_blank_lines_of_any_newline_style(self):
        self.assertEqual(run("a\r\n \r\nb\u2029c\n\n\n\nd\nstill d")["paragraphs"], 4)
        self.assertEqual(run("\n\none\n\n")["paragraphs"], 1)

    def test_counts_syllables_by_english_heuristics(self):
        expected = {"cat": 1, "cake": 1, "table": 2, "jumped": 1, "syllable": 3, "yellow": 2, "readability": 5}
        self.assertEqual({word: module._syllables(word) for word in expected}, expected)


class HandlesUnicode(unittest.TestCase):
    def test_counts_code_points_after_nfc_normalisation(self):
        result = run("e\u0301 a")  # e + combining acute composes to one character
        self.assertEqual((result["characters"], result["charactersNoSpaces"], result["words"]), (3, 2, 2))

    def test_keeps_combining_marks_inside_words(self):
        result = run("हिन्दी भाषा बहुत सुंदर है। ภาษาไทย")
        self.assertEqual(result["words"], 6)
        self.assertEqual(terms(result)[0], ("हिन्दी", 1))
        self.assertEqual(result["sentences"], 2)

    def test_ends_cjk_sentences_without_spaces(self):
        result = run("我爱北京。天安门很大！")
        self.assertEqual((result["words"], result["sentences"]), (2, 2))


class ListsTopTerms(unittest.TestCase):
    def test_case_folds_terms_and_unifies_apostrophes(self):
        result = run("Naïve naive NAÏVE Straße STRASSE don’t Don't DON'T")
        self.assertEqual(terms(result), [("naïve", 2), ("strasse", 2), ("naive", 1)])
        self.assertEqual(result["words"], 8)

    def test_leaves_out_stop_words_and_terms_without_letters(self):
        result = run("the and of 2024 2024 42 x_1 rocks")
        self.assertEqual(terms(result), [("x_1", 1), ("rocks", 1)])

    def test_breaks_ties_by_first_appearance(self):
        result = run("zeta alpha beta alpha zeta gamma")
        self.assertEqual(terms(result), [("zeta", 2), ("alpha", 2), ("beta", 1), ("gamma", 1)])

    def test_lists_top_terms_ten_by_default_and_as_many_as_asked(self):
        text = " ".join(f"term{chr(97 + n)}" for n in range(15))
        self.assertEqual(len(run(text)["topTerms"]), module.DEFAULT_TOP)
        self.assertEqual(terms(run(text, top=2)), [("terma", 1), ("termb", 1)])
        self.assertEqual(run(text, top=0)["topTerms"], [])
        self.assertEqual(len(run(text, top=100)["topTerms"]), 15)

    def test_describes_its_input_with_a_strict_schema(self):
        assert_strict_schema(self, module.SCHEMA)

    def test_describes_its_output_with_a_strict_schema_that_texts_without_words_match(self):
        assert_strict_output_schema(self, module.OUTPUT_SCHEMA)
        # run() checks every result; without words the averages are null.
        for text in ("", "   \n\n ", "... !!! ???", "\u0301"):
            with self.subTest(text=text):
                result = run(text)
                self.assertEqual((result["words"], result["averageWordLength"], result["fleschReadingEase"]), (0, None, None))
        self.assertEqual(run("Go.", top=100)["averageWordLength"], 2)


class KeptMarkTable(unittest.TestCase):
    """unicode_marks keeps the scan's result per Unicode version so that workers do not scan at every start."""

    def kept(self):
        try:
            return importlib.import_module(unicode_marks.table_module(unicodedata.unidata_version))
        except ModuleNotFoundError:
            self.skipTest(f"no kept table for Unicode {unicodedata.unidata_version}")

    def test_the_kept_table_is_what_a_scan_of_this_python_finds(self):
        module = self.kept()
        self.assertEqual(module.UNIDATA_VERSION, unicodedata.unidata_version)
        self.assertEqual(module.MARK_RANGES, unicode_marks.scan(), "write the table again: python3 -m pyfleet_tasks.unicode_marks")
        self.assertIs(unicode_marks.mark_ranges(), module.MARK_RANGES, "and it is the one used")

    def test_every_kept_module_is_named_after_its_version(self):
        directory = os.path.join(os.path.dirname(unicode_marks.__file__), "mark_tables")
        names = sorted(name[:-3] for name in os.listdir(directory) if name.startswith("u") and name.endswith(".py"))
        self.assertGreaterEqual(names, ["u13_0_0", "u14_0_0", "u15_0_0", "u15_1_0"])
        for name in names:
            with self.subTest(module=name):
                module = importlib.import_module(f"pyfleet_tasks.mark_tables.{name}")
                self.assertEqual(unicode_marks.table_module(module.UNIDATA_VERSION), module.__name__)

    def test_another_unicode_version_is_scanned_instead(self):
        with mock.patch.object(unicodedata, "unidata_version", "0.0.0"), mock.patch.object(
            unicode_marks, "scan", return_value="\\U00000300-\\U00000301"
        ) as scan, self.assertLogs("pyfleet_tasks.unicode_marks", "WARNING") as logged:
            self.assertEqual(unicode_marks.mark_ranges(), "\\U00000300-\\U00000301")
        scan.assert_called_once_with()
        self.assertIn("python3 -m pyfleet_tasks.unicode_marks > pyfleet_tasks/mark_tables/u0_0_0.py", logged.output[0])

    def test_every_kept_range_starts_and_ends_on_a_mark(self):
        ranges = re.findall(r"\\U([0-9a-f]{8})-\\U([0-9a-f]{8})", self.kept().MARK_RANGES)
        self.assertGreater(len(ranges), 250)
        for first, last in ranges:
            with self.subTest(range=f"{first}-{last}"):
                self.assertTrue(unicodedata.category(chr(int(first, 16))).startswith("M"))
                self.assertTrue(unicodedata.category(chr(int(last, 16))).startswith("M"))


# text_stats._SENTENCE_END before its lookbehind: quadratic on a long run of stops, the reference for the new one.
OLD_SENTENCE_END = re.compile(r"[.!?…‽।॥؟۔]+[\"'”’»)\]]*(?=\s|$)|[。！？]+")


class HostileText(unittest.TestCase):
    """Inputs that took quadratic time, half a minute to many minutes each; no timed assertion, the suite would hang."""

    def test_counts_a_run_of_200000_stops_before_a_letter_as_one_sentence(self):
        # 200,000 dots before a letter: some 10 minutes before the lookbehind (8,000 took 1 s)
        result = run("." * 200_000 + "x")
        self.assertEqual((result["words"], result["sentences"], result["characters"]), (1, 1, 200_001))
        self.assertEqual(run("Wait" + "!" * 200_000 + "” go on.")["sentences"], 2)

    def test_splits_sentences_as_the_pattern_without_lookbehind_did(self):
        rng = random.Random(20240611)
        alphabet = list(".!?…।") + list("\"'”)]") + [" ", "\n", "x", "3", "。", "！"]
        for _ in range(20_000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(24)))
            self.assertEqual(module._SENTENCE_END.split(text), OLD_SENTENCE_END.split(text), repr(text))

    def test_normalizes_200000_marks_out_of_canonical_order(self):
        # 200,000 marks alternating between classes 230 and 220: half a minute in unicodedata.normalize alone
        pairs = 100_000
        result = run("a" + "\u0301\u0316" * pairs)
        # NFC: the acute joins the a (the class-220 marks do not block it), the rest sorted by class
        expected = "\u00e1" + "\u0316" * pairs + "\u0301" * (pairs - 1)
        self.assertEqual(module._nfc("a" + "\u0301\u0316" * pairs), expected)
        self.assertEqual((result["characters"], result["words"], result["sentences"]), (2 * pairs, 1, 1))

    def test_normalizes_as_unicodedata_does(self):
        rng = random.Random(20240612)
        # marks of several classes, marks that decompose (U+0344, U+0F73), class-0 marks, and bases
        # that decompose or compose (é, ḗ, Hangul jamo and syllables, Greek with ypogegrammeni)
        marks = "\u0301\u0316\u0344\u0f73\u0f71\u0f72\u093f\u0345\u05b0\u0327\u20dd\u0300"
        bases = "ae\u00e9\u1e17\uac00\u1100\u1161\u11a8\u0915 \u0f40\u03c9\u1fb3\u0f73"
        for _ in range(2_000):
            length = rng.randrange(100)
            text = "".join(rng.choice(marks) if rng.random() < 0.85 else rng.choice(bases) for _ in range(length))
            self.assertEqual(module._nfc(text), unicodedata.normalize("NFC", text), ascii(text))

    def test_every_character_whose_decomposition_starts_with_a_non_starter_is_a_mark(self):
        # what keeps _nfc linear: every run that normalize sorts lies inside a run of marks
        strays = [
            f"U+{code:04X}"
            for code in range(0x110000)
            if unicodedata.combining(unicodedata.normalize("NFD", chr(code))[0])
            and not unicodedata.category(chr(code)).startswith("M")
        ]
        self.assertEqual(strays, [])

    def test_the_quick_search_for_long_runs_of_marks_misses_no_mark(self):
        marks = [chr(code) for code in range(0x110000) if unicodedata.category(chr(code)).startswith("M")]
        self.assertGreater(len(marks), 2000)
        self.assertEqual([m for m in marks if not module._MAYBE_LONG_MARK_RUN.fullmatch(m * 16)], [])
        self.assertEqual([m for m in marks if not module._MARK_RUN.fullmatch(m * 16)], [])
        self.assertIsNone(module._MAYBE_LONG_MARK_RUN.search("a" * 16 + "\u0301" * 15 + "a"))


class StrayCodePoints(unittest.TestCase):
    def test_private_use_characters_and_lone_variation_selectors_are_not_words(self):
        self.assertEqual(run("\U000F0000 \U0010FFFD")["words"], 0)
        self.assertEqual(run("I \u2764\ufe0f you")["words"], 2)


if __name__ == "__main__":
    unittest.main()
