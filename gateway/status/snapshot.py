"""The status page's data: GetSystemHealth's view of every upstream (gateway.health) plus
what only the page shows (latency quantiles, request rate, bulkhead use, transition history)
and the gateway's recent answers (gateway.status.activity)."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf.json_format import MessageToDict

from gateway.health import VERSION, overall, upstream_status
from gateway.status.activity import Activity
from gateway.status.config import StatusPageConfig
from gateway.status.transitions import TransitionLog
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import gateway_pb2


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def upstream_view(
    upstream: Upstream, upstreams: Upstreams, transitions: TransitionLog, now: float
) -> dict[str, Any]:
    status = MessageToDict(
        upstream_status(upstream, upstreams.status, now),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    guard = upstream.guard
    recent = guard.recent
    bulkhead = guard.bulkhead
    window_s = upstreams.status.window_s
    return {
        **status,
        "breaker_state": guard.breaker_state,  # "" when breakers are off
        "requests_per_s": recent.calls / window_s if recent is not None else None,
        "recent_window_s": window_s,
        # Over the latest calls the hedge delay is computed from (None: too few yet).
        "p50_latency_ms": _ms(guard.latency.quantile(0.5)),
        "p99_latency_ms": _ms(guard.latency.quantile(0.99)),
        "bulkhead": (
            {"in_flight": bulkhead.in_flight, "max_concurrent": bulkhead.max_concurrent}
            if bulkhead is not None
            else None
        ),
        "transitions_history": transitions.history(upstream.name),
    }


def snapshot(
    upstreams: Upstreams,
    activity: Activity,
    transitions: TransitionLog,
    cfg: StatusPageConfig,
    started_at: float,
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data (`started_at`: time.monotonic())."""
    now = time.monotonic()
    return {
        "generated_at": time.time(),
        "version": VERSION,
        "uptime_s": now - started_at,
        "status": gateway_pb2.SystemStatus.Name(overall(upstreams)).removeprefix("SYSTEM_STATUS_"),
        "upstreams": [upstream_view(u, upstreams, transitions, now) for u in upstreams.all()],
        "activity": activity.summary(),
        "degraded_queries": [
            q.to_json(cfg.trace_link(q.trace_id)) for q in activity.degraded_queries()
        ],
    }
