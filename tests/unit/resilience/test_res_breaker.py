from __future__ import annotations

import asyncio
import logging
import random
import time

import grpc
import pytest

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import BreakerTransition, CircuitState, TransitionReason
from gateway.resilience.clock import FakeClock

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def make(clock: FakeClock, seed: int = 1, **overrides: object) -> CircuitBreaker:
    cfg = BreakerConfig(**{"wait_jitter": 0.0, **overrides})  # type: ignore[arg-type]
    return CircuitBreaker("upstream", cfg, clock=clock, rng=random.Random(seed))


def call(b: CircuitBreaker, code: grpc.StatusCode | None, duration_s: float = 0.01) -> bool:
    permit = b.try_acquire()
    if permit is None:
        return False
    permit.on_result(code, duration_s)
    return True


def trip(b: CircuitBreaker) -> None:
    while b.state is CircuitState.CLOSED:
        assert call(b, UNAVAILABLE)


def fail_probes(b: CircuitBreaker, n: int = 3) -> None:
    permits = [b.try_acquire() for _ in range(n)]
    assert all(p is not None for p in permits)
    for p in permits:
        assert p is not None
        p.on_result(UNAVAILABLE, 0.01)


def collect(b: CircuitBreaker) -> list[BreakerTransition]:
    events: list[BreakerTransition] = []
    b.add_listener(events.append)
    return events


def test_count_window_trips_exactly_at_minimum_calls() -> None:
    b = make(FakeClock(), minimum_calls=10, window_size=20)
    for _ in range(9):
        assert call(b, UNAVAILABLE)
    assert b.state is CircuitState.CLOSED  # 100% failures but only 9 calls
    assert call(b, UNAVAILABLE)
    assert b.state is CircuitState.OPEN


def test_count_window_threshold_is_inclusive() -> None:
    b = make(FakeClock())
    for i in range(9):
        call(b, UNAVAILABLE if i < 4 else OK)
    assert b.state is CircuitState.CLOSED
    call(b, UNAVAILABLE)  # 5 / 10 = 50% >= 50%
    assert b.state is CircuitState.OPEN


def test_count_window_forgets_old_failures() -> None:
    b = make(FakeClock(), window_size=10, minimum_calls=10)
    for _ in range(4):
        call(b, UNAVAILABLE)
    for _ in range(20):
        call(b, OK)
    assert b.snapshot().failure_rate == 0.0
    for _ in range(4):
        call(b, UNAVAILABLE)
    assert b.state is CircuitState.CLOSED  # 4/10


def test_time_window_trips_exactly_at_minimum_calls() -> None:
    clock = FakeClock()
    b = make(clock, window_type="time", window_size=10, minimum_calls=10)
    for _ in range(9):
        call(b, UNAVAILABLE)
        clock.advance(1.0)  # spread over 9 s, all still inside the 10 s window
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().calls_in_window == 9
    call(b, UNAVAILABLE)
    assert b.state is CircuitState.OPEN


def test_time_window_failures_age_out() -> None:
    clock = FakeClock()
    b = make(clock, window_type="time", window_size=10, minimum_calls=10)
    for _ in range(9):
        call(b, UNAVAILABLE)
    clock.advance(11.0)
    call(b, UNAVAILABLE)
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().calls_in_window == 1


def test_slow_call_rate_opens() -> None:
    b = make(FakeClock(), slow_call_rate_threshold=50.0, slow_call_duration_s=1.0)
    events = collect(b)
    for _ in range(9):
        call(b, OK, duration_s=1.5)
    assert b.state is CircuitState.CLOSED
    call(b, OK, duration_s=1.5)
    assert b.state is CircuitState.OPEN
    assert events[-1].reason is TransitionReason.SLOW_CALL_RATE_EXCEEDED
    assert events[-1].slow_rate == 100.0 and events[-1].failure_rate == 0.0


def test_duration_equal_to_threshold_is_not_slow() -> None:
    b = make(FakeClock(), slow_call_rate_threshold=50.0, slow_call_duration_s=1.0)
    for _ in range(20):
        call(b, OK, duration_s=1.0)
    assert b.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
def test_caller_errors_are_ignored(code: grpc.StatusCode) -> None:
    b = make(FakeClock())
    for _ in range(100):
        assert call(b, code)
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().calls_in_window == 0


def test_open_rejects_fast_without_calling() -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b)
    calls = 0
    start = time.perf_counter()
    for _ in range(100_000):
        if b.try_acquire() is not None:
            calls += 1
    elapsed = time.perf_counter() - start
    assert calls == 0
    assert elapsed < 1.0, f"100k rejected acquires took {elapsed:.3f}s"
    snap = b.snapshot()
    assert snap.rejected_calls == 100_000
    assert snap.next_probe_in_s == pytest.approx(5.0)


def test_closed_acquire_is_cheap() -> None:
    b = make(FakeClock())
    start = time.perf_counter()
    for _ in range(100_000):
        b.try_acquire()
    assert time.perf_counter() - start < 1.0


