"""Retry policy (full-jitter backoff, gRPC server pushback) and an Envoy/Finagle-style budget.

The policy decides *whether and when* one more attempt may be made; the budget bounds how
much extra load retries and hedges may add in aggregate, so that a dead upstream sees at
most ~`budget_ratio` more calls than it would without retries (plus a small floor).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import grpc

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.window import RollingCounters
from servicekit.settings import RuleViolation, check_fields, setting

PUSHBACK_KEY = "grpc-retry-pushback-ms"

Metadata = Iterable[tuple[str, str | bytes]] | Mapping[str, str | bytes]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Whether and when one more attempt may be made (gRPC retryPolicy semantics, AWS full
    jitter). The gateway's `retry_max_attempts` and `retry_*_backoff_s` settings are these
    fields; validated on construction."""

    max_attempts: int = setting(
        3,
        "retry_max_attempts",
        "Attempts per logical call, the first included (1 = no retries).",
        unit="attempts",
        minimum=1,
        maximum=10,
    )
    initial_backoff_s: float = setting(
        0.025,
        "retry_initial_backoff_s",
        "Backoff cap before the first retry (full jitter: the wait is uniform in [0, cap]).",
        unit="s",
        minimum=0,
    )
    max_backoff_s: float = setting(
        0.5,
        "retry_max_backoff_s",
        "Largest computed backoff cap (a server's pushback is not capped).",
        unit="s",
        minimum=0,
    )
    multiplier: float = 2.0
    """Backoff cap grows by this per retry: min(max, initial * multiplier**retry_index)."""
    retryable_codes: frozenset[grpc.StatusCode] = field(
        default=frozenset({grpc.StatusCode.UNAVAILABLE})
    )
    """Retried with jittered backoff, or after the pushback delay when the server sent one;
    a negative/unparseable pushback forbids the retry."""
    pushback_only_codes: frozenset[grpc.StatusCode] = field(
        default=frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
    )
    """Retried only when the server explicitly allows it with a pushback >= 0 (an
    overloaded server that says nothing must not be hammered)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.initial_backoff_s > self.max_backoff_s:
            raise RuleViolation("{initial_backoff_s} must be <= {max_backoff_s}")
        if self.multiplier < 1.0:
            raise RuleViolation("{multiplier} must be >= 1")


def full_jitter_backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """AWS "full jitter": uniform(0, min(max_backoff, initial * multiplier**attempt)).

    `attempt` is the 0-based retry index: 0 for the wait before the first retry.
    """
    try:
        cap = policy.initial_backoff_s * policy.multiplier ** max(0, attempt)
    except OverflowError:
        cap = policy.max_backoff_s
    return rng.uniform(0.0, min(policy.max_backoff_s, cap))


def parse_pushback_ms(trailing_metadata: Metadata | None) -> int | None:
    """Reads `grpc-retry-pushback-ms` (gRFC A6).

    Returns None when absent, else the value in ms. An unparseable value is returned as -1
    because A6 treats it like a negative one: the server asks not to retry.
    Accepts grpc.aio.Metadata, a sequence of (key, value) pairs, or a mapping.
    """
    if not trailing_metadata:
        return None
    items = (
        trailing_metadata.items() if isinstance(trailing_metadata, Mapping) else trailing_metadata
    )
    for key, value in items:
        if key.lower() != PUSHBACK_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        try:
            return int(text.strip())
        except ValueError:
            return -1
    return None


class RetryReason(StrEnum):
    RETRY = "retry"
    NOT_RETRYABLE = "not_retryable"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    NO_PUSHBACK = "no_pushback"
    PUSHBACK_REFUSED = "pushback_refused"
    NO_TIME_LEFT = "no_time_left"
    BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float
    """Wait before the next attempt (0.0 when not retrying)."""
    reason: RetryReason


def decide_retry(
    code: grpc.StatusCode,
    *,
    attempts_made: int,
    policy: RetryPolicy,
    rng: random.Random,
    trailing_metadata: Metadata | None = None,
    budget: RetryBudget | None = None,
    time_left_s: float | None = None,
    min_attempt_s: float = 0.0,
) -> RetryDecision:
    """Whether to make attempt number `attempts_made + 1`, and after which delay.

    Checks, in order: attempt count, code/pushback, time (`delay + min_attempt_s` must fit
    in `time_left_s` when given), then the budget, so a token is spent only for a retry
    that will really be made.
    """
    if attempts_made >= policy.max_attempts:
        return RetryDecision(False, 0.0, RetryReason.ATTEMPTS_EXHAUSTED)
    pushback = parse_pushback_ms(trailing_metadata)
    if code in policy.retryable_codes:
        if pushback is not None and pushback < 0:
            return RetryDecision(False, 0.0, RetryReason.PUSHBACK_REFUSED)
        if pushback is not None:
            delay = pushback / 1000.0
        else:
            delay = full_jitter_backoff(attempts_made - 1, policy, rng)
    elif code in policy.pushback_only_codes:
        if pushback is None:
            return RetryDecision(False, 0.0, RetryReason.NO_PUSHBACK)
        if pushback < 0:
            return RetryDecision(False, 0.0, RetryReason.PUSHBACK_REFUSED)
        delay = pushback / 1000.0
    else:
        return RetryDecision(False, 0.0, RetryReason.NOT_RETRYABLE)
    if time_left_s is not None and delay + min_attempt_s > time_left_s:
        return RetryDecision(False, 0.0, RetryReason.NO_TIME_LEFT)
    if budget is not None and not budget.try_spend():
        return RetryDecision(False, 0.0, RetryReason.BUDGET_EXHAUSTED)
    return RetryDecision(True, delay, RetryReason.RETRY)


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    """Envoy/Finagle-style retry budget; the gateway's `retry_budget_*` settings."""

    budget_ratio: float = setting(
        0.2,
        "retry_budget_ratio",
        "Extra calls (retries + hedges) allowed per original request, over the window "
        "(Envoy retry budget).",
        unit="calls/request",
        minimum=0,
        maximum=10,
    )
    min_retries_per_second: float = setting(
        3.0,
        "retry_budget_min_per_s",
        "Retries + hedges always allowed per second (the floor for low-traffic callers).",
        unit="calls/s",
        minimum=0,
    )
    window_s: int = setting(
        10,
        "retry_budget_window_s",
        "Window over which the retry budget is counted (one bucket per second).",
        unit="s",
        minimum=1,
        maximum=3600,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class RetryBudgetSnapshot:
    requests: int
    spent: int
    allowance: float
    rejected: int


class RetryBudget:
    """Shared cap on retries and hedges (one budget per upstream, shared by all requests).

    Exact rule, over the rolling window (the current second plus the window_s-1 before it):

        try_spend() succeeds  iff  spent + 1 <= budget_ratio * requests
                                               + min_retries_per_second * window_s

    where `requests` counts `record_request()` calls (original requests only; retries and
    hedges must NOT be recorded as requests) and `spent` counts successful `try_spend()`.
    Hence in any window_s-second span, extra calls <= 0.2 * requests + 30 with defaults:
    against a 100%-failing upstream at high traffic the overhead tends to 20%, while a
    low-traffic caller still gets ~3 retries/s.
    """

    __slots__ = ("_counters", "_floor", "_ratio", "_rejected", "config")

    def __init__(
        self, config: RetryBudgetConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self.config = cfg = config or RetryBudgetConfig()
        self._ratio = cfg.budget_ratio
        self._floor = cfg.min_retries_per_second * cfg.window_s
        # Fields: 0 = original requests, 1 = spent retries/hedges.
        self._counters = RollingCounters(cfg.window_s, clock or SYSTEM_CLOCK, fields=2)
        self._rejected = 0

    def record_request(self, n: int = 1) -> None:
        self._counters.add(n)

    def _allowance(self) -> float:
        return self._ratio * self._counters.total(0) + self._floor

    def can_spend(self) -> bool:
        """Peek without spending."""
        return self._counters.total(1) + 1 <= self._allowance()

    def try_spend(self) -> bool:
        """Spends one token for a retry or hedge; False means do not make the extra call."""
        if self.can_spend():
            self._counters.add(0, 1)
            return True
        self._rejected += 1
        return False

    def snapshot(self) -> RetryBudgetSnapshot:
        return RetryBudgetSnapshot(
            requests=self._counters.total(0),
            spent=self._counters.total(1),
            allowance=self._allowance(),
            rejected=self._rejected,
        )
