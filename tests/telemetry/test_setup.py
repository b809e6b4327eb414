"""SDK setup from the standard OTEL_* variables only; no endpoint means no export and no noise."""

from __future__ import annotations

import re

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from harag.v1 import gateway_pb2
from servicekit.metrics import resolve_port
from servicekit.telemetry import build_resource, span_exporter


def test_span_export_follows_the_standard_variables() -> None:
    assert span_exporter({}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert isinstance(span_exporter(endpoint), OTLPSpanExporter)
    traces_only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}
    assert isinstance(span_exporter(traces_only), OTLPSpanExporter)
    assert span_exporter({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None


def test_service_name_env_beats_resource_attributes_beats_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert build_resource("embedder-fallback").attributes["service.name"] == "embedder-fallback"
    attributes = "service.name=from-attrs,deployment.environment=ci"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", attributes)
    resource = build_resource("embedder-fallback")
    assert resource.attributes["service.name"] == "from-attrs"
    assert resource.attributes["deployment.environment"] == "ci"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert build_resource("embedder-fallback").attributes["service.name"] == "from-env"


def test_metrics_port_defaults_to_grpc_port_plus_1000() -> None:
    assert resolve_port(-1, 50051) == 51051
    assert resolve_port(0, 50051) == 0
    assert resolve_port(9464, 50051) == 9464
    assert resolve_port(-1, 65000) == 0  # no room above: off rather than wrong


async def test_without_endpoint_nothing_is_exported_or_logged(mesh) -> None:
    # The shared mesh runs with no OTEL_EXPORTER_OTLP_ENDPOINT: trace ids still exist ...
    reply = await mesh.gateway.Query(gateway_pb2.QueryRequest(query="What is hedging?"), timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", reply.trace_id)
    # ... and no process said a word about exporting.
    noisy = [
        (name, line)
        for name, line in mesh.logs.lines
        if "opentelemetry" in line.lower() or ("export" in line.lower() and "span" in line.lower())
    ]
    assert noisy == []
