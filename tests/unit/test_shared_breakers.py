"""How a replica applies and publishes shared breaker decisions (gateway/shared/
breaker_sync.py), with the decisions delivered by hand on the fake clock; the wire (keys,
pub/sub, polling) is tested across real gateways in tests/integration/test_replicas.py."""

from __future__ import annotations

import json
from typing import Any

import grpc

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.clock import FakeClock
from gateway.resilience.guard import Guard
from gateway.shared.breaker_sync import SharedBreakers
from gateway.shared.events import SharedEvents
from gateway.shared.redis_config import RedisConfig
from gateway.shared.redis_link import RedisLink
from gateway.upstreams import Upstream

TARGET = "dns:///retriever-primary:50061"


def upstream(clock: FakeClock, name: str = "retriever-primary", address: str = TARGET) -> Upstream:
    cfg = BreakerConfig(wait_jitter=0.0, minimum_calls=2, window_size=2, wait_in_open_s=5.0)
    breaker = CircuitBreaker(name, cfg, clock=clock)
    return Upstream(name, "retriever", 0, address, None, None, Guard(name, 0, breaker=breaker))  # type: ignore[arg-type]


class Recording(SharedEvents):
    """The event channel without Redis: records what would be published."""

    def __init__(self) -> None:
        super().__init__(RedisLink(RedisConfig()), 0.25, replica="me")
        self.spawned: list[str] = []

    def spawn(self, name: str, work: Any) -> None:
        self.spawned.append(name)


def message(**fields: object) -> bytes:
    return json.dumps({"replica": "other", **fields}).encode()


def wire(*upstreams: Upstream) -> tuple[Recording, SharedBreakers]:
    events = Recording()
    shared = SharedBreakers(events, upstreams)
    for u in upstreams:  # what start() hooks, without needing a configured link
        assert u.guard.breaker is not None
        u.guard.breaker.add_listener(lambda e, u=u: shared._on_transition(u, e))
    events.on("breaker_open", shared._on_opened)
    events.on("breaker_admin", shared._on_admin)
    return events, shared


def test_a_remote_open_for_the_same_upstream_and_target_opens_the_idle_breaker() -> None:
    clock = FakeClock()
    retriever = upstream(clock)
    events, shared = wire(retriever)
    events.dispatch(
        message(kind="breaker_open", upstream=retriever.name, target=TARGET, wait_ms=3000)
    )
    breaker = retriever.guard.breaker
    assert breaker is not None and breaker.state is CircuitState.OPEN
    assert breaker.try_acquire() is None
    assert events.spawned == []  # a remote decision is not published again (no echo)
    clock.advance(3.0)
    assert breaker.try_acquire() is not None  # then this replica probes for itself
    assert shared.applied == 1


def test_a_remote_open_for_another_target_is_not_applied() -> None:
    clock = FakeClock()
    retriever = upstream(clock, address="127.0.0.1:7001")
    events, shared = wire(retriever)
    events.dispatch(
        message(kind="breaker_open", upstream=retriever.name, target=TARGET, wait_ms=3000)
    )
    assert retriever.guard.breaker is not None
    assert retriever.guard.breaker.state is CircuitState.CLOSED
    assert shared.applied == 0


def test_own_messages_and_garbage_are_ignored() -> None:
    clock = FakeClock()
    retriever = upstream(clock)
    events, _ = wire(retriever)
    own = json.dumps(
        {
            "replica": "me",
            "kind": "breaker_open",
            "upstream": retriever.name,
            "target": TARGET,
            "wait_ms": 3000,
        }
    )
    for raw in (
        own,
        b"\x00not json",
        b"[1, 2]",
        message(kind="breaker_open", upstream=retriever.name),
    ):
        events.dispatch(raw)
    assert retriever.guard.breaker is not None
    assert retriever.guard.breaker.state is CircuitState.CLOSED


def test_a_local_trip_is_published_and_a_recovery_clears_the_decision() -> None:
    clock = FakeClock()
    retriever = upstream(clock)
    events, _ = wire(retriever)
    breaker = retriever.guard.breaker
    assert breaker is not None
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_result(grpc.StatusCode.UNAVAILABLE, 0.01)
    assert events.spawned == ["publish-open"]
    clock.advance(5.0)
    for _ in range(breaker.config.permitted_calls_in_half_open):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_result(None, 0.01)
    assert breaker.state is CircuitState.CLOSED
    assert events.spawned == ["publish-open", "clear-open"]


def test_operator_actions_apply_at_every_replica_and_a_missed_reset_is_seen_in_the_poll() -> None:
    clock = FakeClock()
    retriever = upstream(clock)
    events, shared = wire(retriever)
    breaker = retriever.guard.breaker
    assert breaker is not None
    events.dispatch(message(kind="breaker_admin", upstream=retriever.name, action="force_open"))
    assert breaker.state is CircuitState.FORCED_OPEN
    events.dispatch(message(kind="breaker_open", upstream=retriever.name, target=TARGET, wait_ms=9))
    assert breaker.state is CircuitState.FORCED_OPEN  # an operator's hold outranks a trip
    events.dispatch(message(kind="breaker_admin", upstream=retriever.name, action="reset"))
    assert breaker.state is CircuitState.CLOSED
    # Seen under the admin key by the poll, then gone: reset elsewhere, message missed.
    shared._poll_admin(retriever.name, b"disable")
    assert breaker.state is CircuitState.DISABLED
    shared._poll_admin(retriever.name, None)
    assert breaker.state is CircuitState.CLOSED
    assert events.spawned == []
