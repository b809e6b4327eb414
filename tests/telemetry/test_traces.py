"""One query is one trace across every hop, and the trace explains degradation.

Edges are checked parent -> child, as the OpenTelemetry Demo's trace tests do:
gateway SERVER (root) -> attempt (the gateway's CLIENT span) -> component SERVER -> work span.
An attempt that made an RPC is that RPC's CLIENT span; one decided without an RPC is an
INTERNAL `attempt <upstream>` span. Each stage's result is on the root span.
"""

from __future__ import annotations

import asyncio

import grpc

from harag.v1 import fault_injection_pb2, gateway_pb2
from harag_cli.supervisor import probe
from harag_cli.traceview.receiver import TraceViewer
from harag_cli.traceview.store import SpanRecord
from telemetry.support import (
    ancestors,
    breaker_forced_open,
    has_server_spans,
    server_spans,
    unique_question,
    wait_for_trace,
)

QUERY = "harag.v1.RagGatewayService/Query"
STAGES = {"embedder": "embed", "retriever": "retrieve", "generator": "generate"}
WORK_SPANS = {"embedder": "embed batch", "retriever": "index search", "generator": "compose answer"}
PRIMARIES = [f"{c}-primary" for c in STAGES]


def only(spans: list[SpanRecord], what: str) -> SpanRecord:
    assert len(spans) == 1, f"expected one {what}, got {[(s.service, s.name) for s in spans]}"
    return spans[0]


def attempt_spans(spans: list[SpanRecord], upstream: str) -> list[SpanRecord]:
    return [s for s in spans if s.attributes.get("harag.upstream") == upstream]


async def query(mesh) -> gateway_pb2.QueryResponse:
    return await mesh.gateway.Query(gateway_pb2.QueryRequest(query=unique_question()), timeout=10)


def check_served_by_chain(
    spans: list[SpanRecord], root: SpanRecord, upstream: str, stage: str
) -> SpanRecord:
    """upstream's SERVER span <- gateway CLIENT span of the attempt at upstream <- root."""
    server = only(server_spans(spans, upstream), f"{upstream} server span")
    attempt, *rest = ancestors(server, spans)
    assert attempt.service == "gateway" and attempt.kind == "CLIENT"
    assert attempt.name == server.name
    assert attempt.attributes["harag.upstream"] == upstream
    assert attempt.attributes["harag.stage"] == stage
    assert attempt.attributes["harag.outcome"] == "OK"
    assert attempt.status != "ERROR"
    assert root.attributes[f"harag.{stage}.served_by"] == upstream
    assert rest == [root]
    return server


# A healthy query, as spans: the gateway's SERVER span and one CLIENT span per stage (the
# attempt), and per component its SERVER span and its work span. Pinned so that the cost
# of tracing cannot creep up unnoticed; change it only with a measurement (README,
# Observability).
HEALTHY_QUERY_SPANS = {"gateway": 4, **{upstream: 2 for upstream in PRIMARIES}}


async def test_one_query_is_one_trace_through_every_primary(
    traced_mesh, viewer: TraceViewer
) -> None:
    reply = await query(traced_mesh)
    assert len(reply.trace_id) == 32
    spans = await wait_for_trace(
        viewer.store, reply.trace_id, has_server_spans("gateway", *PRIMARIES)
    )
    root = only([s for s in spans if not s.parent_id], "root span")
    assert (root.service, root.kind, root.name) == ("gateway", "SERVER", QUERY)
    assert root.attributes["harag.request_id"] == reply.request_id
    assert root.attributes["harag.degraded"] is False
    assert root.attributes["harag.cached"] is False

    for component, stage in STAGES.items():
        upstream = f"{component}-primary"
        server = check_served_by_chain(spans, root, upstream, stage)
        assert root.attributes[f"harag.{stage}.tier"] == 0
        assert root.attributes[f"harag.{stage}.degraded"] is False
        # The attempt: its tier, number and flags, and the breaker's state when it began.
        client = ancestors(server, spans)[0]
        assert client.attributes["harag.tier"] == 0
        assert client.attributes["harag.attempt"] == 1
        assert client.attributes["harag.retry"] is False
        assert client.attributes["harag.hedge"] is False
        assert client.attributes["harag.breaker.state"] == "CLOSED"
        # RPC semantic conventions on both ends of the hop.
        for span in (client, server):
            assert span.attributes["rpc.system"] == "grpc"
            assert span.attributes["rpc.service"].startswith("harag.v1.")
            assert span.attributes["rpc.grpc.status_code"] == 0
        host, port = traced_mesh.address(upstream).rsplit(":", 1)
        assert client.attributes["server.address"] == host
        assert client.attributes["server.port"] == int(port)
        assert server.attributes["server.port"] == int(port)
        work = only(
            [s for s in spans if s.parent_id == server.span_id and s.name == WORK_SPANS[component]],
            f"{component} work span",
        )
        assert work.service == upstream and work.attributes["harag.model"]
    by_name = {s.name: s for s in spans}
    assert by_name["embed batch"].attributes["harag.batch_size"] == 1
    assert by_name["index search"].attributes["harag.top_k"] > 0
    assert by_name["index search"].attributes["harag.index_size"] > 0
    assert by_name["compose answer"].attributes["harag.context_docs"] > 0
    counts: dict[str, int] = {}
    for span in spans:
        counts[span.service] = counts.get(span.service, 0) + 1
    assert counts == HEALTHY_QUERY_SPANS, [(s.service, s.kind, s.name) for s in spans]

    # Nothing from this query leaked into another trace (propagation broken would do that).
    for other in viewer.store.recent(1000):
        if other["trace_id"] == reply.trace_id:
            continue
        foreign = viewer.store.get(other["trace_id"]) or []
        during = [s for s in foreign if root.start_ns <= s.start_ns <= root.end_ns]
        assert not [s for s in during if s.kind == "SERVER" and s.service in PRIMARIES], (
            f"a component span of this query landed in trace {other['trace_id']}"
        )


