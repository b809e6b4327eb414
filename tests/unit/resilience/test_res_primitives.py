"""Clock, windows, bulkhead and deadline."""

from __future__ import annotations

import asyncio

import pytest

from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.clock import FakeClock, SystemClock, done_within
from gateway.resilience.deadline import Deadline
from gateway.resilience.window import CountWindow, RollingCounters, TimeWindow


async def drain(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- clock ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fake_clock_sleep_wakes_on_advance() -> None:
    clock = FakeClock(10.0)
    woke: list[float] = []

    async def sleeper(s: float) -> None:
        await clock.sleep(s)
        woke.append(clock.monotonic())

    tasks = [asyncio.create_task(sleeper(s)) for s in (2.0, 1.0)]
    await drain()
    assert clock.pending_sleepers == 2
    clock.advance(1.0)
    await drain()
    assert woke == [11.0]
    clock.advance(5.0)
    await asyncio.gather(*tasks)
    assert woke == [11.0, 16.0]
    with pytest.raises(ValueError):
        clock.advance(-1.0)


@pytest.mark.asyncio
async def test_system_clock() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0.001)
    assert clock.monotonic() > before


async def test_fake_clock_drive_jumps_to_each_wakeup_in_turn() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def napper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.monotonic())

    async def both() -> str:
        await asyncio.gather(napper(3.0), napper(1.5))
        return "done"

    assert await clock.drive(both()) == "done"
    assert woke == [1.5, 3.0] and clock.monotonic() == 3.0


async def test_fake_clock_drive_refuses_to_wait_on_anything_but_time() -> None:
    clock = FakeClock()
    never = asyncio.Event()
    with pytest.raises(RuntimeError, match="stuck"):
        await clock.drive(never.wait())


async def test_done_within_on_a_fake_clock() -> None:
    clock = FakeClock()
    slow = asyncio.ensure_future(clock.sleep(2.0))
    assert not await clock.drive(done_within(slow, 0.5, clock))
    assert clock.monotonic() == 0.5 and not slow.done()
    assert await clock.drive(done_within(slow, 5.0, clock))
    assert clock.monotonic() == 2.0  # returned as soon as it was done
    assert clock.pending_sleepers == 0  # the timer was cleaned up


# -- windows -------------------------------------------------------------------------------


def test_count_window_rates_and_eviction() -> None:
    w = CountWindow(4)
    assert (w.calls, w.failure_rate, w.slow_rate) == (0, 0.0, 0.0)
    w.record(failure=True, slow=True)
    w.record(failure=True, slow=False)
    w.record(failure=False, slow=False)
    w.record(failure=False, slow=True)
    assert (w.calls, w.failures, w.slow_calls) == (4, 2, 2)
    assert w.failure_rate == 50.0 and w.slow_rate == 50.0
    w.record(failure=False, slow=False)  # evicts the failed+slow one
    assert (w.calls, w.failures, w.slow_calls) == (4, 1, 1)
    assert w.failure_rate == 25.0
    w.reset()
    assert w.calls == 0


def test_time_window_buckets_age_out() -> None:
    clock = FakeClock()
    w = TimeWindow(3, clock)
    w.record(failure=True, slow=False)  # second 0
    clock.advance(1.0)
    w.record(failure=False, slow=True)  # second 1
    clock.advance(1.0)
    w.record(failure=False, slow=False)  # second 2
    assert (w.calls, w.failures, w.slow_calls) == (3, 1, 1)
    clock.advance(1.0)  # second 3: bucket of second 0 ages out
    assert (w.calls, w.failures, w.slow_calls) == (2, 0, 1)
    assert w.slow_rate == 50.0
    clock.advance(100.0)  # a long gap clears everything
    assert w.calls == 0 and w.failure_rate == 0.0


def test_rolling_counters_fields() -> None:
    clock = FakeClock(5.5)
    c = RollingCounters(2, clock, fields=2)
    c.add(3, 1)
    c.add(0, 2)
    assert (c.total(0), c.total(1)) == (3, 3)
    clock.advance(1.0)
    c.add(1)
    assert c.total(0) == 4
    clock.advance(1.0)
    assert (c.total(0), c.total(1)) == (1, 0)


# -- bulkhead ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bulkhead_never_exceeds_limit() -> None:
    bh = Bulkhead(5, name="retriever")
    peak = 0
    admitted = 0

    async def worker() -> None:
        nonlocal peak, admitted
        if not bh.try_enter():
            return
        try:
            admitted += 1
            peak = max(peak, bh.in_flight)
            await asyncio.sleep(0)
        finally:
            bh.leave()

    await asyncio.gather(*(worker() for _ in range(100)))
    assert peak == 5 and admitted == 5
    assert bh.rejected == 95 and bh.in_flight == 0


def test_bulkhead_try_enter_leave() -> None:
    bh = Bulkhead(2)
    assert bh.try_enter() and bh.try_enter()
    assert not bh.try_enter()
    assert bh.in_flight == 2
    bh.leave()
    assert bh.try_enter()
    bh.leave()
    bh.leave()
    bh.leave()  # unmatched: clamped, capacity does not grow
    assert bh.in_flight == 0
    assert bh.try_enter() and bh.try_enter() and not bh.try_enter()


# -- deadline ------------------------------------------------------------------------------


def test_deadline_arithmetic() -> None:
    clock = FakeClock(100.0)
    d = Deadline.after(2.0, clock)
    assert d.at == 102.0 and d.remaining() == 2.0 and not d.expired
    assert d.attempt_timeout(reserve_s=0.5, minimum_s=0.1) == pytest.approx(1.5)
    assert d.attempt_timeout(reserve_s=0.5, minimum_s=0.1, cap_s=0.8) == pytest.approx(0.8)
    assert d.attempt_timeout(reserve_s=1.95, minimum_s=0.1) is None  # 0.05 < minimum
    assert d.attempt_timeout(reserve_s=2.5) is None
    clock.advance(1.5)
    assert d.remaining() == pytest.approx(0.5)
    clock.advance(1.0)
    assert d.expired and d.remaining() == 0.0
    assert d.attempt_timeout() is None
