"""Tests of the xml.import task: record shapes, namespaces, limits, hostile and malformed XML, memory."""

import threading
import time
import unittest

from pyfleet_tests.builtin_tasks_schema import assert_strict_output_schema, assert_strict_schema, checked_output
from pyfleet import TaskError
from pyfleet_tasks import xml_import
from pyfleet_tasks.xml_import import import_xml


def run(xml, **options):
    """The task's result, checked against its output schema as the server does with VALIDATE_RESULTS=1."""
    return checked_output(xml_import.OUTPUT_SCHEMA, import_xml({"xml": xml, **options}))


class ImportsRecords(unittest.TestCase):
    def test_turns_each_child_of_the_root_into_an_object_by_default(self):
        result = run(
            """<?xml version="1.0"?>
            <catalog>
              <book id="b1" lang="en">
                <title> Dune </title>
                <author>Frank Herbert</author>
                <tag>sf</tag><tag>classic</tag>
                <price currency="EUR">9.50</price>
                <publisher><name>Chilton</name><city>Philadelphia</city></publisher>
                <note/>
              </book>
              <book id="b2"><title>Emma</title></book>
            </catalog>"""
        )
        self.assertEqual(result["root"], "catalog")
        self.assertEqual(result["count"], 2)
        self.assertEqual(
            result["records"][0],
            {
                "@id": "b1",
                "@lang": "en",
                "title": "Dune",
                "author": "Frank Herbert",
                "tag": ["sf", "classic"],
                "price": {"@currency": "EUR", "#text": "9.50"},
                "publisher": {"name": "Chilton", "city": "Philadelphia"},
                "note": "",
            },
        )
        self.assertEqual(result["records"][1], {"@id": "b2", "title": "Emma"})

    def test_makes_a_text_only_record_an_object_with_text(self):
        result = run("<tags><tag>a</tag><tag/><tag k='v'/></tags>")
        self.assertEqual(result["records"], [{"#text": "a"}, {}, {"@k": "v"}])

    def test_joins_mixed_content_text_with_single_spaces(self):
        result = run("<doc><p>Hello <b>bold</b>\n   world <i>!</i></p></doc>")
        self.assertEqual(result["records"], [{"b": "bold", "i": "!", "#text": "Hello world"}])

    def test_selects_records_by_name_at_any_depth(self):
        result = run(
            "<rss><channel><title>feed</title>"
            "<item><title>one</title></item>"
            "<item><title>two</title><item>nested</item></item>"
            "</channel></rss>",
            record="item",
        )
        self.assertEqual(result["root"], "rss")
        # the nested item belongs to its parent record and is not counted on its own
        self.assertEqual(result["count"], 2)
        self.assertEqual(result["records"], [{"title": "one"}, {"title": "two", "item": "nested"}])

    def test_counts_zero_records_when_none_match(self):
        self.assertEqual(run("<a><b/></a>", record="zzz"), {"root": "a", "count": 0, "records": []})
        self.assertEqual(run("<a/>"), {"root": "a", "count": 0, "records": []})

    def test_can_import_the_root_itself(self):
        self.assertEqual(run("<a x='1'><b>2</b></a>", record="a")["records"], [{"@x": "1", "b": "2"}])

    def test_reduces_namespaced_names_to_their_local_part(self):
        result = run(
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<entry xml:lang="en" dc:id="7"><title>a</title><dc:title>b</dc:title><dc:creator>me</dc:creator></entry>'
            "</feed>",
            record="entry",
        )
        self.assertEqual(result["root"], "feed")
        self.assertEqual(result["records"], [{"@lang": "en", "@id": "7", "title": ["a", "b"], "creator": "me"}])

    def test_keeps_every_value_of_attributes_of_one_local_name_in_several_namespaces(self):
        # A dict of local names kept the last: "1" and "2" were lost without a word.
        result = run('<r xmlns:a="u1" xmlns:b="u2"><i a:id="1" b:id="2" id="3" n="x"/></r>')
        self.assertEqual(result["records"], [{"@id": ["1", "2", "3"], "@n": "x"}])

    def test_returns_at_most_limit_records_but_counts_them_all(self):
        xml = "<r>" + "".join(f"<i>{n}</i>" for n in range(50)) + "</r>"
        result = run(xml, limit=3)
        self.assertEqual(result["count"], 50)
        self.assertEqual(result["records"], [{"#text": "0"}, {"#text": "1"}, {"#text": "2"}])
        self.assertEqual(run(xml, limit=0), {"root": "r", "count": 50, "records": []})
        self.assertEqual(len(run(xml)["records"]), 50)

    def test_applies_the_default_limit(self):
        xml = "<r>" + "<i/>" * (xml_import.DEFAULT_LIMIT + 5) + "</r>"
        result = run(xml)
        self.assertEqual(result["count"], xml_import.DEFAULT_LIMIT + 5)
        self.assertEqual(len(result["records"]), xml_import.DEFAULT_LIMIT)

    def test_reads_bytes_in_their_declared_encoding(self):
        xml = '<?xml version="1.0" encoding="ISO-8859-1"?><a><b>caf\u00e9</b></a>'.encode("latin-1")
        self.assertEqual(run(xml)["records"], [{"#text": "caf\u00e9"}])
        utf16 = '<?xml version="1.0" encoding="UTF-16"?><a><b>\u3042</b></a>'.encode("utf-16")
        self.assertEqual(run(utf16)["records"], [{"#text": "\u3042"}])

    def test_reads_bytes_declared_utf8_by_another_name(self):
        # Expat does not know "utf8": Python's codec gave it single bytes only, and "café" was malformed XML.
        for label in ("utf8", "UTF8", "u8", "utf-8", "utf_8"):
            with self.subTest(label=label):
                xml = f'<?xml version="1.0" encoding="{label}"?><a><b>caf\u00e9 \u20ac</b></a>'.encode()
                self.assertEqual(run(xml)["records"], [{"#text": "caf\u00e9 \u20ac"}])
        self.assertEqual(run(b'\xef\xbb\xbf<?xml version="1.0" encoding=\'utf8\'?><a><b>\xc3\xa9</b></a>')["records"], [{"#text": "\u00e9"}], "after a BOM")
        # Bytes that are not UTF-8 are still refused as such.
        with self.assertRaises(TaskError) as caught:
            run(b'<?xml version="1.0" encoding="utf8"?><a><b>caf\xe9</b></a>')
        self.assertIn("not well-formed", str(caught.exception))

    def test_reads_text_whatever_its_declaration_says(self):
        # raw text/xml bodies arrive already decoded as str
        xml = '\ufeff<?xml version="1.0" encoding="ISO-8859-1"?><a><b>caf\u00e9 \u20ac</b></a>'
        self.assertEqual(run(xml)["records"], [{"#text": "caf\u00e9 \u20ac"}])

    def test_expands_predefined_entities_character_references_and_cdata(self):
        result = run("<a><b>&lt;&amp;&gt;&#65;&#x42;<![CDATA[<raw>]]></b></a>")
        self.assertEqual(result["records"], [{"#text": "<&>AB<raw>"}])

    def test_describes_its_input_with_a_strict_schema(self):
        assert_strict_schema(self, xml_import.SCHEMA)

    def test_describes_its_output_with_a_strict_schema_that_records_of_every_shape_match(self):
        assert_strict_output_schema(self, xml_import.OUTPUT_SCHEMA)
        # run() checks every result: attributes, #text, repeats of text and of objects, nesting, empty records.
        result = run(
            "<r><a id='1'>lead<b>x</b>tail<b/><c k='v'><d><e>deep</e><e f='g'/></d></c><c/></a>"
            "<a/><a>text only</a><a><x><y><z>3</z></y></x></a></r>"
        )
        self.assertEqual(result["records"][0]["b"], ["x", ""])
        self.assertEqual(result["records"][0]["c"], [{"@k": "v", "d": {"e": ["deep", {"@f": "g"}]}}, ""])
        self.assertEqual(result["records"][1:3], [{}, {"#text": "text only"}])
        self.assertEqual(run("<r><a/></r>", limit=0), {"root": "r", "count": 1, "records": []})
        # What the schema refuses: an attribute that is not a string, a number as a child.
        for wrong in ({"@id": 1}, {"@id": ["1"]}, {"@id": ["1", {}]}, {"b": [1, "x"]}, {"#text": ""}):
            with self.subTest(record=wrong), self.assertRaises(AssertionError):
                checked_output(xml_import.OUTPUT_SCHEMA, {"root": "r", "count": 1, "records": [wrong]})


