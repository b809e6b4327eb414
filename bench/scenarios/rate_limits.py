"""Scenario: what the per-client rate limiter costs a query, and what a frozen Redis does.

1. Cost per query at concurrency 1, one query at a time alternating between three gateways
   over the same components (the order rotating every round, so drift lands on all alike):
   limits off (the default gateway); limits on, shared through a real redis-server; limits
   on, without Redis (local GCRA). The limits are high enough never to refuse, so every
   query pays for the decision and nothing else differs. Reported per path: latency
   percentiles, the median paired difference to 'limits off', the gateway's CPU per query.
2. The decision alone, in this process: RateLimiter.check against the same Redis and
   locally, microseconds per call.
3. Redis frozen (SIGSTOP): queries through the Redis gateway, one at a time, while Redis
   answers nothing; latency and failures, against the same gateway's latency before.
"""

from __future__ import annotations

import statistics
import time

from bench.loadgen import QuerySource, corpus_questions
from bench.mesh import BenchMesh
from bench.report import ScenarioResult, Target, markdown_table
from bench.scenarios.gateway_overhead import gateway_path, measure
from bench.stats import percentile
from gateway.security.identity import ANONYMOUS
from gateway.security.ratelimit import RateLimiter
from gateway.security.ratelimit_config import RateLimitConfig
from gateway.shared.redis_config import RedisConfig
from gateway.shared.redis_link import RedisLink
from harag_cli.redis_server import LocalRedis

ROUNDS = 400
WARMUP_ROUNDS = 30
FROZEN_QUERIES = 200
CHECKS = 5000
NEVER_REFUSES = {
    "HARAG_RATE_LIMIT_QUERIES_PER_S": "1000000",
    "HARAG_RATE_LIMIT_QUERY_BURST": "1000000",
}
# The defaults: 100 ms to connect plus 50 ms for the reply, at most, per Redis call.
REDIS_TIMEOUT_MS = RedisConfig().call_timeout_s * 1000


async def decision_cost_us(redis_url: str, checks: int) -> dict[str, float]:
    """Microseconds per RateLimiter.check, shared (Redis) and local, in this process."""
    cfg = RateLimitConfig(queries_per_s=1_000_000, query_burst=1_000_000)
    out = {}
    for label, url in (("redis", redis_url), ("local", "")):
        link = RedisLink(RedisConfig(url=url))
        limiter = RateLimiter(cfg, link)
        for _ in range(100):
            await limiter.check(ANONYMOUS, "query")
        started = time.perf_counter()
        for _ in range(checks):
            await limiter.check(ANONYMOUS, "query")
        out[label] = (time.perf_counter() - started) / checks * 1e6
        await link.close()
    return out


async def run(
    rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS, frozen: int = FROZEN_QUERIES
) -> ScenarioResult:
    with LocalRedis() as redis:
        async with BenchMesh() as mesh:
            shared = await mesh.add_gateway(
                "gateway-limits-redis", {**NEVER_REFUSES, "HARAG_REDIS_URL": redis.url}
            )
            local = await mesh.add_gateway("gateway-limits-local", NEVER_REFUSES)
            paths = {
                "limits off": gateway_path(mesh, mesh.gateway_address),
                "limits on, Redis": gateway_path(mesh, shared),
                "limits on, local": gateway_path(mesh, local),
            }
            pids = {
                "limits off": mesh.pid("gateway"),
                "limits on, Redis": mesh.extra_pid("gateway-limits-redis"),
                "limits on, local": mesh.extra_pid("gateway-limits-local"),
            }
            measured = await measure(paths, pids, rounds, warmup_rounds)
            decision_us = await decision_cost_us(redis.url, CHECKS)
            frozen_ms, frozen_failed = [], 0
            redis.freeze()
            try:
                questions = QuerySource(corpus_questions(), unique=True)
                for _ in range(frozen):
                    started = time.perf_counter()
                    try:
                        await paths["limits on, Redis"](questions.next())
                    except Exception:
                        frozen_failed += 1
                        continue
                    frozen_ms.append((time.perf_counter() - started) * 1000)
            finally:
                redis.thaw()
    return result_of(measured.latencies_ms, measured.gateway_cpu_ms, decision_us, frozen_ms,
                     frozen_failed, measured.failed, rounds)  # fmt: skip


