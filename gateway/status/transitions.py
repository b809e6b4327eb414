"""Each breaker's recent transitions, for the page's history, and a wake-up for live views.

Breakers report transitions to listeners synchronously (gateway.resilience.breaker); this
keeps the latest few per upstream with the wall-clock time, and tells every waiting event
stream at once, so an operator sees a breaker open without waiting for the next push.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.resilience.breaker_types import BreakerTransition

KEPT_PER_UPSTREAM = 20


class TransitionLog:
    def __init__(
        self, kept: int = KEPT_PER_UPSTREAM, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._kept = kept
        self._wall_clock = wall_clock
        self._by_upstream: dict[str, deque[dict[str, Any]]] = {}
        self._waiters: set[asyncio.Event] = set()

    def __call__(self, event: BreakerTransition) -> None:
        """The breaker listener."""
        history = self._by_upstream.setdefault(event.breaker, deque(maxlen=self._kept))
        history.appendleft(
            {
                "at": self._wall_clock(),
                "from": event.from_state.name,
                "to": event.to_state.name,
                "reason": str(event.reason),
            }
        )
        self.wake_all()

    def wake_all(self) -> None:
        """Wakes every subscriber (on a transition, and when the gateway stops)."""
        for waiter in self._waiters:
            waiter.set()

    def history(self, upstream: str) -> list[dict[str, Any]]:
        """Newest first."""
        return list(self._by_upstream.get(upstream, ()))

    def subscribe(self) -> asyncio.Event:
        """An event set on every transition from now on (clear it after waking)."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)
