"""The gateway's own spans: what explains a degraded answer, not just its latency.

Spans under the request's SERVER span (`harag.v1.RagGatewayService/Query`):

    <rpc CLIENT span>       one per attempt that made an RPC: the call's span carries the
                            attempt's attributes too (one span, not an attempt span around
                            a CLIENT span); parent of the upstream's SERVER span
    attempt <upstream>      INTERNAL, one per attempt decided without an RPC (breaker open,
                            bulkhead full, no time left)

There are no stage spans: a stage's outcome (what served it, its tier, whether it degraded)
is recorded on the request's SERVER span as `harag.<stage>.served_by` and so on, and every
attempt says its `harag.stage`. Stage spans were three of a healthy query's ten gateway
spans (now four) and said nothing that its attempts and the root span do not.

Attribute names (documented in the README (Observability)) are the `ATTR_*` constants below.
Metrics live in gateway/metrics.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from gateway.metrics import METRICS
from servicekit.rpc_client_telemetry import RpcSpanSlot
from servicekit.rpc_server_telemetry import request_span

log = logging.getLogger("harag.gateway")

ATTR_STAGE = "harag.stage"
ATTR_SERVED_BY = "harag.served_by"
ATTR_TIER = "harag.tier"
ATTR_DEGRADED = "harag.degraded"
ATTR_CACHED = "harag.cached"
ATTR_REQUEST_ID = "harag.request_id"
ATTR_UPSTREAM = "harag.upstream"
ATTR_ATTEMPT = "harag.attempt"
ATTR_OUTCOME = "harag.outcome"
ATTR_ERROR = "harag.error"
ATTR_BREAKER_STATE = "harag.breaker.state"
ATTR_RETRY = "harag.retry"
ATTR_HEDGE = "harag.hedge"
EVENT_BREAKER_TRANSITION = "harag.breaker.transition"

OK = "OK"
CANCELLED = "CANCELLED"
NOT_ERRORS = frozenset({OK, CANCELLED, "HEDGE_LOST"})

_tracer = trace.get_tracer("harag.gateway")
_stage: contextvars.ContextVar[str] = contextvars.ContextVar("harag_stage", default="")


def stage_attribute(stage: str, attribute: str) -> str:
    """`harag.embed.served_by` for ("embed", ATTR_SERVED_BY): a stage's result on the root."""
    return f"harag.{stage}.{attribute.removeprefix('harag.')}"


@functools.cache
def _stage_keys(stage: str) -> tuple[str, str, str]:
    return (
        stage_attribute(stage, ATTR_SERVED_BY),
        stage_attribute(stage, ATTR_TIER),
        stage_attribute(stage, ATTR_DEGRADED),
    )


class StageScope:
    """One pipeline stage: names the stage for the attempts made inside it (`harag.stage`)
    and records its result on the request's SERVER span. Not a span of its own."""

    __slots__ = ("_keys", "_token", "stage")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._keys = _stage_keys(stage)
        self._token: contextvars.Token[str] | None = None

    def __enter__(self) -> StageScope:
        self._token = _stage.set(self.stage)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _stage.reset(self._token)

    def record(self, served_by: str, tier: int, degraded: bool) -> None:
        span = request_span()
        if not span.is_recording():
            span = trace.get_current_span()
        served_key, tier_key, degraded_key = self._keys
        span.set_attributes({served_key: served_by, tier_key: tier, degraded_key: degraded})


def stage_span(stage: str) -> StageScope:
    """The scope of one pipeline stage (kept under this name for the pipeline's call)."""
    return StageScope(stage)


def set_stage_result(scope: StageScope, served_by: str, tier: int, degraded: bool) -> None:
    scope.record(served_by, tier, degraded)


def _status_for(outcome: str, error: str) -> Status | None:
    if outcome in NOT_ERRORS:
        return None
    return Status(StatusCode.ERROR, f"{outcome}: {error}" if error else outcome)


