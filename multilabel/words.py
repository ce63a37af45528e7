"""Words, as the findings count and show them (keywords.py): one rule, stated here and in docs/findings.md.

A word is a run of letters, digits, underscores and combining marks (an accent written as its own code point stays
with its letter), with an apostrophe (' or ’) allowed between two such runs (don't, l'homme: one word each); a mask
such as GoEmotions' [NAME] or [RELIGION] (capitals in square brackets) is one word. Everything else (spaces,
punctuation, emoji, symbols) is between words. Words are counted by their form: NFC, case-folded, ’ written '
(a mask as written). Each word keeps its span in the text exactly as given: text[start:end] is the word as written
(code points, as Python and JSON count them: an emoji is one, a CR of a CRLF is one).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"  # the combining diacritical blocks
PART = rf"[\w{MARKS}]+"
WORD = re.compile(rf"\[[A-Z]+\]|{PART}(?:['’]{PART})*")


def spans(text: str) -> Iterator[tuple[int, int]]:
    """Where each word is in the text: (start, end), text[start:end] the word as written."""
    for m in WORD.finditer(text):
        yield m.span()


def form(word: str) -> str:
    """The form a word is counted by."""
    if word.startswith("["):
        return word
    return unicodedata.normalize("NFC", word).casefold().replace("’", "'")


def words(text: str) -> list[str]:
    """The words of a text, as counted (forms), in order."""
    return [form(m.group()) for m in WORD.finditer(text)]
