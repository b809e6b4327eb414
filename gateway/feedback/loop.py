"""The gateway side of the feedback loop: records each answered query off the answer path
(a bounded queue drained by one background task), takes ratings, keeps the quality gauges
fresh and old records purged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.feedback.config import FeedbackConfig
from gateway.feedback.metrics import FEEDBACK_METRICS, FeedbackMetrics
from gateway.feedback.prices import ModelPrice, parse_price_table
from gateway.feedback.quality import WINDOW_S, QualityAlert
from gateway.feedback.records import AnswerRecord, StageServed
from gateway.feedback.store import FeedbackStore, FeedbackUnavailable
from gateway.query import Answer, QueryResult
from harag.v1 import gateway_pb2

log = logging.getLogger("harag.gateway.feedback")
BATCH = 200
REFRESH_S = 15.0  # the hour's window slides: old ratings leave the average without new ones
PURGE_EVERY_S = 600.0
PENDING_WAIT_S = 5.0


def model_tokens(result: QueryResult) -> dict[str, tuple[int, int]]:
    """Tokens per model of the calls that answered (a cached answer made none)."""
    tokens: dict[str, tuple[int, int]] = {}
    if result.cached:
        return tokens
    for stage in result.stages:
        value = stage.value
        if isinstance(value, Answer) and value.usage is not None:
            prompt, completion = tokens.get(value.model, (0, 0))
            tokens[value.model] = (
                prompt + value.usage.prompt_tokens,
                completion + value.usage.completion_tokens,
            )
    return tokens


def cost_usd(tokens: dict[str, tuple[int, int]], prices: dict[str, ModelPrice]) -> dict[str, float]:
    """What each model's calls cost; models without a price are left out."""
    return {
        model: prices[model].cost(prompt, completion)
        for model, (prompt, completion) in tokens.items()
        if model in prices
    }


class FeedbackLoop:
    def __init__(
        self,
        cfg: FeedbackConfig,
        store: FeedbackStore,
        *,
        now: Callable[[], float] = time.time,
        metrics: FeedbackMetrics = FEEDBACK_METRICS,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.prices = parse_price_table(cfg.price_table)
        self._now = now
        self._metrics = metrics
        self._queue: asyncio.Queue[AnswerRecord] = asyncio.Queue(cfg.queue_size)
        # Request ids queued but not yet written: a rating of one waits for the write.
        self._pending: set[str] = set()
        self._written = asyncio.Condition()
        self.alert = QualityAlert(cfg.alert_below, cfg.alert_min_ratings, metrics)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._metrics.quality(0, None)
        for model in self.prices:  # a series per priced model from zero, so rate() has one
            self._metrics.cost(model, 0.0)
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="feedback-writer"),
            asyncio.create_task(self._upkeep_loop(), name="feedback-upkeep"),
        ]

    async def stop(self) -> None:
        """Writes what is queued (briefly), then stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.store.close)

    def answered(
        self, result: QueryResult, query: str, request_id: str, latency_ms: float
    ) -> float:
        """Queues the answer's record without waiting; returns its cost in USD."""
        tokens = model_tokens(result)
        costs = cost_usd(tokens, self.prices)
        for model, usd in costs.items():
            self._metrics.cost(model, usd)
        record = AnswerRecord(
            request_id=request_id,
            created_at=self._now(),
            query=query,
            answer=result.answer,
            # Documents cited, in rank order (several chunks of one document count once).
            source_ids=list(
                dict.fromkeys(d.document.chunk.document_id or d.document.id for d in result.sources)
            ),
            stages=[
                StageServed(gateway_pb2.Stage.Name(s.stage), s.served_by, s.tier)
                for s in result.stages
            ],
            degraded=result.degraded,
            cached=result.cached,
            latency_ms=latency_ms,
            tokens=tokens,
            cost_usd=sum(costs.values()),
        )
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.dropped(1, "queue_full")
        else:
            self._pending.add(request_id)
        return record.cost_usd

    async def rate(self, request_id: str, rating: int, comment: str) -> bool:
        """Records a rating; False when no kept answer has that id. Raises FeedbackUnavailable."""
        if request_id in self._pending:
            async with self._written:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._written.wait_for(lambda: request_id not in self._pending),
                        PENDING_WAIT_S,
                    )
        now = self._now()
        found = await self.store.rate(request_id, rating, comment, now, now - self.cfg.retention_s)
        if found:
            self._metrics.rated(rating)
            await self.refresh_quality()
        return found

    async def refresh_quality(self) -> None:
        summary = await self.store.ratings_since(self._now() - WINDOW_S)
        self.alert.update(summary)

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.store.record(batch)
            except FeedbackUnavailable as exc:
                self._metrics.dropped(len(batch), "database_error")
                log.warning(
                    "feedback records dropped", extra={"error": str(exc), "records": len(batch)}
                )
            finally:
                async with self._written:
                    self._pending.difference_update(r.request_id for r in batch)
                    self._written.notify_all()
                for _ in batch:
                    self._queue.task_done()

    async def _upkeep_loop(self) -> None:
        last_purge = float("-inf")
        while True:
            try:
                if self._now() - last_purge >= PURGE_EVERY_S:
                    await self.store.purge(self._now() - self.cfg.retention_s)
                    last_purge = self._now()
                await self.refresh_quality()
            except FeedbackUnavailable as exc:
                log.warning("feedback database unavailable", extra={"error": str(exc)})
            await asyncio.sleep(REFRESH_S)
