"""Generic resilience layer: pure asyncio + stdlib, no knowledge of RAG or protos.

One pattern per module; everything takes an injectable `Clock` so tests are deterministic.
"""

from gateway.resilience.breaker import (
    DEFAULT_RECORDED_FAILURE_CODES,
    BreakerConfig,
    BreakerSnapshot,
    BreakerTransition,
    CircuitBreaker,
    CircuitState,
    Permit,
    TransitionReason,
)
from gateway.resilience.bulkhead import Bulkhead, BulkheadFull
from gateway.resilience.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
from gateway.resilience.coalesce import Coalesced, Coalescer
from gateway.resilience.deadline import Deadline, reserve_for
from gateway.resilience.hedge import (
    AttemptStatus,
    HedgeAttempt,
    HedgeResult,
    LatencyTracker,
    hedged,
)
from gateway.resilience.outcome import status_of
from gateway.resilience.retry import (
    PUSHBACK_KEY,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetSnapshot,
    RetryDecision,
    RetryPolicy,
    RetryReason,
    decide_retry,
    full_jitter_backoff,
    parse_pushback_ms,
)
from gateway.resilience.window import CountWindow, OutcomeWindow, RollingCounters, TimeWindow

__all__ = [
    "DEFAULT_RECORDED_FAILURE_CODES",
    "PUSHBACK_KEY",
    "SYSTEM_CLOCK",
    "AttemptStatus",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerTransition",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CircuitState",
    "Clock",
    "Coalesced",
    "Coalescer",
    "CountWindow",
    "Deadline",
    "FakeClock",
    "HedgeAttempt",
    "HedgeResult",
    "LatencyTracker",
    "OutcomeWindow",
    "Permit",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryBudgetSnapshot",
    "RetryDecision",
    "RetryPolicy",
    "RetryReason",
    "RollingCounters",
    "SystemClock",
    "TimeWindow",
    "TransitionReason",
    "decide_retry",
    "full_jitter_backoff",
    "hedged",
    "parse_pushback_ms",
    "reserve_for",
    "status_of",
]
