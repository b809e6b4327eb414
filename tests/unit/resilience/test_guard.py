"""One guarded call on a fake clock: breaker -> bulkhead -> attempts with retries.

Each test scripts the upstream's answers (fake attempts that take fake time), so nothing
sleeps and no socket is opened.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import grpc
import pytest

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import (
    BREAKER_OPEN,
    BULKHEAD_FULL,
    HEDGE_LOST,
    NO_TIME,
    AttemptRecord,
    Attempts,
    CallFailed,
    Guard,
    Timing,
    guarded_call,
)
from gateway.resilience.retry import RetryBudget, RetryBudgetConfig, RetryPolicy


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class Upstream:
    """Answers attempt n with script[n]: (seconds it takes, value or gRPC code)."""

    def __init__(
        self, clock: FakeClock, script: Sequence[tuple[float, str | grpc.StatusCode]]
    ) -> None:
        self.clock = clock
        self.script = list(script)
        self.timeouts: list[float] = []

    async def __call__(self, timeout_s: float) -> str:
        self.timeouts.append(timeout_s)
        took, answer = self.script[len(self.timeouts) - 1]
        await self.clock.sleep(took)
        if isinstance(answer, grpc.StatusCode):
            raise RpcError(answer, f"{answer.name} from the fake")
        return answer

    @property
    def calls(self) -> int:
        return len(self.timeouts)


def breaker(clock: FakeClock, **overrides: object) -> CircuitBreaker:
    cfg = dict(minimum_calls=2, window_size=2, wait_in_open_s=5.0, wait_jitter=0.0)
    cfg.update(overrides)
    return CircuitBreaker("up", BreakerConfig(**cfg), clock=clock)  # type: ignore[arg-type]


def retry(max_attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=max_attempts, initial_backoff_s=0.1, max_backoff_s=0.1)


def timing(clock: FakeClock, seconds: float = 2.0, reserve_s: float = 0.0) -> Timing:
    return Timing(Deadline.after(seconds, clock), reserve_s, min_attempt_s=0.05, per_try_cap_s=1.0)


async def call(
    clock: FakeClock,
    guard: Guard,
    upstream: Upstream,
    time: Timing | None = None,
    heard: list[AttemptRecord] | None = None,
) -> tuple[str | None, str | None, list[AttemptRecord]]:
    """Runs the call to its end: (value, failure outcome, attempts in start order)."""
    attempts = Attempts()
    try:
        value = await clock.drive(
            guarded_call(
                guard,
                upstream,
                time or timing(clock),
                attempts,
                rng=random.Random(1),
                clock=clock,
                on_attempt=heard.append if heard is not None else None,
            )
        )
    except CallFailed as failed:
        return None, failed.outcome, attempts.ordered()
    return value, None, attempts.ordered()


async def test_an_open_breaker_rejects_at_once_without_calling() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, breaker=breaker(clock))
    guard.breaker.force_open()  # type: ignore[union-attr]
    upstream = Upstream(clock, [(0.1, "answer")])
    value, failed, attempts = await call(clock, guard, upstream)
    assert value is None and failed == BREAKER_OPEN and upstream.calls == 0
    assert [(a.outcome, a.latency_s) for a in attempts] == [(BREAKER_OPEN, 0.0)]
    assert attempts[0].breaker_state == "FORCED_OPEN"
    assert clock.monotonic() == 0.0  # no time spent


async def test_a_full_bulkhead_rejects_and_gives_the_breaker_permit_back() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(1, name="up")
    assert bulkhead.try_enter()  # another call holds the only slot
    guard = Guard("up", 0, breaker=breaker(clock), bulkhead=bulkhead)
    upstream = Upstream(clock, [(0.1, "answer")])
    _, failed, attempts = await call(clock, guard, upstream)
    assert failed == BULKHEAD_FULL and upstream.calls == 0
    assert attempts[0].outcome == BULKHEAD_FULL and "1 calls in flight" in attempts[0].error
    assert guard.breaker.snapshot().calls_in_window == 0  # type: ignore[union-attr]
    assert bulkhead.in_flight == 1  # its own slot only: nothing leaked


async def test_too_little_time_left_makes_no_attempt() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, breaker=breaker(clock), bulkhead=Bulkhead(4))
    upstream = Upstream(clock, [(0.1, "answer")])
    # 0.3 s left, 0.26 s kept back for later tiers: 0.04 s < the 0.05 s minimum.
    _, failed, attempts = await call(clock, guard, upstream, timing(clock, 0.3, 0.26))
    assert failed == NO_TIME and upstream.calls == 0
    assert attempts[0].outcome == NO_TIME and attempts[0].error == "300 ms left"
    assert guard.breaker.snapshot().calls_in_window == 0  # type: ignore[union-attr]
    assert guard.bulkhead.in_flight == 0  # type: ignore[union-attr]


async def test_each_attempt_gets_the_time_left_minus_the_reserve_capped() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, retry=retry(), budget=RetryBudget())
    upstream = Upstream(clock, [(0.4, grpc.StatusCode.UNAVAILABLE), (0.1, "answer")])
    value, _, _ = await call(clock, guard, upstream, timing(clock, 1.2, reserve_s=0.4))
    assert value == "answer"
    assert upstream.timeouts[0] == pytest.approx(0.8)  # 1.2 s left minus the 0.4 s reserve
    backoff = clock.monotonic() - 0.4 - 0.1
    assert 0.0 <= backoff <= 0.1
    assert upstream.timeouts[1] == pytest.approx(1.2 - 0.4 - backoff - 0.4)
    long = Upstream(clock, [(0.1, "answer")])
    await call(clock, Guard("up", 0), long, timing(clock, 5.0))
    assert long.timeouts == [1.0]  # never more than the per-try cap


async def test_a_retryable_failure_is_retried_and_the_retry_is_marked() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, breaker=breaker(clock), retry=retry(), budget=RetryBudget())
    upstream = Upstream(clock, [(0.2, grpc.StatusCode.UNAVAILABLE), (0.1, "answer")])
    heard: list[AttemptRecord] = []
    value, failed, attempts = await call(clock, guard, upstream, heard=heard)
    assert value == "answer" and failed is None and upstream.calls == 2
    assert [(a.outcome, a.retry, a.number) for a in attempts] == [
        ("UNAVAILABLE", False, 1),
        ("OK", True, 2),
    ]
    assert attempts[0].error == "UNAVAILABLE from the fake"
    assert heard == attempts  # every attempt reported as it settled
    # The breaker counts the logical call once, as a success.
    assert guard.breaker.snapshot().calls_in_window == 1  # type: ignore[union-attr]
    assert guard.breaker.snapshot().failure_rate == 0.0  # type: ignore[union-attr]


async def test_a_caller_mistake_is_not_retried() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, retry=retry(), budget=RetryBudget())
    upstream = Upstream(clock, [(0.1, grpc.StatusCode.INVALID_ARGUMENT), (0.1, "answer")])
    _, failed, attempts = await call(clock, guard, upstream)
    assert failed == "INVALID_ARGUMENT" and upstream.calls == 1 and len(attempts) == 1


async def test_retries_stop_at_max_attempts() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, retry=retry(max_attempts=3), budget=RetryBudget())
    upstream = Upstream(clock, [(0.1, grpc.StatusCode.UNAVAILABLE)] * 5)
    _, failed, attempts = await call(clock, guard, upstream)
    assert failed == "UNAVAILABLE" and upstream.calls == 3
    assert [a.retry for a in attempts] == [False, True, True]


async def test_an_empty_retry_budget_stops_retries() -> None:
    clock = FakeClock()
    empty = RetryBudget(RetryBudgetConfig(budget_ratio=0.0, min_retries_per_second=0.0))
    guard = Guard("up", 0, retry=retry(), budget=empty)
    upstream = Upstream(clock, [(0.1, grpc.StatusCode.UNAVAILABLE), (0.1, "answer")])
    _, failed, _ = await call(clock, guard, upstream)
    assert failed == "UNAVAILABLE" and upstream.calls == 1
    assert empty.snapshot().rejected == 1 and empty.snapshot().requests == 1


async def test_no_retry_when_the_deadline_cannot_fit_another_attempt() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, retry=retry(), budget=RetryBudget())
    # 0.5 s budget; the first attempt takes 0.46 s: a 0.05 s attempt no longer fits.
    upstream = Upstream(clock, [(0.46, grpc.StatusCode.UNAVAILABLE), (0.01, "answer")])
    _, failed, _ = await call(clock, guard, upstream, timing(clock, 0.5))
    assert failed == "UNAVAILABLE" and upstream.calls == 1
    assert clock.monotonic() == pytest.approx(0.46)  # gave up at once: no pointless backoff


async def test_a_cancelled_attempt_is_a_lost_hedge_not_a_failure() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, breaker=breaker(clock, minimum_calls=1, window_size=1))
    guard.bulkhead = Bulkhead(2)
    upstream = Upstream(clock, [(10.0, "too late")])
    attempts = Attempts()
    task = asyncio.create_task(guarded_call(guard, upstream, timing(clock), attempts, clock=clock))
    for _ in range(10):
        await asyncio.sleep(0)
    clock.advance(0.3)
    task.cancel()  # another tier won the race
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = attempts.ordered()
    assert record.outcome == HEDGE_LOST and record.latency_s == pytest.approx(0.3)
    assert guard.breaker.state is CircuitState.CLOSED  # type: ignore[union-attr]
    assert guard.breaker.snapshot().calls_in_window == 0  # type: ignore[union-attr]
    assert guard.bulkhead.in_flight == 0
    assert len(guard.latency) == 0  # a lost race says nothing about its latency


async def test_failures_trip_the_breaker_once_per_logical_call() -> None:
    clock = FakeClock()
    guard = Guard("up", 0, breaker=breaker(clock), retry=retry(), budget=RetryBudget())
    down = Upstream(clock, [(0.1, grpc.StatusCode.UNAVAILABLE)] * 6)
    for _ in range(2):
        await call(clock, guard, down)
    assert down.calls == 6  # 2 logical calls x 3 attempts
    assert guard.breaker.state is CircuitState.OPEN  # type: ignore[union-attr]
    _, failed, _ = await call(clock, guard, down)
    assert failed == BREAKER_OPEN and down.calls == 6


async def test_latencies_come_from_the_clock() -> None:
    clock = FakeClock(1000.0)
    slow = breaker(clock, slow_call_duration_s=0.5, slow_call_rate_threshold=50.0)
    guard = Guard("up", 0, breaker=slow)
    upstream = Upstream(clock, [(0.75, "a"), (0.75, "b")])
    for expected in ("a", "b"):
        value, _, attempts = await call(clock, guard, upstream)
        assert value == expected and attempts[0].latency_s == pytest.approx(0.75)
    assert guard.latency.quantile(1.0) is None  # cold: fewer than its minimum samples
    assert len(guard.latency) == 2
    # Both calls were slow by the fake clock: the breaker opens on the slow-call rate.
    assert slow.state is CircuitState.OPEN


async def test_a_repeatable_call_is_remembered_for_the_prober() -> None:
    clock = FakeClock()
    guard = Guard("up", 0)
    upstream = Upstream(clock, [(0.1, "a")])
    await clock.drive(
        guarded_call(guard, upstream, timing(clock), Attempts(), repeatable=True, clock=clock)
    )
    assert guard.last_call is upstream
