"""The counters the resilience layer keeps reach GetSystemHealth, `harag health` and metrics.

No sockets and no sleeps: guards on a fake clock, read the way the gateway reads them.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.health import upstream_status
from gateway.metrics import GatewayMetrics
from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.clock import FakeClock
from gateway.resilience.guard import Guard
from gateway.resilience.inflight import InFlight
from gateway.resilience.recent import RecentCalls, StatusConfig
from gateway.resilience.retry import RetryBudget, RetryBudgetConfig, RetryPolicy, RetryReason
from gateway.upstreams import Upstream
from harag.v1 import gateway_pb2
from harag_cli import render


def guard_with_history() -> Guard:
    """A guard whose breaker rejected 2 calls and saw 1 late result, and whose retries
    were decided 3 times (2 retries paid by the budget, then attempts exhausted)."""
    clock = FakeClock()
    breaker = CircuitBreaker("embedder-primary", clock=clock)
    budget = RetryBudget(RetryBudgetConfig(min_retries_per_second=0.2, window_s=10), clock=clock)
    guard = Guard("embedder-primary", 0, breaker=breaker, budget=budget, retry=RetryPolicy())
    in_flight = breaker.try_acquire()
    assert in_flight is not None
    breaker.force_open()
    assert breaker.try_acquire() is None and breaker.try_acquire() is None
    in_flight.on_result(grpc.StatusCode.UNAVAILABLE, 0.01)  # settles after the transition
    budget.record_request()
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()
    guard.retry_decisions.update({RetryReason.RETRY: 2, RetryReason.ATTEMPTS_EXHAUSTED: 1})
    return guard


def upstream(guard: Guard) -> Upstream:
    no_channel: Any = None  # health reporting never dials
    return Upstream(guard.name, "embedder", guard.tier, "127.0.0.1:1", no_channel, None, guard)


def test_upstream_status_carries_breaker_budget_and_retry_counters() -> None:
    status = upstream_status(upstream(guard_with_history()))
    assert status.breaker.rejected_calls == 2
    assert status.breaker.late_results == 1
    assert (status.retry_budget.requests, status.retry_budget.spent) == (1, 2)
    assert status.retry_budget.rejected == 1
    assert status.retry_budget.allowance == 0.2 * 1 + 0.2 * 10
    assert [(d.reason, d.count) for d in status.retry_decisions] == [
        ("retry", 2),
        ("attempts_exhausted", 1),
    ]


def test_a_bare_upstream_reports_no_budget_and_no_decisions() -> None:
    status = upstream_status(upstream(Guard("embedder-primary", 0)))
    assert not status.HasField("breaker") and not status.HasField("retry_budget")
    assert not status.retry_decisions


def test_harag_health_prints_rejections_budget_and_decisions() -> None:
    reply = gateway_pb2.GetSystemHealthResponse(
        status=gateway_pb2.SYSTEM_STATUS_HEALTHY,
        upstreams=[
            upstream_status(upstream(guard_with_history())),
            upstream_status(upstream(Guard("generator-fallback", 1))),
        ],
    )
    lines = render.health(reply).splitlines()
    primary = next(
        line for line in lines if line.startswith("  embedder-primary") and "127." in line
    )
    assert primary.split()[4:6] == ["FORCED_OPEN", "2"]  # breaker state, rejected calls
    retries = [line for line in lines if line.startswith("  embedder-primary") and "retry=" in line]
    assert retries == [
        f"  {'embedder-primary':<20} {'2/2.2':>12} {'1':>8}  retry=2 attempts_exhausted=1"
    ]
    assert not any("generator-fallback" in line for line in lines[lines.index(retries[0]) - 2 :])


def hung_guard(clock: FakeClock) -> Guard:
    """A guard whose one call has waited 0.8 s (threshold 0.5 s) and lost 2 of 3 races."""
    guard = Guard(
        "embedder-primary",
        0,
        breaker=CircuitBreaker("embedder-primary", clock=clock, slow_call_duration_s=0.5),
        inflight=InFlight(),
        recent=RecentCalls(10, clock),
        slow_call_s=0.5,
    )
    guard.inflight.begin(clock.monotonic(), None)  # type: ignore[union-attr]
    clock.advance(0.8)
    guard.watch(clock.monotonic())
    for won in (True, False, False):
        guard.hedge_race(won=won)
    return guard


async def test_a_call_waiting_past_the_threshold_degrades_before_the_breaker_decides() -> None:
    clock = FakeClock()
    guard = hung_guard(clock)
    status = upstream_status(upstream(guard), StatusConfig(), now=clock.monotonic())
    assert status.breaker.state == gateway_pb2.CIRCUIT_STATE_CLOSED
    reasons = {r.reason: r.detail for r in status.degraded_reasons}
    assert reasons["slow_call_in_flight"] == "a call has waited 0.80 s (slow past 0.5 s)"
    assert reasons["slow_call_rate"] == "100% of 1 calls slow in the last 10 s"
    assert reasons["hedges_lost"] == "lost 2 of 3 hedge races in the last 10 s"
    assert (status.hedges_won, status.hedges_lost) == (1, 2)
    assert status.oldest_in_flight.ToTimedelta().total_seconds() == 0.8
    assert status.recent_slow_call_rate == 100.0
    lines = render.health(gateway_pb2.GetSystemHealthResponse(upstreams=[status])).splitlines()
    assert f"  {'embedder-primary':<20} slow_call_in_flight: {reasons['slow_call_in_flight']}" in (
        lines
    )
    row = next(line for line in lines if line.startswith("  embedder-primary") and "100.0" in line)
    assert row.split()[1:] == ["100.0", "0.0", "1", "2", "800", "500"]


def test_an_upstream_whose_callers_fare_well_gives_no_reason() -> None:
    clock = FakeClock()
    guard = Guard(
        "embedder-primary", 0, inflight=InFlight(), recent=RecentCalls(10, clock), slow_call_s=0.5
    )
    up = upstream(guard)
    up.health = "SERVING"
    for _ in range(9):
        guard.recent.call(failure=False, slow=False)  # type: ignore[union-attr]
    guard.recent.call(failure=True, slow=False)  # type: ignore[union-attr]
    assert upstream_status(up, StatusConfig(), now=clock.monotonic()).degraded_reasons == []
    guard.recent.call(failure=True, slow=False)  # type: ignore[union-attr]
    guard.recent.call(failure=True, slow=False)  # type: ignore[union-attr]
    reasons = upstream_status(up, StatusConfig(), now=clock.monotonic()).degraded_reasons
    assert [r.reason for r in reasons] == ["failure_rate"]  # 3 of 12 = 25% >= 20%


def test_metrics_read_the_guards_at_collection_time() -> None:
    reader = InMemoryMetricReader()
    gateway_metrics = GatewayMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    guard = guard_with_history()
    gateway_metrics.observe_guards([guard])
    guard.retry_decisions[RetryReason.NOT_RETRYABLE] += 1  # counted after registration too

    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = tuple(sorted((point.attributes or {}).items()))
                    points[(metric.name, labels)] = point.value  # type: ignore[union-attr]

    upstream_label = (("upstream", "embedder-primary"),)
    assert points[("harag.gateway.breaker.rejected_calls", upstream_label)] == 2
    assert points[("harag.gateway.breaker.late_results", upstream_label)] == 1
    assert points[("harag.gateway.retry_budget.rejected", upstream_label)] == 1
    assert points[("harag.gateway.retry_budget.spent", upstream_label)] == 2
    assert points[("harag.gateway.retry_budget.allowance", upstream_label)] == 2.2
    decisions = {
        dict(labels)["reason"]: v
        for (name, labels), v in points.items()
        if name == "harag.gateway.retry.decisions"
    }
    assert decisions == {
        "retry": 2,
        "attempts_exhausted": 1,
        "not_retryable": 1,
        "no_pushback": 0,
        "pushback_refused": 0,
        "no_time_left": 0,
        "budget_exhausted": 0,
    }
