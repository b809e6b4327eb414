"""The grpc.aio server bootstrap every ha-rag process uses.

It serves grpc.health.v1 (grpcio-health-checking's servicer, so `Watch` is right),
reflection for every service, optional fault injection, and shuts down gracefully on
SIGTERM/SIGINT: health turns NOT_SERVING at once, the server keeps answering for
`shutdown_drain_s` so load balancers and probes notice, in-flight calls get
`shutdown_grace_s` to finish, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from harag.v1 import fault_injection_pb2, fault_injection_pb2_grpc
from servicekit import telemetry
from servicekit.faults import FaultInjectionServicer, FaultInterceptor, FaultState
from servicekit.interceptors import Context, HandlerWrapper, UnaryStream
from servicekit.metrics import observe_faults, resolve_port, start_endpoint
from servicekit.rpc_server_telemetry import RpcObserver, ServerTelemetryInterceptor
from servicekit.settings import check_fields, setting
from servicekit.tls import ServerTls

log = logging.getLogger("harag.server")

MAX_MESSAGE_BYTES = 32 * 1024 * 1024

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


@dataclass(frozen=True)
class ServerSettings:
    """Settings every ha-rag process shares (the gateway and each component)."""

    host: str = setting(
        "127.0.0.1", "host", "Address to listen on; use 0.0.0.0 in containers.", unit="address"
    )
    log_level: LogLevel = setting("INFO", "log_level", "Log level.")
    shutdown_grace_s: float = setting(
        5.0,
        "shutdown_grace_s",
        "On SIGTERM, how long in-flight calls may take to finish.",
        unit="s",
        minimum=0,
        maximum=300,
    )
    shutdown_drain_s: float = setting(
        0.0,
        "shutdown_drain_s",
        "On SIGTERM, how long to keep serving while health reports NOT_SERVING, so load "
        "balancers stop sending first (set ~ readiness period in Kubernetes).",
        unit="s",
        minimum=0,
        maximum=300,
    )
    metrics_port: int = setting(
        -1,
        "metrics_port",
        "Prometheus /metrics HTTP port; -1 = the gRPC port + 1000, 0 = no endpoint.",
        unit="port",
        minimum=-1,
        maximum=65535,
    )
    max_message_bytes: int = setting(
        MAX_MESSAGE_BYTES,
        "max_message_bytes",
        "Largest message this process receives or sends; a larger request is refused "
        "RESOURCE_EXHAUSTED by gRPC before any handler runs.",
        unit="bytes",
        minimum=64 * 1024,
        maximum=1024 * 1024 * 1024,
    )
    health_port: int = setting(
        0,
        "health_port",
        "Plaintext port serving only grpc.health.v1, for probes that cannot speak TLS "
        "(Kubernetes' native gRPC probes); 0 = none (health is on the gRPC port as always).",
        unit="port",
        minimum=0,
        maximum=65535,
    )
    max_concurrent_rpcs: int = setting(
        512,
        "max_concurrent_rpcs",
        "In-flight RPCs this process accepts; more are rejected RESOURCE_EXHAUSTED by gRPC.",
        unit="RPCs",
        minimum=1,
        maximum=100000,
    )

    def __post_init__(self) -> None:
        check_fields(self)


class _EndWatchesOnShutdown(HandlerWrapper):
    """Ends open health Watch streams once shutdown has begun.

    A Watch stream never finishes by itself, so without this every watcher (the gateway
    watches each upstream) would hold `server.stop(grace)` for the whole grace period.
    Watchers first receive NOT_SERVING, then their stream ends with OK.
    """

    WATCH = "/grpc.health.v1.Health/Watch"

    def __init__(self) -> None:
        super().__init__()
        self.stopping = asyncio.Event()

    def intercepts(self, method: str) -> bool:
        return method == self.WATCH

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream:
        stopping = self.stopping

        # grpcio-health-checking's Watch is a coroutine that writes with context.write.
        async def watch(request: object, context: Context) -> None:
            watching = asyncio.ensure_future(cast(Awaitable[None], behaviour(request, context)))
            ending = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({watching, ending}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watching, ending):
                    task.cancel()
                await asyncio.gather(watching, ending, return_exceptions=True)

        return watch


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to serve: its full name (for health/reflection) and how to add it."""

    name: str
    add: Callable[[grpc.aio.Server], None]


