"""Request hedging: a delayed second attempt races the first; the first success wins.

Failures are not retried here (that is the retry policy's job): if the primary fails before
the hedge delay, the hedge is not started and the failure is returned.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from gateway.resilience.clock import SYSTEM_CLOCK, Clock, done_within

T = TypeVar("T")


class AttemptStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Cancelled by `hedged()` because the other attempt won (or the caller was cancelled)."""


@dataclass(frozen=True, slots=True)
class HedgeAttempt:
    index: int
    """0 = primary, 1 = hedge."""
    status: AttemptStatus
    started_at: float
    duration_s: float
    error: BaseException | None
    """The exception for FAILED (may itself be a CancelledError the attempt raised)."""


@dataclass(frozen=True)
class HedgeResult(Generic[T]):
    """Outcome of every started attempt, in start order, plus the winner (if any)."""

    attempts: tuple[HedgeAttempt, ...]
    winner: int | None
    value: T | None
    error: BaseException | None
    """When no attempt succeeded: the error of the attempt that failed last."""
    hedge_declined: bool
    """The delay elapsed with the primary pending but `may_hedge()` said no."""

    @property
    def ok(self) -> bool:
        return self.winner is not None

    @property
    def hedged(self) -> bool:
        return len(self.attempts) > 1


async def _invoke(fn: Callable[[], Awaitable[T]]) -> T:
    # Calling fn() inside the task routes even a synchronous raise into the task's outcome.
    return await fn()


async def hedged(
    first: Callable[[], Awaitable[T]],
    second: Callable[[], Awaitable[T]],
    delay_s: float | None,
    *,
    may_hedge: Callable[[], bool],
    clock: Clock | None = None,
) -> HedgeResult[T]:
    """Runs `first`; after `delay_s` (None = never hedge) with it still pending and
    `may_hedge()` true (called at most once, so it may spend a budget token), starts
    `second`. Returns when one succeeds (the other is cancelled and awaited) or when all
    started attempts have failed. Never raises for attempt failures - see `HedgeResult`;
    if the caller is cancelled, both attempts are cancelled and awaited first.
    """
    clk = clock or SYSTEM_CLOCK
    tasks: list[asyncio.Task[T]] = [asyncio.create_task(_invoke(first))]
    started = [clk.monotonic()]
    records: dict[int, HedgeAttempt] = {}
    cancelled_by_us: set[int] = set()
    winner: int | None = None
    value: T | None = None
    last_error: BaseException | None = None
    declined = False

    def settle(i: int) -> None:
        nonlocal winner, value, last_error
        task = tasks[i]
        elapsed = clk.monotonic() - started[i]
        err: BaseException | None
        if task.cancelled():
            if i in cancelled_by_us:
                status, err = AttemptStatus.CANCELLED, None
            else:
                status, err = AttemptStatus.FAILED, asyncio.CancelledError()
                last_error = err
        elif (exc := task.exception()) is not None:
            status, err = AttemptStatus.FAILED, exc
            last_error = exc
        else:
            status, err = AttemptStatus.SUCCEEDED, None
            if winner is None:
                winner, value = i, task.result()
        records[i] = HedgeAttempt(i, status, started[i], elapsed, err)

    try:
        if delay_s is not None:
            # Every hedgeable call waits here, hedge or not: one loop timer on the real clock.
            await done_within(tasks[0], max(0.0, delay_s), clk)
            if not tasks[0].done():
                if may_hedge():
                    tasks.append(asyncio.create_task(_invoke(second)))
                    started.append(clk.monotonic())
                else:
                    declined = True
        pending = {t for t in tasks if not t.done()}
        while winner is None:
            for i, task in enumerate(tasks):
                if task.done() and i not in records:
                    settle(i)
            if winner is not None or not pending:
                break
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # Caller cancelled, or may_hedge() raised: no attempt may outlive this call.
        await _cancel_all(tasks, cancelled_by_us)
        raise
    losers = [i for i, t in enumerate(tasks) if not t.done()]
    if losers:
        cancelled_by_us.update(losers)
        await _cancel_all(tasks, cancelled_by_us)
    for i in range(len(tasks)):
        if i not in records:
            settle(i)
    return HedgeResult(
        attempts=tuple(records[i] for i in range(len(tasks))),
        winner=winner,
        value=value,
        error=None if winner is not None else last_error,
        hedge_declined=declined,
    )


async def _cancel_all(tasks: list[asyncio.Task[T]], cancelled_by_us: set[int]) -> None:
    live = [t for t in tasks if not t.done()]
    for i, task in enumerate(tasks):
        if not task.done():
            cancelled_by_us.add(i)
            task.cancel()
    if live:
        # Wait for the cancellations to land so no attempt outlives the call.
        await asyncio.wait(live)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark retrieved: outcomes are reported via HedgeResult


class LatencyTracker:
    """Ring buffer of recent durations; quantiles feed the hedge delay.

    `quantile()` returns None until `min_samples` durations were recorded, so callers
    don't hedge on a cold, unrepresentative estimate. A sorted copy is kept up to date
    as durations come and go (a bisect each), because every hedgeable call reads a
    quantile right after the previous one recorded: re-sorting on each read cost more.
    """

    __slots__ = ("_capacity", "_min_samples", "_samples", "_sorted")

    def __init__(self, capacity: int = 512, min_samples: int = 20) -> None:
        if capacity < 1 or not 1 <= min_samples <= capacity:
            raise ValueError("need capacity >= 1 and 1 <= min_samples <= capacity")
        self._capacity = capacity
        self._samples: deque[float] = deque()
        self._min_samples = min_samples
        self._sorted: list[float] = []

    def record(self, duration_s: float) -> None:
        if len(self._samples) == self._capacity:
            oldest = self._samples.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._samples.append(duration_s)
        bisect.insort(self._sorted, duration_s)

    def __len__(self) -> int:
        return len(self._samples)

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile, q in [0, 1]."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        n = len(self._samples)
        if n < self._min_samples:
            return None
        return self._sorted[max(0, math.ceil(q * n) - 1)]

    def p95(self) -> float | None:
        return self.quantile(0.95)
