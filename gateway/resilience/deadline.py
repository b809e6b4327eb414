"""Absolute deadlines and per-attempt timeout arithmetic.

A request carries one absolute deadline; each attempt gets what is left minus a reserve
kept for the tiers that may still have to run after it (down to the local last resort).
"""

from __future__ import annotations

from gateway.resilience.clock import SYSTEM_CLOCK, Clock


class Deadline:
    __slots__ = ("_clock", "at")

    def __init__(self, at: float, clock: Clock | None = None) -> None:
        self.at = at
        """Absolute monotonic time (of `clock`) at which the request is out of time."""
        self._clock = clock or SYSTEM_CLOCK

    @classmethod
    def after(cls, timeout_s: float, clock: Clock | None = None) -> Deadline:
        clk = clock or SYSTEM_CLOCK
        return cls(clk.monotonic() + timeout_s, clk)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self._clock.monotonic())

    @property
    def expired(self) -> bool:
        return self._clock.monotonic() >= self.at

    def attempt_timeout(
        self, reserve_s: float = 0.0, minimum_s: float = 0.0, cap_s: float | None = None
    ) -> float | None:
        """Timeout for the next attempt: remaining - reserve_s (capped at `cap_s`), or None
        when that is below `minimum_s` or not positive - don't start the attempt."""
        timeout = self.at - self._clock.monotonic() - reserve_s
        if timeout <= 0.0 or timeout < minimum_s:
            return None
        return timeout if cap_s is None else min(timeout, cap_s)

    def __repr__(self) -> str:
        return f"Deadline(at={self.at:.3f}, remaining={self.remaining():.3f}s)"
