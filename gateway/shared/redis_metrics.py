"""The Redis link's metrics, read from its counters at scrape time (nothing on the call
path): the breaker's state, calls answered, and failures by reason."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from gateway.resilience.breaker_types import CircuitState
from gateway.shared.redis_link import RedisLink


def observe_redis_link(link: RedisLink, meter: metrics.Meter | None = None) -> None:
    meter = meter or metrics.get_meter("harag.gateway")

    def state(_: CallbackOptions) -> Iterable[Observation]:
        current = link.breaker.state
        for known in CircuitState:
            yield Observation(1 if known is current else 0, {"state": known.name})

    def calls(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(link.calls)

    def failures(_: CallbackOptions) -> Iterable[Observation]:
        for reason, count in link.failures.items():
            yield Observation(count, {"reason": reason})

    meter.create_observable_gauge(
        "harag.gateway.redis.state",
        callbacks=[state],
        description="1 for the current state of the breaker around Redis (CLOSED: in use; "
        "OPEN: every feature on its local fallback), 0 for the others.",
    )
    meter.create_observable_counter(
        "harag.gateway.redis.calls",
        callbacks=[calls],
        unit="{call}",
        description="Calls Redis answered.",
    )
    meter.create_observable_counter(
        "harag.gateway.redis.failures",
        callbacks=[failures],
        unit="{call}",
        description="Calls that fell back to local behaviour, by reason (timeout, connection, "
        "error_reply, breaker_open).",
    )
