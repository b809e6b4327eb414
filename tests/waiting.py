"""Waiting in tests: poll a condition until it holds, or fail once a deadline has passed.

A test never sleeps for a fixed time hoping that something has happened meanwhile: on a
loaded machine it may not have, and on an idle one the test waits for nothing. Sleeps that
pace load or let time pass on purpose (a TTL, an open wait) are another matter.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


async def wait_until(
    check: Callable[[], T | Awaitable[T]],
    *,
    what: str,
    timeout_s: float = 10.0,
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Calls `check` (plain or async) until it returns a truthy value, and returns that value.

    Raises AssertionError naming `what` and the last value seen once `timeout_s` has passed.
    """
    end = time.monotonic() + timeout_s
    while True:
        result = check()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"{what}: not within {timeout_s:g}s (last seen: {value!r})")
        await asyncio.sleep(interval_s)
