"""The resilience layer against real processes and injected faults (issue 3's list).

Each test runs its own gateway process over the shared mesh's components, configured so
the behaviour under test is observable; upstream call counts come from the components'
own fault injection counters (every call that reaches a 100%-failing upstream is counted).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf import duration_pb2
from telemetry.support import metrics_address, scrape, value
from waiting import wait_until

from harag.errors import error_from_rpc
from harag.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    fault_injection_pb2,
    fault_injection_pb2_grpc,
    gateway_pb2,
)
from harag_cli import render
from harag_cli.meshctl import admin_address

INTERNAL = grpc.StatusCode.INTERNAL.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
# Small, fast breakers so trips and recoveries happen within a test.
FAST_BREAKER = {
    "HARAG_BREAKER_MINIMUM_CALLS": "5",
    "HARAG_BREAKER_WINDOW_SIZE": "10",
    "HARAG_BREAKER_WAIT_IN_OPEN_S": "0.5",
    "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "5",
    "HARAG_HEDGE_ENABLED": "false",
    "HARAG_CACHE_TTL_S": "0",
    "HARAG_STALE_TTL_S": "0",
}


# For tests that fire a burst at once to exercise something else: on this shared box such a
# burst can queue past admission control's target, and a shed would change what they count.
# Admission control has its own tests (test_admission.py, tests/unit/test_admission_control).
NO_ADMISSION = {"HARAG_ADMISSION_QUEUE_TARGET_S": "0"}


LONG_OPEN = {
    **FAST_BREAKER,
    "HARAG_BREAKER_WAIT_IN_OPEN_S": "30",
    "HARAG_BREAKER_MAX_WAIT_IN_OPEN_S": "60",
}


def ms(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def stage(reply, which):
    return next(s for s in reply.stages if s.stage == which)


async def injected(mesh, name: str) -> int:
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        reply = await fault_injection_pb2_grpc.FaultInjectionServiceStub(channel).GetFaults(
            fault_injection_pb2.GetFaultsRequest(), timeout=5
        )
    return reply.injected_total


async def breakers(gateway: str) -> dict[str, gateway_pb2.BreakerStatus]:
    async with grpc.aio.insecure_channel(admin_address(gateway)) as channel:
        reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=5
        )
    return {b.upstream: b.breaker for b in reply.breakers}


def state(status: gateway_pb2.BreakerStatus) -> str:
    return gateway_pb2.CircuitState.Name(status.state).removeprefix("CIRCUIT_STATE_")


async def probe_due(address: str, name: str) -> bool:
    """The breaker's open wait has passed: its next call will be a half-open probe."""
    status = (await breakers(address))[name]
    due = status.next_probe_time.ToNanoseconds()
    return state(status) == "OPEN" and 0 < due <= time.time_ns()


async def query(stub, text: str, deadline_s: float = 5.0) -> gateway_pb2.QueryResponse:
    return await stub.Query(gateway_pb2.QueryRequest(query=text), timeout=deadline_s)


async def trip(gw, mesh, name: str, calls: int = 8) -> None:
    await mesh.set_fault(name, fault_injection_pb2.Fault(error_rate=1.0, error_code=INTERNAL))
    for i in range(calls):
        await query(gw.stub, f"trip question number {i}")
    assert state((await breakers(gw.address))[name]) == "OPEN"


async def test_open_breaker_makes_zero_upstream_calls_and_fails_fast(clean_faults, extra_gateway):
    mesh = clean_faults
    async with extra_gateway(**LONG_OPEN) as gw:
        await trip(gw, mesh, "embedder-primary")
        before = await injected(mesh, "embedder-primary")
        for i in range(20):
            reply = await query(gw.stub, f"while open {i}")
            first = stage(reply, gateway_pb2.STAGE_EMBED).attempts[0]
            assert first.outcome == "BREAKER_OPEN"
            assert first.breaker_state == gateway_pb2.CIRCUIT_STATE_OPEN
            assert first.latency_ms < 1.0, "an open breaker rejects without waiting"
            assert stage(reply, gateway_pb2.STAGE_EMBED).served_by == "embedder-fallback"
        assert await injected(mesh, "embedder-primary") == before


