from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable

import pytest

from gateway.resilience.clock import FakeClock
from gateway.resilience.hedge import AttemptStatus, HedgeResult, LatencyTracker, hedged


async def drain(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Attempt:
    """Scripted attempt: sleeps on the fake clock, then returns or raises."""

    def __init__(self, clock: FakeClock, after_s: float, value: str | BaseException) -> None:
        self.clock = clock
        self.after_s = after_s
        self.value = value
        self.started = False
        self.cancelled = False

    async def __call__(self) -> str:
        self.started = True
        try:
            await self.clock.sleep(self.after_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def start(
    first: Callable[[], Awaitable[str]],
    second: Callable[[], Awaitable[str]],
    delay_s: float | None,
    clock: FakeClock,
    may_hedge: Callable[[], bool] = lambda: True,
) -> asyncio.Task[HedgeResult[str]]:
    return asyncio.create_task(hedged(first, second, delay_s, may_hedge=may_hedge, clock=clock))


@pytest.mark.asyncio
async def test_second_starts_after_delay_and_wins() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 10.0, "slow"), Attempt(clock, 0.01, "fast")
    task = start(first, second, 0.1, clock)
    await drain()
    assert first.started and not second.started
    clock.advance(0.099)
    await drain()
    assert not second.started
    clock.advance(0.001)
    await drain()
    assert second.started and not task.done()
    clock.advance(0.01)
    result = await task
    assert result.ok and result.winner == 1 and result.value == "fast" and result.hedged
    assert first.cancelled  # the loser was cancelled and that cancellation completed
    statuses = [a.status for a in result.attempts]
    assert statuses == [AttemptStatus.CANCELLED, AttemptStatus.SUCCEEDED]
    assert result.attempts[1].started_at == pytest.approx(0.1)
    assert result.attempts[1].duration_s == pytest.approx(0.01)


@pytest.mark.asyncio
async def test_first_success_wins_and_hedge_is_cancelled() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 1.0, "primary"), Attempt(clock, 5.0, "hedge")
    task = start(first, second, 0.5, clock)
    await drain()
    clock.advance(0.5)
    await drain()
    assert second.started
    clock.advance(0.5)
    result = await task
    assert result.winner == 0 and result.value == "primary"
    assert second.cancelled
    assert [a.status for a in result.attempts] == [
        AttemptStatus.SUCCEEDED,
        AttemptStatus.CANCELLED,
    ]
    assert clock.pending_sleepers == 0


@pytest.mark.asyncio
async def test_no_hedge_when_budget_says_no() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 1.0, "primary"), Attempt(clock, 0.0, "hedge")
    asked: list[bool] = []

    def may_hedge() -> bool:
        asked.append(True)
        return False

    task = start(first, second, 0.2, clock, may_hedge)
    await drain()
    clock.advance(0.2)
    await drain()
    clock.advance(0.8)
    result = await task
    assert not second.started and asked == [True]
    assert result.winner == 0 and not result.hedged and result.hedge_declined


@pytest.mark.asyncio
async def test_no_hedge_when_first_finishes_before_delay() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 0.1, "primary"), Attempt(clock, 0.0, "hedge")
    asked: list[bool] = []
    task = start(first, second, 0.5, clock, lambda: asked.append(True) or True)
    await drain()
    clock.advance(0.1)
    result = await task
    assert result.value == "primary" and not result.hedged
    assert not second.started and asked == []  # no budget token spent
    await drain()
    assert clock.pending_sleepers == 0  # the hedge timer was cleaned up


@pytest.mark.asyncio
async def test_one_fails_then_wait_for_the_other() -> None:
    clock = FakeClock()
    first = Attempt(clock, 0.3, ConnectionError("primary down"))
    second = Attempt(clock, 0.5, "hedge")
    task = start(first, second, 0.1, clock)
    await drain()
    clock.advance(0.1)
    await drain()
    clock.advance(0.2)  # primary fails at t=0.3; hedge still running
    await drain()
    assert not task.done()
    clock.advance(0.3)
    result = await task
    assert result.winner == 1 and result.value == "hedge"
    assert result.attempts[0].status is AttemptStatus.FAILED
    assert isinstance(result.attempts[0].error, ConnectionError)


