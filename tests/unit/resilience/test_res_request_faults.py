"""A failure the request caused (a reply over the size limit, a bad argument) says nothing
about the upstream: the breaker does not count it, it is not retried, and the prober never
replays it (issue 16: an oversized search reply opened both retriever breakers and the
prober kept them open by replaying it)."""

from __future__ import annotations

import random

import grpc
import pytest

from gateway.resilience.breaker import BreakerConfig, CircuitBreaker
from gateway.resilience.breaker_types import CircuitState
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, CallFailed, Guard, Timing, guarded_call
from gateway.resilience.outcome import caused_by_request
from gateway.resilience.recent import RecentCalls
from gateway.resilience.retry import RetryPolicy

OVERSIZED_REPLY = "Received message larger than max (41943424 vs. 33554432)"
OVERSIZED_SENT = "Sent message larger than max (41943424 vs. 33554432)"


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class Failing:
    """An upstream whose every call fails with one status."""

    def __init__(self, clock: FakeClock, code: grpc.StatusCode, details: str) -> None:
        self.clock, self.code, self.details = clock, code, details
        self.calls = 0

    async def __call__(self, timeout_s: float) -> str:
        self.calls += 1
        await self.clock.sleep(0.01)
        raise RpcError(self.code, self.details)


async def answer(timeout_s: float) -> str:
    return "ok"


def guard(clock: FakeClock) -> Guard:
    config = BreakerConfig(minimum_calls=2, window_size=4, wait_in_open_s=5.0, wait_jitter=0.0)
    return Guard(
        "retriever-primary",
        0,
        breaker=CircuitBreaker("retriever-primary", config, clock=clock),
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.1),
        recent=RecentCalls(clock=clock),
    )


async def run(clock: FakeClock, g: Guard, upstream: object, *, repeatable: bool = True) -> str:
    attempts = Attempts()
    timing = Timing(Deadline.after(2.0, clock), 0.0, min_attempt_s=0.05, per_try_cap_s=1.0)
    try:
        await clock.drive(
            guarded_call(
                g,
                upstream,  # type: ignore[arg-type]
                timing,
                attempts,
                repeatable=repeatable,
                rng=random.Random(1),
                clock=clock,
            )
        )
    except CallFailed:
        pass
    return attempts.ordered()[-1].outcome


@pytest.mark.parametrize(
    ("code", "details", "caller"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, OVERSIZED_REPLY, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, OVERSIZED_SENT, True),
        (grpc.StatusCode.INVALID_ARGUMENT, "top_k: must be in 1..50", True),
        (grpc.StatusCode.OUT_OF_RANGE, "page past the end", True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests", False),
        (grpc.StatusCode.UNAVAILABLE, "connection refused", False),
    ],
)
def test_what_counts_as_the_requests_fault(
    code: grpc.StatusCode, details: str, caller: bool
) -> None:
    assert caused_by_request(RpcError(code, details)) is caller


async def test_oversized_replies_never_open_the_breaker_nor_are_retried() -> None:
    clock = FakeClock()
    g = guard(clock)
    oversized = Failing(clock, grpc.StatusCode.RESOURCE_EXHAUSTED, OVERSIZED_REPLY)
    outcomes = [await run(clock, g, oversized) for _ in range(10)]
    # The receipt still shows what happened ...
    assert outcomes == ["RESOURCE_EXHAUSTED"] * 10
    # ... but each call was made once (no retry) and nothing was counted against it.
    assert oversized.calls == 10
    assert g.breaker is not None and g.breaker.state is CircuitState.CLOSED
    assert g.breaker.snapshot().calls_in_window == 0
    assert g.recent is not None and g.recent.failure_rate == 0.0


async def test_an_overloaded_upstream_still_counts() -> None:
    clock = FakeClock()
    g = guard(clock)
    busy = Failing(clock, grpc.StatusCode.UNAVAILABLE, "connection refused")
    for _ in range(2):
        await run(clock, g, busy)
    assert g.breaker is not None and g.breaker.state is CircuitState.OPEN


async def test_a_request_that_failed_by_its_own_fault_is_never_kept_for_probes() -> None:
    clock = FakeClock()
    g = guard(clock)
    await run(clock, g, answer)
    assert g.last_call is answer
    poisoned = Failing(clock, grpc.StatusCode.RESOURCE_EXHAUSTED, OVERSIZED_REPLY)
    await run(clock, g, poisoned)
    assert g.last_call is answer  # the last good request stays the one to replay
    # The prober replays last_call through the guard (not `repeatable`): a replay that
    # fails by the request's fault is forgotten, so it is never replayed again.
    g.last_call = poisoned
    await run(clock, g, poisoned, repeatable=False)
    assert g.last_call is None