async def test_half_open_admits_bounded_probes_under_50_concurrent(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {
        **FAST_BREAKER,
        "HARAG_BREAKER_PERMITTED_CALLS_IN_HALF_OPEN": "3",
        "HARAG_BREAKER_WAIT_JITTER": "0",
        "HARAG_MAX_INFLIGHT_REQUESTS": "500",
        **NO_ADMISSION,
    }
    async with extra_gateway(**env) as gw:
        await trip(gw, mesh, "embedder-primary")
        # Probes that reach the upstream are slow and fail, so they stay in flight together.
        await mesh.set_fault(
            "embedder-primary",
            fault_injection_pb2.Fault(error_rate=1.0, error_code=INTERNAL, latency=ms(0.3)),
        )
        await wait_until(lambda: probe_due(gw.address, "embedder-primary"), what="probe due")
        before = await injected(mesh, "embedder-primary")
        replies = await asyncio.gather(*(query(gw.stub, f"probe {i}") for i in range(50)))
        reached = await injected(mesh, "embedder-primary") - before
        assert 1 <= reached <= 3, reached
        outcomes = [stage(r, gateway_pb2.STAGE_EMBED).attempts[0].outcome for r in replies]
        assert outcomes.count("BREAKER_OPEN") >= 47
        assert all(
            stage(r, gateway_pb2.STAGE_EMBED).served_by == "embedder-fallback" for r in replies
        )


async def test_retry_amplification_stays_within_budget(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {
        **FAST_BREAKER,
        "HARAG_BREAKER_ENABLED": "false",
        "HARAG_RETRY_MAX_ATTEMPTS": "3",
        "HARAG_RETRY_INITIAL_BACKOFF_S": "0.001",
        "HARAG_RETRY_MAX_BACKOFF_S": "0.002",
    }
    async with extra_gateway(**env) as gw:
        await mesh.set_fault(
            "embedder-primary", fault_injection_pb2.Fault(error_rate=1.0, error_code=UNAVAILABLE)
        )
        before = await injected(mesh, "embedder-primary")
        requests = 300
        for i in range(requests):
            await query(gw.stub, f"amplification {i}")
        calls = await injected(mesh, "embedder-primary") - before
        # Budget: 20% of requests plus a floor of 3/s over a 10 s window (30).
        assert requests < calls <= requests * 1.2 + 30, calls


async def test_hung_primary_answers_before_500ms_deadline_then_at_fallback_speed(
    clean_faults, extra_gateway
):
    mesh = clean_faults
    async with extra_gateway(**LONG_OPEN) as gw:
        await mesh.set_fault("embedder-primary", fault_injection_pb2.Fault(hang=True))
        latencies, served, first_outcomes = [], [], []
        for i in range(20):
            started = time.perf_counter()
            reply = await query(gw.stub, f"hung primary {i}", deadline_s=0.5)
            latencies.append(time.perf_counter() - started)
            embed = stage(reply, gateway_pb2.STAGE_EMBED)
            served.append(embed.served_by)
            first_outcomes.append(embed.attempts[0].outcome)
        assert max(latencies) < 0.5
        assert set(served) == {"embedder-fallback"}
        assert first_outcomes[0] == "DEADLINE_EXCEEDED"
        assert latencies[0] > 0.2, "the first attempts wait for the hung primary"
        # Once the breaker opened (5 calls), queries no longer wait for the primary: they
        # cost fallback time (milliseconds), far below the 0.2 s+ a hung attempt costs.
        assert set(first_outcomes[-10:]) == {"BREAKER_OPEN"}
        assert max(latencies[-10:]) < 0.15, latencies[-10:]
        assert state((await breakers(gw.address))["embedder-primary"]) == "OPEN"


async def test_hedging_cuts_the_tail_of_a_slow_10_percent(clean_faults, extra_gateway):
    mesh = clean_faults
    slow = fault_injection_pb2.Fault(latency=ms(0.4), latency_rate=0.1, methods=["Embed"])
    env = {"HARAG_CACHE_TTL_S": "0", "HARAG_HEDGE_DELAY_S": "0.03"}

    async def tail(gw) -> tuple[float, int]:
        latencies, hedge_wins = [], 0
        for i in range(60):
            started = time.perf_counter()
            reply = await query(gw.stub, f"hedge tail {i}")
            latencies.append(time.perf_counter() - started)
            embed = stage(reply, gateway_pb2.STAGE_EMBED)
            hedge_wins += any(a.hedge and a.outcome == "OK" for a in embed.attempts)
        latencies.sort()
        return latencies[int(len(latencies) * 0.97)], hedge_wins

    await mesh.set_fault("embedder-primary", slow)
    async with extra_gateway(**env, HARAG_HEDGE_ENABLED="false") as plain:
        plain_p97, plain_wins = await tail(plain)
    async with extra_gateway(**env, HARAG_HEDGE_ENABLED="true") as hedging:
        hedged_p97, hedged_wins = await tail(hedging)
    assert plain_wins == 0 and hedged_wins >= 1
    assert plain_p97 >= 0.4, plain_p97
    assert hedged_p97 < plain_p97 / 2, (hedged_p97, plain_p97)


async def test_full_bulkhead_sheds_to_next_tier(clean_faults, extra_gateway):
    mesh = clean_faults
    async with extra_gateway(HARAG_BULKHEAD_MAX_CONCURRENT="2", HARAG_CACHE_TTL_S="0") as gw:
        await mesh.set_fault("generator-primary", fault_injection_pb2.Fault(latency=ms(0.3)))
        replies = await asyncio.gather(*(query(gw.stub, f"bulkhead {i}") for i in range(10)))
        generate = [stage(r, gateway_pb2.STAGE_GENERATE) for r in replies]
        assert sum(g.served_by == "generator-primary" for g in generate) == 2
        shed = [g for g in generate if g.attempts[0].outcome == "BULKHEAD_FULL"]
        assert len(shed) == 8, [(g.served_by, [a.outcome for a in g.attempts]) for g in generate]
        for g in shed:  # straight on to the next tier, never queued behind the primary
            assert g.attempts[0].latency_ms < 5 and g.degraded
            assert g.attempts[1].upstream == "generator-fallback"
        assert any(g.served_by == "generator-fallback" for g in shed)


async def test_inbound_overload_is_shed_with_retry_info(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {
        "HARAG_MAX_INFLIGHT_REQUESTS": "3",
        "HARAG_CACHE_TTL_S": "0",
        "HARAG_COALESCE_ENABLED": "false",
        **NO_ADMISSION,
    }
    async with extra_gateway(**env) as gw:
        await mesh.set_fault("generator-primary", fault_injection_pb2.Fault(latency=ms(0.3)))
        results = await asyncio.gather(
            *(query(gw.stub, f"overload {i}") for i in range(12)), return_exceptions=True
        )
        shed = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(shed) == 9 and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in shed)
        retry_delay_s = error_from_rpc(shed[0]).retry_delay_s
        assert retry_delay_s is not None and retry_delay_s > 0


async def test_identical_concurrent_queries_share_one_run(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {
        "HARAG_CACHE_TTL_S": "0",
        "HARAG_RETRY_MAX_ATTEMPTS": "1",
        "HARAG_COALESCE_ENABLED": "true",
        **NO_ADMISSION,
    }
    async with extra_gateway(**env) as gw:
        # Every generator-primary call is counted (and fails over), and takes long enough
        # for all 20 queries to overlap.
        await mesh.set_fault(
            "generator-primary",
            fault_injection_pb2.Fault(error_rate=1.0, error_code=INTERNAL, latency=ms(0.3)),
        )
        before = await injected(mesh, "generator-primary")
        replies = await asyncio.gather(
            *(query(gw.stub, "  What is a Bulkhead? ") for _ in range(20))
        )
        assert await injected(mesh, "generator-primary") - before == 1
        assert len({r.answer for r in replies}) == 1
        assert len({r.request_id for r in replies}) == 20


async def test_cache_hit_then_stale_if_error(clean_faults, extra_gateway):
    mesh = clean_faults
    async with extra_gateway(HARAG_CACHE_TTL_S="0.5", HARAG_STALE_TTL_S="60") as gw:
        first = await query(gw.stub, "How does load shedding protect a server?")
        again = await query(gw.stub, "how does LOAD shedding protect a server?")
        assert not first.cached and again.cached and again.answer == first.answer
        await asyncio.sleep(0.6)  # lets the fresh entry's 0.5 s TTL run out; the stale one remains
        await mesh.set_fault("generator-primary", fault_injection_pb2.Fault(down=True))
        await mesh.set_fault("generator-fallback", fault_injection_pb2.Fault(down=True))
        stale = await query(gw.stub, "How does load shedding protect a server?")
        generate = stage(stale, gateway_pb2.STAGE_GENERATE)
        assert generate.served_by == "cache" and stale.degraded
        assert stale.answer == first.answer
        assert [s.id for s in stale.sources] == [s.id for s in first.sources]
        assert not stale.HasField("retry_after")
        other = await query(gw.stub, "A question never asked before about quokkas?")
        assert stage(other, gateway_pb2.STAGE_GENERATE).served_by == "local:static-answer"


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    ],
)
async def test_caller_errors_never_trip_the_breaker(clean_faults, extra_gateway, code):
    mesh = clean_faults
    async with extra_gateway(**FAST_BREAKER) as gw:
        await mesh.set_fault(
            "embedder-primary", fault_injection_pb2.Fault(error_rate=1.0, error_code=code.value[0])
        )
        for i in range(20):
            reply = await query(gw.stub, f"caller error {i}")
            assert stage(reply, gateway_pb2.STAGE_EMBED).attempts[0].outcome == code.name
        status = (await breakers(gw.address))["embedder-primary"]
        assert state(status) == "CLOSED" and status.calls_in_window == 0


async def test_recovery_closes_breaker_and_returns_traffic_to_primary(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {**FAST_BREAKER, "HARAG_BREAKER_WAIT_JITTER": "0"}
    async with extra_gateway(**env) as gw:
        await trip(gw, mesh, "embedder-primary")
        await mesh.clear_faults("embedder-primary")
        cleared = time.monotonic()
        served = ""
        while time.monotonic() - cleared < 3.0:
            reply = await query(gw.stub, f"recovery {time.monotonic()}")
            served = stage(reply, gateway_pb2.STAGE_EMBED).served_by
            if state((await breakers(gw.address))["embedder-primary"]) == "CLOSED":
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - cleared
        assert state((await breakers(gw.address))["embedder-primary"]) == "CLOSED"
        assert took < 0.5 + 2.0, took  # open wait + a few probe round trips (loaded box)
        reply = await query(gw.stub, "after recovery")
        assert stage(reply, gateway_pb2.STAGE_EMBED).served_by == "embedder-primary"
        assert served


async def test_manual_breaker_transitions(clean_faults, extra_gateway):
    async with extra_gateway(**FAST_BREAKER) as gw:
        async with grpc.aio.insecure_channel(admin_address(gw.address)) as channel:
            admin = admin_pb2_grpc.GatewayAdminServiceStub(channel)
            forced = await admin.TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(
                    upstream="generator-primary", action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
                ),
                timeout=5,
            )
            assert forced.breaker.breaker.state == gateway_pb2.CIRCUIT_STATE_FORCED_OPEN
            reply = await query(gw.stub, "forced open")
            assert stage(reply, gateway_pb2.STAGE_GENERATE).served_by == "generator-fallback"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.TransitionBreaker(
                    admin_pb2.TransitionBreakerRequest(
                        upstream="nope", action=admin_pb2.BREAKER_ACTION_RESET
                    ),
                    timeout=5,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await admin.TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(
                    upstream="generator-primary", action=admin_pb2.BREAKER_ACTION_RESET
                ),
                timeout=5,
            )
            reply = await query(gw.stub, "reset")
            assert stage(reply, gateway_pb2.STAGE_GENERATE).served_by == "generator-primary"


async def test_deadline_too_short_for_anything_is_deadline_exceeded(mesh):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.gateway.Query(gateway_pb2.QueryRequest(query="quick?"), timeout=0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_idle_fallback_breaker_is_probed_closed_after_recovery(clean_faults, extra_gateway):
    mesh = clean_faults
    env = {
        **FAST_BREAKER,
        "HARAG_BREAKER_WAIT_JITTER": "0",
        "HARAG_BREAKER_PROBE_INTERVAL_S": "0.2",
    }
    async with extra_gateway(**env) as gw:
        # Traffic reaches embedder-fallback only while the primary is down; trip it there.
        await mesh.set_fault("embedder-primary", fault_injection_pb2.Fault(down=True))
        await trip(gw, mesh, "embedder-fallback")
        await mesh.clear_faults("embedder-primary", "embedder-fallback")
        reply = await query(gw.stub, "back on the primary")
        assert stage(reply, gateway_pb2.STAGE_EMBED).served_by == "embedder-primary"

        # No query reaches the fallback now; the prober's replayed requests close it.
        async def fallback_closed() -> bool:
            return state((await breakers(gw.address))["embedder-fallback"]) == "CLOSED"

        await wait_until(fallback_closed, what="idle fallback breaker closed", timeout_s=5.0)
        assert any(
            '"breaker probe"' in line and "embedder-fallback" in line
            for line in mesh.logs.of("gateway-extra")
        )


async def test_hung_primary_trips_once_hedges_are_no_longer_affordable(clean_faults, extra_gateway):
    """Lost hedge races are ignored by the breaker (a busy primary loses many); a hung
    primary still trips when the retry budget stops paying for hedges and its attempts
    wait past the slow-call threshold (0.2 s here: half the 0.4 s embed cap) - seen while
    they wait, three in a row - while every query is answered meanwhile."""
    mesh = clean_faults
    env = {
        **LONG_OPEN,
        "HARAG_HEDGE_ENABLED": "true",
        "HARAG_HEDGE_DELAY_S": "0.03",
        "HARAG_EMBED_TIMEOUT_S": "0.4",
        "HARAG_RETRY_BUDGET_MIN_PER_S": "0.5",
    }
    async with extra_gateway(**env) as gw:
        await mesh.set_fault("embedder-primary", fault_injection_pb2.Fault(hang=True))
        outcomes = []
        for i in range(40):
            reply = await query(gw.stub, f"hung while hedging {i}", deadline_s=2.0)
            embed = stage(reply, gateway_pb2.STAGE_EMBED)
            assert embed.served_by == "embedder-fallback"
            outcomes.append(embed.attempts[0].outcome)
            if outcomes[-1] == "BREAKER_OPEN":
                break
        assert outcomes[0] == "HEDGE_LOST", outcomes
        assert "DEADLINE_EXCEEDED" in outcomes, outcomes  # once hedges ran out
        assert outcomes[-2:] == ["HUNG", "BREAKER_OPEN"], outcomes  # gave up as it opened
        status = (await breakers(gw.address))["embedder-primary"]
        assert state(status) == "OPEN" and status.slow_call_rate == 100.0


async def test_rejections_and_retry_decisions_are_shown_in_health_and_metrics(
    clean_faults, extra_gateway
):
    """Counters the resilience layer keeps (breaker rejections, retry decisions by reason,
    budget use) reach an operator through GetSystemHealth and /metrics, with equal values."""
    mesh = clean_faults
    env = {
        **LONG_OPEN,
        "HARAG_RETRY_MAX_ATTEMPTS": "3",
        "HARAG_RETRY_INITIAL_BACKOFF_S": "0.001",
        "HARAG_RETRY_MAX_BACKOFF_S": "0.002",
    }
    async with extra_gateway(**env) as gw:
        async with grpc.aio.insecure_channel(admin_address(gw.address)) as channel:
            await admin_pb2_grpc.GatewayAdminServiceStub(channel).TransitionBreaker(
                admin_pb2.TransitionBreakerRequest(
                    upstream="generator-primary", action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
                ),
                timeout=5,
            )
        await mesh.set_fault(
            "embedder-primary", fault_injection_pb2.Fault(error_rate=1.0, error_code=UNAVAILABLE)
        )
        for i in range(3):  # each: UNAVAILABLE, retry, retry, then attempts exhausted
            reply = await query(gw.stub, f"counted retries {i}")
            assert stage(reply, gateway_pb2.STAGE_GENERATE).served_by == "generator-fallback"
        await mesh.set_fault(
            "embedder-primary", fault_injection_pb2.Fault(error_rate=1.0, error_code=INTERNAL)
        )
        await query(gw.stub, "an error that is not worth a retry")

        health = await gw.stub.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
        by_name = {u.name: u for u in health.upstreams}
        generator = by_name["generator-primary"]
        assert generator.breaker.rejected_calls == 4
        assert generator.breaker.late_results == 0
        embedder = by_name["embedder-primary"]
        decisions = {d.reason: d.count for d in embedder.retry_decisions}
        assert decisions == {"retry": 6, "not_retryable": 1, "attempts_exhausted": 3}
        assert embedder.retry_budget.spent == 6
        assert embedder.retry_budget.requests == 4
        assert embedder.retry_budget.rejected == 0
        assert embedder.retry_budget.allowance >= 30  # the floor: 3/s over 10 s
        assert not by_name["embedder-fallback"].retry_decisions, "no failure, no decision"
        shown = render.health(health).splitlines()  # what `harag health` prints
        assert any(
            line.split()[:1] + line.split()[4:6] == ["generator-primary", "FORCED_OPEN", "4"]
            for line in shown
        )
        assert any(
            line.startswith("  embedder-primary")
            and line.endswith("retry=6 not_retryable=1 attempts_exhausted=3")
            for line in shown
        )

        samples = scrape(metrics_address(mesh.logs.json_of("gateway-extra")))
        rejected = "harag_gateway_breaker_rejected_calls_total"
        assert value(samples, rejected, upstream="generator-primary") == 4
        assert value(samples, rejected, upstream="embedder-primary") == 0
        decided = "harag_gateway_retry_decisions_total"
        for reason in ("retry", "not_retryable", "attempts_exhausted", "budget_exhausted"):
            assert value(samples, decided, upstream="embedder-primary", reason=reason) == (
                decisions.get(reason, 0)
            ), reason
        budget = {"upstream": "embedder-primary"}
        assert value(samples, "harag_gateway_retry_budget_rejected_total", **budget) == 0
        assert value(samples, "harag_gateway_retry_budget_spent", **budget) == 6
        assert value(samples, "harag_gateway_breaker_late_results_total", **budget) == 0
