"""An answer (QueryResult) as bytes and back: the value gateway replicas share under an
answer's key in Redis. Protobuf (harag.v1.CachedAnswer), never pickle: a value read from
Redis is data from outside the process, and replicas of different versions must read each
other's answers. Bytes that do not parse as an answer are a miss, never a crash."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from gateway import receipt
from gateway.query import QueryResult, StageResult
from gateway.resilience.guard import AttemptRecord
from harag.v1 import answer_cache_pb2, gateway_pb2

_STAGES = frozenset(gateway_pb2.Stage.values()) - {gateway_pb2.STAGE_UNSPECIFIED}


def encode_answer(result: QueryResult) -> bytes:
    return answer_cache_pb2.CachedAnswer(
        answer=result.answer,
        model=result.model,
        sources=result.sources,
        stages=[receipt.stage(s) for s in result.stages],
    ).SerializeToString()


def decode_answer(data: bytes) -> QueryResult | None:
    """The answer, or None when `data` is not one (garbage, or from an incompatible writer)."""
    message = answer_cache_pb2.CachedAnswer()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError):
        return None
    if not message.answer or len(message.stages) != 3:
        return None
    if any(s.stage not in _STAGES for s in message.stages):
        return None
    return QueryResult(
        message.answer,
        message.model,
        list(message.sources),
        [_stage(s) for s in message.stages],
    )


def _stage(report: gateway_pb2.StageReport) -> StageResult[object]:
    return StageResult(
        report.stage,
        report.served_by,
        report.tier,
        report.latency_ms / 1000,
        [_attempt(a) for a in report.attempts],
        report.detail,
        None,
    )


def _attempt(attempt: gateway_pb2.Attempt) -> AttemptRecord:
    state = ""
    if attempt.breaker_state != gateway_pb2.CIRCUIT_STATE_UNSPECIFIED:
        state = gateway_pb2.CircuitState.Name(attempt.breaker_state).removeprefix("CIRCUIT_STATE_")
    return AttemptRecord(
        attempt.upstream,
        attempt.tier,
        attempt.outcome,
        attempt.latency_ms / 1000,
        attempt.error,
        attempt.retry,
        attempt.hedge,
        state,
        attempt.attempt,
    )
