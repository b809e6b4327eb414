"""Singleflight: concurrent identical requests share one execution.

The shared run is its own task, so a waiter that is cancelled (client went away) only stops
waiting; the run continues for the others. When the last waiter leaves before the run ends,
the run is cancelled too (configurable), since nobody wants its result any more.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Coalesced(Generic[T]):
    value: T
    leader: bool
    """True for the caller whose factory ran; False for followers that shared its result."""


class _Flight(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


async def _invoke(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


class Coalescer(Generic[K, T]):
    """`await coalescer.run(key, factory)` -> `Coalesced(value, leader)`.

    An exception raised by the shared run is raised to every waiter (the same exception
    object). A key is released as soon as its run ends, so a later call runs afresh: this
    deduplicates concurrent work, it is not a cache.
    """

    def __init__(self, *, cancel_when_abandoned: bool = True) -> None:
        self._flights: dict[K, _Flight[T]] = {}
        self._cancel_when_abandoned = cancel_when_abandoned

    @property
    def in_flight(self) -> int:
        """Keys with a run in progress."""
        return len(self._flights)

    def waiters(self, key: K) -> int:
        flight = self._flights.get(key)
        return flight.waiters if flight is not None else 0

    async def run(self, key: K, factory: Callable[[], Awaitable[T]]) -> Coalesced[T]:
        existing = self._flights.get(key)
        # A finished task whose release callback hasn't run yet must not be joined: its
        # result predates this call.
        if existing is None or existing.task.done():
            flight: _Flight[T] = _Flight(asyncio.create_task(_invoke(factory)))
            self._flights[key] = flight
            flight.task.add_done_callback(functools.partial(self._release, key, flight))
            leader = True
        else:
            flight, leader = existing, False
        flight.waiters += 1
        try:
            # shield: cancelling this waiter must not cancel the shared task.
            value = await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and self._cancel_when_abandoned and not flight.task.done():
                flight.task.cancel()
        return Coalesced(value, leader)

    def _release(self, key: K, flight: _Flight[T], _task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.task.cancelled():
            flight.task.exception()  # mark retrieved even if every waiter left
