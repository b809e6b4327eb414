"""Wires each upstream's Guard (breaker, bulkhead, retry, retry budget) from the gateway config.

The config already holds the resilience dataclasses themselves, validated at load, so this
only decides which parts are on.
"""

from __future__ import annotations

import random

from gateway.config import GatewayConfig
from gateway.metrics import METRICS
from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.breaker_types import BreakerTransition
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.guard import Guard
from gateway.resilience.inflight import InFlight
from gateway.resilience.recent import RecentCalls
from gateway.resilience.retry import RetryBudget
from gateway.telemetry import breaker_transition_event


def slow_call_s(cfg: GatewayConfig, component: str) -> float:
    """The component's slow-call threshold: a stage measured in milliseconds is not judged
    in seconds (see breaker_slow_call_cap_fraction)."""
    cap = cfg.breaker.slow_call_cap_fraction * cfg.deadlines.per_try_cap_s(component)
    return min(cfg.breaker.slow_call_duration_s, cap)


def build_guard(name: str, tier: int, cfg: GatewayConfig, component: str) -> Guard:
    if cfg.bare:
        return Guard(name, tier)
    slow_s = slow_call_s(cfg, component)
    breaker = (
        # Seeded per process by the OS: replicas jitter their open waits differently.
        CircuitBreaker(name, cfg.breaker, rng=random.Random(), slow_call_duration_s=slow_s)
        if cfg.upstream.breaker_enabled
        else None
    )
    if breaker is not None:
        breaker.add_listener(_publish_transition)
        METRICS.breaker_state(name, breaker.state.name)
    return Guard(
        name,
        tier,
        breaker=breaker,
        bulkhead=Bulkhead(cfg.upstream.bulkhead_max_concurrent, name=name),
        budget=RetryBudget(cfg.retry_budget),
        retry=cfg.retry if cfg.retry.max_attempts > 1 else None,
        inflight=InFlight(),
        recent=RecentCalls(cfg.status.window_s),
        slow_call_s=slow_s,
    )


def _publish_transition(event: BreakerTransition) -> None:
    """A transition is a span event on the request that caused it, and a counted metric."""
    breaker_transition_event(
        event.breaker, event.from_state.name, event.to_state.name, str(event.reason)
    )
