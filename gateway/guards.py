"""Builds each upstream's Guard (breaker, bulkhead, retry budget) from the gateway config."""

from __future__ import annotations

import random

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import BreakerTransition
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.guard import Guard
from gateway.resilience.retry import RetryBudget, RetryBudgetConfig, RetryPolicy
from gateway.telemetry import METRICS, breaker_transition_event
from servicekit.config import Config


def breaker_config(cfg: Config) -> BreakerConfig:
    return BreakerConfig(
        window_type=cfg.breaker_window_type,
        window_size=cfg.breaker_window_size,
        minimum_calls=cfg.breaker_minimum_calls,
        failure_rate_threshold=cfg.breaker_failure_rate_threshold,
        slow_call_rate_threshold=cfg.breaker_slow_call_rate_threshold,
        slow_call_duration_s=cfg.breaker_slow_call_duration_s,
        wait_in_open_s=cfg.breaker_wait_in_open_s,
        wait_multiplier=cfg.breaker_wait_multiplier,
        max_wait_in_open_s=cfg.breaker_max_wait_in_open_s,
        wait_jitter=cfg.breaker_wait_jitter,
        permitted_calls_in_half_open=cfg.breaker_permitted_calls_in_half_open,
        max_half_open_s=cfg.breaker_max_half_open_s,
    )


def build_guard(name: str, tier: int, cfg: Config) -> Guard:
    if cfg.bare:
        return Guard(name, tier)
    breaker = (
        # Seeded per process by the OS: replicas jitter their open waits differently.
        CircuitBreaker(name, breaker_config(cfg), rng=random.Random())
        if cfg.breaker_enabled
        else None
    )
    if breaker is not None:
        breaker.add_listener(_publish_transition)
        METRICS.breaker_state(name, breaker.state.name)
    retry = RetryPolicy(
        max_attempts=cfg.retry_max_attempts,
        initial_backoff_s=cfg.retry_initial_backoff_s,
        max_backoff_s=cfg.retry_max_backoff_s,
    )
    budget = RetryBudget(
        RetryBudgetConfig(
            budget_ratio=cfg.retry_budget_ratio,
            min_retries_per_second=cfg.retry_budget_min_per_s,
            window_s=cfg.retry_budget_window_s,
        )
    )
    return Guard(
        name,
        tier,
        breaker=breaker,
        bulkhead=Bulkhead(cfg.bulkhead_max_concurrent, name=name),
        budget=budget,
        retry=retry if cfg.retry_max_attempts > 1 else None,
    )


def _publish_transition(event: BreakerTransition) -> None:
    """A transition is a span event on the request that caused it, and a counted metric."""
    breaker_transition_event(
        event.breaker, event.from_state.name, event.to_state.name, str(event.reason)
    )
