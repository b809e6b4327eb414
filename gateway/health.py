"""GetSystemHealth: the gateway's view of every upstream, and an overall verdict."""

from __future__ import annotations

import time

from google.protobuf import duration_pb2

from gateway.resilience.guard import Guard
from gateway.resilience.retry import RetryReason
from gateway.upstreams import (
    HEALTH_NOT_SERVING,
    HEALTH_SERVING,
    HEALTH_UNREACHABLE,
    Upstream,
    Upstreams,
)
from harag.v1 import gateway_pb2

VERSION = "0.1.0"
_HEALTH = {
    HEALTH_SERVING: gateway_pb2.UPSTREAM_HEALTH_STATUS_SERVING,
    HEALTH_NOT_SERVING: gateway_pb2.UPSTREAM_HEALTH_STATUS_NOT_SERVING,
    HEALTH_UNREACHABLE: gateway_pb2.UPSTREAM_HEALTH_STATUS_UNREACHABLE,
}


OPEN_STATES = ("OPEN", "FORCED_OPEN")


def usable(upstream: Upstream) -> bool:
    """Serving by its own grpc.health.v1 report, and its breaker lets calls through."""
    return upstream.health == HEALTH_SERVING and upstream.guard.breaker_state not in OPEN_STATES


def breaker_status(upstream: Upstream) -> gateway_pb2.BreakerStatus | None:
    breaker = upstream.guard.breaker
    if breaker is None:
        return None
    snap = breaker.snapshot()
    status = gateway_pb2.BreakerStatus(
        state=f"CIRCUIT_STATE_{snap.state.name}",
        failure_rate=snap.failure_rate,
        slow_call_rate=snap.slow_rate,
        calls_in_window=snap.calls_in_window,
        consecutive_trips=snap.consecutive_trips,
        rejected_calls=snap.rejected_calls,
        late_results=snap.late_results,
    )
    status.time_in_state.FromNanoseconds(int(snap.time_in_state_s * 1e9))
    if snap.next_probe_in_s is not None:
        status.next_probe_time.FromNanoseconds(int((time.time() + snap.next_probe_in_s) * 1e9))
    return status


def retry_budget_status(guard: Guard) -> gateway_pb2.RetryBudgetStatus | None:
    if guard.budget is None:
        return None
    snap = guard.budget.snapshot()
    return gateway_pb2.RetryBudgetStatus(
        requests=snap.requests,
        spent=snap.spent,
        allowance=snap.allowance,
        rejected=snap.rejected,
    )


def retry_decision_counts(guard: Guard) -> list[gateway_pb2.RetryDecisionCount]:
    """In RetryReason's declaration order, so the output is stable from call to call."""
    counts = guard.retry_decisions
    return [
        gateway_pb2.RetryDecisionCount(reason=reason.value, count=counts[reason])
        for reason in RetryReason
        if counts[reason]
    ]


def overall(upstreams: Upstreams) -> gateway_pb2.SystemStatus:
    chains = upstreams.chains.values()
    if any(not any(usable(u) for u in chain) for chain in chains):
        return gateway_pb2.SYSTEM_STATUS_CRITICAL
    if all(usable(u) for chain in chains for u in chain):
        return gateway_pb2.SYSTEM_STATUS_HEALTHY
    return gateway_pb2.SYSTEM_STATUS_DEGRADED


def upstream_status(upstream: Upstream) -> gateway_pb2.UpstreamStatus:
    return gateway_pb2.UpstreamStatus(
        name=upstream.name,
        component=upstream.component,
        address=upstream.address,
        tier=upstream.tier,
        health=_HEALTH.get(upstream.health, gateway_pb2.UPSTREAM_HEALTH_STATUS_UNSPECIFIED),
        last_outcome=upstream.last_outcome,
        last_error=upstream.last_error,
        last_latency_ms=upstream.last_latency_s * 1000,
        in_flight=upstream.guard.bulkhead.in_flight if upstream.guard.bulkhead else 0,
        breaker=breaker_status(upstream),
        p95_latency_ms=(upstream.guard.latency.p95() or 0.0) * 1000,
        retry_budget=retry_budget_status(upstream.guard),
        retry_decisions=retry_decision_counts(upstream.guard),
    )


def system_health(upstreams: Upstreams, started_at: float) -> gateway_pb2.GetSystemHealthResponse:
    uptime = duration_pb2.Duration()
    uptime.FromNanoseconds(int((time.monotonic() - started_at) * 1e9))
    return gateway_pb2.GetSystemHealthResponse(
        status=overall(upstreams),
        upstreams=[upstream_status(u) for u in upstreams.all()],
        uptime=uptime,
        version=VERSION,
    )
