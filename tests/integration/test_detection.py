"""Detection and recovery as an operator sees them (issue 12, section 1), against real
processes: one query at a time, each with a new text, as the issue measured.

The bound: a hung upstream's breaker is OPEN within 5 of its calls or 5 s, whichever comes
later, and GetSystemHealth says DEGRADED (with the reason) from the first slow call, while
the breaker is still CLOSED (the fake-clock tests pin down the in-flight detail exactly).
"""

from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf import duration_pb2
from telemetry.support import metrics_address, scrape, value
from waiting import wait_until

from harag.v1 import admin_pb2, admin_pb2_grpc, fault_injection_pb2, gateway_pb2
from harag_cli.meshctl import admin_address

# Every query is a fresh one. Hedging is off, as on the shared mesh, unless a test turns it
# on (a hung primary under hedging: test_resilience.py's hedging test).
FRESH = {"HARAG_CACHE_TTL_S": "0", "HARAG_STALE_TTL_S": "0", "HARAG_COALESCE_ENABLED": "false"}
LONG_OPEN = {"HARAG_BREAKER_WAIT_IN_OPEN_S": "30", "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "60"}
BOUND_CALLS = 5
SLOW_REASONS = {"slow_call_in_flight", "slow_call_rate"}
BOUND_S = 5.0


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(value * 1e9))
    return out


def stage(reply: gateway_pb2.QueryResponse, which: int) -> gateway_pb2.StageReport:
    return next(s for s in reply.stages if s.stage == which)


async def breaker_state(gateway: str, name: str) -> str:
    async with grpc.aio.insecure_channel(admin_address(gateway)) as channel:
        reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=5
        )
    status = next(b.breaker for b in reply.breakers if b.upstream == name)
    return gateway_pb2.CircuitState.Name(status.state).removeprefix("CIRCUIT_STATE_")


async def health(gw) -> gateway_pb2.GetSystemHealthResponse:  # type: ignore[no-untyped-def]
    return await gw.stub.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)


def upstream(reply: gateway_pb2.GetSystemHealthResponse, name: str) -> gateway_pb2.UpstreamStatus:
    return next(u for u in reply.upstreams if u.name == name)


async def hung_until_open(gw, mesh, name: str, which: int, deadline_s: float) -> None:  # type: ignore[no-untyped-def]
    """Hangs `name`, then sends one query at a time: the status is DEGRADED with the reason
    from the very first slow call, and the breaker opens within the bound."""
    await mesh.set_fault(name, fault_injection_pb2.Fault(hang=True))
    started = time.monotonic()
    first = asyncio.ensure_future(
        gw.stub.Query(gateway_pb2.QueryRequest(query=f"{name} hangs: 0"), timeout=deadline_s)
    )

    async def degraded_by_slow_call() -> gateway_pb2.UpstreamStatus | None:
        reply = await health(gw)
        status = upstream(reply, name)
        reasons = {r.reason for r in status.degraded_reasons}
        if reply.status == gateway_pb2.SYSTEM_STATUS_DEGRADED and reasons & SLOW_REASONS:
            return status
        return None

    # Seen while the first call waits (slow_call_in_flight) or, on a busy machine, just
    # after it ended (slow_call_rate): either way from the first slow call, before the
    # breaker decided anything.
    status = await wait_until(
        degraded_by_slow_call, what="DEGRADED on the first slow call", timeout_s=deadline_s
    )
    assert status.breaker.state == gateway_pb2.CIRCUIT_STATE_CLOSED
    if "slow_call_in_flight" in {r.reason for r in status.degraded_reasons}:
        threshold = status.slow_call_threshold.ToTimedelta().total_seconds()
        assert status.oldest_in_flight.ToTimedelta().total_seconds() > threshold
    replies = [await first]
    while stage(replies[-1], which).attempts[0].outcome != "BREAKER_OPEN":
        assert len(replies) <= 10, [stage(r, which).attempts[0].outcome for r in replies]
        text = f"{name} hangs: {len(replies)}"
        replies.append(
            await gw.stub.Query(gateway_pb2.QueryRequest(query=text), timeout=deadline_s)
        )
    took = time.monotonic() - started
    paid = [r for r in replies if stage(r, which).attempts[0].outcome != "BREAKER_OPEN"]
    # Every query was answered, by the fallback, and only the first few met the hang.
    assert all(not stage(r, which).served_by.endswith("primary") for r in replies)
    assert len(paid) <= BOUND_CALLS, [stage(r, which).attempts[0].outcome for r in paid]
    assert took <= max(BOUND_S, 1.0 + len(paid) * deadline_s), took
    assert stage(paid[-1], which).attempts[0].outcome == "HUNG"  # gave up when it opened
    assert await breaker_state(gw.address, name) == "OPEN"
    status = upstream(await health(gw), name)
    assert {"breaker", "slow_call_rate"} <= {r.reason for r in status.degraded_reasons}
    samples = scrape(metrics_address(mesh.logs.json_of("gateway-extra")))
    rate = value(samples, "harag_gateway_upstream_recent_slow_call_rate_percent", upstream=name)
    assert rate == status.recent_slow_call_rate > 0


