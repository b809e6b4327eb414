"""tests/waiting.py: returns as soon as the condition holds, fails clearly when it never does."""

from __future__ import annotations

import time

import pytest
from waiting import wait_until


async def test_returns_the_first_truthy_value_of_a_plain_or_async_check() -> None:
    values = iter([0, None, "ready", "later"])
    assert await wait_until(lambda: next(values), what="ready", interval_s=0) == "ready"

    async def check() -> list[int]:
        return [1]

    assert await wait_until(check, what="a list") == [1]


async def test_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    started = time.monotonic()
    calls = []

    def closed_breakers() -> list[str]:
        calls.append(1)
        return []

    with pytest.raises(
        AssertionError, match=r"closed breakers: not within 0.1s \(last seen: \[\]\)"
    ):
        await wait_until(closed_breakers, what="closed breakers", timeout_s=0.1, interval_s=0.01)
    assert len(calls) > 1, "it polled more than once"
    assert time.monotonic() - started < 2
