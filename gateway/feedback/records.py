"""What the feedback loop keeps of an answered query, and what the report reads back."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageServed:
    """How one stage of the answer was served (the receipt, reduced to what a report shows)."""

    stage: str
    served_by: str
    tier: int


@dataclass(frozen=True)
class AnswerRecord:
    """One answered query, kept for `feedback_retention_s` so a rating can be joined to it."""

    request_id: str
    created_at: float  # unix seconds
    query: str
    answer: str
    source_ids: list[str]
    stages: list[StageServed]
    degraded: bool
    cached: bool
    latency_ms: float
    tokens: dict[str, tuple[int, int]] = field(default_factory=dict)  # model -> prompt, completion
    cost_usd: float = 0.0


@dataclass(frozen=True)
class RatedAnswer:
    """An answer with the rating it got, as the report lists it."""

    record: AnswerRecord
    rating: int
    comment: str
    rated_at: float


@dataclass(frozen=True)
class RatingSummary:
    """Ratings of a group of answers: how many, and their mean (None when there are none)."""

    count: int
    average: float | None


@dataclass(frozen=True)
class FeedbackReport:
    worst: list[RatedAnswer]
    primary: RatingSummary  # answers every stage of which a tier-0 upstream served
    degraded: RatingSummary
    answers_kept: int
