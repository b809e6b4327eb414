"""Non-blocking bulkhead: caps concurrent calls to one upstream and never queues.

Queueing behind a slow upstream only converts its latency into ours; rejecting immediately
lets the caller fall through to another tier while the deadline still has room.
"""

from __future__ import annotations

import logging

_log = logging.getLogger("harag.bulkhead")


class Bulkhead:
    __slots__ = ("_in_flight", "_max", "_rejected", "name")

    def __init__(self, max_concurrent: int, *, name: str = "") -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.name = name
        self._max = max_concurrent
        self._in_flight = 0
        self._rejected = 0

    @property
    def max_concurrent(self) -> int:
        return self._max

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def rejected(self) -> int:
        """Rejections since construction (monotonic counter, for metrics)."""
        return self._rejected

    def try_enter(self) -> bool:
        if self._in_flight >= self._max:
            self._rejected += 1
            return False
        self._in_flight += 1
        return True

    def leave(self) -> None:
        if self._in_flight <= 0:
            # An unmatched leave is a caller bug; clamping keeps capacity honest instead of
            # letting it grow past max_concurrent, and raising here would mask the real error.
            _log.error("bulkhead leave without enter", extra={"bulkhead": self.name})
            return
        self._in_flight -= 1