def result_of(
    latencies: dict[str, list[float]],
    cpu_ms: dict[str, float],
    decision_us: dict[str, float],
    frozen_ms: list[float],
    frozen_failed: int,
    failed: dict[str, int],
    rounds: int,
) -> ScenarioResult:
    off = latencies["limits off"]
    rows: list[dict[str, object]] = []
    for name, values in latencies.items():
        ordered = sorted(values)
        rows.append(
            {
                "path": name,
                "queries": len(values),
                "p50_ms": percentile(ordered, 50),
                "p99_ms": percentile(ordered, 99),
                "max_ms": ordered[-1] if ordered else float("nan"),
                "paired_median_ms": statistics.median(
                    v - o for v, o in zip(values, off, strict=True)
                ),
                "gateway_cpu_ms": cpu_ms.get(name, float("nan")),
            }
        )
    frozen_sorted = sorted(frozen_ms)
    rows.append(
        {
            "path": "limits on, Redis SIGSTOPped",
            "queries": len(frozen_ms),
            "p50_ms": percentile(frozen_sorted, 50),
            "p99_ms": percentile(frozen_sorted, 99),
            "max_ms": frozen_sorted[-1] if frozen_sorted else float("nan"),
            "paired_median_ms": float("nan"),
            "gateway_cpu_ms": float("nan"),
        }
    )
    redis_row, frozen_row = rows[1], rows[-1]
    added_ms = float(redis_row["paired_median_ms"])  # type: ignore[arg-type]
    frozen_max = float(frozen_row["max_ms"])  # type: ignore[arg-type]
    before_p99 = float(redis_row["p99_ms"])  # type: ignore[arg-type]
    columns = {
        "path": "path",
        "queries": "queries",
        "p50_ms": "p50 ms",
        "p99_ms": "p99 ms",
        "max_ms": "max ms",
        "paired_median_ms": "median paired difference to 'limits off', ms",
        "gateway_cpu_ms": "gateway CPU ms / query",
    }
    return ScenarioResult(
        name="rate_limits",
        title="Rate limiter cost per query, and queries with Redis SIGSTOPped",
        table=markdown_table(rows, columns),
        data={
            "rows": rows,
            "latencies_ms": latencies,
            "frozen_ms": frozen_ms,
            "frozen_failed": frozen_failed,
            "decision_us": decision_us,
            "failed": failed,
        },
        targets=[
            Target(
                "rate limit on Redis, added p50 per query, ms (concurrency 1)",
                round(added_ms, 3),
                "<= 0.5",
                added_ms <= 0.5,
            ),
            Target(
                "queries failed with Redis SIGSTOPped",
                frozen_failed,
                "== 0",
                frozen_failed == 0,
            ),
            Target(
                "slowest query with Redis SIGSTOPped - p99 before, ms",
                round(frozen_max - before_p99, 1),
                f"<= {REDIS_TIMEOUT_MS:g} (the Redis call timeout)",
                frozen_max - before_p99 <= REDIS_TIMEOUT_MS,
            ),
        ],
        notes=[
            f"One client, one query at a time, {rounds} rounds, the order rotating; limits "
            "of 1,000,000 queries/s so no query is refused and each pays for one decision. "
            "'limits on, Redis': HARAG_REDIS_URL set (a real redis-server on loopback, "
            "default timeouts); 'limits on, local': no Redis, the GCRA in process.",
            "The decision alone (RateLimiter.check in the benchmark's process, "
            f"{CHECKS} calls): Redis {decision_us['redis']:.0f} us, local "
            f"{decision_us['local']:.1f} us per call.",
            f"Redis SIGSTOPped: {len(frozen_ms) + frozen_failed} queries one at a time "
            "through the Redis gateway right after the freeze (the first ones wait for the "
            "Redis timeout until the breaker around Redis opens; the rest decide locally). "
            f"{frozen_failed} failed.",
            "Queries that failed or were degraded in part 1 (their round is left out): "
            + ", ".join(f"{name} {n}" for name, n in failed.items())
            + ".",
        ],
    )
