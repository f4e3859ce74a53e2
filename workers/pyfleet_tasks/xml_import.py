"""``xml.import``: untrusted XML in, plain records out.

Parsing and the refusal of DTDs, entities and external references are
defusedxml's; this module streams the document and turns elements into dicts.
"""

import codecs
import re
from xml.etree.ElementTree import TreeBuilder
from xml.parsers.expat import ErrorString

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser, ParseError, iterparse

from pyfleet import TaskError, task

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100000
# Conversion recurses once per level, and every level can add a dict and a
# list to the result, which msgpack packs only 511 containers deep.
MAX_DEPTH = 200
# The document goes to the parser in iterparse's 16 KiB chunks, growing up to this while it gives no event.
MAX_CHUNK = 1 << 20
# The encoding an XML declaration names, in bytes an ASCII-compatible encoding wrote (after a UTF-8 BOM, if any).
_DECLARED_ENCODING = re.compile(rb"(?:\xef\xbb\xbf)?<\?xml\s[^>]{0,200}?\bencoding\s*=\s*[\"']([A-Za-z][A-Za-z0-9._-]{0,39})[\"']")

SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    # The raw field alone: OpenAPI shows it as the raw body's example too, which carries no options.
    "examples": [{"xml": '<feed><item id="1"><title>Warm workers</title></item><item id="2"><title>Bounded queues</title></item></feed>'}],
    "additionalProperties": False,
    "required": ["xml"],
    "properties": {
        "xml": {
            "description": "the XML document, as text or as bytes (then its own encoding declaration applies)",
            "anyOf": [{"type": "string"}, {"bytes": True}],
        },
        "record": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": "^[^\\s<>&:{}\"'/=]+$",
            "description": "local name (no prefix) of the elements to import; default: every child of the root",
        },
        "limit": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_LIMIT,
            "default": DEFAULT_LIMIT,
            "description": "most records to return; count still tells how many matched",
        },
    },
}


# A record's keys come from the document, so its objects are open: what is fixed is the
# kind of value under each kind of key, at every depth (hence the recursive definitions).
OUTPUT_SCHEMA = {
    "type": "object",
    # What the input example above returns (a test calls each example and compares).
    "examples": [{"root": "feed", "count": 2, "records": [{"@id": "1", "title": "Warm workers"}, {"@id": "2", "title": "Bounded queues"}]}],
    "additionalProperties": False,
    "required": ["root", "count", "records"],
    "definitions": {
        "element": {
            "type": "object",
            "description": (
                "an element with attributes or children (a record is always one): attributes as \"@name\", "
                "children by local name, the element's own text under \"#text\""
            ),
            "properties": {
                "#text": {"type": "string", "minLength": 1, "description": "the text beside attributes or children, trimmed"},
            },
            "patternProperties": {
                "^@": {
                    "description": "an attribute's value; the values of attributes of one local name in several namespaces, in document order",
                    "anyOf": [{"type": "string"}, {"type": "array", "minItems": 2, "items": {"type": "string"}}],
                },
            },
            "additionalProperties": {"$ref": "#/definitions/child"},
        },
        "child": {
            "description": "a child by local name: its text, an object, or an array of those when repeated",
            "anyOf": [
                {"type": "string", "description": "the trimmed text of a child without attributes or children"},
                {"$ref": "#/definitions/element"},
                {
                    "type": "array",
                    "minItems": 2,
                    "description": "children of the same name, in document order",
                    "items": {"anyOf": [{"type": "string"}, {"$ref": "#/definitions/element"}]},
                },
            ],
        },
    },
    "properties": {
        "root": {"type": "string", "minLength": 1, "description": "the root element's local name"},
        "count": {"type": "integer", "minimum": 0, "description": "every matching record, beyond limit too"},
        "records": {
            "type": "array",
            "maxItems": MAX_LIMIT,
            "items": {"$ref": "#/definitions/element"},
            "description": "the first limit records, one object per record element",
        },
    },
}