class RefusesHostileXml(unittest.TestCase):
    def assertRefused(self, xml, *fragments):
        started = time.perf_counter()
        with self.assertRaises(TaskError) as caught:
            run(xml)
        # refused at the declaration, before anything could be expanded or fetched
        self.assertLess(time.perf_counter() - started, 1.0)
        for fragment in fragments:
            self.assertIn(fragment, caught.exception.message)
        self.assertNotIn("root:", caught.exception.message)  # nothing of /etc/passwd
        self.assertEqual(set(caught.exception.details), {"line", "column"})
        return caught.exception

    def test_refuses_billion_laughs(self):
        lols = "".join(f'<!ENTITY lol{n} "{("&lol%d;" % (n - 1)) * 10}">' for n in range(1, 10))
        xml = f'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol0 "lol">{lols}]>\n<lolz>&lol9;</lolz>'
        error = self.assertRefused(xml, "DOCTYPE", "lolz")
        self.assertEqual(error.details["line"], 2)

    def test_refuses_quadratic_blowup(self):
        xml = f'<!DOCTYPE kaboom [<!ENTITY a "{"x" * 50000}">]><kaboom>{"&a;" * 2000}</kaboom>'
        self.assertRefused(xml, "DOCTYPE")

    def test_refuses_external_entities_pointing_at_local_files(self):
        xml = '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>'
        self.assertRefused(xml, "DOCTYPE")

    def test_refuses_external_dtds_and_parameter_entities(self):
        self.assertRefused('<!DOCTYPE foo SYSTEM "http://127.0.0.1:9/evil.dtd"><foo/>', "DOCTYPE")
        self.assertRefused(
            '<!DOCTYPE foo [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]><foo/>', "DOCTYPE"
        )
        self.assertRefused(b'<?xml version="1.0"?>\n<!DOCTYPE html><html/>', "DOCTYPE")

    def test_refuses_documents_nested_too_deeply(self):
        depth = xml_import.MAX_DEPTH + 1
        with self.assertRaisesRegex(TaskError, "deeper than"):
            run("<a>" * depth + "</a>" * depth)
        # one level less is fine
        depth = xml_import.MAX_DEPTH
        self.assertEqual(run("<a>" * depth + "</a>" * depth)["count"], 1)


