"""Term analysis for matching queries to sentences: tokens, stopwords, a light stemmer.

The stemmer is deliberately small: it only has to map the forms a question and a passage
typically disagree on (retries/retry, caching/cache, normalise/normalize) to one key.
Both sides go through the same rules, so odd stems ("cach") are harmless.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during
    each either else few for from further get gets got had has have having he her here
    hers herself him himself his how i if in into is it its itself just me might more most
    much must my myself no nor not now of off on once only or other our ours ourselves out
    over own please same shall she should so some such tell than that the their theirs them
    themselves then there these they this those through to too under until up upon us very
    was we were what whats when where which while who whom whose why will with would you
    your yours yourself yourselves explain describe mean means
    """.split()
)

# Plurals go first and then one derivational suffix, so "speeds" and "speed" (and
# "isations" and "ise") end on the same stem. (suffix, replacement); first match wins.
_PLURALS = (("sses", "ss"), ("ies", "y"), ("s", ""))
_SUFFIXES = (
    ("isation", "ize"),
    ("ization", "ize"),
    ("ising", "ize"),
    ("izing", "ize"),
    ("ised", "ize"),
    ("ized", "ize"),
    ("ise", "ize"),
    ("ied", "y"),
    ("ingly", ""),
    ("edly", ""),
    ("ing", ""),
    ("ed", ""),
    ("ly", ""),
)
_DOUBLED = re.compile(r"([b-df-hj-km-np-rtv-z])\1$")  # doubled final consonant, not l/s
_MIN_STEM = 3


def _strip_first(word: str, rules: tuple[tuple[str, str], ...]) -> str:
    for suffix, replacement in rules:
        if word.endswith(suffix):
            if len(word) - len(suffix) + len(replacement) < _MIN_STEM:
                return word
            return word[: len(word) - len(suffix)] + replacement
    return word


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    if not word.endswith(("ss", "us", "is")):
        word = _strip_first(word, _PLURALS)
    word = _strip_first(word, _SUFFIXES)
    word = _DOUBLED.sub(r"\1", word)  # stopped -> stopp -> stop
    if len(word) > _MIN_STEM and word.endswith("e"):
        word = word[:-1]  # cache / caching -> cach
    return word


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def terms(text: str) -> list[str]:
    """Stemmed content terms in text order (stopwords and 1-character tokens removed)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]
