"""What a query is and what running it produces: the pipeline's vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.resilience.guard import AttemptRecord
from harag.v1 import common_pb2, gateway_pb2


@dataclass(frozen=True)
class QueryInput:
    query: str
    top_k: int
    filters: Sequence[common_pb2.MetadataFilter] = ()


ValueT = TypeVar("ValueT", covariant=True)


@dataclass(frozen=True)
class StageResult(Generic[ValueT]):
    """How one stage was served; `value` is the stage's output (vector, documents, answer)."""

    stage: gateway_pb2.Stage
    served_by: str
    tier: int
    latency_s: float
    attempts: list[AttemptRecord]
    detail: str
    value: ValueT

    @property
    def degraded(self) -> bool:
        return self.tier > 0


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one model call used, as the model provider reported them."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Answer:
    """What the generate stage produced."""

    text: str
    model: str
    retry_after_s: float | None = None  # set on the static answer: when to try again
    # Set on a stale cached answer: the sources it was composed from, which replace the
    # ones retrieved for this query.
    stale_sources: list[common_pb2.ScoredDocument] | None = None
    usage: TokenUsage | None = None  # when the generator reported it (a chat model does)


@dataclass
class QueryResult:
    answer: str
    model: str
    sources: list[common_pb2.ScoredDocument]
    stages: list[StageResult[object]]
    retry_after_s: float | None = None
    cached: bool = False

    @property
    def degraded(self) -> bool:
        return any(stage.degraded for stage in self.stages)


@dataclass
class QueryVector:
    values: Sequence[float]
    model: str


@dataclass(frozen=True)
class Withdrawal:
    """A generator tier failed after streaming some text: that text is withdrawn."""

    upstream: str
    tier: int
    reason: str
    withdrawn_chars: int


@dataclass
class StreamEvent:
    """One StreamQuery event: sources (once), chunk (zero or more), withdrawn (after a
    mid-stream failure; the chunks after it restart the answer), final (once)."""

    sources: list[common_pb2.ScoredDocument] | None = None
    chunk: str | None = None
    final: QueryResult | None = None
    withdrawn: Withdrawal | None = None
