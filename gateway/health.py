"""GetSystemHealth: the gateway's view of every upstream, and an overall verdict.

The verdict tells what callers experience now, not only what the breakers decided: an
upstream degrades the system (with its reasons) as soon as a call waits on it past the
slow-call threshold, or its recent calls were slow, failing or losing hedge races past
the status_* thresholds - before, and whatever, its breaker decides. CRITICAL still means
a chain has no upstream both SERVING and admitted by its breaker.
"""

from __future__ import annotations

import time

from google.protobuf import duration_pb2

from gateway.resilience.guard import Guard
from gateway.resilience.recent import StatusConfig
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
        transitions=snap.generation,  # every transition starts a new generation
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


def degraded_reasons(
    upstream: Upstream, status: StatusConfig, now: float | None = None
) -> list[gateway_pb2.DegradedReason]:
    """Why this upstream degrades the system now (empty: its callers fare well)."""
    now = time.monotonic() if now is None else now
    guard = upstream.guard
    reasons: list[gateway_pb2.DegradedReason] = []

    def add(reason: str, detail: str) -> None:
        reasons.append(gateway_pb2.DegradedReason(reason=reason, detail=detail))

    if upstream.health != HEALTH_SERVING:
        add("health", f"health check says {upstream.health}")
    if guard.breaker_state in OPEN_STATES:
        add("breaker", f"breaker {guard.breaker_state}")
    oldest = guard.oldest_in_flight_s(now)
    if oldest > guard.slow_call_s:
        add(
            "slow_call_in_flight",
            f"a call has waited {oldest:.2f} s (slow past {guard.slow_call_s:g} s)",
        )
    recent = guard.recent
    window_s = status.window_s
    if recent is not None and (calls := recent.calls):
        window = f"in the last {window_s} s"
        if recent.slow_rate >= status.slow_call_rate:
            add("slow_call_rate", f"{recent.slow_rate:.0f}% of {calls} calls slow {window}")
        if recent.failure_rate >= status.failure_rate:
            add("failure_rate", f"{recent.failure_rate:.0f}% of {calls} calls failed {window}")
    if recent is not None and (lost := recent.hedges_lost):
        if recent.hedges_lost_rate >= status.hedges_lost_rate:
            races = lost + recent.hedges_won
            add(
                "hedges_lost", f"lost {lost} of {races} hedge races in the last {status.window_s} s"
            )
    return reasons


def overall(upstreams: Upstreams) -> gateway_pb2.SystemStatus:
    chains = upstreams.chains.values()
    if any(not any(usable(u) for u in chain) for chain in chains):
        return gateway_pb2.SYSTEM_STATUS_CRITICAL
    now = time.monotonic()
    if all(not degraded_reasons(u, upstreams.status, now) for u in upstreams.all()):
        return gateway_pb2.SYSTEM_STATUS_HEALTHY
    return gateway_pb2.SYSTEM_STATUS_DEGRADED


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def upstream_status(
    upstream: Upstream, status: StatusConfig | None = None, now: float | None = None
) -> gateway_pb2.UpstreamStatus:
    """`now`: the guards' clock reading (time.monotonic() in the gateway)."""
    status = status or StatusConfig()
    guard = upstream.guard
    now = time.monotonic() if now is None else now
    recent = guard.recent
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
        degraded_reasons=degraded_reasons(upstream, status, now),
        hedges_won=guard.hedges_won,
        hedges_lost=guard.hedges_lost,
        recent_slow_call_rate=recent.slow_rate if recent is not None else 0.0,
        recent_failure_rate=recent.failure_rate if recent is not None else 0.0,
        oldest_in_flight=_duration(guard.oldest_in_flight_s(now)),
        slow_call_threshold=_duration(guard.slow_call_s) if guard.inflight is not None else None,
    )


def system_health(upstreams: Upstreams, started_at: float) -> gateway_pb2.GetSystemHealthResponse:
    uptime = duration_pb2.Duration()
    uptime.FromNanoseconds(int((time.monotonic() - started_at) * 1e9))
    return gateway_pb2.GetSystemHealthResponse(
        status=overall(upstreams),
        upstreams=[upstream_status(u, upstreams.status) for u in upstreams.all()],
        uptime=uptime,
        version=VERSION,
    )
