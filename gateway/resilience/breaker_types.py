"""Value types of the circuit breaker: states, reasons, config, events and snapshots.

Kept apart from the state machine so configuration can be imported (e.g. by config
loaders) without the behaviour, and so each module stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import grpc

DEFAULT_RECORDED_FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class TransitionReason(StrEnum):
    FAILURE_RATE_EXCEEDED = "failure_rate_exceeded"
    SLOW_CALL_RATE_EXCEEDED = "slow_call_rate_exceeded"
    OPEN_WAIT_ELAPSED = "open_wait_elapsed"
    HALF_OPEN_PROBES_PASSED = "half_open_probes_passed"
    HALF_OPEN_PROBES_FAILED = "half_open_probes_failed"
    HALF_OPEN_PROBES_SLOW = "half_open_probes_slow"
    HALF_OPEN_TIMEOUT = "half_open_timeout"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker tuning. Every field has a production default; validated on construction."""

    window_type: Literal["count", "time"] = "count"
    """"count": last `window_size` calls; "time": calls of the last `window_size` seconds."""
    window_size: int = 20
    """Calls (count window) or whole seconds (time window, one bucket per second)."""
    minimum_calls: int = 10
    """Calls the window must hold before rates are evaluated. For a count window the
    effective minimum is min(minimum_calls, window_size), as in Resilience4j."""
    failure_rate_threshold: float = 50.0
    """Percent. CLOSED trips when failure rate >= this; HALF_OPEN reopens when >= this."""
    slow_call_rate_threshold: float = 100.0
    """Percent. Same rule as the failure threshold, applied to the slow-call rate
    (100 = trip only when every call in the window was slow)."""
    slow_call_duration_s: float = 2.0
    """A call is slow when its duration is strictly greater than this (successes and
    failures alike)."""
    wait_in_open_s: float = 5.0
    """Base OPEN wait before the first probe, for the first consecutive trip."""
    wait_multiplier: float = 2.0
    """OPEN wait = min(wait_in_open_s * wait_multiplier**(consecutive_trips-1), max)."""
    max_wait_in_open_s: float = 60.0
    """Cap on the (pre-jitter) OPEN wait."""
    wait_jitter: float = 0.2
    """Fractional jitter applied after capping: wait *= uniform(1-j, 1+j). Spreads the
    probes of many gateways so a recovering upstream is not hit in lock-step."""
    permitted_calls_in_half_open: int = 3
    """Max concurrent probes in HALF_OPEN; the decision is taken once this many results
    (ignored codes and released permits excluded) are in."""
    max_half_open_s: float = 10.0
    """HALF_OPEN still undecided after this long (probes lost, hung or too little traffic)
    goes back to OPEN and counts as a trip, so the breaker can never stay stuck."""
    recorded_failure_codes: frozenset[grpc.StatusCode] = field(
        default=DEFAULT_RECORDED_FAILURE_CODES
    )
    """Codes counted as failures. OK/None is a success; every other code (INVALID_ARGUMENT,
    NOT_FOUND, FAILED_PRECONDITION, CANCELLED, ...) is ignored: not recorded at all, and
    in HALF_OPEN its probe slot is given back."""

    def __post_init__(self) -> None:
        if self.window_type not in ("count", "time"):
            raise ValueError(f"window_type must be 'count' or 'time', not {self.window_type!r}")
        if self.window_size < 1 or self.minimum_calls < 1:
            raise ValueError("window_size and minimum_calls must be >= 1")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            if not 0.0 < getattr(self, name) <= 100.0:
                raise ValueError(f"{name} must be in (0, 100]")
        if self.wait_in_open_s < 0 or self.max_wait_in_open_s < self.wait_in_open_s:
            raise ValueError("need 0 <= wait_in_open_s <= max_wait_in_open_s")
        if self.wait_multiplier < 1.0:
            raise ValueError("wait_multiplier must be >= 1")
        if not 0.0 <= self.wait_jitter < 1.0:
            raise ValueError("wait_jitter must be in [0, 1)")
        if self.permitted_calls_in_half_open < 1 or self.max_half_open_s <= 0:
            raise ValueError("permitted_calls_in_half_open >= 1 and max_half_open_s > 0")
        if grpc.StatusCode.OK in self.recorded_failure_codes:
            raise ValueError("OK cannot be a recorded failure code")


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """Emitted to listeners (synchronously) at every state transition."""

    breaker: str
    from_state: CircuitState
    to_state: CircuitState
    reason: TransitionReason
    at: float
    """Monotonic time of the transition (the breaker's clock)."""
    failure_rate: float
    slow_rate: float
    generation: int
    """Generation entered by this transition."""
    consecutive_trips: int
    open_wait_s: float | None
    """Jittered wait before the next probe when `to_state` is OPEN, else None."""


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    name: str
    state: CircuitState
    failure_rate: float
    """CLOSED/FORCED_OPEN/DISABLED: live window; OPEN: the rate that tripped it;
    HALF_OPEN: probe results so far."""
    slow_rate: float
    calls_in_window: int
    time_in_state_s: float
    next_probe_in_s: float | None
    """OPEN only: seconds until a probe is allowed (0.0 = the next try_acquire probes)."""
    consecutive_trips: int
    generation: int
    half_open_in_flight: int
    rejected_calls: int
    """Rejections since construction (monotonic counter, for metrics)."""
    late_results: int
    """Results dropped because they belonged to an older generation."""
