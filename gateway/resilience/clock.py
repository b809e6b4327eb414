"""Injectable time source.

Every pattern in this package reads time through a `Clock` so that tests can drive state
machines (open waits, time windows, hedge delays) deterministically instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """Monotonic time plus a sleep that honours that same timeline."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: `time.monotonic` and `asyncio.sleep`."""

    __slots__ = ()

    # The builtin itself, not a method wrapping it: hot paths read the clock several times
    # per call, and this keeps `clock.monotonic()` as cheap as `time.monotonic()`.
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


async def done_within(future: asyncio.Future[Any], seconds: float, clock: Clock) -> bool:
    """Waits until `future` is done or `seconds` have passed on `clock`; True if it is done.

    The future is neither cancelled nor awaited for its result. On the system clock this is
    a single loop timer (asyncio.wait's timeout); any other clock is raced through its sleep
    so that tests can drive the wait.
    """
    if clock is SYSTEM_CLOCK:
        done, _ = await asyncio.wait({future}, timeout=max(0.0, seconds))
        return bool(done)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({future, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
    return future.done()


class FakeClock:
    """Manual clock for tests: time only moves when `advance()` is called.

    `sleep()` parks the caller on a future that `advance()` resolves once the fake time
    reaches its wake-up point; the sleeper then resumes on the event loop's next iterations,
    so tests should yield (e.g. `await asyncio.sleep(0)`) after advancing.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        # Sequence number breaks ties so futures are never compared.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Moves time forward and wakes every sleeper whose deadline has been reached."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def pending_sleepers(self) -> int:
        """Sleepers still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    @property
    def next_wakeup(self) -> float | None:
        """When the earliest sleeper still waiting wakes up (None: nobody sleeps)."""
        live = [at for at, _, fut in self._sleepers if not fut.done()]
        return min(live) if live else None

    async def drive(self, awaitable: Awaitable[T], *, settle_rounds: int = 50) -> T:
        """Runs `awaitable` to its end, moving time on only when nothing else can run:
        whenever every task has been waiting for `settle_rounds` loop iterations, time jumps
        to the next sleeper's wake-up. Raises if the awaitable waits on anything but time."""
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                for _ in range(settle_rounds):
                    if task.done():
                        return task.result()
                    await asyncio.sleep(0)
                wakeup = self.next_wakeup
                if wakeup is None:
                    raise RuntimeError("stuck: waiting on something other than the clock")
                self.advance(max(0.0, wakeup - self._now))
        finally:
            task.cancel()