async def test_trace_shows_failed_primary_and_fallback(traced_mesh, viewer: TraceViewer) -> None:
    await traced_mesh.set_fault("embedder-primary", fault_injection_pb2.Fault(down=True))
    try:
        reply = await query(traced_mesh)
    finally:
        await traced_mesh.clear_faults("embedder-primary")
    assert reply.degraded
    spans = await wait_for_trace(
        viewer.store,
        reply.trace_id,
        has_server_spans("gateway", "embedder-primary", "embedder-fallback"),
    )
    root = only([s for s in spans if not s.parent_id], "root span")
    assert root.attributes["harag.degraded"] is True

    failed = only(attempt_spans(spans, "embedder-primary"), "embedder-primary attempt")
    assert failed.attributes["harag.outcome"] == "UNAVAILABLE"
    assert failed.attributes["harag.tier"] == 0
    assert failed.status == "ERROR"
    # The failed attempt is the failed RPC, the parent of the primary's own server span.
    primary_server = only(server_spans(spans, "embedder-primary"), "embedder-primary server")
    assert ancestors(primary_server, spans)[0] is failed
    assert failed.kind == "CLIENT"
    unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
    assert failed.attributes["rpc.grpc.status_code"] == unavailable
    assert primary_server.attributes["rpc.grpc.status_code"] == unavailable

    fallback_server = check_served_by_chain(spans, root, "embedder-fallback", "embed")
    fallback_attempt = ancestors(fallback_server, spans)[0]
    assert fallback_attempt.attributes["harag.tier"] == 1
    assert fallback_attempt.attributes["harag.attempt"] > failed.attributes["harag.attempt"]
    assert root.attributes["harag.embed.tier"] == 1
    assert root.attributes["harag.embed.degraded"] is True


async def test_open_breaker_is_a_fast_failed_attempt_without_rpc(
    traced_mesh, viewer: TraceViewer
) -> None:
    async with breaker_forced_open(traced_mesh, "embedder-primary"):
        reply = await query(traced_mesh)
    spans = await wait_for_trace(
        viewer.store, reply.trace_id, has_server_spans("gateway", "embedder-fallback")
    )
    rejected = only(attempt_spans(spans, "embedder-primary"), "embedder-primary attempt")
    assert (rejected.name, rejected.kind) == ("attempt embedder-primary", "INTERNAL")
    assert rejected.attributes["harag.stage"] == "embed"
    assert rejected.attributes["harag.outcome"] == "BREAKER_OPEN"
    assert rejected.attributes["harag.breaker.state"] in ("OPEN", "FORCED_OPEN")
    assert rejected.status == "ERROR"
    assert not [s for s in spans if s.parent_id == rejected.span_id], "an RPC was made"
    assert not server_spans(spans, "embedder-primary")
    assert rejected.duration_ns < 5_000_000  # microseconds, not a timeout
    root = only([s for s in spans if not s.parent_id], "root span")
    check_served_by_chain(spans, root, "embedder-fallback", "embed")


