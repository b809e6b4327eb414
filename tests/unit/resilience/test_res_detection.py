"""Detection of a hung upstream while its calls still wait, on a fake clock.

A call in flight past the slow-call threshold is evidence already: the watch records it as
a slow call once, `slow_calls_to_open` of them in a row open the breaker, and the calls
still waiting on the upstream give up at once (HUNG) so their queries move on. A call that
is merely slower than usual, inside the threshold, is never held against the upstream.
"""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import CircuitState, TransitionReason
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import (
    BREAKER_OPEN,
    HUNG,
    Attempts,
    CallFailed,
    Guard,
    Timing,
    guarded_call,
)
from gateway.resilience.inflight import InFlight
from gateway.resilience.recent import RecentCalls

SLOW_S = 1.5
WATCH_S = 0.05


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="fake")


def hung(clock: FakeClock):  # type: ignore[no-untyped-def]
    """An upstream that never answers: every call ends at its timeout."""

    async def attempt(timeout_s: float) -> str:
        await clock.sleep(timeout_s)
        raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED)

    return attempt


def taking(clock: FakeClock, seconds: float):  # type: ignore[no-untyped-def]
    async def attempt(timeout_s: float) -> str:
        await clock.sleep(min(seconds, timeout_s))
        if seconds > timeout_s:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
        return "answer"

    return attempt


def watched_guard(clock: FakeClock, **overrides: object) -> Guard:
    cfg: dict[str, object] = dict(wait_in_open_s=5.0, wait_jitter=0.0)
    cfg.update(overrides)
    breaker = CircuitBreaker(
        "up",
        BreakerConfig(**cfg),  # type: ignore[arg-type]
        clock=clock,
        slow_call_duration_s=SLOW_S,
    )
    return Guard(
        "up",
        0,
        breaker=breaker,
        inflight=InFlight(),
        recent=RecentCalls(10, clock),
        slow_call_s=SLOW_S,
    )


async def one_call(clock: FakeClock, guard: Guard, attempt, timeout_s: float = 1.85):  # type: ignore[no-untyped-def]
    """One logical call with a deadline that allows one `timeout_s` attempt:
    (value or failure outcome, seconds it took)."""
    started = clock.monotonic()
    timing = Timing(Deadline.after(timeout_s, clock), 0.0, 0.01, per_try_cap_s=timeout_s)
    try:
        value = await guarded_call(guard, attempt, timing, Attempts(), clock=clock)
    except CallFailed as failed:
        return failed.outcome, clock.monotonic() - started
    return value, clock.monotonic() - started


async def sequential(clock: FakeClock, guard: Guard, attempt, queries: int, **kw):  # type: ignore[no-untyped-def]
    """One query at a time with the watch running, as the gateway does."""

    async def watch() -> None:
        while True:
            await clock.sleep(WATCH_S)
            guard.watch(clock.monotonic())

    async def traffic() -> list[tuple[str, float]]:
        return [await one_call(clock, guard, attempt, **kw) for _ in range(queries)]

    watcher = asyncio.ensure_future(watch())
    try:
        return await clock.drive(traffic())
    finally:
        watcher.cancel()