async def test_a_hung_embedder_opens_within_the_bound_and_degrades_status_at_once(
    clean_faults, extra_gateway
):
    async with extra_gateway(**FRESH, **LONG_OPEN) as gw:
        await hung_until_open(gw, clean_faults, "embedder-primary", gateway_pb2.STAGE_EMBED, 5.0)


async def test_a_hung_generator_opens_within_the_bound_and_degrades_status_at_once(
    clean_faults, extra_gateway
):
    async with extra_gateway(**FRESH, **LONG_OPEN) as gw:
        await hung_until_open(
            gw, clean_faults, "generator-primary", gateway_pb2.STAGE_GENERATE, 2.0
        )


async def test_hedge_races_lost_show_in_status_and_metrics(clean_faults, extra_gateway):
    """A primary that keeps losing hedge races to its fallback degrades the status (callers
    wait its hedge delay), though its breaker has nothing against it."""
    mesh = clean_faults
    name = "embedder-primary"
    hedging = {"HARAG_HEDGE_ENABLED": "true", "HARAG_HEDGE_DELAY_S": "0.03"}
    async with extra_gateway(**FRESH, **hedging) as gw:
        await mesh.set_fault(
            name, fault_injection_pb2.Fault(latency=seconds(0.3), methods=["Embed"])
        )
        for i in range(6):
            await gw.stub.Query(gateway_pb2.QueryRequest(query=f"race {i}"), timeout=5)
        reply = await health(gw)
        primary, fallback = upstream(reply, name), upstream(reply, "embedder-fallback")
        assert primary.hedges_lost >= 5 and primary.hedges_won == 0
        assert fallback.hedges_won == primary.hedges_lost
        assert "hedges_lost" in {r.reason for r in primary.degraded_reasons}
        assert reply.status == gateway_pb2.SYSTEM_STATUS_DEGRADED
        assert primary.breaker.state == gateway_pb2.CIRCUIT_STATE_CLOSED
        samples = scrape(metrics_address(mesh.logs.json_of("gateway-extra")))
        races = "harag_gateway_hedge_races_total"
        assert value(samples, races, upstream=name, result="lost") == primary.hedges_lost
        assert value(samples, races, upstream="embedder-fallback", result="won") == (
            fallback.hedges_won
        )


async def test_a_primary_slowed_inside_the_slow_call_threshold_is_not_opened(
    clean_faults, extra_gateway
):
    """Latency injection well under the embed threshold (0.5 s): slower answers, the
    primary's, and no breaker decision against it over more than minimum_calls."""
    mesh = clean_faults
    async with extra_gateway(**FRESH, HARAG_HEDGE_ENABLED="false") as gw:
        await mesh.set_fault(
            "embedder-primary", fault_injection_pb2.Fault(latency=seconds(0.25), methods=["Embed"])
        )
        for i in range(12):
            reply = await gw.stub.Query(
                gateway_pb2.QueryRequest(query=f"slow but fine {i}"), timeout=5
            )
            embed = stage(reply, gateway_pb2.STAGE_EMBED)
            assert embed.served_by == "embedder-primary" and embed.latency_ms >= 250
        assert await breaker_state(gw.address, "embedder-primary") == "CLOSED"
        status = upstream(await health(gw), "embedder-primary")
        assert status.recent_slow_call_rate == 0.0
        assert "slow_call_rate" not in {r.reason for r in status.degraded_reasons}


async def test_a_restarted_upstream_closes_its_breaker_within_a_second_of_serving(
    clean_faults, extra_gateway
):
    mesh = clean_faults
    name = "embedder-primary"
    # A small window, so the breaker opens before the supervisor has the embedder back.
    quick_to_open = {"HARAG_BREAKER_MINIMUM_CALLS": "3", "HARAG_BREAKER_WINDOW_SIZE": "5"}
    async with extra_gateway(**FRESH, **LONG_OPEN, **quick_to_open) as gw:
        await gw.stub.Query(gateway_pb2.QueryRequest(query="before the kill"), timeout=5)
        killed = mesh.supervisor.procs[name]
        mesh.supervisor.kill(name)
        await killed.wait()
        i = 0

        async def opened() -> bool:
            nonlocal i
            i += 1
            await gw.stub.Query(gateway_pb2.QueryRequest(query=f"while down {i}"), timeout=5)
            return await breaker_state(gw.address, name) == "OPEN"

        await wait_until(opened, what="the breaker opens while the embedder is down")

        async def serving() -> bool:
            return upstream(await health(gw), name).health == (
                gateway_pb2.UPSTREAM_HEALTH_STATUS_SERVING
            )

        # The open wait is 30 s: only the SERVING report can close it this soon.
        await wait_until(
            serving, what="the restarted embedder SERVING", timeout_s=60, interval_s=0.01
        )
        seen_serving = time.monotonic()

        async def closed() -> bool:
            return await breaker_state(gw.address, name) == "CLOSED"

        await wait_until(closed, what="the breaker closed", timeout_s=5, interval_s=0.01)
        assert time.monotonic() - seen_serving < 1.0
