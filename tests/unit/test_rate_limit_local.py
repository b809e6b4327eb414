"""Rate limits without Redis: GCRA in process on a fake clock, the client's own limits over
the defaults, and the RESOURCE_EXHAUSTED a caller gets (RetryInfo, QuotaFailure)."""

from __future__ import annotations

import math

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.resilience.clock import FakeClock
from gateway.security.gcra import Limit, LocalGcra
from gateway.security.identity import ANONYMOUS, ClientIdentity, RateLimits
from gateway.security.ratelimit import CALL_TOO_LARGE, RATE_LIMITED, RateLimiter
from gateway.security.ratelimit_config import RateLimitConfig
from gateway.shared.redis_config import RedisConfig
from gateway.shared.redis_link import RedisLink

TEN_PER_S_BURST_5 = Limit(10.0, 5)


def test_a_burst_passes_then_the_rate_holds_with_the_exact_wait():
    clock = FakeClock(100.0)
    gcra = LocalGcra(clock)
    assert [gcra.take("a", TEN_PER_S_BURST_5) for _ in range(5)] == [0.0] * 5
    assert gcra.take("a", TEN_PER_S_BURST_5) == pytest.approx(0.1)
    clock.advance(0.05)
    assert gcra.take("a", TEN_PER_S_BURST_5) == pytest.approx(0.05)  # refusals cost nothing
    clock.advance(0.05)
    assert gcra.take("a", TEN_PER_S_BURST_5) == 0.0
    assert gcra.take("a", TEN_PER_S_BURST_5) == pytest.approx(0.1)
    clock.advance(10)  # idle: the whole burst is back, no more
    assert sum(gcra.take("a", TEN_PER_S_BURST_5) == 0.0 for _ in range(8)) == 5


def test_sustained_calls_at_the_rate_all_pass_and_faster_ones_do_not():
    clock = FakeClock()
    gcra = LocalGcra(clock)
    limit = Limit(3.0, 1)
    passed = 0
    for _ in range(300):  # one call every 1/3 s for 100 s
        passed += gcra.take("a", limit) == 0.0
        clock.advance(1 / 3)
    assert passed == 300
    passed_at = []
    for n in range(10):  # ten calls 0.1 s apart: 0.9 s at 3/s is room for the first + 2
        if gcra.take("b", limit) == 0.0:
            passed_at.append(n)
        clock.advance(0.1)
    assert passed_at == [0, 4, 8]


def test_subjects_are_independent_and_cost_counts_several():
    clock = FakeClock()
    gcra = LocalGcra(clock)
    limit = Limit(1.0, 10)
    assert gcra.take("a", limit, cost=7) == 0.0
    assert gcra.take("a", limit, cost=4) == pytest.approx(1.0)
    assert gcra.take("a", limit, cost=3) == 0.0
    assert gcra.take("b", limit, cost=10) == 0.0
    assert gcra.take("a", limit, cost=11) == math.inf  # larger than the burst: never


def test_idle_subjects_are_swept_when_the_table_grows():
    clock = FakeClock()
    gcra = LocalGcra(clock, max_subjects=10)
    for n in range(10):
        gcra.take(f"c{n}", Limit(1.0, 2))
    clock.advance(5)
    gcra.take("new", Limit(1.0, 2))
    assert len(gcra) == 1


def test_a_replicas_share_divides_rate_and_burst():
    assert Limit(10.0, 20).share(4) == Limit(2.5, 5)
    assert Limit(10.0, 3).share(4) == Limit(2.5, 1)  # at least one call
    assert Limit(10.0, 3).share(1) == Limit(10.0, 3)


def limiter(clock: FakeClock, **settings: object) -> RateLimiter:
    cfg = RateLimitConfig(**settings)  # type: ignore[arg-type]
    return RateLimiter(cfg, RedisLink(RedisConfig()), clock=clock)


def test_no_limit_configured_lets_everything_through():
    rl = limiter(FakeClock())
    assert rl.limit_for(ANONYMOUS, "query") is None
    assert rl.limit_for(ANONYMOUS, "ingest") is None


def test_a_keys_own_limits_override_the_defaults_field_by_field():
    rl = limiter(FakeClock(), queries_per_s=5.0, query_burst=10, documents_per_minute=600)
    assert rl.limit_for(ANONYMOUS, "query") == Limit(5.0, 10)
    assert rl.limit_for(ANONYMOUS, "ingest") == Limit(10.0, 600)
    gold = ClientIdentity("k1", "gold", limits=RateLimits(queries_per_second=50.0))
    assert rl.limit_for(gold, "query") == Limit(50.0, 10)
    tight = ClientIdentity("k2", "tight", limits=RateLimits(query_burst=2, documents_per_minute=6))
    assert rl.limit_for(tight, "query") == Limit(5.0, 2)
    assert rl.limit_for(tight, "ingest") == Limit(0.1, 6)


async def test_without_redis_every_process_enforces_the_whole_limit_per_client():
    clock = FakeClock()
    rl = limiter(clock, queries_per_s=1.0, query_burst=3, replicas=4)
    alice, bob = ClientIdentity("ka", "alice"), ClientIdentity("kb", "bob")
    decisions = [await rl.check(alice, "query") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert {d.source for d in decisions} == {"local"}
    assert decisions[3].retry_after_s == pytest.approx(1.0)
    assert (await rl.check(bob, "query")).allowed  # another client is unaffected
    clock.advance(1.0)
    assert (await rl.check(alice, "query")).allowed


def details(status: grpc.Status) -> dict[str, object]:
    proto = rpc_status.from_call(_Call(status))
    assert proto is not None
    out: dict[str, object] = {}
    for any_msg in proto.details:
        for kind in (
            error_details_pb2.RetryInfo,
            error_details_pb2.QuotaFailure,
            error_details_pb2.ErrorInfo,
        ):
            if any_msg.Is(kind.DESCRIPTOR):
                msg = kind()
                any_msg.Unpack(msg)
                out[kind.__name__] = msg
    return out


class _Call:
    """What rpc_status.from_call reads of a finished call."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple:
        return self._status.trailing_metadata


async def test_over_the_limit_is_resource_exhausted_with_retry_info_and_quota_failure():
    clock = FakeClock()
    rl = limiter(clock, queries_per_s=2.0, query_burst=1)
    acme = ClientIdentity("k-secret-id", "acme")
    assert await rl.admit(acme, "query") is None
    status = await rl.admit(acme, "query")
    assert status is not None and status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "acme" in status.details and "k-secret-id" not in status.details
    found = details(status)
    assert found["RetryInfo"].retry_delay.ToNanoseconds() == 500_000_000  # type: ignore[attr-defined]
    violation = found["QuotaFailure"].violations[0]  # type: ignore[attr-defined]
    assert violation.subject == "client:acme"
    assert "2 queries/s, burst 1" in violation.description
    assert found["ErrorInfo"].reason == RATE_LIMITED  # type: ignore[attr-defined]


async def test_one_call_larger_than_the_allowance_is_refused_without_retry_info():
    rl = limiter(FakeClock(), documents_per_minute=60)
    status = await rl.admit(ANONYMOUS, "ingest", cost=61)
    assert status is not None and status.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    found = details(status)
    assert "RetryInfo" not in found  # waiting would not help
    assert found["ErrorInfo"].reason == CALL_TOO_LARGE  # type: ignore[attr-defined]
    assert "at most 60 per call" in status.details
    assert await rl.admit(ANONYMOUS, "ingest", cost=60) is None
