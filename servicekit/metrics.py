"""The Prometheus scrape endpoint and the metrics every process records.

Instruments are OpenTelemetry instruments, so the same numbers can also be pushed over
OTLP (`OTEL_METRICS_EXPORTER=otlp`); the Prometheus reader installed by servicekit.telemetry
turns them into Prometheus series (dots become underscores, the unit and `_total` are
appended):

    rpc.server.call.duration  histogram, s   rpc_server_call_duration_seconds{rpc_service,
                                              rpc_method, rpc_grpc_status_code}; its
                                              `_count` is the request count
    harag.faults.injected     counter         harag_faults_injected_total
    harag.faults.active       gauge           harag_faults_active{kind}: 1 while a fault of
                                              that kind (down, hang, error, latency) is set

The endpoint port is `HARAG_METRICS_PORT`: -1 (default) means the gRPC port + 1000
(gateway 51051, embedder-primary 51061, ...), 0 turns the endpoint off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from threading import Thread
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger("harag.metrics")

PORT_OFFSET = 1000
# Seconds; from a cache hit (~100 us) to the longest generation timeout.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
FAULT_KINDS = ("down", "hang", "error", "latency")

_meter = metrics.get_meter("harag.servicekit")

rpc_server_duration = _meter.create_histogram(
    "rpc.server.call.duration",
    unit="s",
    description="Duration of RPCs served by this process, by method and status code.",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
)


def resolve_port(setting: int, grpc_port: int) -> int:
    """The metrics port for a `metrics_port` setting: 0 = off, -1 = gRPC port + 1000."""
    if setting >= 0:
        return setting
    port = grpc_port + PORT_OFFSET
    return port if port <= 65535 else 0


@dataclass
class MetricsEndpoint:
    address: str
    _server: Any
    _thread: Thread

    def stop(self) -> None:
        """Stops serving without waiting: `shutdown()` blocks up to the server's 0.5 s poll
        interval, which every process exit would pay, and the thread is a daemon anyway."""

        def close() -> None:
            self._server.shutdown()
            self._server.server_close()

        Thread(target=close, name="metrics-endpoint-stop", daemon=True).start()


def start_endpoint(host: str, port: int) -> MetricsEndpoint | None:
    """Serves /metrics in a daemon thread; a port that cannot be bound is logged, not fatal."""
    if port <= 0:
        return None
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics endpoint not started", extra={"port": port, "error": str(exc)})
        return None
    address = f"http://{host}:{port}/metrics"
    log.info("metrics endpoint", extra={"metrics_address": address})
    return MetricsEndpoint(address, server, thread)


def observe_faults(state: Any) -> None:
    """Reports a servicekit.faults.FaultState's activity (read at collection time)."""

    def injected(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(state.injected_total)

    def active(options: CallbackOptions) -> Iterable[Observation]:
        fault = state.fault
        kinds = set()
        if fault is not None:
            if fault.down:
                kinds.add("down")
            if fault.hang:
                kinds.add("hang")
            if fault.error_rate > 0:
                kinds.add("error")
            if fault.latency.seconds > 0 or fault.latency.nanos > 0:
                kinds.add("latency")
        for kind in FAULT_KINDS:
            yield Observation(1 if kind in kinds else 0, {"kind": kind})

    _meter.create_observable_counter(
        "harag.faults.injected",
        callbacks=[injected],
        unit="{fault}",
        description="Calls failed or hung by fault injection (down, hang, error).",
    )
    _meter.create_observable_gauge(
        "harag.faults.active",
        callbacks=[active],
        description="1 while a fault of this kind is set on the process.",
    )
