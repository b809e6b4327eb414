"""The gateway's size bounds: what an ingested document's metadata may carry and how large an
answer with its sources may grow (the settings are servicekit.limits', shared with the
retrievers, so one key means one thing on every process)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harag.v1 import common_pb2, gateway_pb2
from servicekit.errors import FieldViolations
from servicekit.limits import DocumentLimits, ReplyLimits, Trimmed, check_metadata, trim_documents
from servicekit.settings import section

# Kept back from max_reply_bytes for what an answer carries besides its sources: the answer
# text (a generator's max_answer_chars), the receipt and the ids. Sources get the rest.
ANSWER_RESERVE_BYTES = 48 * 1024


@dataclass(frozen=True)
class InputLimits:
    """Bounds of ingested documents and of answers."""

    documents: DocumentLimits = section(DocumentLimits)
    replies: ReplyLimits = section(ReplyLimits)

    @property
    def sources_budget_bytes(self) -> int:
        return self.replies.max_reply_bytes - ANSWER_RESERVE_BYTES


def check_ingest(
    documents: Sequence[common_pb2.Document], limits: InputLimits, violations: FieldViolations
) -> None:
    """Adds a violation naming `documents[i].metadata` for each document over a bound."""
    for i, document in enumerate(documents):
        check_metadata(document, limits.documents, violations, f"documents[{i}]")


def bound_sources(documents: list[common_pb2.ScoredDocument], limits: InputLimits) -> Trimmed:
    """The retrieved context trimmed to what an answer may carry besides its text."""
    return trim_documents(documents, limits.sources_budget_bytes)


def fit_response(response: gateway_pb2.QueryResponse, limits: InputLimits) -> int:
    """Drops sources from the tail while the response is over max_reply_bytes (the sources
    were bounded at retrieval; only an unusually long answer gets here). Returns how many."""
    dropped = 0
    # Room for the note saying so, which goes into the retrieve stage's detail.
    limit = limits.replies.max_reply_bytes - 128
    while response.sources and response.ByteSize() > limit:
        response.sources.pop()
        dropped += 1
    if dropped:
        for stage in response.stages:
            if stage.stage == gateway_pb2.STAGE_RETRIEVE:
                stage.detail += (
                    f"; {dropped} sources dropped to fit {limits.replies.max_reply_bytes} bytes"
                )
    return dropped
