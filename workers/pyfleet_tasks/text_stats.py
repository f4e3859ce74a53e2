"""``text.stats``: counts, frequent terms and Flesch reading ease of a text.

Counting rules live here; Unicode data comes from the standard library.
"""

import heapq  # noqa: F401  Counter.most_common imports it on first use; here it is imported before ready
import re
import unicodedata
from collections import Counter

from pyfleet import task
from pyfleet_tasks.unicode_marks import mark_ranges

DEFAULT_TOP = 10
MAX_TOP = 100


# Word characters: \w plus the combining marks (see unicode_marks.py for why and how);
# a word part starts with \w, so a stray mark (an emoji's variation selector) is no word.
_WORD_CHAR = rf"[\w{mark_ranges()}]"
# Apostrophes and hyphens join word parts: don't, l'homme, state-of-the-art.
_WORD = re.compile(rf"\w{_WORD_CHAR}*(?:['’-]\w{_WORD_CHAR}*)*")
# A sentence ends at . ! ? … (and Devanagari, Arabic, Urdu stops), with any closing quotes or
# brackets, before a space or the end, so "3.14" and "example.com" do not end one; CJK full stops
# need no space after them.
_SENTENCE_END = re.compile(r"[.!?…‽।॥؟۔]+[\"'”’»)\]]*(?=\s|$)|[。！？]+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\u2029")
_SYLLABLE_SUFFIX = re.compile(r"(?:[^laeiouy]es|ed|[^laeiouy]e)$")
_VOWEL_GROUP = re.compile(r"[aeiouy]{1,2}")

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


@task("text.stats", schema=SCHEMA, timeout_ms=30000, raw=("text/plain",), raw_field="text")
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
    text = unicodedata.normalize("NFC", input["text"])
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
