"""The gateway's own spans and metrics: what explains a degraded answer, not just its latency.

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
Metrics are OpenTelemetry instruments exported like every other (see servicekit.metrics).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from gateway.resilience.guard import Guard
from gateway.resilience.retry import RetryReason
from servicekit.metrics import LATENCY_BUCKETS_S
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
BREAKER_STATES = ("CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED")
GATEWAY_SERVICE = "harag.v1.RagGatewayService"

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


class GatewayMetrics:
    """Every gateway metric; Prometheus names are in the README (Observability)."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("harag.gateway")
        self._requests = meter.create_counter(
            "harag.gateway.requests",
            unit="{request}",
            description="Public API requests by method and final gRPC status code.",
        )
        self._request_duration = meter.create_histogram(
            "harag.gateway.request.duration",
            unit="s",
            description="Public API request latency by method.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self._stage_duration = meter.create_histogram(
            "harag.gateway.stage.duration",
            unit="s",
            description="Pipeline stage latency by stage and what served it.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self._attempts = meter.create_counter(
            "harag.gateway.attempts",
            unit="{attempt}",
            description="Upstream attempts by upstream and outcome.",
        )
        self._attempt_duration = meter.create_histogram(
            "harag.gateway.attempt.duration",
            unit="s",
            description="Upstream attempt latency by upstream and outcome.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self._breaker_state = meter.create_gauge(
            "harag.gateway.breaker.state",
            description="1 for the breaker's current state, 0 for the others, per upstream.",
        )
        self._transitions = meter.create_counter(
            "harag.gateway.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state transitions.",
        )
        self._fallbacks = meter.create_counter(
            "harag.gateway.fallbacks",
            unit="{fallback}",
            description="Stages served by a tier other than 0, by component and tier.",
        )
        self._retries = meter.create_counter(
            "harag.gateway.retries", unit="{retry}", description="Retry attempts by upstream."
        )
        self._hedges = meter.create_counter(
            "harag.gateway.hedges", unit="{hedge}", description="Hedge attempts by upstream."
        )
        self._cache = meter.create_counter(
            "harag.gateway.cache.lookups",
            unit="{lookup}",
            description="Answer cache lookups by result (hit or miss).",
        )
        self._shed = meter.create_counter(
            "harag.gateway.shed", unit="{request}", description="Requests shed, by reason."
        )
        # Counters the resilience layer keeps anyway, read from the guards at collection
        # time: nothing is added to the hot path. Filled by `observe_guards`.
        self._guards: list[Guard] = []
        meter.create_observable_counter(
            "harag.gateway.breaker.rejected_calls",
            callbacks=[self._observe_breaker_rejected],
            unit="{call}",
            description="Calls a circuit breaker refused (open, forced open, half-open full).",
        )
        meter.create_observable_counter(
            "harag.gateway.breaker.late_results",
            callbacks=[self._observe_breaker_late],
            unit="{result}",
            description="Results not recorded because the breaker changed state meanwhile.",
        )
        meter.create_observable_counter(
            "harag.gateway.retry.decisions",
            callbacks=[self._observe_retry_decisions],
            unit="{decision}",
            description="Decisions after a failed attempt, by upstream and reason.",
        )
        meter.create_observable_counter(
            "harag.gateway.retry_budget.rejected",
            callbacks=[self._observe_budget_rejected],
            unit="{call}",
            description="Retries and hedges refused because the retry budget was spent.",
        )
        meter.create_observable_gauge(
            "harag.gateway.retry_budget.spent",
            callbacks=[self._observe_budget_spent],
            description="Retries and hedges paid from the budget in its rolling window.",
        )
        meter.create_observable_gauge(
            "harag.gateway.retry_budget.allowance",
            callbacks=[self._observe_budget_allowance],
            description="Retries and hedges the budget allows in its rolling window.",
        )

        meter.create_observable_counter(
            "harag.gateway.hedge.races",
            callbacks=[self._observe_hedge_races],
            unit="{race}",
            description="Hedge races an upstream took part in, by result (won or lost).",
        )
        meter.create_observable_gauge(
            "harag.gateway.upstream.recent_slow_call_rate",
            callbacks=[self._observe_recent_slow],
            unit="%",
            description="Share of the upstream's recent calls (status_window_s) that were slow; "
            "a call in flight past the threshold counts from then.",
        )
        meter.create_observable_gauge(
            "harag.gateway.upstream.recent_failure_rate",
            callbacks=[self._observe_recent_failures],
            unit="%",
            description="Share of the upstream's recent calls that failed.",
        )
        meter.create_observable_gauge(
            "harag.gateway.upstream.oldest_in_flight",
            callbacks=[self._observe_oldest_in_flight],
            unit="s",
            description="Age of the upstream's oldest call still in flight (0: none).",
        )

    def observe_guards(self, guards: Iterable[Guard]) -> None:
        """Exports these upstreams' breaker, retry and budget counters from now on."""
        self._guards = list(guards)

    def _observe_breaker_rejected(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.breaker is not None:
                snap = guard.breaker.snapshot()
                yield Observation(snap.rejected_calls, {"upstream": guard.name})

    def _observe_breaker_late(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.breaker is not None:
                snap = guard.breaker.snapshot()
                yield Observation(snap.late_results, {"upstream": guard.name})

    def _observe_retry_decisions(self, _: CallbackOptions) -> Iterable[Observation]:
        # Every reason from zero, so a rate() over a reason works from its first decision.
        for guard in self._guards:
            if guard.retry is not None:
                for reason in RetryReason:
                    yield Observation(
                        guard.retry_decisions[reason],
                        {"upstream": guard.name, "reason": reason.value},
                    )

    def _observe_budget_rejected(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.budget is not None:
                yield Observation(guard.budget.snapshot().rejected, {"upstream": guard.name})

    def _observe_budget_spent(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.budget is not None:
                yield Observation(guard.budget.snapshot().spent, {"upstream": guard.name})

    def _observe_budget_allowance(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.budget is not None:
                yield Observation(guard.budget.snapshot().allowance, {"upstream": guard.name})

    def _observe_hedge_races(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.recent is not None:
                yield Observation(guard.hedges_won, {"upstream": guard.name, "result": "won"})
                yield Observation(guard.hedges_lost, {"upstream": guard.name, "result": "lost"})

    def _observe_recent_slow(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.recent is not None:
                yield Observation(guard.recent.slow_rate, {"upstream": guard.name})

    def _observe_recent_failures(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.recent is not None:
                yield Observation(guard.recent.failure_rate, {"upstream": guard.name})

    def _observe_oldest_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        now = time.monotonic()
        for guard in self._guards:
            if guard.inflight is not None:
                yield Observation(guard.oldest_in_flight_s(now), {"upstream": guard.name})

    def request(self, method: str, code: str, seconds: float) -> None:
        self._requests.add(1, {"method": method, "code": code})
        self._request_duration.record(seconds, {"method": method})

    def stage(self, stage: str, served_by: str, seconds: float) -> None:
        self._stage_duration.record(seconds, {"stage": stage, "served_by": served_by})

    def attempt(self, upstream: str, outcome: str, seconds: float) -> None:
        self._attempts.add(1, {"upstream": upstream, "outcome": outcome})
        self._attempt_duration.record(seconds, {"upstream": upstream, "outcome": outcome})

    def breaker_state(self, upstream: str, state: str) -> None:
        for known in {*BREAKER_STATES, state}:
            self._breaker_state.set(
                1 if known == state else 0, {"upstream": upstream, "state": known}
            )

    def breaker_transition(self, upstream: str, from_state: str, to_state: str) -> None:
        self._transitions.add(1, {"upstream": upstream, "from": from_state, "to": to_state})

    def fallback(self, component: str, tier: int) -> None:
        self._fallbacks.add(1, {"component": component, "tier": str(tier)})

    def retry(self, upstream: str) -> None:
        self._retries.add(1, {"upstream": upstream})

    def hedge(self, upstream: str) -> None:
        self._hedges.add(1, {"upstream": upstream})

    def cache(self, hit: bool) -> None:
        self._cache.add(1, {"result": "hit" if hit else "miss"})

    def shed(self, reason: str) -> None:
        self._shed.add(1, {"reason": reason})

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """servicekit RpcObserver: counts public API requests (not health or reflection)."""
        service, _, name = method.lstrip("/").rpartition("/")
        if service == GATEWAY_SERVICE:
            self.request(name, code, seconds)


METRICS = GatewayMetrics()
