"""The rate limiter and the Redis link against a real redis-server (in this process): the
GCRA script, clients kept apart, garbage under a key, a flushed script cache, and Redis
killed or frozen mid-run."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis_support import RedisServer
from waiting import wait_until

from gateway.resilience.breaker_types import CircuitState
from gateway.security.identity import ANONYMOUS, ClientIdentity, RateLimits
from gateway.security.ratelimit import RateLimiter
from gateway.security.ratelimit_config import RateLimitConfig
from gateway.shared.redis_config import RedisConfig
from gateway.shared.redis_link import RedisLink, RedisUnavailable

ALICE = ClientIdentity("ka", "alice")
BOB = ClientIdentity("kb", "bob")
# Slow enough that no allowance comes back during a test: exact counts.
SLOW = {"queries_per_s": 0.01, "query_burst": 6}


def redis_config(server: RedisServer, **overrides: object) -> RedisConfig:
    settings = {"url": server.url, "socket_timeout_ms": 100.0, "breaker_open_s": 0.3}
    return RedisConfig(**{**settings, **overrides})  # type: ignore[arg-type]


def make_limiter(link: RedisLink, **settings: object) -> RateLimiter:
    return RateLimiter(RateLimitConfig(**settings), link)  # type: ignore[arg-type]


async def burst(limiter: RateLimiter, who: ClientIdentity, n: int) -> list[bool]:
    return [(await limiter.check(who, "query")).allowed for _ in range(n)]


async def test_two_replicas_on_one_redis_enforce_one_limit(redis_server):
    a, b = RedisLink(redis_config(redis_server)), RedisLink(redis_config(redis_server))
    try:
        left, right = make_limiter(a, **SLOW), make_limiter(b, **SLOW)
        decisions = []
        for n in range(10):  # N + k = 6 + 4, alternating between the replicas
            decisions.append(await (left if n % 2 else right).check(ALICE, "query"))
        assert sum(d.allowed for d in decisions) == 6
        assert [d.allowed for d in decisions] == [True] * 6 + [False] * 4
        assert {d.source for d in decisions} == {"redis"}
        # At 0.01/s the 7th call passes 100 s after the first: Redis's clock says when.
        assert 99.0 < decisions[6].retry_after_s <= 100.0
        # Another client is unaffected, on either replica.
        assert await burst(right, BOB, 6) == [True] * 6
        async with redis_server.client() as r:
            ttl_ms = await r.pttl(a.key("ratelimit", "query", "alice"))
        assert 0 < ttl_ms <= 600_001  # the key expires once its allowance is whole again
    finally:
        await a.close()
        await b.close()


async def test_a_keys_own_limits_and_the_ingest_cost_in_documents(redis_server):
    link = RedisLink(redis_config(redis_server))
    try:
        limiter = make_limiter(link, **SLOW, documents_per_minute=100)
        gold = ClientIdentity("kg", "gold", limits=RateLimits(query_burst=9))
        assert await burst(limiter, gold, 10) == [True] * 9 + [False]
        assert (await limiter.check(ALICE, "ingest", 60)).allowed
        refused = await limiter.check(ALICE, "ingest", 41)
        assert not refused.allowed and refused.source == "redis"
        assert refused.retry_after_s == pytest.approx(0.6, abs=0.05)  # one doc = 0.6 s
        assert (await limiter.check(ALICE, "ingest", 40)).allowed
    finally:
        await link.close()


@pytest.mark.parametrize(
    "garbage",
    [
        ("set", "not a number"),
        ("set", "nan"),
        ("set", "99999999999999999999"),  # a TAT no limit allows: garbage too
        ("hset", "field"),  # the wrong type
        ("rpush", "x"),
    ],
)
async def test_garbage_under_the_key_is_a_miss_not_an_error(redis_server, garbage):
    link = RedisLink(redis_config(redis_server))
    try:
        key = link.key("ratelimit", "query", "alice")
        command, value = garbage
        async with redis_server.client() as r:
            if command == "hset":
                await r.hset(key, value, "1")
            else:
                await getattr(r, command)(key, value)
        limiter = make_limiter(link, **SLOW)
        decisions = [await limiter.check(ALICE, "query") for _ in range(7)]
        assert [d.allowed for d in decisions] == [True] * 6 + [False]
        assert {d.source for d in decisions} == {"redis"}
        assert link.failures == {}
    finally:
        await link.close()


async def test_a_flushed_script_cache_falls_back_to_eval_then_evalsha(redis_server):
    link = RedisLink(redis_config(redis_server))
    try:
        limiter = make_limiter(link, **SLOW)
        async with redis_server.client() as r:
            assert (await limiter.check(ALICE, "query")).allowed
            await r.script_flush()
            assert (await limiter.check(ALICE, "query")).allowed
            assert (await limiter.check(ALICE, "query")).allowed
            stats = await r.info("commandstats")
        assert stats["cmdstat_eval"]["calls"] == 2  # once per empty script cache
        assert stats["cmdstat_evalsha"]["failed_calls"] == 2
        assert stats["cmdstat_evalsha"]["calls"] >= 3
        assert link.failures == {}
    finally:
        await link.close()


async def test_without_redis_url_the_link_says_unavailable_at_once():
    link = RedisLink(RedisConfig())
    assert not link.configured
    with pytest.raises(RedisUnavailable) as raised:
        await link.call(lambda r: r.ping())
    assert raised.value.reason == "not_configured"


async def test_redis_killed_the_local_share_holds_and_redis_is_used_again_after(redis_server):
    cfg = redis_config(redis_server)
    link = RedisLink(cfg)
    try:
        limiter = make_limiter(link, queries_per_s=0.01, query_burst=8, replicas=2)
        assert await burst(limiter, ALICE, 2) == [True, True]
        redis_server.kill()
        started = time.perf_counter()
        decisions = [await limiter.check(ALICE, "query") for _ in range(8)]
        took = time.perf_counter() - started
        # This replica's share alone: burst 8 / 2 replicas, counted afresh.
        assert [d.allowed for d in decisions] == [True] * 4 + [False] * 4
        assert {d.source for d in decisions} == {"local"}
        assert took < 8 * cfg.call_timeout_s  # refused connections fail fast
        assert link.breaker.state is CircuitState.OPEN
        assert link.failures["connection"] >= 3  # with the 2 successes: 3 of 5 failed
        assert link.failures["breaker_open"] >= 1

        redis_server.start()  # empty: alice's Redis allowance is whole again
        await wait_until(lambda: limiter.check(BOB, "query"), what="a call after the open wait")

        async def back_on_redis() -> bool:
            return (await limiter.check(BOB, "query")).source == "redis"

        await wait_until(back_on_redis, what="the limiter back on Redis", timeout_s=10)
        assert link.breaker.state is CircuitState.CLOSED
    finally:
        await link.close()


async def test_redis_frozen_every_call_ends_within_the_timeout_then_at_once(redis_server):
    cfg = redis_config(redis_server, socket_timeout_ms=50.0, connect_timeout_ms=50.0)
    link = RedisLink(cfg)
    try:
        limiter = make_limiter(link, queries_per_s=1000.0, query_burst=1000)
        assert (await limiter.check(ANONYMOUS, "query")).source == "redis"
        redis_server.freeze()
        slowest = 0.0
        for _ in range(cfg.breaker_minimum_calls):  # the breaker opens within these
            started = time.perf_counter()
            decision = await limiter.check(ANONYMOUS, "query")
            slowest = max(slowest, time.perf_counter() - started)
            assert decision.allowed and decision.source == "local"
        assert slowest < cfg.call_timeout_s + 0.05
        assert link.breaker.state is CircuitState.OPEN
        # With the one success before: 4 timeouts of 5 calls opened it.
        assert link.failures["timeout"] == cfg.breaker_minimum_calls - 1
        # Open: no call waits on the frozen Redis any more.
        started = time.perf_counter()
        results = await asyncio.gather(*(limiter.check(ANONYMOUS, "query") for _ in range(50)))
        assert time.perf_counter() - started < cfg.call_timeout_s
        assert all(d.allowed and d.source == "local" for d in results)
    finally:
        redis_server.thaw()
        await link.close()