async def test_a_hung_upstream_opens_after_three_calls_and_the_third_gives_up_at_once() -> None:
    clock = FakeClock()
    guard = watched_guard(clock)  # minimum_calls 10: the rates alone would need 10 calls
    transitions = []
    assert guard.breaker is not None
    guard.breaker.add_listener(transitions.append)
    results = await sequential(clock, guard, hung(clock), queries=5)
    outcomes = [outcome for outcome, _ in results]
    took = [seconds for _, seconds in results]
    # Calls 1 and 2 wait out their timeout (each seen slow at 1.5 s, counted once);
    # call 3 is seen slow, opens the breaker and gives up then rather than at 1.85 s.
    assert outcomes == ["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED", HUNG, BREAKER_OPEN, BREAKER_OPEN]
    assert took[0] == pytest.approx(1.85) and took[1] == pytest.approx(1.85)
    assert SLOW_S < took[2] <= SLOW_S + WATCH_S + 1e-9
    assert took[3] == 0.0
    assert [(t.to_state, t.reason) for t in transitions] == [
        (CircuitState.OPEN, TransitionReason.CONSECUTIVE_SLOW_CALLS)
    ]
    assert transitions[0].at <= 2 * 1.85 + SLOW_S + WATCH_S  # about 5.25 s
    # Each hung call counted once: three calls, all slow, none counted again at its end.
    assert guard.breaker.snapshot().calls_in_window == 3
    assert guard.recent is not None and guard.recent.calls == 3
    assert guard.recent.slow_rate == 100.0


async def test_a_call_is_slow_while_still_in_flight_not_only_when_it_ends() -> None:
    clock = FakeClock()
    guard = watched_guard(clock)
    assert guard.breaker is not None and guard.recent is not None
    task = asyncio.ensure_future(one_call(clock, guard, hung(clock), timeout_s=10.0))
    await asyncio.sleep(0)
    clock.advance(SLOW_S - 0.01)
    assert guard.watch(clock.monotonic()) == 0  # not yet past the threshold
    assert guard.oldest_in_flight_s(clock.monotonic()) == pytest.approx(SLOW_S - 0.01)
    clock.advance(0.02)
    assert guard.watch(clock.monotonic()) == 1
    assert guard.watch(clock.monotonic()) == 0  # once per call
    snap = guard.breaker.snapshot()
    assert (snap.calls_in_window, snap.slow_rate, snap.consecutive_slow_calls) == (1, 100.0, 1)
    assert guard.recent.slow_rate == 100.0
    task.cancel()


async def test_the_watch_does_not_count_its_own_lateness_against_the_upstream() -> None:
    """A starved event loop delays the answers and the watch alike: a call whose age is
    past the threshold only by how late the watch runs is not slow."""
    clock = FakeClock()
    guard = watched_guard(clock)
    task = asyncio.ensure_future(one_call(clock, guard, hung(clock), timeout_s=10.0))
    await asyncio.sleep(0)
    clock.advance(SLOW_S + 0.3)
    assert guard.watch(clock.monotonic(), lag_s=0.4) == 0
    assert guard.watch(clock.monotonic(), lag_s=0.2) == 1
    task.cancel()


async def test_a_quicker_answer_between_slow_calls_breaks_the_run() -> None:
    clock = FakeClock()
    guard = watched_guard(clock, slow_calls_to_open=3)
    assert guard.breaker is not None
    for attempt in (hung(clock), hung(clock), taking(clock, 0.01), hung(clock), hung(clock)):
        await sequential(clock, guard, attempt, queries=1)
    assert guard.breaker.state is CircuitState.CLOSED
    assert guard.breaker.snapshot().consecutive_slow_calls == 2


async def test_calls_slower_than_usual_but_inside_the_threshold_never_open() -> None:
    clock = FakeClock()
    guard = watched_guard(clock, minimum_calls=5, window_size=10)
    assert guard.breaker is not None
    results = await sequential(clock, guard, taking(clock, SLOW_S * 0.9), queries=30)
    assert {outcome for outcome, _ in results} == {"answer"}
    assert guard.breaker.state is CircuitState.CLOSED
    assert guard.breaker.snapshot().slow_rate == 0.0