@dataclass
class ServerOptions:
    service_name: str  # e.g. "embedder-primary"; used in logs and telemetry
    host: str
    port: int
    fault_injection: bool = False
    # Defaults are the declared settings' (ServerSettings), never restated.
    shutdown_grace_s: float = ServerSettings.shutdown_grace_s
    shutdown_drain_s: float = ServerSettings.shutdown_drain_s
    max_concurrent_rpcs: int = ServerSettings.max_concurrent_rpcs
    max_message_bytes: int = ServerSettings.max_message_bytes
    metrics_port: int = ServerSettings.metrics_port  # see servicekit.metrics.resolve_port
    # Several processes listen on the same port (SO_REUSEPORT) and the kernel spreads
    # connections across them: `python -m gateway --workers N`.
    reuse_port: bool = False
    # More addresses to listen on, e.g. "unix-abstract:name": for calls that must reach this
    # very process when it shares its port with others.
    private_addresses: Sequence[str] = field(default_factory=tuple)
    # TLS on `port` (the private addresses stay plaintext: they are this host's only).
    tls: ServerTls | None = None
    health_port: int = ServerSettings.health_port
    rpc_observers: Sequence[RpcObserver] = field(default_factory=tuple)
    interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=tuple)
    # Run before everything else, telemetry included: for turning calls away at the least
    # cost. Whoever turns a call away there counts it; it is not traced.
    front_interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=tuple)
    on_started: Sequence[Callable[[], None]] = field(default_factory=tuple)  # once listening
    # After the drain, before in-flight calls get their grace: for a process's calls to
    # itself, which must end first so the server is the one that gets closed on.
    before_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=tuple)
    # Serves the HTTP port (metrics_port) in this event loop instead of the threaded /metrics
    # endpoint: given (host, port), starts and returns how to stop it (None: not started).
    # The gateway's status page needs the loop (gateway.status.http).
    http_endpoint: Callable[[str, int], Awaitable[Callable[[], Awaitable[None]] | None]] | None = (
        None
    )


def _health_only_server(
    health_servicer: health.aio.HealthServicer, end_watches: _EndWatchesOnShutdown
) -> grpc.aio.Server:
    """A plaintext server with nothing but grpc.health.v1 (the same servicer, so the same
    status): Kubernetes' gRPC probes carry no TLS, and health says nothing secret."""
    server = grpc.aio.server(interceptors=[end_watches], maximum_concurrent_rpcs=64)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server


async def _run_callbacks(callbacks: Sequence[Callable[[], Awaitable[None]]]) -> None:
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("shutdown callback failed")


async def serve(options: ServerOptions, registrations: Sequence[ServiceRegistration]) -> int:
    """Runs the server until SIGTERM/SIGINT; returns the process exit code."""
    telemetry.setup(options.service_name)
    end_watches = _EndWatchesOnShutdown()
    # Telemetry sits outside fault injection, so injected failures are traced and counted.
    rpc_telemetry = ServerTelemetryInterceptor(options.host, options.port, options.rpc_observers)
    interceptors = [*options.front_interceptors, end_watches, rpc_telemetry, *options.interceptors]
    faults = FaultState() if options.fault_injection else None
    if faults is not None:
        interceptors.append(FaultInterceptor(faults))
        observe_faults(faults)
    server = grpc.aio.server(
        interceptors=interceptors,
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        ],
    )
    names = [r.name for r in registrations]
    for registration in registrations:
        registration.add(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if faults is not None:
        fault_injection_pb2_grpc.add_FaultInjectionServiceServicer_to_server(
            FaultInjectionServicer(faults), server
        )
        names.append(
            fault_injection_pb2.DESCRIPTOR.services_by_name["FaultInjectionService"].full_name
        )

        async def follow_down(fault: fault_injection_pb2.Fault | None) -> None:
            status = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if fault is not None and fault.down
                else health_pb2.HealthCheckResponse.SERVING
            )
            for name in ["", *(r.name for r in registrations)]:
                await health_servicer.set(name, status)

        faults.on_change(follow_down)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )

    address = f"{options.host}:{options.port}"
    health_server = (
        _health_only_server(health_servicer, end_watches) if options.health_port else None
    )
    try:
        if options.tls is not None:
            server.add_secure_port(address, options.tls.credentials())
        else:
            server.add_insecure_port(address)
        for listen in options.private_addresses:
            server.add_insecure_port(listen)
        if health_server is not None:
            health_server.add_insecure_port(f"{options.host}:{options.health_port}")
    except RuntimeError as exc:
        log.error("cannot listen", extra={"address": address, "error": str(exc)})
        return 1
    await server.start()
    if health_server is not None:
        await health_server.start()
    if options.tls is not None:
        options.tls.start_reloading()
    for started in options.on_started:
        started()
    http_port = resolve_port(options.metrics_port, options.port)
    stop_http = None
    if options.http_endpoint is None:
        metrics_endpoint = start_endpoint(options.host, http_port)
    else:
        metrics_endpoint = None
        if http_port > 0:
            stop_http = await options.http_endpoint(options.host, http_port)
    for name in ["", *(r.name for r in registrations)]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        extra={
            "address": address,
            "services": names,
            "fault_injection": options.fault_injection,
            "tls": options.tls is not None,
            "health_port": options.health_port,
            "pid": os.getpid(),
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info(
        "shutting down",
        extra={"grace_s": options.shutdown_grace_s, "drain_s": options.shutdown_drain_s},
    )
    await health_servicer.enter_graceful_shutdown()
    # Let watchers receive NOT_SERVING (and, with a drain time, let balancers react).
    await asyncio.sleep(max(options.shutdown_drain_s, 0.05))
    end_watches.stopping.set()
    await _run_callbacks(options.before_stop)
    await server.stop(options.shutdown_grace_s)
    if health_server is not None:
        await health_server.stop(0)
    if options.tls is not None:
        await options.tls.stop_reloading()
    await _run_callbacks(options.on_stop)
    if metrics_endpoint is not None:
        metrics_endpoint.stop()
    if stop_http is not None:
        await stop_http()
    # Spans of the last calls are still in the batch processor's queue: export them now.
    await asyncio.to_thread(telemetry.shutdown)
    log.info("stopped")
    return 0
