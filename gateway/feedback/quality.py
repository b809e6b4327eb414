"""The answer-quality signal: the mean rating over the last hour and how many there were,
exported as gauges, and a log event when the mean drops below the alert threshold with
enough ratings to mean something (and again only after it recovered)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.feedback.metrics import FEEDBACK_METRICS, FeedbackMetrics
from gateway.feedback.records import RatingSummary

log = logging.getLogger("harag.gateway.feedback")
WINDOW_S = 3600.0


@dataclass
class QualityAlert:
    """Decides when the quality alert fires; fed each fresh summary of the last hour."""

    below: float
    min_ratings: int
    metrics: FeedbackMetrics = FEEDBACK_METRICS
    firing: bool = False

    def update(self, summary: RatingSummary) -> bool:
        """Exports the summary; True when the alert started firing with this one."""
        self.metrics.quality(summary.count, summary.average)
        low = (
            summary.count >= self.min_ratings
            and summary.average is not None
            and summary.average < self.below
        )
        started = low and not self.firing
        if started:
            log.warning(
                "answer quality alert",
                extra={
                    "event": "quality_alert",
                    "average_rating": round(summary.average or 0.0, 3),
                    "ratings": summary.count,
                    "threshold": self.below,
                    "window_s": WINDOW_S,
                },
            )
        elif self.firing and not low:
            log.info(
                "answer quality recovered",
                extra={"event": "quality_recovered", "ratings": summary.count},
            )
        self.firing = low
        return started
