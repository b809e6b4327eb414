"""What the gateway answered over the last minutes: tier shares, degraded, shed, cache hits.

The Prometheus counters hold the same events cumulatively, for rate() over any range; the
page needs shares over its own window without a Prometheus server, so answers are also
counted here in per-second buckets (the resilience layer's RollingCounters), one `add` per
answer. Only the event loop that serves queries touches it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from gateway import receipt
from gateway.query import QueryResult, StageResult
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.window import RollingCounters
from harag.v1 import gateway_pb2

STAGES = ("embed", "retrieve", "generate")
TIER_CLASSES = ("primary", "fallback", "last_resort")
_ANSWERED, _DEGRADED, _CACHED, _SHED = range(4)
_STAGE_BASE = 4
# Model cost of the answers, in micro-USD (the counters are whole numbers).
_COST_MICRO_USD = _STAGE_BASE + len(STAGES) * len(TIER_CLASSES)
_FIELDS = _COST_MICRO_USD + 1
QUERY_SHOWN_CHARS = 200


def stage_name(stage: gateway_pb2.Stage) -> str:
    """ "embed" for STAGE_EMBED: the name the metrics and the page use."""
    return gateway_pb2.Stage.Name(stage).removeprefix("STAGE_").lower()


def tier_class(result: StageResult[object], upstream_names: frozenset[str]) -> str:
    """primary (tier 0), fallback (another upstream), last_resort (the gateway itself:
    lexical retrieval, empty context, stale answer, static answer)."""
    if result.served_by not in upstream_names:
        return "last_resort"
    return "primary" if result.tier == 0 else "fallback"


@dataclass(frozen=True)
class DegradedQuery:
    """One degraded answer as the page lists it."""

    at: float  # wall clock, seconds since the epoch
    request_id: str
    trace_id: str
    query: str
    cached: bool
    stages: list[dict[str, Any]]  # the receipt (StageReport as JSON)

    def to_json(self, trace_url: str) -> dict[str, Any]:
        return {
            "at": self.at,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "trace_url": trace_url,
            "query": self.query,
            "cached": self.cached,
            "stages": self.stages,
        }


class Activity:
    """Answers and sheds in a rolling window, and the latest degraded answers."""

    def __init__(
        self,
        upstream_names: frozenset[str],
        window_s: int = 300,
        recent_degraded: int = 20,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.window_s = window_s
        self._upstreams = upstream_names
        self._counts = RollingCounters(window_s, clock, _FIELDS)
        self._degraded: deque[DegradedQuery] = deque(maxlen=recent_degraded)

    def answered(
        self,
        result: QueryResult,
        query: str,
        request_id: str,
        trace_id: str,
        at: float,
        cost_usd: float = 0.0,
    ) -> None:
        """Counts an answer and what its model calls cost (the price table's figure); a
        cached one counts as a hit, its stages were not run again."""
        increments = [0] * _FIELDS
        increments[_ANSWERED] = 1
        increments[_COST_MICRO_USD] = round(cost_usd * 1_000_000)
        increments[_DEGRADED] = int(result.degraded)
        increments[_CACHED] = int(result.cached)
        if not result.cached:
            for stage in result.stages:
                name = stage_name(stage.stage)
                if name in STAGES:
                    cls = tier_class(stage, self._upstreams)
                    field = STAGES.index(name) * len(TIER_CLASSES) + TIER_CLASSES.index(cls)
                    increments[_STAGE_BASE + field] = 1
        self._counts.add(*increments)
        if result.degraded:
            self._degraded.appendleft(
                DegradedQuery(
                    at=at,
                    request_id=request_id,
                    trace_id=trace_id,
                    query=query[:QUERY_SHOWN_CHARS],
                    cached=result.cached,
                    stages=[
                        MessageToDict(receipt.stage(s), preserving_proto_field_name=True)
                        for s in result.stages
                    ],
                )
            )

    def shed(self) -> None:
        """A request turned away before it ran (admission control or the in-flight limit)."""
        self._counts.add(0, 0, 0, 1)

    def degraded_queries(self) -> list[DegradedQuery]:
        """Newest first."""
        return list(self._degraded)

    def summary(self) -> dict[str, Any]:
        """Counts and shares (0..1, None when nothing happened) over the window."""
        total = self._counts.total
        answered, shed = total(_ANSWERED), total(_SHED)
        tiers: dict[str, dict[str, Any]] = {}
        for i, stage in enumerate(STAGES):
            counts = {
                cls: total(_STAGE_BASE + i * len(TIER_CLASSES) + j)
                for j, cls in enumerate(TIER_CLASSES)
            }
            runs = sum(counts.values())
            tiers[stage] = {
                "runs": runs,
                **{cls: _share(n, runs) for cls, n in counts.items()},
            }
        return {
            "window_s": self.window_s,
            "answered": answered,
            "shed": shed,
            "requests_per_s": (answered + shed) / self.window_s,
            "degraded_share": _share(total(_DEGRADED), answered),
            "cache_hit_rate": _share(total(_CACHED), answered),
            "shed_share": _share(shed, answered + shed),
            "cost_usd": total(_COST_MICRO_USD) / 1_000_000,
            "cost_per_answer_usd": (
                total(_COST_MICRO_USD) / 1_000_000 / answered if answered else None
            ),
            "tiers": tiers,
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
