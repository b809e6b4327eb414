"""Typed values of the client's API: StreamQuery events, and the inputs it accepts.

Replies of Query, Ingest and GetSystemHealth are the generated messages (`QueryResponse`,
`IngestResponse`, `GetSystemHealthResponse`): they already have the right shape. A
StreamQuery event is a oneof, which Python types poorly, so each event is a small frozen
dataclass and `StreamEvent` is their union, ready for `match`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from harag.v1 import common_pb2, gateway_pb2

Source = gateway_pb2.Source
StageReport = gateway_pb2.StageReport
QueryResponse = gateway_pb2.QueryResponse
IngestResponse = gateway_pb2.IngestResponse
IngestResult = gateway_pb2.IngestResult
GetSystemHealthResponse = gateway_pb2.GetSystemHealthResponse
Document = common_pb2.Document
StoredDocument = common_pb2.StoredDocument
DeleteDocumentsResponse = gateway_pb2.DeleteDocumentsResponse
ListDocumentsResponse = gateway_pb2.ListDocumentsResponse
MetadataFilter = common_pb2.MetadataFilter


@dataclass(frozen=True)
class SourcesEvent:
    """The context documents, in citation order; always the first event."""

    sources: tuple[gateway_pb2.Source, ...]


@dataclass(frozen=True)
class AnswerChunk:
    """The next piece of answer text."""

    text: str


@dataclass(frozen=True)
class Withdrawn:
    """The answer text streamed so far is withdrawn (mid-stream failover).

    A generator failed after some of its chunks arrived; the gateway went on with the next
    tier. Discard every `AnswerChunk` received so far (or show it as struck out): the chunks
    that follow restart the answer from scratch. `FinalEvent.answer` holds only the new one.
    """

    upstream: str
    tier: int
    reason: str
    withdrawn_chars: int


@dataclass(frozen=True)
class FinalEvent:
    """The degradation receipt and the whole answer; always the last event.

    `retry_after_s` is set when the answer is the static "temporarily unavailable" one.
    """

    answer: str
    degraded: bool
    cached: bool
    stages: tuple[gateway_pb2.StageReport, ...]
    request_id: str
    trace_id: str
    model: str
    retry_after_s: float | None


StreamEvent: TypeAlias = SourcesEvent | AnswerChunk | Withdrawn | FinalEvent


@dataclass(frozen=True)
class ModelUsage:
    """Tokens one model used over a query's model calls, as the providers reported them."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int


def model_usage(stages: Iterable[gateway_pb2.StageReport]) -> list[ModelUsage]:
    """The tokens each model used for one answer (from its receipt: QueryResponse.stages or
    FinalEvent.stages), in receipt order; empty when no model reported usage (the offline
    generators use none). Cost accounting: multiply by your provider's price per token."""
    totals: dict[str, ModelUsage] = {}
    for stage in stages:
        for attempt in stage.attempts:
            if not attempt.HasField("usage"):
                continue
            seen = totals.get(attempt.model, ModelUsage(attempt.model, 0, 0, 0))
            totals[attempt.model] = ModelUsage(
                attempt.model,
                seen.prompt_tokens + attempt.usage.prompt_tokens,
                seen.completion_tokens + attempt.usage.completion_tokens,
                seen.calls + 1,
            )
    return list(totals.values())


def stream_event(message: gateway_pb2.StreamQueryResponse) -> StreamEvent | None:
    """The typed event of one StreamQuery message; None for an event kind this client does
    not know (a newer gateway), which callers skip so old clients keep working."""
    kind = message.WhichOneof("event")
    if kind == "sources":
        return SourcesEvent(tuple(message.sources.sources))
    if kind == "chunk":
        return AnswerChunk(message.chunk)
    if kind == "withdrawn":
        w = message.withdrawn
        return Withdrawn(w.upstream, w.tier, w.reason, w.withdrawn_chars)
    if kind == "final":
        final = message.final
        return FinalEvent(
            answer=final.answer,
            degraded=final.degraded,
            cached=final.cached,
            stages=tuple(final.stages),
            request_id=final.request_id,
            trace_id=final.trace_id,
            model=final.model,
            retry_after_s=(
                final.retry_after.seconds + final.retry_after.nanos / 1e9
                if final.HasField("retry_after")
                else None
            ),
        )
    return None


class DocumentFields(Protocol):
    """Any object with `id`, `text` and `metadata` attributes (a dataclass, a model...)."""

    @property
    def id(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...


DocumentLike: TypeAlias = common_pb2.Document | Mapping[str, Any] | DocumentFields
"""A document to ingest: a `Document` message, a dict with "text" and optional "id" and
"metadata" (values: a str, or a list of str for a multi-valued key such as tags), or an
object with those attributes. An empty id is replaced by a hash of the text."""

Filters: TypeAlias = Mapping[str, str | Sequence[str]] | Iterable[common_pb2.MetadataFilter]
"""Metadata filters, ANDed: `{"source": "wiki", "lang": ["en", "de"]}`, or MetadataFilter
messages."""


def to_document(document: DocumentLike, index: int = 0) -> common_pb2.Document:
    """Converts one ingest input to a `Document`; a TypeError names the bad one by index."""
    if isinstance(document, common_pb2.Document):
        return document
    if isinstance(document, Mapping):
        unknown = set(document) - {"id", "text", "metadata"}
        if unknown:
            raise TypeError(f"documents[{index}]: unknown keys {sorted(unknown)}")
        doc_id, text, metadata = (
            document.get("id") or "",
            document.get("text"),
            document.get("metadata") or {},
        )
    else:
        doc_id = getattr(document, "id", "") or ""
        text = getattr(document, "text", None)
        metadata = getattr(document, "metadata", None) or {}
    if not isinstance(text, str):
        raise TypeError(f"documents[{index}]: text must be a str, got {type(text).__name__}")
    if not isinstance(doc_id, str):
        raise TypeError(f"documents[{index}]: id must be a str, got {type(doc_id).__name__}")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"documents[{index}]: metadata must map str to str or a list of str")
    single: dict[str, str] = {}
    multi: dict[str, common_pb2.MetadataValues] = {}
    for key, value in metadata.items():
        if isinstance(key, str) and isinstance(value, str):
            single[key] = value
        elif (
            isinstance(key, str)
            and isinstance(value, Sequence)
            and not isinstance(value, bytes)
            and all(isinstance(v, str) for v in value)
        ):
            multi[key] = common_pb2.MetadataValues(values=list(value))
        else:
            raise TypeError(
                f"documents[{index}]: metadata must map str to str or a list of str (key {key!r})"
            )
    return common_pb2.Document(id=doc_id, text=text, metadata=single, metadata_values=multi)


def to_filters(filters: Filters | None) -> list[common_pb2.MetadataFilter]:
    if filters is None:
        return []
    if isinstance(filters, Mapping):
        return [
            common_pb2.MetadataFilter(
                key=key, values=[values] if isinstance(values, str) else list(values)
            )
            for key, values in filters.items()
        ]
    out = list(filters)
    for item in out:
        if not isinstance(item, common_pb2.MetadataFilter):
            raise TypeError(
                "filters must be a mapping of key to value(s) or MetadataFilter messages, "
                f"got a {type(item).__name__}"
            )
    return out
