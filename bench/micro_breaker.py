"""Microbenchmark: what the circuit breaker and a whole guarded call cost, in µs per call.

In-process, no network: each figure is the best of several timed loops of many calls,
divided by the calls (best-of, because the slower loops measure the machine's other work).

- breaker CLOSED: `try_acquire()` plus settling the permit with a success.
- breaker OPEN: `try_acquire()` rejecting (the whole cost of a fast-failed call).
- guarded call: `guarded_call` (breaker, bulkhead, retry budget, attempt record) around
  an async no-op, minus the same no-op awaited bare: the gateway's per-attempt overhead.

    python -m bench.micro_breaker
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from bench.report import ScenarioResult, markdown_table
from gateway.resilience.breaker import BreakerConfig, CircuitBreaker, CircuitState
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Attempts, Guard, Timing, guarded_call
from gateway.resilience.retry import RetryBudget, RetryBudgetConfig, RetryPolicy

CALLS = 100_000
REPEATS = 7
OK = grpc.StatusCode.OK
COLUMNS = {"case": "case", "us_per_call": "µs per call", "calls": "calls timed"}


def best_us(loop: Callable[[int], None], calls: int = CALLS, repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        loop(calls)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def closed_call(calls: int) -> None:
    breaker = CircuitBreaker("micro", BreakerConfig())
    for _ in range(calls):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_result(OK, 0.001)


def open_call(calls: int) -> None:
    breaker = CircuitBreaker(
        "micro", BreakerConfig(minimum_calls=1, wait_in_open_s=3600, max_wait_in_open_s=3600)
    )
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_result(grpc.StatusCode.UNAVAILABLE, 0.001)
    assert breaker.state is CircuitState.OPEN
    for _ in range(calls):
        if breaker.try_acquire() is not None:
            raise AssertionError("an open breaker admitted a call")


def _guard() -> Guard:
    return Guard(
        "micro",
        0,
        breaker=CircuitBreaker("micro", BreakerConfig()),
        bulkhead=Bulkhead(64, name="micro"),
        budget=RetryBudget(RetryBudgetConfig()),
        retry=RetryPolicy(),
    )


async def _noop(timeout_s: float) -> int:
    return 1


def guarded_overhead(calls: int) -> float:
    """µs per guarded call minus µs per bare await, best of REPEATS."""

    async def measure() -> float:
        guard = _guard()
        bare, guarded = float("inf"), float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            for _ in range(calls):
                await _noop(1.0)
            bare = min(bare, time.perf_counter() - started)
            timing = Timing(Deadline.after(3600), 0.0, 0.001, 1.0)
            started = time.perf_counter()
            for _ in range(calls):
                await guarded_call(guard, _noop, timing, Attempts())
            guarded = min(guarded, time.perf_counter() - started)
        return (guarded - bare) / calls * 1e6

    return asyncio.run(measure())


def run(calls: int = CALLS) -> ScenarioResult:
    rows = [
        {
            "case": "breaker CLOSED: acquire + record success",
            "us_per_call": best_us(closed_call, calls),
        },
        {"case": "breaker OPEN: rejected acquire", "us_per_call": best_us(open_call, calls)},
        {
            "case": "guarded call (breaker, bulkhead, budget, receipt) over a no-op",
            "us_per_call": guarded_overhead(calls // 5),
        },
    ]
    rows[0]["calls"] = rows[1]["calls"] = calls
    rows[2]["calls"] = calls // 5
    return ScenarioResult(
        name="breaker_overhead",
        title="Breaker overhead (microbenchmark)",
        table=markdown_table(rows, COLUMNS),
        data={"rows": rows},
        notes=["In-process, one core, best of 7 loops; see bench/micro_breaker.py."],
    )


if __name__ == "__main__":
    print(run().markdown())