async def test_an_abandoned_call_leaves_other_cancellations_alone() -> None:
    """The watch's cancellation becomes a HUNG failure; a caller's own cancellation of the
    same call still cancels it."""
    clock = FakeClock()
    guard = watched_guard(clock, slow_calls_to_open=1)
    task = asyncio.ensure_future(one_call(clock, guard, hung(clock), timeout_s=10.0))
    await asyncio.sleep(0)
    clock.advance(SLOW_S + 0.01)
    task.cancel()  # the caller leaves at the same moment the watch opens the breaker
    guard.watch(clock.monotonic())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_probe_hanging_past_the_threshold_reopens_at_once() -> None:
    clock = FakeClock()
    guard = watched_guard(clock)
    breaker = guard.breaker
    assert breaker is not None
    breaker.force_open()
    breaker.reset()
    await sequential(clock, guard, hung(clock), queries=3)
    assert breaker.state is CircuitState.OPEN
    assert breaker.probe_now()
    assert breaker.state is CircuitState.HALF_OPEN
    results = await sequential(clock, guard, hung(clock), queries=1, timeout_s=10.0)
    assert results == [(HUNG, pytest.approx(SLOW_S + WATCH_S, abs=WATCH_S))]
    assert breaker.state is CircuitState.OPEN


async def test_probe_now_lets_probes_through_at_once_and_they_close_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "up",
        BreakerConfig(minimum_calls=2, window_size=2, wait_in_open_s=30, wait_jitter=0.0),
        clock=clock,
        rng=random.Random(1),
    )
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_result(grpc.StatusCode.UNAVAILABLE, 0.01)
    assert breaker.state is CircuitState.OPEN and breaker.try_acquire() is None
    transitions = []
    breaker.add_listener(transitions.append)
    assert breaker.probe_now()
    assert not breaker.probe_now()  # already half-open
    permits = [breaker.try_acquire() for _ in range(3)]
    assert all(p is not None and p.probe for p in permits)
    for p in permits:
        assert p is not None
        p.on_result(grpc.StatusCode.OK, 0.01)
    assert breaker.state is CircuitState.CLOSED
    assert [t.reason for t in transitions] == [
        TransitionReason.HEALTH_SERVING,
        TransitionReason.HALF_OPEN_PROBES_PASSED,
    ]
    assert clock.monotonic() == 0.0  # no open wait was waited out


async def test_a_lost_hedge_race_is_not_counted_against_the_upstream() -> None:
    clock = FakeClock()
    guard = watched_guard(clock)
    assert guard.breaker is not None and guard.recent is not None
    task = asyncio.ensure_future(one_call(clock, guard, hung(clock), timeout_s=10.0))
    await asyncio.sleep(0)
    clock.advance(0.05)
    task.cancel()  # another tier answered first
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guard.breaker.snapshot().calls_in_window == 0
    assert guard.recent.calls == 0
    assert guard.oldest_in_flight_s(clock.monotonic()) == 0.0
    guard.hedge_race(won=False)
    assert (guard.hedges_lost, guard.recent.hedges_lost_rate) == (1, 100.0)


async def test_a_slow_call_is_no_hang_evidence_while_the_upstream_answers_others() -> None:
    """A starved but healthy upstream still answers, slowly: calls past the threshold while
    others are answered are left to be recorded when they end (the rates decide), and
    never open the breaker at once."""
    clock = FakeClock()
    guard = watched_guard(clock, slow_calls_to_open=1)
    assert guard.breaker is not None and guard.recent is not None
    waiting = [
        asyncio.ensure_future(one_call(clock, guard, hung(clock), timeout_s=10.0)) for _ in range(3)
    ]
    await asyncio.sleep(0)
    clock.advance(0.2)
    answered = asyncio.ensure_future(one_call(clock, guard, taking(clock, 0.1)))
    await asyncio.sleep(0)
    clock.advance(0.1)
    await answered  # the upstream answered one call after the others started
    clock.advance(SLOW_S)
    assert guard.watch(clock.monotonic()) == 3  # seen slow (the status says so) ...
    assert guard.breaker.state is CircuitState.CLOSED  # ... but not hang evidence
    assert guard.breaker.snapshot().consecutive_slow_calls == 0
    assert guard.recent.slow_rate == 75.0
    for task in waiting:
        task.cancel()
