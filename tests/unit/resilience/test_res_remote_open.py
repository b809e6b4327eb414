"""`CircuitBreaker.open_remotely`: another replica's OPEN applied to this replica's breaker,
on the fake clock."""

from __future__ import annotations

import random

import grpc

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import BreakerTransition, CircuitState, TransitionReason
from gateway.resilience.clock import FakeClock

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def make(clock: FakeClock) -> CircuitBreaker:
    cfg = BreakerConfig(wait_jitter=0.0, wait_in_open_s=5.0, minimum_calls=4, window_size=4)
    return CircuitBreaker("retriever-primary", cfg, clock=clock, rng=random.Random(1))


def trip_locally(b: CircuitBreaker) -> None:
    while b.state is CircuitState.CLOSED:
        permit = b.try_acquire()
        assert permit is not None
        permit.on_result(UNAVAILABLE, 0.01)


def test_a_remote_open_stops_calls_for_its_wait_then_probes_locally() -> None:
    clock = FakeClock()
    b = make(clock)
    events: list[BreakerTransition] = []
    b.add_listener(events.append)
    assert b.open_remotely(2.0)
    assert b.state is CircuitState.OPEN
    assert events[-1].reason is TransitionReason.REMOTE_OPEN
    assert events[-1].open_wait_s == 2.0
    assert b.try_acquire() is None
    clock.advance(1.99)
    assert b.try_acquire() is None
    clock.advance(0.02)
    probe = b.try_acquire()  # the wait is over: this replica probes by itself
    assert probe is not None and probe.probe
    assert b.state is CircuitState.HALF_OPEN
    probe.on_result(None, 0.01)
    for _ in range(b.config.permitted_calls_in_half_open - 1):
        permit = b.try_acquire()
        assert permit is not None
        permit.on_result(None, 0.01)
    assert b.state is CircuitState.CLOSED


def test_a_remote_open_does_not_lengthen_the_next_local_wait() -> None:
    clock = FakeClock()
    b = make(clock)
    b.open_remotely(1.0)
    clock.advance(1.0)
    b.reset()
    trip_locally(b)
    assert b.snapshot().consecutive_trips == 1
    assert b.snapshot().next_probe_in_s == 5.0  # the base wait, not doubled


def test_an_open_breaker_only_waits_longer_for_a_later_remote_end() -> None:
    clock = FakeClock()
    b = make(clock)
    trip_locally(b)  # open for 5 s
    assert not b.open_remotely(3.0)
    assert b.snapshot().next_probe_in_s == 5.0
    assert b.open_remotely(7.0)
    assert b.snapshot().next_probe_in_s == 7.0
    clock.advance(6.0)
    assert b.try_acquire() is None


def test_a_half_open_breaker_goes_back_to_open() -> None:
    clock = FakeClock()
    b = make(clock)
    trip_locally(b)
    clock.advance(5.0)
    assert b.try_acquire() is not None
    assert b.state is CircuitState.HALF_OPEN
    assert b.open_remotely(1.5)
    assert b.state is CircuitState.OPEN
    assert b.snapshot().next_probe_in_s == 1.5


def test_an_operators_state_is_never_overridden_by_a_remote_open() -> None:
    clock = FakeClock()
    for hold, state in (
        (CircuitBreaker.force_open, CircuitState.FORCED_OPEN),
        (CircuitBreaker.disable, CircuitState.DISABLED),
    ):
        b = make(clock)
        hold(b)
        assert not b.open_remotely(2.0)
        assert b.state is state


def test_no_wait_left_is_no_remote_open() -> None:
    b = make(FakeClock())
    assert not b.open_remotely(0.0)
    assert b.state is CircuitState.CLOSED
