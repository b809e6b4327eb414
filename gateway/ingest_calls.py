"""How ingest calls an upstream: inside the caller's deadline, never past an open breaker,
retrying what is idempotent (Embed, GetModelInfo, GetDocumentHashes) through the project's
RetryPolicy.

Each attempt's timeout is the smaller of ingest_timeout_s and the time the caller has left,
and no attempt starts once the deadline has passed: ingest answers in time like a query
does. An upstream whose breaker is OPEN is not called at all (its breaker learnt from the
queries that it is failing); ingest does not feed the breakers itself, since an ingest's
batch calls are not the queries the breakers' thresholds are made for.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.deadline import Deadline
from gateway.resilience.retry import RetryPolicy, decide_retry
from gateway.upstreams import Upstream

log = logging.getLogger("harag.ingest")
T = TypeVar("T")

# Embed and Upsert are idempotent, so a transient failure is worth a short retry: three
# attempts in all, the waits drawn at random below 0.1 s and then 0.2 s. An overloaded
# upstream (RESOURCE_EXHAUSTED) is not retried. Ingest spends no retry budget: it is rare
# operator work, and the queries' budget must not pay for it.
INGEST_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff_s=0.1,
    max_backoff_s=0.2,
    multiplier=2.0,
    retryable_codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}),
    pushback_only_codes=frozenset(),
)
OPEN_STATES = ("OPEN", "FORCED_OPEN")


class NotCalled(Exception):
    """The upstream was not called: its breaker is open, or the caller's time is up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Attempt = Callable[[float], Awaitable[T]]  # called with the attempt's timeout in seconds


@dataclass(frozen=True)
class Retrying:
    """How ingest retries a call: the policy, and the clock and randomness it waits by."""

    policy: RetryPolicy = INGEST_RETRY
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random = field(default_factory=random.Random)

    async def call(
        self,
        attempt: Attempt[T],
        *,
        deadline: Deadline,
        cap_s: float,
        upstream: Upstream | None = None,
    ) -> T:
        """Runs `attempt(timeout)` until it succeeds or the policy says stop; raises the last
        error, or NotCalled when the breaker is open or the deadline leaves no time."""
        made = 0
        while True:
            if upstream is not None and upstream.guard.breaker_state in OPEN_STATES:
                raise NotCalled(f"{upstream.name}: circuit breaker is open")
            timeout = deadline.attempt_timeout(cap_s=cap_s)
            if timeout is None:
                raise NotCalled("the caller's deadline has passed")
            try:
                return await attempt(timeout)
            except grpc.aio.AioRpcError as exc:
                made += 1
                decision = decide_retry(
                    exc.code(),
                    attempts_made=made,
                    policy=self.policy,
                    rng=self.rng,
                    trailing_metadata=exc.trailing_metadata(),
                    time_left_s=deadline.remaining(),
                )
                if not decision.retry:
                    raise
                await self.clock.sleep(decision.delay_s)

    async def call_or_none(
        self,
        attempt: Attempt[T],
        failed: str,
        upstream: Upstream,
        *,
        deadline: Deadline,
        cap_s: float,
    ) -> T | None:
        """`call`, but a final failure is logged as `failed` (with the upstream, code and
        detail) and returns None: one upstream's failure is one document's or step's, not the
        whole request's."""
        try:
            return await self.call(attempt, deadline=deadline, cap_s=cap_s, upstream=upstream)
        except NotCalled as exc:
            log.warning(failed, extra={"upstream": upstream.name, "error": exc.reason})
        except grpc.aio.AioRpcError as exc:
            log.warning(
                failed,
                extra={"upstream": upstream.name, "code": exc.code().name, "error": exc.details()},
            )
        return None