class AttemptScope:
    """One attempt at an upstream, as a span.

    An attempt that makes an RPC is that RPC's CLIENT span (see
    servicekit.rpc_client_telemetry.RpcSpanSlot); one decided without an RPC gets an
    INTERNAL span `attempt <upstream>` when it ends, from its start time. An exception
    leaving the block sets the outcome when `set_outcome` was not called; a cancellation (a
    hedge that lost) is outcome CANCELLED, not an error.
    """

    __slots__ = ("_slot", "_started_ns", "attributes", "error", "outcome")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.outcome = ""
        self.error = ""
        self._started_ns = 0
        self._slot = RpcSpanSlot(attributes)

    def __enter__(self) -> AttemptScope:
        self._started_ns = time.time_ns()
        self._slot.__enter__()
        return self

    def set_outcome(self, outcome: str, error: str = "") -> None:
        self.outcome, self.error = outcome, error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        slot.__exit__()
        if not self.outcome and exc is not None:
            if isinstance(exc, asyncio.CancelledError):
                self.outcome = CANCELLED
            else:
                code = getattr(exc, "code", None)
                self.outcome = code().name if callable(code) else type(exc).__name__
                self.error = str(exc)
        ended = {ATTR_OUTCOME: self.outcome or "UNKNOWN"}
        if self.error:
            ended[ATTR_ERROR] = self.error
        status = _status_for(ended[ATTR_OUTCOME], self.error)
        if slot.span is not None:
            slot.span.set_attributes(ended)
            if status is not None:
                slot.span.set_status(status)
            if exc is not None and not isinstance(exc, asyncio.CancelledError):
                slot.span.record_exception(exc)
            slot.release()
            return
        span = _tracer.start_span(
            f"attempt {self.attributes[ATTR_UPSTREAM]}",
            attributes={**self.attributes, **ended},
            start_time=self._started_ns,
        )
        if status is not None:
            span.set_status(status)
        span.end()


def attempt_span(
    upstream: str,
    tier: int,
    attempt: int,
    *,
    retry: bool,
    hedge: bool,
    breaker_state: str,
    stage: str | None = None,
) -> AttemptScope:
    """The span of one attempt at an upstream (see AttemptScope); `stage` defaults to the
    pipeline stage it runs in, and is left out outside one."""
    attributes: dict[str, Any] = {ATTR_UPSTREAM: upstream}
    if stage := _stage.get() if stage is None else stage:
        attributes[ATTR_STAGE] = stage
    attributes.update(
        {
            ATTR_TIER: tier,
            ATTR_ATTEMPT: attempt,
            ATTR_RETRY: retry,
            ATTR_HEDGE: hedge,
            ATTR_BREAKER_STATE: breaker_state,
        }
    )
    return AttemptScope(attributes)


def annotate_request(request_id: str, degraded: bool, cached: bool) -> None:
    """Marks the request's SERVER span (found even from inside a stage or an attempt)."""
    span = request_span()
    if not span.is_recording():
        span = trace.get_current_span()
    span.set_attributes({ATTR_REQUEST_ID: request_id, ATTR_DEGRADED: degraded, ATTR_CACHED: cached})


def breaker_transition_event(upstream: str, from_state: str, to_state: str, reason: str) -> None:
    """A span event on the current span (if any), plus the transition counter and gauge."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            EVENT_BREAKER_TRANSITION,
            {
                ATTR_UPSTREAM: upstream,
                "harag.breaker.from": from_state,
                "harag.breaker.to": to_state,
                "harag.breaker.reason": reason,
            },
        )
    METRICS.breaker_transition(upstream, from_state, to_state)
    METRICS.breaker_state(upstream, to_state)


class AttemptTelemetry:
    """gateway.resilience.guard.AttemptObserver: one span and the attempt metrics per attempt.

    Counts attempts (by outcome), retries and hedges, so callers must not count them again.
    """

    def start(self, record: Any) -> AttemptScope:
        return attempt_span(
            record.upstream,
            record.tier,
            record.number,
            retry=record.retry,
            hedge=record.hedge,
            breaker_state=record.breaker_state,
        )

    def finish(self, scope: AttemptScope, record: Any) -> None:
        if record.outcome:
            scope.set_outcome(record.outcome, record.error)
        METRICS.attempt(record.upstream, record.outcome or "UNKNOWN", record.latency_s)
        if record.retry:
            METRICS.retry(record.upstream)
        if record.hedge:
            METRICS.hedge(record.upstream)
