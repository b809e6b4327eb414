"""The gateway's one link to Redis: a connection pool with millisecond timeouts, behind a
circuit breaker, so that a slow or dead Redis costs a caller at most one timeout and then
nothing at all.

Every feature that shares state between gateway replicas goes through `RedisLink.call`. It
returns the result, or raises `RedisUnavailable`, at once when Redis is not configured or
its breaker is open, after at most `RedisConfig.call_timeout_s` when Redis fails or hangs.
The caller then falls back to its local behaviour: Redis makes replicas act as one, it is
never what a query waits on. redis-py's own retries are off: a retry would spend the time
the timeout is meant to bound, and the breaker decides when Redis is worth trying again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.resilience.breaker import BreakerConfig, BreakerTransition, CircuitBreaker, Permit
from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.shared.redis_config import RedisConfig

log = logging.getLogger("harag.redis")

T = TypeVar("T")

NOT_CONFIGURED = "not_configured"
BREAKER_OPEN = "breaker_open"
TIMEOUT = "timeout"
CONNECTION = "connection"
ERROR_REPLY = "error_reply"


class RedisUnavailable(Exception):
    """Redis cannot serve this call; `reason` is one of not_configured, breaker_open,
    timeout, connection or error_reply. Fall back to local behaviour."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"redis unavailable: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


@dataclass(frozen=True)
class RedisLinkSnapshot:
    configured: bool
    state: CircuitState
    """The breaker around Redis: closed = in use, open = every caller is on its fallback."""
    calls: int
    """Calls Redis answered."""
    failures: dict[str, int]
    """Calls that raised RedisUnavailable, by reason (breaker_open counts the calls the
    breaker spared Redis)."""


def breaker_config(cfg: RedisConfig) -> BreakerConfig:
    """The breaker around Redis: a call slower than the socket timeout is slow, half of
    the last 20 calls failing opens it, one probe decides."""
    return BreakerConfig(
        window_type="count",
        window_size=20,
        minimum_calls=cfg.breaker_minimum_calls,
        failure_rate_threshold=50.0,
        slow_call_duration_s=cfg.socket_timeout_ms / 1000,
        slow_calls_to_open=cfg.breaker_minimum_calls,
        wait_in_open_s=cfg.breaker_open_s,
        max_wait_in_open_s=max(cfg.breaker_open_s, 30.0),
        permitted_calls_in_half_open=1,
        max_half_open_s=max(1.0, cfg.call_timeout_s * 4),
    )


def make_client(cfg: RedisConfig) -> Redis:
    pool = BlockingConnectionPool.from_url(
        cfg.url,
        max_connections=cfg.max_connections,
        timeout=cfg.connect_timeout_ms / 1000,
        socket_timeout=cfg.socket_timeout_ms / 1000,
        socket_connect_timeout=cfg.connect_timeout_ms / 1000,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis(connection_pool=pool)


class RedisLink:
    """See the module docstring. One per gateway process (and event loop)."""

    def __init__(
        self,
        cfg: RedisConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        client_factory: Callable[[RedisConfig], Redis] = make_client,
    ) -> None:
        self.cfg = cfg
        self._client = client_factory(cfg) if cfg.url else None
        self._timeout_s = cfg.call_timeout_s
        self._clock = clock
        self.breaker = CircuitBreaker("redis", breaker_config(cfg), clock=clock)
        self.breaker.add_listener(self._log_transition)
        self.calls = 0
        self.failures: Counter[str] = Counter()

    @property
    def configured(self) -> bool:
        return self._client is not None

    def key(self, *parts: str) -> str:
        """A key under this deployment's prefix: key("ratelimit", "query", "acme")."""
        return self.cfg.key_prefix + ":".join(parts)

    async def call(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        """`fn(client)`'s result, or RedisUnavailable (see the module docstring).

        `fn` should make one round trip (a command, a script, a pipeline): the whole of it
        must finish within the call timeout.
        """
        client = self._client
        if client is None:
            raise RedisUnavailable(NOT_CONFIGURED)
        permit = self.breaker.try_acquire()
        if permit is None:
            self.failures[BREAKER_OPEN] += 1
            raise RedisUnavailable(BREAKER_OPEN)
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await fn(client)
        except (TimeoutError, RedisTimeoutError) as exc:
            self._failed(permit, TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED, started)
            raise RedisUnavailable(TIMEOUT) from exc
        except (RedisConnectionError, OSError) as exc:
            self._failed(permit, CONNECTION, grpc.StatusCode.UNAVAILABLE, started)
            raise RedisUnavailable(CONNECTION, str(exc)) from exc
        except RedisError as exc:
            # An error reply (OOM, READONLY, LOADING, a script error): Redis cannot do
            # what this call needs, which for the caller is the same as Redis being down.
            self._failed(permit, ERROR_REPLY, grpc.StatusCode.INTERNAL, started)
            raise RedisUnavailable(ERROR_REPLY, str(exc)) from exc
        except BaseException:
            permit.release_unused()  # cancelled by our caller: says nothing about Redis
            raise
        permit.on_result(None, self._clock.monotonic() - started)
        self.calls += 1
        return result

    def pubsub(self) -> PubSub:
        """A subscription connection of its own. A subscription is not a call (it waits for
        messages as long as it lives), so it is outside the breaker; its reader treats any
        error as "reconnect later" and relies on polling meanwhile."""
        if self._client is None:
            raise RedisUnavailable(NOT_CONFIGURED)
        return self._client.pubsub(ignore_subscribe_messages=True)

    def _failed(self, permit: Permit, reason: str, code: grpc.StatusCode, started: float) -> None:
        permit.on_result(code, self._clock.monotonic() - started)
        self.failures[reason] += 1

    def _log_transition(self, event: BreakerTransition) -> None:
        fields = {"from": event.from_state.value, "to": event.to_state.value}
        if event.to_state is CircuitState.OPEN:
            log.warning(
                "redis unavailable: using local fallbacks",
                extra={**fields, "reason": event.reason.value, "open_wait_s": event.open_wait_s},
            )
        elif event.to_state is CircuitState.CLOSED:
            log.info("redis available again", extra=fields)

    def snapshot(self) -> RedisLinkSnapshot:
        return RedisLinkSnapshot(
            configured=self.configured,
            state=self.breaker.state,
            calls=self.calls,
            failures=dict(self.failures),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