class ReportsMalformedXml(unittest.TestCase):
    def assertMalformed(self, xml, line, column, reason):
        with self.assertRaises(TaskError) as caught:
            run(xml)
        self.assertEqual(caught.exception.details, {"line": line, "column": column})
        self.assertIn(f"line {line}, column {column}", caught.exception.message)
        self.assertIn(reason, caught.exception.message)

    def test_gives_the_1_based_line_and_column_of_a_mismatched_tag(self):
        # column 7 of line 3 is the "a" of </a>
        self.assertMalformed("<a>\n<b>x</b>\n<c>y</a>", 3, 7, "mismatched tag")

    def test_counts_columns_in_characters_not_bytes(self):
        self.assertMalformed("<a>\u00e9\u00e9\u00e9<</a>", 1, 8, "not well-formed")
        self.assertMalformed("<a>\u00e9\u00e9\u00e9<</a>".encode(), 1, 8, "not well-formed")

    def test_reports_empty_and_unfinished_documents(self):
        self.assertMalformed("", 1, 1, "no element found")
        self.assertMalformed("   \n", 2, 1, "no element found")
        self.assertMalformed("<a><b>", 1, 7, "no element found")

    def test_reports_undefined_entities_and_prefixes(self):
        self.assertMalformed("<a>&nbsp;</a>", 1, 4, "undefined entity")
        self.assertMalformed("<a><x:b/></a>", 1, 4, "unbound prefix")

    def test_reports_content_after_the_root(self):
        self.assertMalformed("<a/><b/>", 1, 5, "junk after document element")

    def test_reports_an_unsupported_encoding(self):
        with self.assertRaisesRegex(TaskError, "encoding that is not supported"):
            run(b'<?xml version="1.0" encoding="x-no-such"?><a/>')
        with self.assertRaisesRegex(TaskError, "encoding that is not supported"):
            run('<?xml version="1.0" encoding="shift_jis"?><a>\u3042</a>'.encode("shift_jis"))

    def test_reports_a_declared_codec_that_cannot_read_text_as_such_not_as_surrogates(self):
        # idna and punycode are Python codecs, but not of text: found by test/e2e/fuzz-tasks.test.ts
        for name in ("idna", "punycode"):
            with self.assertRaisesRegex(TaskError, "^the XML's declared encoding cannot be used to read it: "):
                run(f'<?xml version="1.0" encoding="{name}"?><a/>'.encode("ascii"))

    def test_reports_invalid_bytes_for_the_encoding(self):
        self.assertMalformed(b"<a>\xff</a>", 1, 4, "not well-formed")

    def test_reports_lone_surrogates_in_text(self):
        with self.assertRaisesRegex(TaskError, "surrogates"):
            run("<a>\ud800</a>")


