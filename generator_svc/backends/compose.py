"""Fitting cited answer pieces into the character budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from generator_svc.backends import NO_CONTEXT_TEXT, Answer, Finish
from generator_svc.backends.text import trim_words

# Below this many characters a cut sentence says nothing; cut the whole answer instead.
MIN_BODY_CHARS = 12


@dataclass(frozen=True)
class Piece:
    """One cited unit of an answer, rendered as `body [n]end` (end: the final punctuation)."""

    body: str
    citation: int
    end: str = ""

    @property
    def marker(self) -> str:
        return f" [{self.citation}]"

    def render(self) -> str:
        return f"{self.body}{self.marker}{self.end}"


def assemble(pieces: Sequence[Piece], limit: int, lead: str = "", separator: str = " ") -> Answer:
    """Joins pieces, best first, into at most `limit` characters.

    A later piece that does not fit is left out (the answer stays complete and fluent);
    only when the best piece alone does not fit is it cut on a word boundary, keeping its
    citation, and the answer reports LENGTH.
    """
    text = lead
    citations: list[int] = []
    for index, piece in enumerate(pieces):
        joiner = separator if text else ""
        rendered = piece.render()
        if len(text) + len(joiner) + len(rendered) <= limit:
            text += joiner + rendered
            if piece.citation not in citations:
                citations.append(piece.citation)
            continue
        if index > 0:
            continue
        room = limit - len(text) - len(joiner) - len(piece.marker)
        body = trim_words(piece.body, room) if room >= MIN_BODY_CHARS else ""
        if body:
            return Answer(text + joiner + body + piece.marker, Finish.LENGTH, (piece.citation,))
        # Not even a word and its citation fit: cut what there is, with nothing cited.
        return Answer(trim_words(text + joiner + rendered, limit), Finish.LENGTH, ())
    return Answer(text, Finish.STOP, tuple(citations))


def no_context(limit: int) -> Answer:
    return Answer(trim_words(NO_CONTEXT_TEXT, limit), Finish.NO_CONTEXT, ())
