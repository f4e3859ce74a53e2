"""``text.stats``: counts, frequent terms and Flesch reading ease of a text.

Counting rules live here; Unicode data comes from the standard library.
"""

import heapq  # noqa: F401  Counter.most_common imports it on first use; here it is imported before ready
import re
import unicodedata
from collections import Counter
from functools import partial
from itertools import compress, count
from operator import not_

from pyfleet import task
from pyfleet_tasks.unicode_marks import mark_ranges

DEFAULT_TOP = 10
MAX_TOP = 100


_MARKS = mark_ranges()
# Word characters: \w plus the combining marks (see unicode_marks.py for why and how);
# a word part starts with \w, so a stray mark (an emoji's variation selector) is no word.
_WORD_CHAR = rf"[\w{_MARKS}]"
# Apostrophes and hyphens join word parts: don't, l'homme, state-of-the-art.
_WORD = re.compile(rf"\w{_WORD_CHAR}*(?:['’-]\w{_WORD_CHAR}*)*")
# A sentence ends at . ! ? … (and Devanagari, Arabic, Urdu stops), with any closing quotes or
# brackets, before a space or the end, so "3.14" and "example.com" do not end one; CJK full stops
# need no space after them. The lookbehind (the first stop follows no stop) starts a match only at
# the first stop of a run: tried from every stop of a long run ("....x"), the greedy run and its
# failing lookahead took quadratic time. A match from inside a run implies one from the run's
# start, found first, so none is lost. (After the first stop, the lookbehind leaves the regex
# its quick scan for a first character.)
_SENTENCE_END = re.compile(r"[.!?…‽।॥؟۔](?<![.!?…‽।॥؟۔]{2})[.!?…‽।॥؟۔]*[\"'”’»)\]]*(?=\s|$)|[。！？]+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\u2029")
_SYLLABLE_SUFFIX = re.compile(r"(?:[^laeiouy]es|ed|[^laeiouy]e)$")
_VOWEL_GROUP = re.compile(r"[aeiouy]{1,2}")
# Runs of combining marks, and how long one is before _nfc sorts it itself (longer than text
# needs, Zalgo text aside). A regex tries the hundred-odd ranges of astral marks one by one at
# every character, so long runs are first looked for among the BMP's marks and all astral
# characters (one range): 15 times faster.
_MARK_RUN = re.compile(rf"[{_MARKS}]+")
_LONG_RUN = 16
_BMP_MARKS = "".join(re.findall(r"\\U0000[0-9a-f]{4}-\\U0000[0-9a-f]{4}", _MARKS))
_MAYBE_LONG_MARK_RUN = re.compile(rf"[{_BMP_MARKS}\U00010000-\U0010ffff]{{{_LONG_RUN},}}")
_DECOMPOSE = partial(unicodedata.normalize, "NFD")

STOP_WORDS = frozenset(
    """
    a about above after again against ain all also am an and any are aren aren't as at be because been before
    being below between both but by can can't cannot could couldn couldn't d did didn didn't do does doesn
    doesn't doing don don't down during each either else ever few for from further had hadn hadn't has hasn
    hasn't have haven haven't having he he'd he'll he's her here here's hers herself him himself his how how's
    however i i'd i'll i'm i've if in into is isn isn't it it'd it'll it's its itself just let's ll m ma may me
    might mightn mightn't more most much must mustn mustn't my myself needn needn't neither no nor not now o of
    off often on once only or other ought our ours ourselves out over own re s same shall shan shan't she she'd
    she'll she's should should've shouldn shouldn't since so some such t than that that'll that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this those though
    through thus to too under until up upon us ve very was wasn wasn't we we'd we'll we're we've were weren
    weren't what what's when when's where where's whether which while who who's whom whose why why's will with
    won won't would wouldn wouldn't y yet you you'd you'll you're you've your yours yourself yourselves
    """.split()
)

SCHEMA = {
    "type": "object",
    # What OpenAPI shows a client (Swagger UI's "Try it out"); checked against this schema at start.
    # The raw field alone: OpenAPI shows it as the raw body's example too, which carries no options.
    "examples": [{"text": "Warm workers answer fast. Bounded queues keep them safe."}],
    "additionalProperties": False,
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "description": "the text to measure"},
        "top": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_TOP,
            "default": DEFAULT_TOP,
            "description": "how many of the most frequent terms to list",
        },
    },
}


def _count(description):
    return {"type": "integer", "minimum": 0, "description": description}


OUTPUT_SCHEMA = {
    "type": "object",
    # What the input example above returns (a test calls each example and compares).
    "examples": [
        {
            "characters": 56,
            "charactersNoSpaces": 48,
            "words": 9,
            "sentences": 2,
            "paragraphs": 1,
            "averageWordLength": 5.11,
            "topTerms": [
                {"term": "warm", "count": 1},
                {"term": "workers", "count": 1},
                {"term": "answer", "count": 1},
                {"term": "fast", "count": 1},
                {"term": "bounded", "count": 1},
                {"term": "queues", "count": 1},
                {"term": "keep", "count": 1},
                {"term": "safe", "count": 1},
            ],
            "fleschReadingEase": 89.47,
        }
    ],
    "additionalProperties": False,
    "required": [
        "characters", "charactersNoSpaces", "words", "sentences", "paragraphs",
        "averageWordLength", "topTerms", "fleschReadingEase",
    ],
    "properties": {
        "characters": _count("code points of the NFC-normalised text"),
        "charactersNoSpaces": _count("code points other than whitespace"),
        "words": _count("words: runs of letters, digits, underscores and marks, joined across ' ’ and -"),
        "sentences": _count("sentences with at least one word"),
        "paragraphs": _count("paragraphs: non-blank parts between blank lines"),
        "averageWordLength": {
            "type": ["number", "null"],
            "minimum": 1,
            "description": "mean code points per word, rounded to 2 decimals; null without words",
        },
        "topTerms": {
            "type": "array",
            "maxItems": MAX_TOP,
            "description": "the most frequent case-folded words with letters, minus English stop words; ties by first appearance",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["term", "count"],
                "properties": {
                    "term": {"type": "string", "minLength": 1, "description": "the case-folded word"},
                    "count": {"type": "integer", "minimum": 1, "description": "how often it occurs"},
                },
            },
        },
        "fleschReadingEase": {
            "type": ["number", "null"],
            "description": "Flesch reading ease (English syllable heuristic), rounded to 2 decimals; null without words",
        },
    },
}


@task("text.stats", schema=SCHEMA, output_schema=OUTPUT_SCHEMA, timeout_ms=30000, raw=("text/plain",), raw_field="text")
def text_stats(input):
    """Measure a text: characters, words, sentences, paragraphs, average word length, top terms and Flesch reading ease.

    The text is NFC-normalised and counted in code points. A word is a run of
    letters, digits, underscores and combining marks, joined across ' ’ and -
    (so scripts written without spaces count a run as one word). A sentence
    ends at . ! ? … followed by a space or the end (abbreviations like "Dr."
    end one too), or at 。！？; a paragraph ends at a blank line. Top terms are
    case-folded words with letters, minus English stop words, most frequent
    first, ties in order of first appearance. Flesch reading ease uses an
    English syllable heuristic, so it means little for other languages.
    Averages and Flesch are rounded to 2 decimals and null for a text
    without words, whose counts are all 0.
    """
    text = _nfc(input["text"])
    top = input.get("top", DEFAULT_TOP)
    words = _WORD.findall(text)
    sentences = sum(1 for part in _SENTENCE_END.split(text) if _WORD.search(part))
    unix_text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = sum(1 for part in _PARAGRAPH_BREAK.split(unix_text) if part and not part.isspace())
    # Natural text repeats its words, so per-word work is done once per distinct word.
    word_counts = Counter(words)
    terms = Counter()
    for word, count in word_counts.items():
        term = word.casefold().replace("’", "'")
        if _is_term(term):
            terms[term] += count
    average_length = None
    flesch = None
    if words:
        average_length = round(sum(len(word) * count for word, count in word_counts.items()) / len(words), 2)
        syllables = sum(_syllables(word) * count for word, count in word_counts.items())
        flesch = round(206.835 - 1.015 * len(words) / sentences - 84.6 * syllables / len(words), 2)
    return {
        "characters": len(text),
        "charactersNoSpaces": sum(map(len, text.split())),
        "words": len(words),
        "sentences": sentences,
        "paragraphs": paragraphs,
        "averageWordLength": average_length,
        "topTerms": [{"term": term, "count": count} for term, count in terms.most_common(top)],
        "fleschReadingEase": flesch,
    }


def _nfc(text):
    """unicodedata.normalize("NFC", text), in linear time.

    normalize puts the combining marks after each character in canonical
    order with an insertion sort: 100,000 marks in alternating order (U+0301
    U+0316 ...) take seconds. So each long run of marks, with the character
    before it, is first replaced by its decomposition in canonical order,
    sorted here in O(n log n), and normalize has little left to move. The
    text stays canonically equivalent, so its NFC is the same. (Every
    character whose decomposition starts with a non-starter, a mark of
    class > 0, is itself a mark, so no run that normalize sorts reaches past
    the replaced characters: the tests check this on all of Unicode. Runs
    under 16 marks cost it little.) Most text is NFC already, which
    is_normalized tells in linear time, and skips the search for runs.
    """
    if unicodedata.is_normalized("NFC", text):
        return text
    pieces = []
    done = 0
    for maybe in _MAYBE_LONG_MARK_RUN.finditer(text):
        # Every run, long or not: "{16,}" would be tried again from each character of a
        # shorter run (15 astral marks after each emoji made that 8 times normalize's time).
        for run in _MARK_RUN.finditer(text, maybe.start(), maybe.end()):
            if run.end() - run.start() < _LONG_RUN:
                continue
            start = max(run.start() - 1, 0)  # a run is maximal, so this character is no mark
            pieces += text[done:start], _canonical_decomposition(text[start : run.end()])
            done = run.end()
    pieces.append(text[done:])
    return unicodedata.normalize("NFC", "".join(pieces))


def _canonical_decomposition(text):
    """NFD of text, in O(n log n): its characters decomposed one by one, then put in canonical order.

    Canonical order is a stable sort, by combining class, of the non-starters after each starter.
    """
    decomposed = "".join(map(_DECOMPOSE, text))
    # Cut before every starter (combining class 0); map and compress keep the per-character work in C.
    starters = compress(count(), map(not_, map(unicodedata.combining, decomposed)))
    cuts = [0, *starters, len(decomposed)]
    return "".join("".join(sorted(decomposed[a:b], key=unicodedata.combining)) for a, b in zip(cuts, cuts[1:]))


def _is_term(word):
    return word not in STOP_WORDS and any(c.isalpha() for c in word)


def _syllables(word):
    """English syllables by vowel groups, dropping silent endings (-e, -es, -ed); at least 1."""
    word = word.lower()
    if len(word) <= 3:
        return 1
    word = _SYLLABLE_SUFFIX.sub("", word)
    if word.startswith("y"):
        word = word[1:]
    return max(1, len(_VOWEL_GROUP.findall(word)))