class HostileLargeTokens(unittest.TestCase):
    """Inputs that took quadratic time, 9 to 15 s each; no timed assertion, the suite would take that long."""

    def test_imports_a_16_mb_attribute_value(self):
        # Expat before 2.6.0 parsed the cut start tag again with every 16 KiB chunk: 9 s (8 MB: 2 s)
        size = 16 * 2**20
        result = run('<r><a b="' + "x" * size + '"/><a b="y"/></r>')
        self.assertEqual(result["count"], 2)
        self.assertEqual(len(result["records"][0]["@b"]), size)
        self.assertEqual(result["records"][1], {"@b": "y"})

    def test_imports_512000_small_records_after_a_long_comment(self):
        # Expat 2.6+ parses what it held back behind the comment at once, and removing each of those
        # 512,000 records from the root one by one shifted all the others: 15 s with Python 3.13.
        count = 512_000
        result = run(b"<r><!--" + b"x" * (2 * 2**20) + b"-->" + b"<b>first</b>" + b"<a/>" * count + b"</r>")
        self.assertEqual(result["count"], count + 1)
        self.assertEqual(result["records"], [{"#text": "first"}] + [{}] * (xml_import.DEFAULT_LIMIT - 1))

    def test_gives_the_same_records_whatever_the_chunks(self):
        # a long comment makes chunks grow; records before, across and after the growth are all there
        records = "".join(f"<a i='{n}'><b>{n}</b></a>" for n in range(1, 50_000))
        xml = "<r><a i='0'/><!--" + "x" * 100_000 + "-->" + records + "</r>"
        result = run(xml, limit=50_000)
        self.assertEqual(result["count"], 50_000)
        self.assertEqual(result["records"][0], {"@i": "0"})
        self.assertEqual(result["records"][1:], [{"@i": str(n), "b": str(n)} for n in range(1, 50_000)])


def _rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class StreamsLargeDocuments(unittest.TestCase):
    def test_imports_20_mb_with_flat_memory(self):
        item = (
            '<item id="{0}"><name>Item {0}</name><price currency="EUR">{0}.50</price>'
            "<tag>a</tag><tag>b</tag></item>\n"
        )
        parts = ['<?xml version="1.0"?>\n<catalog>\n']
        parts.extend(item.format(n) for n in range(190_000))
        parts.append("</catalog>\n")
        xml = "".join(parts)
        del parts
        self.assertGreater(len(xml), 20_000_000)

        # Sample RSS while the import runs: the peak is what matters, and the
        # parser releases the GIL often enough for a sampling thread.
        baseline = _rss_bytes()
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.wait(0.01):
                peak[0] = max(peak[0], _rss_bytes())

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            started = time.perf_counter()
            result = run(xml, limit=10)
            elapsed = time.perf_counter() - started
        finally:
            done.set()
            sampler.join()
        peak[0] = max(peak[0], _rss_bytes())

        self.assertEqual(result["count"], 190_000)
        self.assertEqual(
            result["records"][9],
            {"@id": "9", "name": "Item 9", "price": {"@currency": "EUR", "#text": "9.50"}, "tag": ["a", "b"]},
        )
        self.assertLess(peak[0] - baseline, 100 * 2**20, f"RSS grew by {(peak[0] - baseline) >> 20} MiB")
        self.assertLess(elapsed, 10)


if __name__ == "__main__":
    unittest.main()
