"""Per-client rate limits: queries per second with a burst (Query, StreamQuery) and
documents per minute (Ingest's documents, DeleteDocuments' ids).

The subject is the caller's identity (`ClientIdentity.client`); its key's limits replace
the configured defaults. With Redis (redis_url) every replica counts in one GCRA key per
client and kind, updated by an atomic script on Redis's clock, so N replicas enforce one
limit. While Redis is unavailable (its breaker is open, or a call fails) each replica
enforces its share alone: the limit divided by `rate_limit_replicas`. Without Redis every
process enforces the whole limit.

An over-limit call is answered RESOURCE_EXHAUSTED with RetryInfo (when the next call would
pass) and a QuotaFailure naming the client, before any upstream is called: no breaker
ever sees it, and nothing in the gateway retries it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import grpc
from opentelemetry import metrics
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.admission import ShedLog
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.security.gcra import GCRA_LUA, Limit, LocalGcra
from gateway.security.identity import ClientIdentity
from gateway.security.ratelimit_config import RateLimitConfig
from gateway.shared.redis_link import RedisLink, RedisUnavailable
from gateway.shared.redis_script import LuaScript
from servicekit.errors import quota_exceeded

LimitKind = Literal["query", "ingest"]
Source = Literal["redis", "local"]
RATE_LIMITED = "RATE_LIMITED"
CALL_TOO_LARGE = "RATE_LIMIT_CALL_TOO_LARGE"
_UNITS: dict[LimitKind, tuple[str, str]] = {
    "query": ("queries", "s"),
    "ingest": ("documents", "min"),
}

_SCRIPT = LuaScript(GCRA_LUA)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    source: Source
    retry_after_s: float = 0.0
    """When a refused call would pass (math.inf: never, its cost exceeds the burst)."""


class RateLimitMetrics:
    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("harag.gateway")
        self._decisions = meter.create_counter(
            "harag.gateway.rate_limit.decisions",
            unit="{decision}",
            description="Rate-limit decisions by kind (query, ingest), where they were taken "
            "(redis: shared by every replica; local: this process alone) and result.",
        )
        self._limited = meter.create_counter(
            "harag.gateway.rate_limit.limited",
            unit="{call}",
            description="Calls refused for being over their client's rate limit, by client "
            "name and kind.",
        )

    def decided(self, kind: LimitKind, decision: Decision, client: str) -> None:
        result = "allowed" if decision.allowed else "limited"
        self._decisions.add(1, {"kind": kind, "source": decision.source, "result": result})
        if not decision.allowed:
            self._limited.add(1, {"client": client, "kind": kind})


class RateLimiter:
    def __init__(
        self,
        cfg: RateLimitConfig,
        link: RedisLink,
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics_: RateLimitMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.link = link
        self.local = LocalGcra(clock)
        self.metrics = metrics_ or RateLimitMetrics()
        self.log = ShedLog(clock)

    def limit_for(self, identity: ClientIdentity, kind: LimitKind) -> Limit | None:
        """The client's limit of this kind (its key's, else the default), None: unlimited."""
        own = identity.limits
        if kind == "query":
            rate = own.queries_per_second
            burst = own.query_burst if own.query_burst is not None else self.cfg.query_burst
            if rate is None:
                rate = self.cfg.queries_per_s
            return Limit(rate, max(1, burst)) if rate > 0 else None
        per_minute = own.documents_per_minute
        if per_minute is None:
            per_minute = self.cfg.documents_per_minute
        return Limit(per_minute / 60, max(1, math.floor(per_minute))) if per_minute > 0 else None

    async def check(self, identity: ClientIdentity, kind: LimitKind, cost: int = 1) -> Decision:
        """Counts the call against the client's limit, if it passes."""
        limit = self.limit_for(identity, kind)
        if limit is None:
            return Decision(True, "local")
        decision = await self._decide(identity.client, kind, limit, cost)
        self.metrics.decided(kind, decision, identity.client)
        return decision

    async def _decide(self, client: str, kind: LimitKind, limit: Limit, cost: int) -> Decision:
        if cost > limit.burst:  # would never pass: no need to ask anyone
            return Decision(False, "redis" if self.link.configured else "local", math.inf)
        key = self.link.key("ratelimit", kind, client)
        if self.link.configured:
            args = (limit.interval_us, limit.capacity_us, cost)

            async def gcra(client: Redis) -> tuple[bool, int]:
                return _script_reply(await _SCRIPT.run(client, (key,), args))

            try:
                allowed, retry_us = await self.link.call(gcra)
            except RedisUnavailable:
                wait = self.local.take(key, limit.share(self.cfg.replicas), cost)
                return Decision(wait == 0.0, "local", wait)
            return Decision(allowed, "redis", retry_us / 1_000_000)
        wait = self.local.take(key, limit, cost)
        return Decision(wait == 0.0, "local", wait)

    async def admit(
        self, identity: ClientIdentity, kind: LimitKind, cost: int = 1
    ) -> grpc.Status | None:
        """None when the call may go on; else the status to answer it with."""
        decision = await self.check(identity, kind, cost)
        if decision.allowed:
            return None
        limit = self.limit_for(identity, kind)
        assert limit is not None
        unit, per = _UNITS[kind]
        described = limit.describe(unit, per)
        subject = f"client:{identity.client}"
        self.log.shed("rate_limited", client=identity.client, kind=kind)
        if math.isinf(decision.retry_after_s):
            return quota_exceeded(
                f"one call of {cost} {unit} exceeds client {identity.client!r}'s limit of "
                f"{described}: send at most {limit.burst} per call",
                None,
                subject,
                f"{kind} limit {described}",
                CALL_TOO_LARGE,
            )
        # Rounded up to the millisecond: a caller that waits exactly this long passes.
        retry_after_s = math.ceil(decision.retry_after_s * 1000) / 1000
        return quota_exceeded(
            f"client {identity.client!r} is over its {kind} limit ({described}); "
            f"retry in {retry_after_s:.3f} s",
            retry_after_s,
            subject,
            f"{kind} limit {described}",
            RATE_LIMITED,
        )


def _script_reply(reply: object) -> tuple[bool, int]:
    """The script's {allowed, retry_after_us}; anything else is an error reply."""
    if isinstance(reply, list) and len(reply) == 2 and all(isinstance(x, int) for x in reply):
        return reply[0] == 1, max(0, reply[1])
    raise ResponseError(f"unexpected rate-limit script reply {reply!r}")
