"""The gateway's upstreams: one channel, stub and health watcher per configured process."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.balancing import channel_options, channel_target
from gateway.config import COMPONENTS, GatewayConfig, UpstreamSpec
from gateway.guards import build_guard
from gateway.resilience.guard import AttemptRecord, Guard
from gateway.resilience.recent import StatusConfig
from harag.v1 import embedder_pb2_grpc, generator_pb2_grpc, retriever_pb2_grpc
from servicekit.background import BackgroundTasks
from servicekit.server import MAX_MESSAGE_BYTES

log = logging.getLogger("harag.upstreams")

# The generated stubs are untyped: each takes a channel and returns the service's stub.
STUBS: dict[str, Callable[[grpc.aio.Channel], Any]] = {
    "embedder": embedder_pb2_grpc.EmbedderServiceStub,
    "retriever": retriever_pb2_grpc.RetrieverServiceStub,
    "generator": generator_pb2_grpc.GeneratorServiceStub,
}
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a restart so a recovered upstream is used again soon.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),  # retries are the resilience layer's job, with a budget
]

HEALTH_UNKNOWN = "UNKNOWN"
HEALTH_SERVING = "SERVING"
HEALTH_NOT_SERVING = "NOT_SERVING"
HEALTH_UNREACHABLE = "UNREACHABLE"


@dataclass
class Upstream:
    """A configured upstream process and what the gateway last saw of it.

    One tier of its component's fallback chain (gateway.resilience.chain.ChainTier).
    """

    name: str
    component: str
    tier: int
    address: str
    channel: grpc.aio.Channel
    stub: Any
    guard: Guard
    health: str = HEALTH_UNKNOWN
    last_outcome: str = ""
    last_error: str = ""
    last_latency_s: float = 0.0
    skip_not_serving: bool = True  # pass over it while its health check says NOT_SERVING
    # Hears of every health change (old, new); the prober probes an open breaker on SERVING.
    on_health: Callable[[str, str], None] | None = None

    def set_health(self, status: str) -> None:
        old, self.health = self.health, status
        if status == old:
            return
        log.info(
            "upstream health changed", extra={"upstream": self.name, "from": old, "to": status}
        )
        if self.on_health is not None:
            self.on_health(old, status)

    def skip_reason(self) -> str | None:
        if self.skip_not_serving and self.health == HEALTH_NOT_SERVING:
            return HEALTH_NOT_SERVING
        return None

    def record_attempt(self, record: AttemptRecord) -> None:
        self.last_outcome, self.last_latency_s = record.outcome, record.latency_s
        if record.outcome != "OK":
            self.last_error = record.error


class Upstreams:
    """All chains, by component, in tier order; owns channels and health watchers."""

    def __init__(
        self, chains: dict[str, list[Upstream]], status: StatusConfig | None = None
    ) -> None:
        self.chains = chains
        # When an upstream's recent calls make the system DEGRADED (gateway.health).
        self.status = status or StatusConfig()
        self._watchers = BackgroundTasks("upstream health watch")

    @classmethod
    def from_config(cls, cfg: GatewayConfig) -> Upstreams:
        chains: dict[str, list[Upstream]] = {}
        for component in COMPONENTS:
            specs: list[UpstreamSpec] = cfg.chains.specs(component)
            chains[component] = [_connect(component, spec, cfg) for spec in specs]
        return cls(chains, cfg.status)

    def all(self) -> list[Upstream]:
        return [u for component in COMPONENTS for u in self.chains.get(component, [])]

    def by_name(self, name: str) -> Upstream | None:
        return next((u for u in self.all() if u.name == name), None)

    def start_health_watch(self) -> None:
        for upstream in self.all():
            self._watchers.start(upstream.name, functools.partial(_watch_health, upstream))

    async def close(self) -> None:
        await self._watchers.stop()
        await asyncio.gather(*(u.channel.close() for u in self.all()))


def _connect(component: str, spec: UpstreamSpec, cfg: GatewayConfig) -> Upstream:
    channel = grpc.aio.insecure_channel(
        channel_target(spec.address), options=CHANNEL_OPTIONS + channel_options(spec.address)
    )
    return Upstream(
        name=spec.name,
        component=component,
        tier=spec.tier,
        address=spec.address,
        channel=channel,
        stub=STUBS[component](channel),
        guard=build_guard(spec.name, spec.tier, cfg, component),
        skip_not_serving=cfg.upstream.skip_not_serving,
    )


async def _watch_health(upstream: Upstream) -> None:
    """Follows the upstream's grpc.health.v1 Watch stream, reconnecting with backoff."""
    stub = health_pb2_grpc.HealthStub(upstream.channel)
    backoff = 0.1
    while True:
        try:
            async for reply in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                upstream.set_health(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                backoff = 0.1
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                upstream.set_health(HEALTH_UNREACHABLE)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 1.0)