@task(
    "xml.import",
    schema=SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    timeout_ms=30000,
    raw=("application/xml", "text/xml"),
    raw_field="xml",
)
def import_xml(input):
    """Import records from an XML document: {root, count, records}, refusing DTDs, entities and external references.

    Each record element (``record`` by local name, else every child of the
    root) becomes an object: attributes as ``"@name"``; a child with neither
    attributes nor children as its text (``""`` when empty); other children as
    objects; repeated children as arrays; text beside attributes or children
    under ``"#text"`` (text around child elements is joined with single
    spaces). A record is always an object, so a text-only record is
    ``{"#text": ...}``. All text is trimmed (attribute values are kept as they are). Records inside a record are part
    of it, not counted separately.

    Namespaces: names are reduced to their local part (``{uri}name`` and
    ``prefix:name`` both become ``name``), since prefixes are the document's
    choice and not stable; two namespaces' ``title`` children therefore merge
    into one array, and so do the values of ``a:id`` and ``b:id`` attributes.

    ``limit`` (default 1000, at most 100000) caps ``records``; ``count`` is
    every match. The document is streamed: each finished record is converted
    and dropped from the tree, so memory tracks the largest record, not the
    document.

    Refused as bad input: any DOCTYPE, so no entity is declared or expanded
    and no external DTD or entity is fetched; nesting deeper than 200
    elements; an encoding expat cannot read; malformed XML, with the 1-based
    line and column in the details.
    """
    return _import(input["xml"], input.get("record"), input.get("limit", DEFAULT_LIMIT))


def _import(document, record_name, limit):
    parser = _parser(_utf8_by_another_name(document))
    stack = []  # open elements, root first
    finished = []  # per open element: how many of its first children are finished but still attached
    record_depth = None  # len(stack) at the record being read; None outside records
    root = None
    count = 0
    records = []
    for event, element in _events(document, parser):
        if event == "start":
            stack.append(element)
            finished.append(0)
            if len(stack) > MAX_DEPTH:
                # no position: the parser has read ahead of this event
                raise TaskError(f"XML nests deeper than {MAX_DEPTH} elements (at <{_local(element.tag)}>)")
            if root is None:
                root = _local(element.tag)
            if record_depth is None and _is_record(element, len(stack), record_name):
                record_depth = len(stack)
            continue
        depth = len(stack)
        stack.pop()
        finished.pop()
        if record_depth is not None and depth > record_depth:
            continue  # inside a record: converted with it
        if depth == record_depth:
            count += 1
            if len(records) < limit:
                records.append(_record(element))
            record_depth = None
        # Done with this element: empty it and detach it, so the tree never
        # holds more than the open ancestors and the current record.
        element.clear()
        if stack:
            finished[-1] = _detach_finished(stack[-1], finished[-1] + 1)
    return {"root": root, "count": count, "records": records}


def _detach_finished(parent, finished):
    """Delete the parent's first ``finished`` children once they are half its children; how many stay attached.

    Siblings finish in order, so the finished children come first; but the
    parser runs a chunk ahead, so thousands may follow them, and remove()ing
    each child shifted all of those: quadratic time. A batch of at least half
    the list shifts no more children than it deletes.
    """
    if 2 * finished < len(parent):
        return finished
    del parent[:finished]
    return 0


def _utf8_by_another_name(document):
    """"UTF-8" for bytes whose declaration names UTF-8 by a label expat does not know ("utf8", "u8").

    Expat asks Python's codecs for such a label and takes only single bytes from them, so every
    non-ASCII character of well-formed UTF-8 was "not well-formed (invalid token)"; the raw
    application/xml path (Node's WHATWG labels) read the same bytes. None otherwise: the
    declaration is the parser's to read.
    """
    if not isinstance(document, bytes):
        return None
    match = _DECLARED_ENCODING.match(document[:300])
    if match is None:
        return None
    label = match.group(1).decode("ascii")
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "UTF-8" if name in ("utf-8", "utf-8-sig") and label.upper() != "UTF-8" else None


