"""Calls in flight on one upstream, and the watch that turns a hung call into evidence.

Resilience4j learns a call was slow only when it ends; a hung upstream's calls end at their
timeout, seconds later, and until then every new query joins them. Here each call in
flight is known (its start time, its task), and one periodic watch for all upstreams
records a call still in flight past the slow-call threshold as a slow call, once, while it
is still waiting (`Permit.on_slow_in_flight`). When that opens the breaker, the calls still
waiting on the upstream give up at once (outcome HUNG) and their queries go on to the next
tier instead of waiting out their timeouts.

Per call: one small slotted object and a deque append; finished calls leave the deque from
its left end (amortised O(1)), so it holds about the calls in flight.
Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator

from gateway.resilience.breaker import Permit


class InFlightCall:
    """One logical call between its admission and its end."""

    __slots__ = ("abandoned", "awaiting", "done", "permit", "slow", "started", "task")

    def __init__(
        self, started: float, task: asyncio.Task[object] | None, permit: Permit | None
    ) -> None:
        self.started = started
        self.task = task
        self.permit = permit
        self.done = False
        self.slow = False  # seen in flight past the slow-call threshold
        self.awaiting = False  # inside an attempt's RPC (the only place it may be abandoned)
        self.abandoned = False  # cancelled by the watch because the breaker opened on hangs


class InFlight:
    """The calls in flight on one upstream, in start order."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: deque[InFlightCall] = deque()

    def begin(self, started: float, permit: Permit | None) -> InFlightCall:
        calls = self._calls
        while calls and calls[0].done:
            calls.popleft()
        call = InFlightCall(started, asyncio.current_task(), permit)
        calls.append(call)
        return call

    def _live(self) -> Iterator[InFlightCall]:
        calls = self._calls
        while calls and calls[0].done:
            calls.popleft()
        return (c for c in calls if not c.done)

    def count(self) -> int:
        return sum(1 for _ in self._live())

    def oldest_started(self) -> float | None:
        """Start time of the oldest call still in flight, None when none is."""
        return next((c.started for c in self._live()), None)

    def newly_slow(self, started_before: float) -> list[InFlightCall]:
        """Marks and returns the calls in flight that started before `started_before` and
        were not seen slow yet (the deque is in start order, so this stops at the first
        younger call)."""
        found = []
        for call in self._live():
            if call.started >= started_before:
                break
            if not call.slow:
                call.slow = True
                found.append(call)
        return found

    def abandon_waiting(self) -> int:
        """Cancels every call waiting on the upstream's answer; returns how many."""
        n = 0
        for call in self._live():
            if call.awaiting and not call.abandoned and call.task is not None:
                call.abandoned = True
                call.task.cancel("the breaker opened on hung calls")
                n += 1
        return n
