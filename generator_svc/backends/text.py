"""Plain-text handling shared by the generators: prose extraction, sentences, trimming."""

from __future__ import annotations

import re

ELLIPSIS = "…"

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
# Short "key: value" lines without a sentence end, such as a document's `tags: a, b` line.
_FIELD_LINE = re.compile(r"^[A-Za-z][\w -]{0,30}:\s[^.!?]{0,80}$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_SPACES = re.compile(r"\s+")
# A sentence ends at . ! or ? (plus closing quotes/brackets) before a space and a
# capital, digit or opening quote; decimals like 1.2 never match (no space after the dot).
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "Dr.", "Mr.", "Ms.", "Fig.")


def blocks(text: str) -> list[str]:
    """The prose of a markdown-ish text as blocks: paragraphs and list items, one line each.

    Headings and metadata lines are dropped; soft line wraps inside a paragraph are joined.
    """
    result: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            result.append(_SPACES.sub(" ", _EMPHASIS.sub("", " ".join(current))).strip())
            current.clear()

    for line in text.splitlines():
        if not line.strip() or _HEADING.match(line) or _FIELD_LINE.match(line.strip()):
            flush()
            continue
        if _LIST_MARKER.match(line):
            flush()
            line = _LIST_MARKER.sub("", line)
        current.append(line.strip())
    flush()
    return [b for b in result if b]


def prose(text: str) -> str:
    """The text's prose on one line (for snippets)."""
    return " ".join(blocks(text))


def sentences(block: str) -> list[str]:
    """Splits one block into sentences, not breaking after common abbreviations."""
    parts: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(block):
        head = block[start : match.start()]
        if head.endswith(_ABBREVIATIONS):
            continue
        parts.append(block[start : match.end()].strip())
        start = match.end()
    parts.append(block[start:].strip())
    return [p for p in parts if p]


def trim_words(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut on a word boundary and marked `…`."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    head = text[: limit - len(ELLIPSIS) + 1]  # +1: a space right after the cut is a boundary
    cut = head.rfind(" ")
    # Without a space to cut at (one long word), a hard cut still respects the limit.
    kept = head[:cut] if cut > 0 else head[:-1]
    return kept.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS
