"""The trace viewer on its own: OTLP in from a real SDK exporter, JSON out, waterfall text."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from harag_cli.traceview import client
from harag_cli.traceview.receiver import TraceViewer
from harag_cli.traceview.store import SpanRecord, TraceStore
from harag_cli.traceview.waterfall import render_list, render_trace


def _export_sample_trace(endpoint: str) -> str:
    """Sends gateway -> attempt -> embedder spans through the real OTLP/gRPC exporter."""
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    gateway = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    gateway.add_span_processor(SimpleSpanProcessor(exporter))
    embedder = TracerProvider(resource=Resource.create({"service.name": "embedder-fallback"}))
    embedder.add_span_processor(SimpleSpanProcessor(exporter))
    tracer, remote = gateway.get_tracer("t"), embedder.get_tracer("t")
    with tracer.start_as_current_span(
        "harag.v1.RagGatewayService/Query", kind=SpanKind.SERVER
    ) as root:
        root.set_attribute("harag.degraded", True)
        with tracer.start_as_current_span("embed", attributes={"harag.stage": "embed"}):
            with tracer.start_as_current_span(
                "attempt embedder-primary",
                attributes={"harag.outcome": "BREAKER_OPEN", "harag.tier": 0},
            ) as failed:
                failed.set_status(Status(StatusCode.ERROR, "BREAKER_OPEN"))
                failed.add_event("harag.breaker.transition", {"harag.breaker.to": "OPEN"})
            with tracer.start_as_current_span("attempt embedder-fallback"):
                with remote.start_as_current_span(
                    "harag.v1.EmbedderService/Embed", kind=SpanKind.SERVER
                ):
                    pass
    gateway.shutdown()
    embedder.shutdown()
    return format(root.get_span_context().trace_id, "032x")


async def test_receiver_stores_otlp_spans_and_serves_them(viewer: TraceViewer) -> None:
    trace_id = await asyncio.to_thread(_export_sample_trace, viewer.otlp_endpoint)
    summaries = await asyncio.to_thread(client.recent, viewer.api_url, 1000)
    mine = next(s for s in summaries if s["trace_id"] == trace_id)
    assert mine["spans"] == 5 and mine["errors"] == 1 and mine["degraded"] is True
    assert mine["services"] == ["embedder-fallback", "gateway"]
    spans = await asyncio.to_thread(client.spans, trace_id[:12], viewer.api_url)
    assert {s.trace_id for s in spans} == {trace_id}
    failed = next(s for s in spans if s.name == "attempt embedder-primary")
    assert failed.status == "ERROR" and failed.attributes["harag.tier"] == 0
    assert failed.events[0].name == "harag.breaker.transition"
    with pytest.raises(client.ViewerError, match="no trace"):
        await asyncio.to_thread(client.spans, "0" * 32, viewer.api_url)

    # The waterfall for a browser (the status page links here when Jaeger is not set).
    def page(path: str) -> tuple[int, str, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{viewer.api_url}{path}", timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    status, kind, text = await asyncio.to_thread(page, f"/traces/{trace_id}")
    assert (status, kind) == (200, "text/plain; charset=utf-8")
    assert "attempt embedder-primary" in text and "embedder-fallback" in text
    status, _, text = await asyncio.to_thread(page, f"/traces/{'0' * 32}")
    assert status == 404 and "no trace" in text


def _span(
    span_id: str, parent: str, name: str, start: int, end: int, **attrs: object
) -> SpanRecord:
    return SpanRecord(
        "ab" * 16,
        span_id,
        parent,
        name,
        "gateway",
        "INTERNAL",
        start,
        end,
        "UNSET",
        attributes=dict(attrs),
    )


def test_waterfall_draws_the_tree_on_one_time_scale() -> None:
    root_attributes = {
        "harag.degraded": True,
        "harag.embed.served_by": "embedder-fallback",
        "harag.embed.degraded": True,
        "harag.generate.served_by": "generator-primary",
        "harag.generate.degraded": False,
    }
    embed = "harag.v1.EmbedderService/Embed"
    spans = [
        _span("1", "", "harag.v1.RagGatewayService/Query", 0, 10**7, **root_attributes),
        _span("3", "1", "attempt embedder-primary", 0, 0, **{"harag.outcome": "BREAKER_OPEN"}),
        _span("4", "1", embed, 1_000_000, 5_000_000, **{"harag.upstream": "embedder-fallback"}),
        _span("5", "4", embed, 2_000_000, 4_000_000),
        _span("6", "1", "harag.v1.GeneratorService/Generate", 5_000_000, 10_000_000),
    ]
    lines = render_trace(spans, width=160).splitlines()
    assert lines[0].startswith(f"trace {'ab' * 16}  10.0 ms  5 spans")
    body = lines[2:]
    assert [line.split()[1] for line in body] == [
        "harag.v1.RagGatewayService/Query",
        "├─",
        "├─",
        "│",
        "└─",
    ]
    # The request says which stage degraded and what served it, and only that one.
    assert "degraded=true" in body[0] and "embed.served_by=embedder-fallback" in body[0]
    assert "generate.served_by" not in body[0]
    assert "outcome=BREAKER_OPEN" in body[1] and "▏" in body[1]  # instant, but visible
    assert f"├─ {embed}" in body[2] and "upstream=embedder-fallback" in body[2]
    assert f"└─ {embed}" in body[3]
    # Same scale: "generate" starts halfway across the root's bar.
    root_start, root_end = body[0].index("█"), body[0].rindex("█")
    assert body[4].index("█") == root_start + (root_end - root_start + 1) // 2
    assert body[4].rstrip().endswith("5.0 ms")


def test_store_is_bounded_and_lists_newest_first() -> None:
    store = TraceStore(max_traces=2)
    for i in range(3):
        store.add([SpanRecord(f"{i:032x}", "1", "", "q", "gateway", "SERVER", i, i + 1, "OK")])
    assert [s["trace_id"] for s in store.recent()] == [f"{2:032x}", f"{1:032x}"]
    assert store.get(f"{0:032x}") is None
    assert "no traces yet" in render_list([])
