"""The feedback loop's logic with explicit times: the store's retention and rating window (real
SQLite in a temporary directory), the quality alert's edges, prices, eval scoring, and the
bounded write queue dropping rather than waiting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.feedback.config import FeedbackConfig
from gateway.feedback.loop import FeedbackLoop, cost_usd, model_tokens
from gateway.feedback.prices import ModelPrice, PriceTableError, parse_price_table
from gateway.feedback.quality import WINDOW_S, QualityAlert
from gateway.feedback.records import AnswerRecord, RatingSummary, StageServed
from gateway.feedback.store import sqlite_store
from gateway.query import Answer, QueryResult, StageResult, TokenUsage
from harag.v1 import gateway_pb2
from harag_cli.evaluation import Evaluation, Question, score

T0 = 1_800_000_000.0


def record(request_id: str, at: float, degraded: bool = False) -> AnswerRecord:
    return AnswerRecord(
        request_id=request_id,
        created_at=at,
        query=f"question {request_id}",
        answer=f"answer {request_id}",
        source_ids=["doc-a", "doc-b"],
        stages=[
            StageServed("STAGE_EMBED", "embedder-fallback" if degraded else "e", int(degraded))
        ],
        degraded=degraded,
        cached=False,
        latency_ms=12.5,
        tokens={"m": (100, 20)},
        cost_usd=0.25,
    )


class Gauges:
    """A FeedbackMetrics stand-in that remembers what it was given."""

    def __init__(self) -> None:
        self.quality_seen: list[tuple[int, float | None]] = []
        self.dropped_seen: list[tuple[int, str]] = []

    def quality(self, count: int, average: float | None) -> None:
        self.quality_seen.append((count, average))

    def dropped(self, count: int, reason: str) -> None:
        self.dropped_seen.append((count, reason))

    def rated(self, rating: int) -> None:
        pass

    def cost(self, model: str, usd: float) -> None:
        pass


async def test_store_keeps_rates_windows_and_purges(tmp_path: Path):
    store = sqlite_store(str(tmp_path))
    await store.record([record("old", T0), record("new", T0 + 50)])
    await store.record([record("new", 0.0)])  # a replayed id keeps the first record
    assert await store.rate("new", 2, "meh", T0 + 60, since=T0 - 10)
    assert not await store.rate("missing", 2, "", T0 + 60, since=T0 - 10)
    # Past the retention period an answer can no longer be rated.
    assert not await store.rate("old", 5, "", T0 + 1000, since=T0 + 1)
    assert await store.rate("new", 4, "better", T0 + 70, since=T0)  # re-rating replaces
    assert await store.ratings_since(T0) == RatingSummary(1, 4.0)
    assert await store.ratings_since(T0 + 71) == RatingSummary(0, None)
    report = store.report(10)
    assert [r.record.request_id for r in report.worst] == ["new"]
    assert report.worst[0].comment == "better" and report.worst[0].record.created_at == T0 + 50
    assert report.worst[0].record.tokens == {"m": (100, 20)}
    assert report.primary == RatingSummary(1, 4.0) and report.degraded == RatingSummary(0, None)
    assert await store.purge(T0 + 1) == 1
    assert store.report(10).answers_kept == 1
    assert await store.purge(T0 + 100) == 1
    assert await store.ratings_since(0) == RatingSummary(0, None)  # ratings went with them
    store.close()


def test_the_quality_alert_fires_once_per_episode_and_needs_enough_ratings(caplog):
    gauges = Gauges()
    alert = QualityAlert(3.5, 10, gauges)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="harag.gateway.feedback"):
        assert not alert.update(RatingSummary(9, 1.0))  # too few to mean anything
        assert alert.update(RatingSummary(10, 3.4))
        assert not alert.update(RatingSummary(11, 3.0))  # still firing: no second event
        assert not alert.update(RatingSummary(12, 3.5))  # recovered (3.5 is not below)
        assert alert.update(RatingSummary(20, 2.0))
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events == ["quality_alert", "quality_recovered", "quality_alert"]
    assert gauges.quality_seen[0] == (9, 1.0)
    assert WINDOW_S == 3600


def test_prices_inline_or_file_and_malformed_tables_are_named(tmp_path: Path):
    inline = parse_price_table('{"m": {"prompt_per_1k": 1.0, "completion_per_1k": 3}}')
    assert inline == {"m": ModelPrice(1.0, 3.0)}
    assert inline["m"].cost(500, 1000) == pytest.approx(3.5)
    path = tmp_path / "prices.yaml"
    path.write_text("m2:\n  prompt_per_1k: 0.1\n  completion_per_1k: 0.2\n")
    assert parse_price_table(str(path)) == {"m2": ModelPrice(0.1, 0.2)}
    assert parse_price_table("") == {}
    for bad, why in [
        ('{"m": {"prompt_per_1k": 1}}', "needs exactly"),
        ('{"m": {"prompt_per_1k": -1, "completion_per_1k": 1}}', ">= 0"),
        ("{not json", "not valid"),
        (str(tmp_path / "missing.json"), "cannot read"),
    ]:
        with pytest.raises(PriceTableError, match=why):
            parse_price_table(bad)


def _result(cached: bool) -> QueryResult:
    answer = Answer("text", "m", usage=TokenUsage(1000, 500))
    stage = StageResult(gateway_pb2.STAGE_GENERATE, "g", 0, 0.1, [], "", answer)
    return QueryResult("text", "m", [], [stage], cached=cached)


def test_tokens_and_cost_per_model_and_a_cached_answer_costs_nothing():
    tokens = model_tokens(_result(cached=False))
    assert tokens == {"m": (1000, 500)}
    assert cost_usd(tokens, {"m": ModelPrice(0.5, 2.0)}) == {"m": pytest.approx(1.5)}
    assert cost_usd(tokens, {}) == {}  # an unpriced model is free, not an error
    assert model_tokens(_result(cached=True)) == {}


async def test_a_full_write_queue_drops_and_counts_instead_of_waiting(tmp_path: Path):
    gauges = Gauges()
    loop = FeedbackLoop(
        FeedbackConfig(state_dir=str(tmp_path), queue_size=2),
        sqlite_store(str(tmp_path)),
        metrics=gauges,  # type: ignore[arg-type]
    )
    # Not started: nothing drains the queue, as when the database is slower than answers.
    for i in range(5):
        loop.answered(_result(cached=False), "q", f"r{i}", 1.0)
    assert gauges.dropped_seen == [(1, "queue_full")] * 3
    loop.start()
    assert await loop.rate("r1", 3, "")  # waits for its record's write, then rates it
    assert not await loop.rate("r4", 3, "")  # dropped: never recorded
    await loop.stop()


def test_eval_scoring_ranks_distinct_documents_within_k():
    q = Question("q", frozenset({"b", "c"}))
    assert score(q, ["a", "a", "b", "c"], 5).rank == 2  # chunks of one document count once
    assert score(q, ["a", "a", "b", "c"], 5).found == 2
    assert score(q, ["a", "d", "b"], 2).rank is None
    missed, first = score(q, ["x"], 5), score(q, ["c"], 5)
    evaluation = Evaluation(5, [missed, first])
    assert evaluation.mrr == pytest.approx(0.5)
    assert evaluation.recall == pytest.approx(0.25)
