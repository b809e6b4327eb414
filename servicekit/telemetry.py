"""OpenTelemetry SDK setup for every ha-rag process, from the standard `OTEL_*` variables only.

- `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
  else the process's own default (`gateway`, `embedder-primary`, ...).
- Traces: always recorded in-process (so responses and log lines carry real trace ids),
  exported over OTLP with a BatchSpanProcessor (OTLP/gRPC through the SDK's exporter with a
  cheaper encoder, servicekit.span_encoding) only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Without an endpoint nothing is exported and
  nothing is logged. `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`
  (needs opentelemetry-exporter-otlp-proto-http). `OTEL_TRACES_EXPORTER=none` turns export
  off. Sampling comes from `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (read by the SDK).
- Metrics: `OTEL_METRICS_EXPORTER`, a comma-separated list of `prometheus` (the default:
  scraped over HTTP, see servicekit.metrics), `otlp` (pushed to the OTLP endpoint) or `none`.
  OTLP metrics are opt-in, unlike the spec's default, because the usual endpoint here (the
  built-in trace viewer, or Jaeger) stores traces only.

`shutdown()` flushes pending spans; the server calls it after a graceful stop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

log = logging.getLogger("harag.telemetry")

SERVICE_NAMESPACE = "ha-rag"
SERVICE_VERSION = "0.1.0"
SHUTDOWN_TIMEOUT_MS = 5000


@dataclass
class Telemetry:
    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporting_traces: bool
    prometheus: bool  # a Prometheus reader is registered, so a /metrics endpoint is useful
    _stopped: bool = False

    def shutdown(self) -> None:
        """Flushes and stops both providers; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        self.tracer_provider.force_flush(SHUTDOWN_TIMEOUT_MS)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_MS)


_lock = threading.Lock()
_current: Telemetry | None = None


def current() -> Telemetry | None:
    return _current


def setup(default_service_name: str, env: Mapping[str, str] | None = None) -> Telemetry:
    """Installs the global tracer and meter providers once per process; later calls reuse them."""
    global _current
    env = os.environ if env is None else env
    with _lock:
        if _current is not None:
            return _current
        resource = build_resource(default_service_name)
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        exporter = span_exporter(env)
        if exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)

        wanted = _metrics_exporters(env)
        readers = metric_readers(wanted, env)
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
        _current = Telemetry(
            service_name=str(resource.attributes[SERVICE_NAME]),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            exporting_traces=exporter is not None,
            prometheus="prometheus" in wanted,
        )
        return _current


def shutdown() -> None:
    if _current is not None:
        _current.shutdown()


def build_resource(default_service_name: str) -> Resource:
    """The process's resource; explicit `OTEL_*` settings win over the built-in defaults."""
    from_env = OTELResourceDetector().detect().attributes
    extra: dict[str, str] = {SERVICE_NAME: str(from_env.get(SERVICE_NAME) or default_service_name)}
    if "service.namespace" not in from_env:
        extra["service.namespace"] = SERVICE_NAMESPACE
    if "service.version" not in from_env:
        extra["service.version"] = SERVICE_VERSION
    return Resource.create(extra)


def _endpoint(env: Mapping[str, str], signal: str) -> str:
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ) or ""


def _protocol(env: Mapping[str, str], signal: str) -> str:
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()


def span_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP span exporter the environment asks for, or None (no export, no noise)."""
    chosen = {x.strip().lower() for x in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "otlp" not in chosen or not _endpoint(env, "TRACES"):
        return None
    protocol = _protocol(env, "TRACES")
    if protocol == "grpc":
        # The SDK's exporter with a cheaper encoder (see servicekit.span_encoding).
        from servicekit.span_encoding import FastOTLPSpanExporter

        return FastOTLPSpanExporter()
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf needs the package "
                "opentelemetry-exporter-otlp-proto-http; traces are not exported"
            )
            return None
        exporter: SpanExporter = HttpSpanExporter()
        return exporter
    log.warning("unsupported OTLP protocol; traces are not exported", extra={"protocol": protocol})
    return None


def _metrics_exporters(env: Mapping[str, str]) -> set[str]:
    return {x.strip().lower() for x in env.get("OTEL_METRICS_EXPORTER", "prometheus").split(",")}


def metric_readers(wanted: set[str], env: Mapping[str, str]) -> list[MetricReader]:
    readers: list[MetricReader] = []
    if "prometheus" in wanted:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader())
    if "otlp" in wanted and _endpoint(env, "METRICS"):
        protocol = _protocol(env, "METRICS")
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        else:
            log.warning(
                "OTLP metrics support protocol grpc only; metrics are not pushed",
                extra={"protocol": protocol},
            )
    return readers