async def test_health_checks_are_not_traced(traced_mesh, viewer: TraceViewer) -> None:
    # The gateway watches every upstream's health all along; add explicit Checks too.
    for name in traced_mesh.specs:
        assert await probe(traced_mesh.address(name)) == "SERVING"
    # Export is in order per process: once a later query's spans are in from every
    # process, anything the health checks produced would be in too.
    reply = await query(traced_mesh)
    await wait_for_trace(viewer.store, reply.trace_id, has_server_spans("gateway", *PRIMARIES))
    everything = [
        span
        for summary in viewer.store.recent(100_000)
        for span in viewer.store.get(summary["trace_id"]) or []
    ]
    assert len(everything) > 20
    services = {s.service for s in everything}
    assert {"gateway", *PRIMARIES} <= services
    health = [
        s
        for s in everything
        if "grpc.health" in s.name or "grpc.health" in str(s.attributes.get("rpc.service", ""))
    ]
    assert health == []


async def test_queue_probes_are_not_traced(traced_mesh, viewer: TraceViewer) -> None:
    # While queries arrive the gateway probes itself with marked Queries; a probe's span
    # would be a gateway Query with nothing under it. Every real one has its stages.
    for _ in range(5):
        await query(traced_mesh)  # keeps the probe going for a while
        await asyncio.sleep(0.1)
    reply = await query(traced_mesh)
    await wait_for_trace(viewer.store, reply.trace_id, has_server_spans("gateway", *PRIMARIES))
    gateway_queries = [
        (summary["trace_id"], span)
        for summary in viewer.store.recent(100_000)
        for span in viewer.store.get(summary["trace_id"]) or []
        if span.service == "gateway"
        and span.kind == "SERVER"
        and span.name.endswith("/Query")
        and span.attributes.get("rpc.grpc.status_code") == 0  # bad input has no stages
    ]
    assert len(gateway_queries) >= 6
    for trace_id, span in gateway_queries:
        children = [s for s in viewer.store.get(trace_id) or [] if s.parent_id == span.span_id]
        assert children, f"a gateway Query span with no work under it: {span.attributes}"


async def test_streaming_query_is_one_trace_with_streaming_hops(
    traced_mesh, viewer: TraceViewer
) -> None:
    request = gateway_pb2.StreamQueryRequest(query=unique_question())
    events = [event async for event in traced_mesh.gateway.StreamQuery(request, timeout=10)]
    final = events[-1].final
    assert final.trace_id
    spans = await wait_for_trace(
        viewer.store, final.trace_id, has_server_spans("gateway", *PRIMARIES)
    )
    root = only([s for s in spans if not s.parent_id], "root span")
    assert root.name == "harag.v1.RagGatewayService/StreamQuery"
    assert root.attributes["rpc.grpc.status_code"] == 0
    server = check_served_by_chain(spans, root, "generator-primary", "generate")
    client = ancestors(server, spans)[0]  # the attempt
    assert server.name == client.name == "harag.v1.GeneratorService/StreamGenerate"
    assert (
        client.attributes["rpc.grpc.status_code"] == server.attributes["rpc.grpc.status_code"] == 0
    )
    assert [s.name for s in spans if s.parent_id == server.span_id] == ["compose answer"]


async def test_a_breaker_opening_is_an_event_on_the_query_that_opened_it(
    traced_mesh, viewer: TraceViewer
) -> None:
    primary = "embedder-primary"
    replies: list[gateway_pb2.QueryResponse] = []
    await traced_mesh.set_fault(primary, fault_injection_pb2.Fault(down=True))
    try:
        for _ in range(40):  # 10 failures (the breaker's minimum calls) open it
            reply = await query(traced_mesh)
            replies.append(reply)
            if reply.stages[0].attempts[0].outcome == "BREAKER_OPEN":
                break
    finally:
        await traced_mesh.clear_faults(primary)
        async with breaker_forced_open(traced_mesh, primary):
            pass  # leaves the breaker reset (CLOSED) for the tests after this one
    assert replies[-1].stages[0].attempts[0].outcome == "BREAKER_OPEN", "the breaker never opened"
    opener = replies[-2]  # its failed attempt was the one that tipped the failure rate

    def opened(spans: list[SpanRecord]) -> bool:
        return any(e.name == "harag.breaker.transition" for s in spans for e in s.events)

    spans = await wait_for_trace(viewer.store, opener.trace_id, opened)
    (carrier,) = [s for s in spans if s.events]
    assert (carrier.kind, carrier.name, carrier.parent_id) == ("SERVER", QUERY, "")
    (event,) = carrier.events
    assert event.attributes == {
        "harag.upstream": primary,
        "harag.breaker.from": "CLOSED",
        "harag.breaker.to": "OPEN",
        "harag.breaker.reason": event.attributes["harag.breaker.reason"],
    }
    assert event.attributes["harag.breaker.reason"]
    assert carrier.start_ns <= event.time_ns <= carrier.end_ns
    failed = only(attempt_spans(spans, primary), f"{primary} attempt")
    assert failed.attributes["harag.outcome"] == "UNAVAILABLE"
    assert failed.attributes["harag.breaker.state"] == "CLOSED"
