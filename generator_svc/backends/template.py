"""The fallback generator: lists the opening of the top context documents, with citations.

It does no query analysis at all, so it keeps working (and stays cheap) whatever the
query; the retriever's ranking is the only judgement of relevance.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator_svc.backends import Answer
from generator_svc.backends.compose import Piece, assemble, no_context
from generator_svc.backends.text import prose, trim_words

MODEL = "template-v1"
LEAD = "Here are the most relevant passages I found:"
MAX_SNIPPETS = 3
SNIPPET_CHARS = 160


class TemplateGenerator:
    """Stateless, so deterministic and thread-safe."""

    @property
    def model(self) -> str:
        return MODEL

    def generate(self, query: str, context: Sequence[str], max_answer_chars: int) -> Answer:
        pieces: list[Piece] = []
        for index, text in enumerate(context):
            snippet = prose(text)
            if snippet:
                pieces.append(Piece("- " + trim_words(snippet, SNIPPET_CHARS), index + 1))
            if len(pieces) == MAX_SNIPPETS:
                break
        if not pieces:
            return no_context(max_answer_chars)
        return assemble(pieces, max_answer_chars, lead=LEAD, separator="\n")
