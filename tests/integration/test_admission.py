"""Admission control on a real gateway process: shedding queued queries at the door.

Whether a loaded gateway *should* shed depends on this machine's speed, so that is the
benchmark's business (bench/scenarios/overload.py). Here a gateway is configured with a
queue-delay target no probe can meet, so any sustained load makes it shed, and the tests
check what callers and operators see when it does.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import free_port
from telemetry.support import scrape, value

from gateway.admission import PROBE_HEADER
from harag.errors import error_from_rpc
from harag.v1 import gateway_pb2

UNMEETABLE = {
    "HARAG_ADMISSION_QUEUE_TARGET_S": "0.000001",
    "HARAG_SHED_RETRY_AFTER_S": "0.3",
    "HARAG_CACHE_TTL_S": "0",
    "HARAG_COALESCE_ENABLED": "false",
}


async def test_queued_queries_are_shed_with_retry_info_and_counted(clean_faults, extra_gateway):
    port = free_port()
    async with extra_gateway(**UNMEETABLE, HARAG_METRICS_PORT=str(port)) as gw:
        codes: dict[str, int] = {}
        errors: list[grpc.aio.AioRpcError] = []
        sent = 0

        async def client(n: int) -> None:
            nonlocal sent
            end = time.monotonic() + 15
            while time.monotonic() < end and len(errors) < 50:
                sent += 1
                try:
                    reply = await gw.stub.Query(
                        gateway_pb2.QueryRequest(query=f"What is load shedding? {n}-{sent}"),
                        timeout=5,
                    )
                    assert reply.answer
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                    errors.append(exc)

        await asyncio.gather(*(client(n) for n in range(64)))
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert len(errors) >= 50, f"no shedding under sustained load: {codes}"
        for error in errors[:5]:
            decoded = error_from_rpc(error)
            assert decoded.retry_delay_s == pytest.approx(0.3)
            assert decoded.reason == "GATEWAY_OVERLOADED"
            assert "overloaded" in error.details()

        # Shedding is for queries; health and the system view stay answerable.
        health = health_pb2_grpc.HealthStub(gw.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        await gw.stub.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)

        # Operators see the sheds by reason, and requests by code; the gateway's own probes
        # (dozens a second while queries arrive) are measurements and are not counted.
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert (
            value(samples, "harag_gateway_shed_total", reason="queue_delay")
            == codes["RESOURCE_EXHAUSTED"]
        )
        requests = value(samples, "harag_gateway_requests_total", method="Query")
        assert requests == sent, (requests, sent, codes)


async def test_probe_header_without_the_secret_token_is_an_ordinary_query(
    clean_faults, extra_gateway
):
    async with extra_gateway(HARAG_CACHE_TTL_S="0") as gw:
        reply = await gw.stub.Query(
            gateway_pb2.QueryRequest(query="What does a circuit breaker do?"),
            metadata=((PROBE_HEADER, "guessed"),),
            timeout=5,
        )
        assert reply.answer and reply.stages  # the whole pipeline ran
