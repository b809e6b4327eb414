"""Sliding windows of call outcomes, and a rolling per-second counter.

All updates are O(1) amortised: totals are maintained incrementally by subtracting what
falls out of the window, so reading a rate never scans the window.

Not thread-safe: everything here is meant to be used from one asyncio event loop.
"""

from __future__ import annotations

import math
from typing import Protocol

from gateway.resilience.clock import Clock

_FAILURE = 1
_SLOW = 2


class OutcomeWindow(Protocol):
    """What the circuit breaker needs from a window."""

    def record(self, *, failure: bool, slow: bool) -> None: ...

    def reset(self) -> None: ...

    @property
    def calls(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def slow_calls(self) -> int: ...

    @property
    def failure_rate(self) -> float: ...

    @property
    def slow_rate(self) -> float: ...


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


class CountWindow:
    """Outcomes of the last `size` recorded calls (circular array, Resilience4j style)."""

    __slots__ = ("_calls", "_failures", "_next", "_ring", "_size", "_slow")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        self._size = size
        self._ring = [0] * size
        self._next = 0
        self._calls = 0
        self._failures = 0
        self._slow = 0

    @property
    def size(self) -> int:
        return self._size

    def record(self, *, failure: bool, slow: bool) -> None:
        idx = self._next
        if self._calls == self._size:
            evicted = self._ring[idx]
            if evicted & _FAILURE:
                self._failures -= 1
            if evicted & _SLOW:
                self._slow -= 1
        else:
            self._calls += 1
        flags = 0
        if failure:
            flags |= _FAILURE
            self._failures += 1
        if slow:
            flags |= _SLOW
            self._slow += 1
        self._ring[idx] = flags
        self._next = idx + 1 if idx + 1 < self._size else 0

    def reset(self) -> None:
        self._ring = [0] * self._size
        self._next = self._calls = self._failures = self._slow = 0

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def slow_calls(self) -> int:
        return self._slow

    @property
    def failure_rate(self) -> float:
        return _percent(self._failures, self._calls)

    @property
    def slow_rate(self) -> float:
        return _percent(self._slow, self._calls)


class RollingCounters:
    """`fields` integer counters summed over the last `window_s` whole seconds.

    One bucket per second per field. The window covers the current (partial) second plus
    the `window_s - 1` before it, so its effective span is between window_s-1 and window_s.
    """

    __slots__ = ("_buckets", "_clock", "_head", "_n", "_totals")

    def __init__(self, window_s: int, clock: Clock, fields: int = 1) -> None:
        if window_s < 1:
            raise ValueError("window_s must be >= 1")
        if fields < 1:
            raise ValueError("fields must be >= 1")
        self._n = window_s
        self._clock = clock
        self._buckets = [[0] * window_s for _ in range(fields)]
        self._totals = [0] * fields
        self._head = math.floor(clock.monotonic())

    def _roll(self) -> int:
        """Evicts buckets that aged out and returns the current bucket index."""
        sec = math.floor(self._clock.monotonic())
        head = self._head
        if sec > head:
            n = self._n
            # After a gap of >= n seconds every bucket is stale, so never loop more than n.
            for s in range(head + 1, head + 1 + min(sec - head, n)):
                i = s % n
                for field, buckets in enumerate(self._buckets):
                    if buckets[i]:
                        self._totals[field] -= buckets[i]
                        buckets[i] = 0
            self._head = sec
        return self._head % self._n

    def add(self, *increments: int) -> None:
        """Adds increments positionally: `add(1, 0, 1)` bumps fields 0 and 2."""
        i = self._roll()
        for field, inc in enumerate(increments):
            if inc:
                self._buckets[field][i] += inc
                self._totals[field] += inc

    def total(self, field: int = 0) -> int:
        self._roll()
        return self._totals[field]

    def reset(self) -> None:
        for buckets in self._buckets:
            buckets[:] = [0] * self._n
        self._totals = [0] * len(self._totals)
        self._head = math.floor(self._clock.monotonic())


class TimeWindow:
    """Outcomes of calls recorded in the last `size_s` seconds, bucketed per second."""

    __slots__ = ("_counters", "_size")

    def __init__(self, size_s: int, clock: Clock) -> None:
        self._size = size_s
        # Fields: 0 = calls, 1 = failures, 2 = slow calls.
        self._counters = RollingCounters(size_s, clock, fields=3)

    @property
    def size(self) -> int:
        return self._size

    def record(self, *, failure: bool, slow: bool) -> None:
        self._counters.add(1, int(failure), int(slow))

    def reset(self) -> None:
        self._counters.reset()

    @property
    def calls(self) -> int:
        return self._counters.total(0)

    @property
    def failures(self) -> int:
        return self._counters.total(1)

    @property
    def slow_calls(self) -> int:
        return self._counters.total(2)

    @property
    def failure_rate(self) -> float:
        return _percent(self.failures, self.calls)

    @property
    def slow_rate(self) -> float:
        return _percent(self.slow_calls, self.calls)