def test_open_to_half_open_is_lazy() -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b)
    assert b.snapshot().next_probe_in_s == pytest.approx(5.0)
    clock.advance(4.999)
    assert b.try_acquire() is None
    clock.advance(0.001)
    assert b.state is CircuitState.OPEN  # nothing happens until someone asks
    assert b.snapshot().next_probe_in_s == 0.0
    assert b.try_acquire() is not None
    assert b.state is CircuitState.HALF_OPEN


@pytest.mark.asyncio
async def test_half_open_admits_exactly_n_probes_under_concurrency() -> None:
    clock = FakeClock()
    b = make(clock, permitted_calls_in_half_open=3)
    trip(b)
    clock.advance(5.0)

    async def attempt() -> bool:
        permit = b.try_acquire()
        if permit is None:
            return False
        await asyncio.sleep(0)  # all 50 acquire before any result arrives
        permit.on_result(OK, 0.01)
        return True

    admitted = await asyncio.gather(*(attempt() for _ in range(50)))
    assert sum(admitted) == 3
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().consecutive_trips == 0


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([OK, OK, OK], CircuitState.CLOSED),
        ([OK, UNAVAILABLE, OK], CircuitState.CLOSED),  # 33% < 50%
        ([UNAVAILABLE, OK, UNAVAILABLE], CircuitState.OPEN),
        ([UNAVAILABLE] * 3, CircuitState.OPEN),
    ],
)
def test_half_open_decision(outcomes: list[grpc.StatusCode], expected: CircuitState) -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b)
    clock.advance(5.0)
    permits = [b.try_acquire() for _ in outcomes]
    assert b.try_acquire() is None
    for permit, code in zip(permits, outcomes, strict=True):
        assert b.state is CircuitState.HALF_OPEN
        assert permit is not None
        permit.on_result(code, 0.01)
    assert b.state is expected


def test_half_open_slow_probes_reopen() -> None:
    clock = FakeClock()
    b = make(clock, slow_call_rate_threshold=50.0, slow_call_duration_s=1.0)
    events = collect(b)
    trip(b)
    clock.advance(5.0)
    for _ in range(3):
        call(b, OK, duration_s=3.0)
    assert b.state is CircuitState.OPEN
    assert events[-1].reason is TransitionReason.HALF_OPEN_PROBES_SLOW


def test_ignored_code_and_unused_permit_give_probe_slot_back() -> None:
    clock = FakeClock()
    b = make(clock)
    trip(b)
    clock.advance(5.0)
    p1, p2, p3 = (b.try_acquire() for _ in range(3))
    assert p1 and p2 and p3
    assert b.try_acquire() is None
    p1.on_result(grpc.StatusCode.INVALID_ARGUMENT, 0.01)
    p4 = b.try_acquire()
    assert p4 is not None
    p2.release_unused()
    p5 = b.try_acquire()
    assert p5 is not None
    assert b.try_acquire() is None
    for p in (p3, p4, p5):
        p.on_result(OK, 0.01)
    assert b.state is CircuitState.CLOSED


def test_max_half_open_returns_to_open() -> None:
    clock = FakeClock()
    b = make(clock, max_half_open_s=10.0)
    events = collect(b)
    trip(b)
    clock.advance(5.0)
    stuck = [b.try_acquire() for _ in range(3)]  # probes that never report
    assert b.try_acquire() is None
    clock.advance(10.0)
    assert b.try_acquire() is None
    assert b.state is CircuitState.OPEN
    assert events[-1].reason is TransitionReason.HALF_OPEN_TIMEOUT
    assert b.snapshot().consecutive_trips == 2
    for p in stuck:
        assert p is not None
        p.on_result(OK, 0.01)  # late: belongs to the timed-out half-open generation
    assert b.state is CircuitState.OPEN
    assert b.snapshot().late_results == 3


def test_half_open_timeout_detected_on_late_result() -> None:
    clock = FakeClock()
    b = make(clock, max_half_open_s=10.0)
    trip(b)
    clock.advance(5.0)
    p = b.try_acquire()
    assert p is not None
    clock.advance(10.0)
    p.on_result(OK, 10.0)
    assert b.state is CircuitState.OPEN


def open_waits(b: CircuitBreaker, clock: FakeClock, trips: int) -> list[float]:
    events = collect(b)
    trip(b)
    for _ in range(trips - 1):
        wait = b.snapshot().next_probe_in_s
        assert wait is not None
        clock.advance(wait)
        fail_probes(b)
    waits = [e.open_wait_s for e in events if e.to_state is CircuitState.OPEN]
    assert all(w is not None for w in waits)
    return [w for w in waits if w is not None]