def _parser(encoding=None):
    # `encoding`, when given, is used whatever the document's declaration says.
    parser = DefusedXMLParser(target=TreeBuilder(), encoding=encoding, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    # Expat 2.6+ holds back a token that a chunk cuts until much more has come, then parses all it
    # has at once: after a long comment, megabytes of elements in one go. _ChunkReader bounds the
    # parsing of cut tokens instead, chunk by chunk; this switch is there from Python 3.13 (and
    # some older security releases).
    if hasattr(parser.parser, "SetReparseDeferralEnabled"):
        parser.parser.SetReparseDeferralEnabled(False)
    return parser


def _events(document, parser):
    """iterparse's (event, element) pairs, with the parser's own errors turned into TaskError.

    Only exceptions from the parser pass through this generator, so a bug in
    the caller's loop is never mistaken for bad input.
    """
    reader = _ChunkReader(document)
    try:
        for event in iterparse(reader, events=("start", "end"), parser=parser):
            reader.events += 1
            yield event
    except ParseError as error:
        line, column = error.position
        raise TaskError(
            f"malformed XML at line {line}, column {column + 1}: {ErrorString(error.code)}",
            {"line": line, "column": column + 1},
        ) from None
    except DefusedXmlException as error:
        raise TaskError(_refusal(error), _position(parser)) from None
    except UnicodeError as error:
        if isinstance(document, str):  # a str holding lone surrogates cannot be handed to expat as UTF-8
            raise TaskError("the XML holds characters that are not valid Unicode (lone surrogates)") from None
        # Bytes: the codec expat asked Python for (an encoding it lacks) failed on them, or is no
        # text codec at all ("idna", "punycode").
        raise TaskError(f"the XML's declared encoding cannot be used to read it: {error}", {"line": 1, "column": 1}) from None
    except (LookupError, ValueError) as error:
        # expat asks Python's codecs for encodings it lacks: an unknown name is a
        # LookupError, a multi-byte codec a ValueError
        raise TaskError(f"XML declares an encoding that is not supported: {error}", {"line": 1, "column": 1}) from None


class _ChunkReader:
    """The minimal file interface iterparse needs, over a str or bytes.

    io.StringIO would copy the text into 4 bytes per character first.

    Expat before 2.6.0 parses a token that a chunk cuts (a start tag, a
    comment) again from its start with every next chunk, so a megabyte
    attribute read in iterparse's 16 KiB chunks takes quadratic time
    (CVE-2023-52425). So while the parser gives no event (it is inside a
    long token, or a long text), each chunk is twice the last, up to
    MAX_CHUNK, and a token of n bytes is parsed about n / MAX_CHUNK + 7
    times; after an event chunks are back to iterparse's size.
    """

    def __init__(self, data):
        self._data = data
        self._offset = 0
        self._size = 0
        self.events = 0  # counted by the caller, so that a read can tell whether the last chunk gave any
        self._events_at_last_read = -1

    def read(self, size):
        if self.events == self._events_at_last_read:
            self._size = min(max(size, 2 * self._size), MAX_CHUNK)
        else:
            self._size = size
        self._events_at_last_read = self.events
        chunk = self._data[self._offset : self._offset + self._size]
        self._offset += len(chunk)
        return chunk


def _is_record(element, depth, record_name):
    if record_name is None:
        return depth == 2
    return _local(element.tag) == record_name


def _local(name):
    """``{uri}local`` → ``local``; ElementTree has already resolved prefixes to URIs."""
    return name.rpartition("}")[2]


def _record(element):
    value = _convert(element)
    if isinstance(value, str):
        return {"#text": value} if value else {}
    return value


def _convert(element):
    """An element's value: its trimmed text when it is bare, else an object."""
    if not element.attrib and len(element) == 0:
        return (element.text or "").strip()
    value = {}
    # Two namespaces' attributes of one local name keep both values (a dict kept the last).
    for name, text in element.attrib.items():
        _add(value, "@" + _local(name), text)
    for child in element:
        _add(value, _local(child.tag), _convert(child))
    texts = [element.text] + [child.tail for child in element]
    text = " ".join(part.strip() for part in texts if part and part.strip())
    if text:
        value["#text"] = text
    return value


def _add(value, key, item):
    """Put ``item`` under ``key``, making a list of the items when the key repeats."""
    # Items are str or dict, so a list here means "repeated".
    if key not in value:
        value[key] = item
    elif isinstance(value[key], list):
        value[key].append(item)
    else:
        value[key] = [value[key], item]


def _refusal(error):
    if isinstance(error, DTDForbidden):
        return (
            f"XML with a DOCTYPE (<!DOCTYPE {error.name}>) is refused: "
            "DTDs can declare entities that expand without bound or fetch external files"
        )
    if isinstance(error, EntitiesForbidden):
        return f"XML entity declarations are refused (entity {error.name!r})"
    if isinstance(error, ExternalReferenceForbidden):
        return f"XML external references are refused (system id {error.sysid!r})"
    return "XML uses a feature that is refused for untrusted input"


def _position(parser):
    """Where expat is now, as the 1-based line and column of the details field."""
    expat = parser.parser
    return {"line": expat.CurrentLineNumber, "column": expat.CurrentColumnNumber + 1}
