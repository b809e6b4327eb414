"""Building the outbox the configuration asks for: Redis when redis_url is set, else SQLite
in outbox_state_dir; plus its metrics, read from the delivery loops' last view at scrape."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from gateway.outbox.config import OutboxConfig
from gateway.outbox.delivery import OutboxDelivery
from gateway.outbox.redis_store import RedisOutbox
from gateway.outbox.sqlite_store import SqliteOutbox
from gateway.outbox.store import Outbox
from gateway.shared.redis_link import RedisLink
from harag.v1 import gateway_pb2

DATABASE = "outbox.sqlite3"


def build_outbox(cfg: OutboxConfig, link: RedisLink) -> Outbox:
    if link.configured:
        return RedisOutbox(link, cfg.lease_s)
    return SqliteOutbox(Path(cfg.state_dir) / DATABASE)


def outbox_statuses(delivery: OutboxDelivery) -> list[gateway_pb2.OutboxStatus]:
    return [
        gateway_pb2.OutboxStatus(
            retriever=name,
            backend=state.backend,
            backlog=state.backlog,
            dead_letters=state.dead_letters,
            last_error=state.last_error,
        )
        for name, state in delivery.state.items()
    ]


def observe_outbox(delivery: OutboxDelivery, meter: metrics.Meter | None = None) -> None:
    meter = meter or metrics.get_meter("harag.gateway")

    def backlog(_: CallbackOptions) -> Iterable[Observation]:
        for name, state in delivery.state.items():
            yield Observation(state.backlog, {"retriever": name, "backend": state.backend})

    def dead(_: CallbackOptions) -> Iterable[Observation]:
        for name, state in delivery.state.items():
            yield Observation(state.dead_letters, {"retriever": name, "backend": state.backend})

    meter.create_observable_gauge(
        "harag.gateway.outbox.backlog",
        callbacks=[backlog],
        unit="{write}",
        description="Writes queued for a retriever and not yet acknowledged by it.",
    )
    meter.create_observable_gauge(
        "harag.gateway.outbox.dead_letters",
        callbacks=[dead],
        unit="{write}",
        description="Writes moved to a retriever's dead-letter stream after too many failed "
        "deliveries.",
    )
