"""Turns pipeline results into the public messages: sources and the degradation receipt."""

from __future__ import annotations

from typing import cast

from google.protobuf import duration_pb2

from gateway.query import Answer, QueryResult, QueryVector, StageResult
from gateway.resilience.guard import AttemptRecord
from harag.v1 import common_pb2, gateway_pb2, generator_pb2

SECTION_SEPARATOR = " \u203a "  # between headings of a section path


def sources(documents: list[common_pb2.ScoredDocument]) -> list[gateway_pb2.Source]:
    """Public sources: a chunk is named by its document's id; where it sits in the document
    is in metadata (chunk_id, title, section: headings joined by SECTION_SEPARATOR, page)."""
    return [
        gateway_pb2.Source(
            id=d.document.chunk.document_id or d.document.id,
            text=d.document.text,
            score=d.score,
            metadata=_source_metadata(d.document),
            citation=i,
        )
        for i, d in enumerate(documents, start=1)
    ]


def _source_metadata(document: common_pb2.Document) -> dict[str, str]:
    metadata = dict(document.metadata)
    for key, values in document.metadata_values.items():
        metadata.setdefault(key, ", ".join(values.values))
    if document.HasField("chunk"):
        chunk = document.chunk
        metadata["chunk_id"] = document.id
        if chunk.title:
            metadata.setdefault("title", chunk.title)
        if chunk.heading_path:
            metadata["section"] = SECTION_SEPARATOR.join(chunk.heading_path)
        if chunk.page:
            metadata["page"] = str(chunk.page)
    return metadata


# Breaker state names as the guard records them ("OPEN") -> the public enum's numbers.
_CIRCUIT_STATES = {
    name.removeprefix("CIRCUIT_STATE_"): cast("gateway_pb2.CircuitState", number)
    for name, number in gateway_pb2.CircuitState.items()
}


def attempt(record: AttemptRecord) -> gateway_pb2.Attempt:
    return gateway_pb2.Attempt(
        upstream=record.upstream,
        tier=record.tier,
        outcome=record.outcome,
        latency_ms=record.latency_s * 1000,
        error=record.error,
        retry=record.retry,
        hedge=record.hedge,
        attempt=record.number,
        breaker_state=_CIRCUIT_STATES.get(record.breaker_state),
    )


def stage(result: StageResult[object]) -> gateway_pb2.StageReport:
    attempts = [attempt(a) for a in result.attempts]
    _mark_answering_attempt(result, attempts)
    return gateway_pb2.StageReport(
        stage=result.stage,
        served_by=result.served_by,
        tier=result.tier,
        latency_ms=result.latency_s * 1000,
        attempts=attempts,
        degraded=result.degraded,
        detail=result.detail,
    )


def _mark_answering_attempt(
    result: StageResult[object], attempts: list[gateway_pb2.Attempt]
) -> None:
    """Puts the model (and the tokens it used) on the attempt whose answer served the stage:
    the OK attempt of the serving upstream (a stage has at most one)."""
    value = result.value
    if not isinstance(value, Answer | QueryVector):
        return
    for record in attempts:
        if record.upstream == result.served_by and record.outcome == "OK":
            record.model = value.model
            usage = value.usage if isinstance(value, Answer) else None
            if usage is not None:
                record.usage.CopyFrom(
                    generator_pb2.GenerationUsage(
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                    )
                )
            return


def retry_after(result: QueryResult) -> duration_pb2.Duration | None:
    if result.retry_after_s is None:
        return None
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(result.retry_after_s * 1e9))
    return value


def query_response(
    result: QueryResult, request_id: str, trace_id: str
) -> gateway_pb2.QueryResponse:
    return gateway_pb2.QueryResponse(
        answer=result.answer,
        sources=sources(result.sources),
        request_id=request_id,
        trace_id=trace_id,
        cached=result.cached,
        degraded=result.degraded,
        stages=[stage(s) for s in result.stages],
        retry_after=retry_after(result),
        model=result.model,
    )


def final_event(result: QueryResult, request_id: str, trace_id: str) -> gateway_pb2.FinalEvent:
    return gateway_pb2.FinalEvent(
        request_id=request_id,
        trace_id=trace_id,
        cached=result.cached,
        degraded=result.degraded,
        stages=[stage(s) for s in result.stages],
        retry_after=retry_after(result),
        model=result.model,
        answer=result.answer,
    )
