"""Per-request samples and what a load run reports about them: QPS, percentiles, errors, tiers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

OK = "OK"
LOCAL = "local"  # stage served by a gateway last resort (local:*, cache)


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it was due (s since the run began), how it ended, how it was served."""

    due_s: float
    latency_s: float
    code: str  # "OK" or a gRPC status code name
    degraded: bool = False
    tiers: tuple[int, ...] = ()  # tier that served each stage (embed, retrieve, generate)
    local: tuple[bool, ...] = ()  # stage served by a last resort, not an upstream
    attempts: int = 0  # attempts made across the stages (retries and hedges included)
    lag_s: float = 0.0  # open loop: how late the client sent it (it was CPU-starved)
    retry_after_s: float = 0.0  # shed: the RetryInfo delay the gateway asked for

    @property
    def ok(self) -> bool:
        return self.code == OK


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Summary:
    requests: int
    ok: int
    duration_s: float
    qps: float  # OK answers per second (goodput)
    offered_qps: float  # requests per second, whatever their outcome
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    degraded_share: float  # of OK answers
    errors: dict[str, int] = field(default_factory=dict)
    tier_share: dict[str, float] = field(default_factory=dict)  # "tier0"/"tier1"/"local"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tier_share(samples: Sequence[Sample]) -> dict[str, float]:
    """Share of stage executions served by tier 0, tier 1, ... and by a local last resort."""
    counts: Counter[str] = Counter()
    for s in samples:
        for tier, local in zip(s.tiers, s.local, strict=False):
            counts[LOCAL if local else f"tier{tier}"] += 1
    total = sum(counts.values())
    return {k: counts[k] / total for k in sorted(counts)} if total else {}


def summarise(samples: Sequence[Sample], duration_s: float) -> Summary:
    """Latency percentiles are over OK answers only; errors are counted by status code."""
    ok = [s for s in samples if s.ok]
    latencies = sorted(s.latency_s * 1000 for s in ok)
    errors = Counter(s.code for s in samples if not s.ok)
    return Summary(
        requests=len(samples),
        ok=len(ok),
        duration_s=duration_s,
        qps=len(ok) / duration_s if duration_s > 0 else math.nan,
        offered_qps=len(samples) / duration_s if duration_s > 0 else math.nan,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else math.nan,
        mean_ms=sum(latencies) / len(latencies) if latencies else math.nan,
        degraded_share=sum(s.degraded for s in ok) / len(ok) if ok else math.nan,
        errors=dict(sorted(errors.items())),
        tier_share=tier_share(ok),
    )


def per_second(samples: Sequence[Sample], q: float = 99) -> list[tuple[int, float, int]]:
    """(second, latency percentile in ms, OK answers) for each whole second of the run."""
    buckets: dict[int, list[float]] = {}
    for s in samples:
        if s.ok:
            buckets.setdefault(int(s.due_s), []).append(s.latency_s * 1000)
    return [
        (sec, percentile(sorted(values), q), len(values)) for sec, values in sorted(buckets.items())
    ]
