"""What an upstream's recent calls were like, as its callers saw them: the status's evidence.

Kept apart from the breaker on purpose: the breaker decides whether to call an upstream
(with minimum calls, rates over a window, open waits); the status says how callers fare
now. One slow or failed call in the last few seconds already shows, before and whatever
the breaker decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.window import RollingCounters
from servicekit.settings import check_fields, setting

_CALLS, _FAILURES, _SLOW, _WON, _LOST = range(5)


@dataclass(frozen=True)
class StatusConfig:
    """When an upstream makes GetSystemHealth say DEGRADED, whatever its breaker's state."""

    window_s: int = setting(
        10,
        "status_window_s",
        "Recent calls, for the status: those of the last this many seconds.",
        unit="s",
        minimum=1,
        maximum=3600,
    )
    failure_rate: float = setting(
        20.0,
        "status_failure_rate",
        "An upstream whose recent calls failed at least this often degrades the status.",
        unit="%",
        minimum=0,
        above_minimum=True,
        maximum=100,
    )
    slow_call_rate: float = setting(
        20.0,
        "status_slow_call_rate",
        "An upstream whose recent calls were slow (past its breaker's slow-call threshold) "
        "at least this often degrades the status.",
        unit="%",
        minimum=0,
        above_minimum=True,
        maximum=100,
    )
    hedges_lost_rate: float = setting(
        50.0,
        "status_hedges_lost_rate",
        "An upstream that lost at least this share of its recent hedge races (another tier "
        "answered first) degrades the status.",
        unit="%",
        minimum=0,
        above_minimum=True,
        maximum=100,
    )

    def __post_init__(self) -> None:
        check_fields(self)


class RecentCalls:
    """Calls, failures, slow calls and hedge races won and lost in a rolling window."""

    __slots__ = ("_counters",)

    def __init__(self, window_s: int = 10, clock: Clock = SYSTEM_CLOCK) -> None:
        self._counters = RollingCounters(window_s, clock, fields=5)

    def call(self, *, failure: bool, slow: bool) -> None:
        """A call ended (or was seen in flight past the slow threshold: `slow_in_flight`)."""
        self._counters.add(1, failure, slow)

    def slow_in_flight(self) -> None:
        """A call still in flight is past the threshold: counted now as a slow call (its
        end is then not counted again)."""
        self._counters.add(1, 0, 1)

    def hedge_race(self, *, won: bool) -> None:
        self._counters.add(0, 0, 0, won, not won)

    def reset(self) -> None:
        self._counters.reset()

    @property
    def calls(self) -> int:
        return self._counters.total(_CALLS)

    @property
    def failure_rate(self) -> float:
        return _percent(self._counters.total(_FAILURES), self.calls)

    @property
    def slow_rate(self) -> float:
        return _percent(self._counters.total(_SLOW), self.calls)

    @property
    def hedges_won(self) -> int:
        return self._counters.total(_WON)

    @property
    def hedges_lost(self) -> int:
        return self._counters.total(_LOST)

    @property
    def hedges_lost_rate(self) -> float:
        return _percent(self.hedges_lost, self.hedges_won + self.hedges_lost)


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0
