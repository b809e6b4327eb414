"""Metrics are scraped over HTTP, and counters move by exactly the traffic we sent."""

from __future__ import annotations

import grpc
import pytest
from waiting import wait_until

from harag.v1 import (
    fault_injection_pb2,
    gateway_pb2,
    retriever_pb2,
    retriever_pb2_grpc,
)
from telemetry.support import (
    breaker_forced_open,
    metrics_address,
    scrape,
    unique_question,
    value,
)

DEGRADED_QUERIES = 3


async def test_gateway_and_component_counters_follow_known_traffic(traced_mesh) -> None:
    gateway_url = metrics_address(traced_mesh.logs.json_of("gateway"))
    fallback_url = metrics_address(traced_mesh.logs.json_of("embedder-fallback"))
    assert gateway_url.endswith(f":{traced_mesh.specs['gateway'].port + 1000}/metrics")
    gateway_before, fallback_before = scrape(gateway_url), scrape(fallback_url)

    async with breaker_forced_open(traced_mesh, "embedder-primary"):
        for _ in range(DEGRADED_QUERIES):
            reply = await traced_mesh.gateway.Query(
                gateway_pb2.QueryRequest(query=unique_question()), timeout=10
            )
            assert reply.degraded and reply.stages[0].served_by == "embedder-fallback"
        during = scrape(gateway_url)
    with pytest.raises(grpc.aio.AioRpcError):
        await traced_mesh.gateway.Query(gateway_pb2.QueryRequest(query=" "), timeout=10)

    # The server counts a call once its status is sent, which the caller may see first.
    def refused_counted() -> dict | None:
        samples = scrape(gateway_url)
        key = ("harag_gateway_requests_total", {"method": "Query", "code": "INVALID_ARGUMENT"})
        before = value(gateway_before, key[0], **key[1])
        return samples if value(samples, key[0], **key[1]) > before else None

    after = await wait_until(refused_counted, what="the refused query counted")
    fallback_after = scrape(fallback_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(gateway_before, name, **labels)

    # Requests by method and status, and their latency histogram.
    assert delta("harag_gateway_requests_total", method="Query", code="OK") == DEGRADED_QUERIES
    assert delta("harag_gateway_requests_total", method="Query", code="INVALID_ARGUMENT") == 1
    assert delta("harag_gateway_request_duration_seconds_count", method="Query") == 4
    # Attempts by upstream and outcome: the breaker rejected, the fallback served.
    primary, fallback = "embedder-primary", "embedder-fallback"
    assert delta("harag_gateway_attempts_total", upstream=primary, outcome="BREAKER_OPEN") == 3
    assert delta("harag_gateway_attempts_total", upstream=fallback, outcome="OK") == 3
    assert delta("harag_gateway_attempt_duration_seconds_count", upstream=fallback) == 3
    # Fallbacks taken, by component and tier, and stage latency by what served.
    assert delta("harag_gateway_fallbacks_total", component="embedder", tier="1") == 3
    stage_count = "harag_gateway_stage_duration_seconds_count"
    assert delta(stage_count, stage="embed", served_by=fallback) == 3
    # Breaker state gauge while forced open, and the transitions counted.
    assert value(during, "harag_gateway_breaker_state", upstream=primary, state="FORCED_OPEN") == 1
    assert value(during, "harag_gateway_breaker_state", upstream=primary, state="CLOSED") == 0
    assert value(after, "harag_gateway_breaker_state", upstream=primary, state="CLOSED") == 1
    assert delta("harag_gateway_breaker_transitions_total", upstream=primary, to="FORCED_OPEN") == 1
    # Every rejected call is counted, whatever the state that rejected it.
    assert delta("harag_gateway_breaker_rejected_calls_total", upstream=primary) == 3

    # The component counts the calls it served, by method and status.
    served = "rpc_server_call_duration_seconds_count"
    labels = {"rpc_method": "Embed", "rpc_grpc_status_code": "0"}
    assert value(fallback_after, served, **labels) - value(fallback_before, served, **labels) == 3


async def test_fault_injection_activity_is_measured(traced_mesh) -> None:
    name = "retriever-fallback"
    url = metrics_address(traced_mesh.logs.json_of(name))
    before = scrape(url)
    assert value(before, "harag_faults_active", kind="error") == 0
    await traced_mesh.set_fault(name, fault_injection_pb2.Fault(error_rate=1.0))
    try:
        async with grpc.aio.insecure_channel(traced_mesh.address(name)) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await retriever_pb2_grpc.RetrieverServiceStub(channel).Search(
                    retriever_pb2.SearchRequest(query_text="breaker", top_k=2), timeout=5
                )
        during = scrape(url)
    finally:
        await traced_mesh.clear_faults(name)
    assert value(during, "harag_faults_active", kind="error") == 1
    assert value(during, "harag_faults_active", kind="down") == 0
    injected = value(during, "harag_faults_injected_total") - value(
        before, "harag_faults_injected_total"
    )
    assert injected == 1
    assert value(scrape(url), "harag_faults_active", kind="error") == 0
