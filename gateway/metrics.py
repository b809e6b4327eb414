"""The gateway's metrics: requests, stages, attempts, breakers, fallbacks, cache, shedding.

OpenTelemetry instruments, exported like every other (see servicekit.metrics) and scraped by
Prometheus; the names are listed in the README (Observability). Per-upstream counters that the
resilience layer keeps anyway (breaker rejections, retry decisions, hedge races, recent rates)
are observed from the guards at scrape time, so they add nothing to a call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from gateway.resilience.guard import Guard
from gateway.resilience.retry import RetryReason
from servicekit.metrics import LATENCY_BUCKETS_S

BREAKER_STATES = ("CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED")
# Every reason a request is shed for, exported from zero so a ratio over them (the shed-share
# alert, the dashboard) has its series before the first shed.
SHED_REASONS = ("queue_delay", "gateway_inflight_limit")
GATEWAY_SERVICE = "harag.v1.RagGatewayService"


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
        self._model_tokens = meter.create_counter(
            "harag.gateway.model_tokens",
            unit="{token}",
            description="Tokens used by the model calls that answered, by model and kind "
            "(prompt, completion), as the generators reported them.",
        )
        self._withdrawals = meter.create_counter(
            "harag.gateway.withdrawals",
            unit="{withdrawal}",
            description="Streamed partial answers withdrawn after a generator failed mid-stream.",
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
        self._answers = meter.create_counter(
            "harag.gateway.answers",
            unit="{answer}",
            description="Answers to Query and StreamQuery, by whether they were degraded "
            "(a stage served below tier 0) and cached.",
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
            "harag.gateway.bulkhead.in_flight",
            callbacks=[self._observe_bulkhead_in_flight],
            unit="{call}",
            description="Calls in flight to the upstream (its bulkhead's occupancy).",
        )
        meter.create_observable_gauge(
            "harag.gateway.bulkhead.max_concurrent",
            callbacks=[self._observe_bulkhead_limit],
            unit="{call}",
            description="The upstream's bulkhead limit: more calls go to the next tier.",
        )
        meter.create_observable_gauge(
            "harag.gateway.upstream.oldest_in_flight",
            callbacks=[self._observe_oldest_in_flight],
            unit="s",
            description="Age of the upstream's oldest call still in flight (0: none).",
        )

    def prime(self) -> None:
        """Exports from zero the series that ratios divide (shed share, cache hit rate,
        degraded share), so an alert such as "hit rate < 50 %" sees 0 hits rather than no
        series. Call once the meter provider is set (instruments made before it drop adds)."""
        for reason in SHED_REASONS:
            self._shed.add(0, {"reason": reason})
        for result in ("hit", "miss"):
            self._cache.add(0, {"result": result})
        for degraded in ("true", "false"):
            for cached in ("true", "false"):
                self._answers.add(0, {"degraded": degraded, "cached": cached})

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

    def _observe_bulkhead_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.bulkhead is not None:
                yield Observation(guard.bulkhead.in_flight, {"upstream": guard.name})

    def _observe_bulkhead_limit(self, _: CallbackOptions) -> Iterable[Observation]:
        for guard in self._guards:
            if guard.bulkhead is not None:
                yield Observation(guard.bulkhead.max_concurrent, {"upstream": guard.name})

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

    def model_tokens(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self._model_tokens.add(prompt_tokens, {"model": model, "kind": "prompt"})
        self._model_tokens.add(completion_tokens, {"model": model, "kind": "completion"})

    def withdrawal(self, upstream: str) -> None:
        self._withdrawals.add(1, {"upstream": upstream})

    def retry(self, upstream: str) -> None:
        self._retries.add(1, {"upstream": upstream})

    def hedge(self, upstream: str) -> None:
        self._hedges.add(1, {"upstream": upstream})

    def cache(self, hit: bool) -> None:
        self._cache.add(1, {"result": "hit" if hit else "miss"})

    def answer(self, degraded: bool, cached: bool) -> None:
        self._answers.add(
            1,
            {"degraded": "true" if degraded else "false", "cached": "true" if cached else "false"},
        )

    def shed(self, reason: str) -> None:
        self._shed.add(1, {"reason": reason})

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """servicekit RpcObserver: counts public API requests (not health or reflection)."""
        service, _, name = method.lstrip("/").rpartition("/")
        if service == GATEWAY_SERVICE:
            self.request(name, code, seconds)


METRICS = GatewayMetrics()
