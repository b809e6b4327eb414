"""Names the cited sources under an answer: document title, section and id.

When the context documents are chunks (Document.chunk set), an answer ends with a source
list for the passages it cites, e.g.

    Sources:
    [1] Deploying ha-rag > Kubernetes > Probes (docs/deploy.md)

(the headings are joined by SECTION_SEPARATOR, a right-pointing angle quote, not ">")

so a reader sees which document and section said it, not an opaque chunk id. A cited
context document that is not a chunk is named by its id. When no cited document is a
chunk (an index from before chunking), the answer is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from generator_svc.backends import Answer
from harag.v1 import common_pb2

SECTION_SEPARATOR = " \u203a "  # a right-pointing angle quote between headings
SOURCES_LEAD = "\n\nSources:"


def label(document: common_pb2.Document) -> str:
    """'Title > Section > Subsection (document id)', with ', page N' when paged."""
    if not document.HasField("chunk"):
        return document.id
    chunk = document.chunk
    headings = list(chunk.heading_path)
    if headings and headings[0] == chunk.title:
        headings = headings[1:]
    name = SECTION_SEPARATOR.join([h for h in [chunk.title, *headings] if h])
    where = chunk.document_id or document.id
    if chunk.page:
        where += f", page {chunk.page}"
    return f"{name} ({where})" if name else where


def source_list(answer: Answer, documents: Sequence[common_pb2.Document]) -> str:
    """The "Sources:" lines for the answer's citations; empty when no cited one is a chunk."""
    cited = [c for c in answer.citations if 1 <= c <= len(documents)]
    if not any(documents[c - 1].HasField("chunk") for c in cited):
        return ""
    return SOURCES_LEAD + "".join(f"\n[{c}] {label(documents[c - 1])}" for c in cited)


def with_sources(
    generate: Callable[[int], Answer], documents: Sequence[common_pb2.Document], limit: int
) -> Answer:
    """The answer within `limit` characters, followed by its source list when that fits.

    `generate(budget)` answers within budget characters. When answer and list together are
    too long, the answer is generated again in the room the list leaves; when even that
    fails, the answer goes without the list.
    """
    answer = generate(limit)
    footer = source_list(answer, documents)
    if not footer:
        return answer
    if len(answer.text) + len(footer) <= limit:
        return Answer(answer.text + footer, answer.finish, answer.citations)
    room = limit - len(footer)
    if room > len(footer):
        shorter = generate(room)
        footer = source_list(shorter, documents)
        if len(shorter.text) + len(footer) <= limit:
            return Answer(shorter.text + footer, shorter.finish, shorter.citations)
    return answer
