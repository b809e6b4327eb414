"""Non-blocking bulkhead: caps concurrent calls to one upstream and never queues.

Queueing behind a slow upstream only converts its latency into ours; rejecting immediately
lets the caller fall through to another tier while the deadline still has room.
"""

from __future__ import annotations

import logging
from types import TracebackType

_log = logging.getLogger("harag.bulkhead")


class BulkheadFull(Exception):
    """Raised by `Bulkhead.slot()` when no capacity is left."""

    def __init__(self, name: str, max_concurrent: int) -> None:
        super().__init__(f"bulkhead {name!r} full ({max_concurrent} in flight)")
        self.name = name
        self.max_concurrent = max_concurrent


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
    def available(self) -> int:
        return self._max - self._in_flight

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

    def slot(self) -> _Slot:
        """`async with bulkhead.slot(): ...` (or plain `with`); raises BulkheadFull on entry."""
        return _Slot(self)


class _Slot:
    __slots__ = ("_bulkhead",)

    def __init__(self, bulkhead: Bulkhead) -> None:
        self._bulkhead = bulkhead

    def __enter__(self) -> Bulkhead:
        if not self._bulkhead.try_enter():
            raise BulkheadFull(self._bulkhead.name, self._bulkhead.max_concurrent)
        return self._bulkhead

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bulkhead.leave()

    async def __aenter__(self) -> Bulkhead:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