def test_open_wait_grows_by_multiplier_and_is_capped() -> None:
    clock = FakeClock()
    b = make(clock, wait_in_open_s=5.0, wait_multiplier=2.0, max_wait_in_open_s=60.0)
    assert open_waits(b, clock, 7) == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_open_wait_jitter_bounds_and_seed_dependence() -> None:
    expected = [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    runs = []
    for seed in (1, 2):
        clock = FakeClock()
        b = make(clock, seed=seed, wait_jitter=0.2)
        waits = open_waits(b, clock, len(expected))
        for wait, base in zip(waits, expected, strict=True):
            assert base * 0.8 <= wait <= base * 1.2
        runs.append(waits)
    assert runs[0] != runs[1]


def test_successful_close_resets_consecutive_trips() -> None:
    clock = FakeClock()
    b = make(clock)
    events = collect(b)
    assert open_waits(b, clock, 3) == [5.0, 10.0, 20.0]
    clock.advance(20.0)
    for _ in range(3):
        call(b, OK)
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().consecutive_trips == 0
    trip(b)
    assert events[-1].open_wait_s == 5.0


def test_late_results_from_previous_generation_are_ignored() -> None:
    clock = FakeClock()
    b = make(clock)
    old_fail = b.try_acquire()
    old_ok = b.try_acquire()
    assert old_fail and old_ok
    gen0 = b.generation
    trip(b)
    assert b.generation == gen0 + 1
    clock.advance(5.0)
    probes = [b.try_acquire() for _ in range(3)]
    old_fail.on_result(UNAVAILABLE, 0.01)  # must not count as a half-open probe result
    assert b.state is CircuitState.HALF_OPEN
    assert b.snapshot().calls_in_window == 0
    for p in probes:
        assert p is not None
        p.on_result(OK, 0.01)
    assert b.state is CircuitState.CLOSED
    old_ok.on_result(OK, 0.01)  # must not leak into the fresh CLOSED window
    snap = b.snapshot()
    assert snap.calls_in_window == 0
    assert snap.late_results == 2


def test_permit_settles_once() -> None:
    b = make(FakeClock(), minimum_calls=1, window_size=1)
    permit = b.try_acquire()
    assert permit is not None
    permit.on_result(OK, 0.01)
    permit.on_result(UNAVAILABLE, 0.01)
    permit.release_unused()
    assert b.state is CircuitState.CLOSED
    assert b.snapshot().calls_in_window == 1


def test_force_open_disable_reset() -> None:
    clock = FakeClock()
    b = make(clock)
    b.force_open()
    assert b.state is CircuitState.FORCED_OPEN
    clock.advance(3600.0)
    assert b.try_acquire() is None
    assert b.state is CircuitState.FORCED_OPEN

    b.disable()
    assert b.state is CircuitState.DISABLED
    for _ in range(100):
        assert call(b, UNAVAILABLE)
    assert b.state is CircuitState.DISABLED

    trip_clock = FakeClock()
    b2 = make(trip_clock)
    trip(b2)
    trip_clock.advance(5.0)
    fail_probes(b2)
    assert b2.snapshot().consecutive_trips == 2
    b2.reset()
    snap = b2.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert snap.consecutive_trips == 0 and snap.calls_in_window == 0
    for _ in range(9):
        call(b2, UNAVAILABLE)
    assert b2.state is CircuitState.CLOSED  # window really was cleared
    b.reset()
    assert b.state is CircuitState.CLOSED


def test_snapshot_and_transition_events(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(100.0)
    b = make(clock)
    events = collect(b)
    clock.advance(2.0)
    snap = b.snapshot()
    assert snap.state is CircuitState.CLOSED and snap.next_probe_in_s is None
    assert snap.time_in_state_s == pytest.approx(2.0)
    with caplog.at_level(logging.INFO, logger="harag.breaker"):
        trip(b)
    ev = events[-1]
    assert (ev.breaker, ev.from_state, ev.to_state) == (
        "upstream",
        CircuitState.CLOSED,
        CircuitState.OPEN,
    )
    assert ev.reason is TransitionReason.FAILURE_RATE_EXCEEDED
    assert ev.at == 102.0 and ev.failure_rate == 100.0 and ev.generation == 1
    records = [r for r in caplog.records if r.name == "harag.breaker"]
    assert len(records) == 1
    rec = records[0]
    assert rec.getMessage() == "breaker transition"
    assert rec.__dict__["to_state"] == "open" and rec.__dict__["reason"] == "failure_rate_exceeded"
    clock.advance(1.0)
    snap = b.snapshot()
    assert snap.state is CircuitState.OPEN
    assert snap.failure_rate == 100.0 and snap.calls_in_window == 10
    assert snap.next_probe_in_s == pytest.approx(4.0)
    assert snap.time_in_state_s == pytest.approx(1.0)


def test_broken_listener_does_not_break_breaker() -> None:
    b = make(FakeClock())

    def broken(_: BreakerTransition) -> None:
        raise RuntimeError("boom")

    seen = collect(b)
    b.add_listener(broken)
    b.force_open()
    assert b.state is CircuitState.FORCED_OPEN
    assert len(seen) == 1


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(window_type="sliding")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate_threshold=0.0)
    with pytest.raises(ValueError):
        BreakerConfig(wait_jitter=1.0)
    with pytest.raises(ValueError):
        BreakerConfig(recorded_failure_codes=frozenset({OK}))
