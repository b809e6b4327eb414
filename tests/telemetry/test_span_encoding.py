"""The hand-written OTLP span encoder says exactly what the SDK's encoder says."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from servicekit.span_encoding import FastOTLPSpanExporter, encode_spans


def _provider(service: str, memory: InMemorySpanExporter, **limits: int) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "host.cores": 2}),
        span_limits=SpanLimits(**limits),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    gateway = _provider("gateway", memory).get_tracer("harag.gateway", "1.2", schema_url="s://x")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
    )
    root = gateway.start_span(
        "harag.v1.RagGatewayService/Query",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "server.port": 5000, "harag.cached": False},
    )
    context = trace.set_span_in_context(root)
    for number, (upstream, outcome) in enumerate(
        [("embedder-primary", "UNAVAILABLE"), ("embedder-fallback", "OK")], start=1
    ):
        attempt = gateway.start_span(
            "harag.v1.EmbedderService/Embed",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                "harag.upstream": upstream,
                "harag.tier": number - 1,
                "harag.attempt": number,
                "harag.retry": False,
                "harag.hedge": number == 2,
                "harag.outcome": outcome,
            },
        )
        if outcome != "OK":
            attempt.set_status(Status(StatusCode.ERROR, f"{outcome}: connection refused"))
        attempt.end()
    root.add_event(
        "harag.breaker.transition",
        {"harag.upstream": "embedder-primary", "harag.breaker.to": "OPEN"},
        timestamp=123,
    )
    root.set_attributes(
        {
            "harag.embed.served_by": "embedder-fallback",
            "harag.embed.tier": 1,
            "harag.score": 0.25,
            "harag.offset": -7,
            "harag.big": 2**62,
            "harag.empty": "",
            "harag.filters": ("lang:en", "kind:faq"),
            "harag.dims": (1, -2, 3),
            "harag.flags": (True, False),
            "harag.weights": (0.5, 1.5),
        }
    )
    root.set_status(Status(StatusCode.OK))
    root.end()
    # Another process's resource, another scope, links, and limits that drop things.
    other = _provider(
        "embedder-primary", memory, max_attributes=2, max_events=1, max_links=1
    ).get_tracer("harag.embedder")
    work = other.start_span(
        "embed batch",
        context=context,
        links=[Link(remote, {"why": "batched"}), Link(root.get_span_context())],
        attributes={"a": 1, "b": 2, "c": 3},
    )
    work.add_event("one")
    work.add_event("two", {"n": 2})
    work.end()
    with other.start_as_current_span("unset status, no attributes"):
        pass
    # A second provider with an equal resource (another object): grouped with the first.
    again = _provider("gateway", memory).get_tracer("harag.gateway", "1.2", schema_url="s://x")
    again.start_span("same resource, same scope").end()
    return list(memory.get_finished_spans())


def test_every_field_matches_the_sdk_encoder() -> None:
    spans = _spans()
    expected = sdk_encode(spans)
    assert len(expected.resource_spans) == 2  # gateway (two objects), embedder-primary
    got = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert got == expected, f"\n{got}\n!=\n{expected}"
    # The same spans again come out the same from the remembered encodings.
    again = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert again == expected


def test_nothing_to_send_is_an_empty_request() -> None:
    assert encode_spans([]) == b""


def test_the_exporter_sends_what_the_sdk_would() -> None:
    spans = _spans()
    exporter = FastOTLPSpanExporter(endpoint="http://127.0.0.1:1", insecure=True)
    try:
        assert exporter._translate_data(spans) == sdk_encode(spans)
    finally:
        exporter.shutdown(timeout_millis=100)


@pytest.mark.parametrize("value", [object(), {1, 2}])
def test_an_unencodable_value_is_refused(value: object) -> None:
    from servicekit import span_encoding

    with pytest.raises(TypeError):
        span_encoding._any_value(value)
