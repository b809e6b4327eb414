from __future__ import annotations

import random
from typing import Any

import grpc
import pytest
from grpc import aio

from gateway.resilience.clock import FakeClock
from gateway.resilience.retry import (
    RetryBudget,
    RetryBudgetConfig,
    RetryDecision,
    RetryPolicy,
    RetryReason,
    decide_retry,
    full_jitter_backoff,
    parse_pushback_ms,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def test_full_jitter_bounds() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt in range(8):
        cap = min(policy.max_backoff_s, policy.initial_backoff_s * policy.multiplier**attempt)
        samples = [full_jitter_backoff(attempt, policy, rng) for _ in range(2000)]
        assert all(0.0 <= s <= cap for s in samples)
        assert max(samples) > 0.9 * cap  # really spreads over the whole range
        assert min(samples) < 0.1 * cap


def test_full_jitter_huge_attempt_is_capped() -> None:
    policy = RetryPolicy()
    assert 0.0 <= full_jitter_backoff(100_000, policy, random.Random(1)) <= policy.max_backoff_s


def test_parse_pushback_forms() -> None:
    assert parse_pushback_ms(None) is None
    assert parse_pushback_ms([]) is None
    assert parse_pushback_ms([("other", "1")]) is None
    assert parse_pushback_ms([("grpc-retry-pushback-ms", "250")]) == 250
    assert parse_pushback_ms([("Grpc-Retry-Pushback-Ms", b"0")]) == 0
    assert parse_pushback_ms([("grpc-retry-pushback-ms", "-1")]) == -1
    assert parse_pushback_ms([("grpc-retry-pushback-ms", "soon")]) == -1
    assert parse_pushback_ms({"grpc-retry-pushback-ms": "30"}) == 30
    assert parse_pushback_ms(aio.Metadata(("grpc-retry-pushback-ms", "40"))) == 40


def decide(code: grpc.StatusCode, attempts_made: int = 1, **kw: Any) -> RetryDecision:
    return decide_retry(
        code, attempts_made=attempts_made, policy=RetryPolicy(), rng=random.Random(3), **kw
    )


def test_decide_retry_rules() -> None:
    d = decide(UNAVAILABLE)
    assert d.retry and 0.0 <= d.delay_s <= 0.025
    assert decide(UNAVAILABLE, attempts_made=3).reason is RetryReason.ATTEMPTS_EXHAUSTED
    assert decide(grpc.StatusCode.INVALID_ARGUMENT).reason is RetryReason.NOT_RETRYABLE
    assert decide(RESOURCE_EXHAUSTED).reason is RetryReason.NO_PUSHBACK
    md = [("grpc-retry-pushback-ms", "200")]
    d = decide(RESOURCE_EXHAUSTED, trailing_metadata=md)
    assert d.retry and d.delay_s == pytest.approx(0.2)
    neg = [("grpc-retry-pushback-ms", "-5")]
    assert decide(RESOURCE_EXHAUSTED, trailing_metadata=neg).reason is RetryReason.PUSHBACK_REFUSED
    assert decide(UNAVAILABLE, trailing_metadata=neg).reason is RetryReason.PUSHBACK_REFUSED
    d = decide(UNAVAILABLE, trailing_metadata=md)
    assert d.retry and d.delay_s == pytest.approx(0.2)
    d = decide(RESOURCE_EXHAUSTED, trailing_metadata=md, time_left_s=0.25, min_attempt_s=0.1)
    assert d.reason is RetryReason.NO_TIME_LEFT


def test_decide_retry_spends_budget_only_when_retrying() -> None:
    clock = FakeClock()
    budget = RetryBudget(
        RetryBudgetConfig(budget_ratio=0.0, min_retries_per_second=0.1), clock=clock
    )
    assert decide(grpc.StatusCode.INTERNAL, budget=budget).reason is RetryReason.NOT_RETRYABLE
    assert decide(UNAVAILABLE, budget=budget).retry  # floor = 1 token
    assert decide(UNAVAILABLE, budget=budget).reason is RetryReason.BUDGET_EXHAUSTED
    assert budget.snapshot().spent == 1 and budget.snapshot().rejected == 1


@pytest.mark.parametrize("rps", [5, 50, 1000])
def test_budget_caps_retries_against_total_failure(rps: int) -> None:
    """Every call fails; each request wants 2 retries. Per window, extras <= 20% + floor."""
    cfg = RetryBudgetConfig()  # ratio 0.2, floor 3/s, window 10 s
    clock = FakeClock()
    budget = RetryBudget(cfg, clock=clock)
    policy = RetryPolicy()
    seconds = 60
    per_window: dict[int, list[int]] = {}
    for sec in range(seconds):
        for i in range(rps):
            clock.advance(sec + i / rps - clock.monotonic())  # exact bucket boundaries
            budget.record_request()
            tally = per_window.setdefault(sec // cfg.window_s, [0, 0])
            tally[0] += 1
            for _ in range(policy.max_attempts - 1):
                if not budget.try_spend():
                    break
                tally[1] += 1
    floor = cfg.min_retries_per_second * cfg.window_s
    for requests, retries in per_window.values():
        assert retries <= cfg.budget_ratio * requests + floor
    total_req = sum(r for r, _ in per_window.values())
    total_retries = sum(x for _, x in per_window.values())
    assert total_retries <= cfg.budget_ratio * total_req + cfg.min_retries_per_second * seconds
    if rps >= 1000:
        assert total_retries / total_req < 0.21  # floor is negligible at high traffic


def test_budget_floor_lets_low_traffic_retry() -> None:
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    budget.record_request()
    assert budget.try_spend() and budget.try_spend()


def test_budget_recovers_after_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetryBudgetConfig(min_retries_per_second=1.0, window_s=10), clock=clock)
    spent = 0
    while budget.try_spend():
        spent += 1
    assert spent == 10 and not budget.can_spend()
    clock.advance(10.0)
    assert budget.can_spend()


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryBudgetConfig(window_s=0)
