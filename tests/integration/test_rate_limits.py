"""Rate limits across real gateway processes sharing one real redis-server.

Until API keys land (h16a) every call is ANONYMOUS, so these tests see one client; that
another client is unaffected is tested with two identities against a real Redis in
test_redis_rate_limit.py (an identity is the only thing that tells clients apart, and no
header may stand in for it).
"""

from __future__ import annotations

import statistics
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from processes import free_port
from redis_support import RedisServer
from telemetry.support import scrape, value
from waiting import wait_until

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, gateway_pb2

BURST = 6


def limited_gateway_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "HARAG_REDIS_URL": redis.url,
        # A loaded 2-core machine: generous enough that Redis itself never times out here.
        "HARAG_REDIS_SOCKET_TIMEOUT_MS": "250",
        "HARAG_RATE_LIMIT_QUERIES_PER_S": "0.01",  # no allowance comes back during a test
        "HARAG_RATE_LIMIT_QUERY_BURST": str(BURST),
        "HARAG_RATE_LIMIT_REPLICAS": "2",
        "HARAG_CACHE_TTL_S": "0",
        "HARAG_ADMISSION_QUEUE_TARGET_S": "0",
        **extra,
    }


async def query(stub, text: str) -> str:
    """ "OK", or the error's code name; checks the details of every rate-limit refusal."""
    try:
        reply = await stub.Query(gateway_pb2.QueryRequest(query=text), timeout=10)
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            check_refusal(exc)
        return exc.code().name
    assert reply.answer
    return "OK"


def check_refusal(exc: grpc.aio.AioRpcError) -> None:
    error = error_from_rpc(exc)
    assert error.reason == "RATE_LIMITED"
    assert error.retry_delay_s is not None and 0 < error.retry_delay_s <= BURST / 0.01
    assert error.status is not None
    quota = [d for d in error.status.details if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
    assert len(quota) == 1
    failure = error_details_pb2.QuotaFailure()
    quota[0].Unpack(failure)
    assert failure.violations[0].subject == "client:anonymous"
    assert "0.01 queries/s, burst 6" in failure.violations[0].description


async def test_two_gateways_on_one_redis_enforce_one_limit(
    clean_faults, extra_gateway, redis_server
):
    ports = free_port(), free_port()
    env = limited_gateway_env(redis_server)
    async with (
        extra_gateway(**env, HARAG_METRICS_PORT=str(ports[0])) as a,
        extra_gateway(**env, HARAG_METRICS_PORT=str(ports[1])) as b,
    ):
        k = 4
        outcomes = [
            await query((a, b)[n % 2].stub, f"What is a circuit breaker? {n}")
            for n in range(BURST + k)
        ]
        assert outcomes == ["OK"] * BURST + ["RESOURCE_EXHAUSTED"] * k
        samples = [scrape(f"http://127.0.0.1:{port}/metrics") for port in ports]
        decisions = "harag_gateway_rate_limit_decisions_total"
        assert sum(value(s, decisions, source="redis") for s in samples) == BURST + k
        assert sum(value(s, decisions, source="local") for s in samples) == 0
        limited = "harag_gateway_rate_limit_limited_total"
        assert sum(value(s, limited, client="anonymous", kind="query") for s in samples) == k
        # Refusals are not the upstreams' failures: no breaker saw a thing.
        health = await a.stub.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
        assert all(u.breaker.state == gateway_pb2.CIRCUIT_STATE_CLOSED for u in health.upstreams)


async def test_with_redis_killed_the_local_limit_holds_and_queries_succeed(
    clean_faults, extra_gateway, redis_server
):
    port = free_port()
    env = limited_gateway_env(redis_server)
    async with (
        extra_gateway(**env, HARAG_METRICS_PORT=str(port)) as a,
        extra_gateway(**env) as b,
    ):
        assert await query(a.stub, "What is hedging?") == "OK"  # one from Redis's allowance
        redis_server.kill()
        # Each replica alone: the burst divided by rate_limit_replicas (6 / 2), counted afresh.
        share = BURST // 2
        for gateway in (a, b):
            outcomes = [
                await query(gateway.stub, f"What is a fallback chain? {n}")
                for n in range(share + 2)
            ]
            assert outcomes == ["OK"] * share + ["RESOURCE_EXHAUSTED"] * 2
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "harag_gateway_rate_limit_decisions_total", source="local") == 5
        assert value(samples, "harag_gateway_redis_failures_total") >= 1
        # The breaker around Redis opens once half its recent calls failed; the link's other
        # users (the shared-breaker poll, the outbox) filled its window with successes before
        # the kill, and their failing calls since then tip it: wait for that, not a fixed count.

        def redis_breaker_open() -> bool:
            metrics = scrape(f"http://127.0.0.1:{port}/metrics")
            return value(metrics, "harag_gateway_redis_state", state="CLOSED") == 0

        await wait_until(redis_breaker_open, what="the breaker around Redis open", timeout_s=15)


async def test_with_redis_frozen_queries_stay_within_the_redis_timeout(
    clean_faults, extra_gateway, redis_server
):
    env = limited_gateway_env(
        redis_server,
        HARAG_RATE_LIMIT_QUERIES_PER_S="1000",
        HARAG_RATE_LIMIT_QUERY_BURST="1000",
        HARAG_REDIS_SOCKET_TIMEOUT_MS="50",
        HARAG_REDIS_CONNECT_TIMEOUT_MS="50",
    )
    timeout_s = 0.1  # connect + socket: the most one Redis call may take

    async def timed(n: int) -> float:
        started = time.perf_counter()
        assert await query(gw.stub, f"What does the gateway cache? {n}") == "OK"
        return time.perf_counter() - started

    async with extra_gateway(**env) as gw:
        before = [await timed(n) for n in range(15)]
        redis_server.freeze()
        try:
            during = [await timed(100 + n) for n in range(30)]
        finally:
            redis_server.thaw()
    # Each query waits on Redis at most once per call, and only until the breaker opens.
    assert max(during) <= max(before) + timeout_s + 0.25, (before, during)
    assert statistics.median(during) <= statistics.median(before) + timeout_s, (before, during)


@pytest.mark.parametrize("method", ["Ingest", "DeleteDocuments"])
async def test_documents_count_against_the_ingest_limit(
    clean_faults, extra_gateway, redis_server, method
):
    env = limited_gateway_env(redis_server, HARAG_RATE_LIMIT_DOCUMENTS_PER_MINUTE="3")
    async with extra_gateway(**env) as gw:
        if method == "Ingest":
            docs = [common_pb2.Document(id=f"rl-{n}", text=f"rate limit {n}") for n in range(4)]
            request = gateway_pb2.IngestRequest(documents=docs)
            small = gateway_pb2.IngestRequest(documents=docs[:2])
        else:
            request = gateway_pb2.DeleteDocumentsRequest(ids=[f"rl-{n}" for n in range(4)])
            small = gateway_pb2.DeleteDocumentsRequest(ids=["rl-0", "rl-1"])
        call = getattr(gw.stub, method)
        with pytest.raises(grpc.aio.AioRpcError) as too_large:
            await call(request, timeout=30)  # 4 documents, 3 a minute: never
        assert too_large.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_from_rpc(too_large.value).retry_delay_s is None
        assert error_from_rpc(too_large.value).reason == "RATE_LIMIT_CALL_TOO_LARGE"
        await call(small, timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as over:
            await call(small, timeout=30)  # 2 + 2 > 3
        assert over.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_from_rpc(over.value).retry_delay_s == pytest.approx(20.0, abs=0.5)