@pytest.mark.asyncio
async def test_both_fail_reports_both_and_last_error() -> None:
    clock = FakeClock()
    first = Attempt(clock, 0.3, ConnectionError("first"))
    second = Attempt(clock, 0.5, TimeoutError("second"))
    task = start(first, second, 0.1, clock)
    await drain()
    clock.advance(0.1)
    await drain()
    clock.advance(0.2)
    await drain()
    clock.advance(0.3)
    result = await task
    assert not result.ok and result.winner is None
    assert [a.status for a in result.attempts] == [AttemptStatus.FAILED] * 2
    assert isinstance(result.error, TimeoutError) and str(result.error) == "second"


@pytest.mark.asyncio
async def test_primary_failing_before_delay_is_not_hedged() -> None:
    clock = FakeClock()
    first = Attempt(clock, 0.05, ConnectionError("down"))
    second = Attempt(clock, 0.0, "hedge")
    task = start(first, second, 0.1, clock)
    await drain()
    clock.advance(0.05)
    result = await task
    assert not result.ok and not second.started
    assert isinstance(result.error, ConnectionError)


@pytest.mark.asyncio
async def test_synchronous_raise_in_factory_is_an_attempt_failure() -> None:
    def broken() -> Awaitable[str]:
        raise ValueError("bad request built")

    result = await hedged(broken, broken, None, may_hedge=lambda: True, clock=FakeClock())
    assert isinstance(result.error, ValueError)


@pytest.mark.asyncio
async def test_no_delay_means_no_hedge() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 100.0, "primary"), Attempt(clock, 0.0, "hedge")
    task = start(first, second, None, clock)
    await drain()
    clock.advance(100.0)
    result = await task
    assert result.winner == 0 and not second.started


@pytest.mark.asyncio
async def test_caller_cancellation_cancels_both_attempts() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 10.0, "a"), Attempt(clock, 10.0, "b")
    task = start(first, second, 0.1, clock)
    await drain()
    clock.advance(0.1)
    await drain()
    assert second.started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.cancelled and second.cancelled


@pytest.mark.asyncio
async def test_may_hedge_raising_cancels_primary() -> None:
    clock = FakeClock()
    first, second = Attempt(clock, 10.0, "a"), Attempt(clock, 0.0, "b")

    def may_hedge() -> bool:
        raise RuntimeError("budget backend broken")

    task = start(first, second, 0.1, clock, may_hedge)
    await drain()
    clock.advance(0.1)
    with pytest.raises(RuntimeError):
        await task
    assert first.cancelled and not second.started


def test_latency_tracker_quantiles() -> None:
    tracker = LatencyTracker(capacity=100, min_samples=20)
    for i in range(19):
        tracker.record(float(i))
    assert tracker.p95() is None  # cold: don't hedge on an unrepresentative estimate
    tracker = LatencyTracker(capacity=100, min_samples=20)
    for i in range(1, 101):
        tracker.record(i / 1000)
    assert tracker.p95() == pytest.approx(0.095)
    assert tracker.quantile(0.5) == pytest.approx(0.050)
    assert tracker.quantile(1.0) == pytest.approx(0.100)
    for _ in range(100):
        tracker.record(1.0)  # ring buffer: old samples fall out
    assert tracker.p95() == 1.0 and len(tracker) == 100
    with pytest.raises(ValueError):
        tracker.quantile(1.5)


def test_tracker_quantiles_match_a_sort_of_the_window_as_samples_come_and_go():
    rng = random.Random(11)
    tracker = LatencyTracker(capacity=50, min_samples=1)
    window: list[float] = []
    for _ in range(2000):
        value = round(rng.random(), 2)  # repeats too, so removal must take the right one
        tracker.record(value)
        window = [*window, value][-50:]
        ordered = sorted(window)
        for q in (0.0, 0.5, 0.95, 1.0):
            assert tracker.quantile(q) == ordered[max(0, math.ceil(q * len(ordered)) - 1)]
