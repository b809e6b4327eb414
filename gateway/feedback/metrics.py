"""The feedback loop's metrics: answer quality (ratings), retrieval quality (`harag eval`),
cost, and the records the bounded write queue had to drop."""

from __future__ import annotations

from opentelemetry import metrics


class FeedbackMetrics:
    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("harag.gateway.feedback")
        self._rating_average = meter.create_gauge(
            "harag.gateway.feedback.rating_average",
            unit="{rating}",
            description="Mean answer rating (1..5) over the last hour; 0 while there is none.",
        )
        self._rating_count = meter.create_gauge(
            "harag.gateway.feedback.ratings",
            unit="{rating}",
            description="Ratings submitted in the last hour.",
        )
        self._ratings = meter.create_counter(
            "harag.gateway.feedback.submitted",
            unit="{rating}",
            description="Ratings accepted by SubmitFeedback, by rating.",
        )
        self._dropped = meter.create_counter(
            "harag.gateway.feedback.records_dropped",
            unit="{record}",
            description="Answered queries not recorded because the write queue was full or "
            "the feedback database failed.",
        )
        self._cost = meter.create_counter(
            "harag.gateway.cost_usd",
            unit="{USD}",
            description="What the model calls that answered cost (price_table), by model.",
        )
        self._mrr = meter.create_gauge(
            "harag.gateway.retrieval.mrr",
            unit="{score}",
            description="MRR@k of the latest `harag eval`, by question set and k.",
        )
        self._recall = meter.create_gauge(
            "harag.gateway.retrieval.recall",
            unit="{score}",
            description="Recall@k of the latest `harag eval`, by question set and k.",
        )

    def quality(self, count: int, average: float | None) -> None:
        self._rating_count.set(count)
        self._rating_average.set(average if average is not None else 0.0)

    def rated(self, rating: int) -> None:
        self._ratings.add(1, {"rating": str(rating)})

    def dropped(self, count: int, reason: str) -> None:
        self._dropped.add(count, {"reason": reason})

    def cost(self, model: str, usd: float) -> None:
        self._cost.add(usd, {"model": model})

    def evaluation(self, question_set: str, k: int, mrr: float, recall: float) -> None:
        labels = {"question_set": question_set, "k": str(k)}
        self._mrr.set(mrr, labels)
        self._recall.set(recall, labels)


FEEDBACK_METRICS = FeedbackMetrics()
