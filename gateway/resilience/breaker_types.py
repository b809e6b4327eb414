"""Value types of the circuit breaker: states, reasons, config, events and snapshots.

Kept apart from the state machine so configuration can be imported (e.g. by config
loaders) without the behaviour, and so each module stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import grpc

from servicekit.settings import RuleViolation, check_fields, setting

DEFAULT_RECORDED_FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)

# ErrorInfo reasons (harag.v1 domain) of upstreams that cannot serve anybody until an operator
# fixes their configuration: the model provider rejected the key, the account is out of
# quota, the model does not exist. They come as FAILED_PRECONDITION (retrying cannot help),
# yet they say everything about the upstream, so they count against its breaker; the chain
# then goes to the next tier. Other FAILED_PRECONDITIONs (e.g. a retriever without an index
# for the query's model) are about the request and stay unrecorded.
DEFAULT_RECORDED_FAILURE_REASONS: frozenset[str] = frozenset(
    {
        "PROVIDER_AUTH",
        "PROVIDER_QUOTA",
        "PROVIDER_MODEL_NOT_FOUND",
        "EMBEDDING_UPSTREAM_AUTH",
        "EMBEDDING_UPSTREAM_QUOTA",
        "EMBEDDING_UPSTREAM_MODEL_NOT_FOUND",
    }
)


def is_recorded_failure(
    code: grpc.StatusCode | None,
    reason: str | None,
    codes: frozenset[grpc.StatusCode] = DEFAULT_RECORDED_FAILURE_CODES,
    reasons: frozenset[str] = DEFAULT_RECORDED_FAILURE_REASONS,
) -> bool:
    """Whether an outcome says the upstream is failing: a recorded code, or a configuration
    failure (FAILED_PRECONDITION with one of `reasons`)."""
    if code in codes:
        return True
    return code is grpc.StatusCode.FAILED_PRECONDITION and reason in reasons


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class TransitionReason(StrEnum):
    FAILURE_RATE_EXCEEDED = "failure_rate_exceeded"
    SLOW_CALL_RATE_EXCEEDED = "slow_call_rate_exceeded"
    CONSECUTIVE_SLOW_CALLS = "consecutive_slow_calls"
    """`slow_calls_to_open` calls in a row stayed in flight past the slow-call threshold."""
    HEALTH_SERVING = "health_serving"
    """OPEN -> HALF_OPEN early: the upstream's health check turned SERVING (a restart)."""
    OPEN_WAIT_ELAPSED = "open_wait_elapsed"
    HALF_OPEN_PROBES_PASSED = "half_open_probes_passed"
    HALF_OPEN_PROBES_FAILED = "half_open_probes_failed"
    HALF_OPEN_PROBES_SLOW = "half_open_probes_slow"
    HALF_OPEN_TIMEOUT = "half_open_timeout"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
    RESET = "reset"
    REMOTE_OPEN = "remote_open"
    """Another gateway replica's breaker for the same upstream opened (shared decisions)."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker tuning, Resilience4j semantics. Every field has a production default and is
    validated on construction; the gateway's `breaker_*` settings are these fields."""

    window_type: Literal["count", "time"] = setting(
        "count",
        "breaker_window_type",
        "Sliding window kind: count = the last `window_size` calls, time = the calls of the "
        "last `window_size` seconds.",
    )
    window_size: int = setting(
        20,
        "breaker_window_size",
        "Window size: calls (count window) or whole seconds (time window, one bucket per second).",
        unit="calls or s",
        minimum=1,
        maximum=10000,
    )
    minimum_calls: int = setting(
        10,
        "breaker_minimum_calls",
        "Calls the window must hold before the rates can open the breaker (for a count window "
        "at most window_size, as in Resilience4j).",
        unit="calls",
        minimum=1,
        maximum=10000,
    )
    failure_rate_threshold: float = setting(
        50.0,
        "breaker_failure_rate_threshold",
        "Failure rate that opens the breaker (CLOSED trips, HALF_OPEN reopens when >= this).",
        unit="%",
        minimum=0,
        above_minimum=True,
        maximum=100,
    )
    slow_call_rate_threshold: float = setting(
        100.0,
        "breaker_slow_call_rate_threshold",
        "Slow-call rate that opens the breaker (100 = only when every call in the window was "
        "slow).",
        unit="%",
        minimum=0,
        above_minimum=True,
        maximum=100,
    )
    slow_call_duration_s: float = setting(
        2.0,
        "breaker_slow_call_duration_s",
        "A call slower than this is slow (successes and failures alike).",
        unit="s",
        minimum=0.001,
    )
    slow_call_cap_fraction: float = setting(
        0.5,
        "breaker_slow_call_cap_fraction",
        "An upstream's slow-call threshold is min(slow_call_duration_s, this fraction of its "
        "stage's per-attempt timeout cap): Embed and Search at 0.5 s, Generate at 1.5 s by "
        "default, so a stage measured in milliseconds is not judged in seconds.",
        unit="fraction",
        minimum=0,
        above_minimum=True,
        maximum=1,
    )
    slow_calls_to_open: int = setting(
        3,
        "breaker_slow_calls_to_open",
        "Calls in a row seen still in flight past the slow-call threshold (with no quicker "
        "result between them) that open the breaker at once, before minimum_calls: a hung "
        "upstream is evidence while its calls are still waiting.",
        unit="calls",
        minimum=1,
        maximum=10000,
    )
    watch_interval_s: float = setting(
        0.05,
        "breaker_watch_interval_s",
        "How often the gateway looks at the calls in flight for ones past the slow-call "
        "threshold (one loop for all upstreams).",
        unit="s",
        minimum=0.005,
        maximum=5,
    )
    wait_in_open_s: float = setting(
        5.0,
        "breaker_wait_in_open_s",
        "Open wait before the first probe, after the first consecutive trip.",
        unit="s",
        minimum=0.001,
    )
    wait_multiplier: float = setting(
        2.0,
        "breaker_wait_multiplier",
        "Open wait growth per consecutive trip: wait_in_open_s * multiplier^(trips-1), capped.",
        unit="factor",
        minimum=1,
    )
    max_wait_in_open_s: float = setting(
        60.0,
        "breaker_max_wait_in_open_s",
        "Cap of the open wait (before jitter).",
        unit="s",
        minimum=0.001,
    )
    wait_jitter: float = setting(
        0.2,
        "breaker_wait_jitter",
        "Open wait jitter after capping, wait *= uniform(1-j, 1+j), so the probes of many "
        "gateways do not hit a recovering upstream in lock-step.",
        unit="fraction",
        minimum=0,
        maximum=1,
        below_maximum=True,
    )
    permitted_calls_in_half_open: int = setting(
        3,
        "breaker_permitted_calls_in_half_open",
        "Concurrent probe calls in HALF_OPEN; the decision is taken once this many results are in.",
        unit="calls",
        minimum=1,
        maximum=1000,
    )
    max_half_open_s: float = setting(
        10.0,
        "breaker_max_half_open_s",
        "HALF_OPEN still undecided after this long goes back to OPEN (counted as a trip), so "
        "the breaker can never stay stuck.",
        unit="s",
        minimum=0.001,
    )
    recorded_failure_codes: frozenset[grpc.StatusCode] = field(
        default=DEFAULT_RECORDED_FAILURE_CODES
    )
    """Codes counted as failures. OK/None is a success; every other code (INVALID_ARGUMENT,
    NOT_FOUND, FAILED_PRECONDITION, CANCELLED, ...) is ignored: not recorded at all, and
    in HALF_OPEN its probe slot is given back. Not a setting: it is part of the design."""
    recorded_failure_reasons: frozenset[str] = field(default=DEFAULT_RECORDED_FAILURE_REASONS)
    """FAILED_PRECONDITION with one of these ErrorInfo reasons is a failure too (an upstream
    misconfigured: bad key, no quota, unknown model). Not a setting either."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.wait_in_open_s > self.max_wait_in_open_s:
            raise RuleViolation("{wait_in_open_s} must be <= {max_wait_in_open_s}")
        if grpc.StatusCode.OK in self.recorded_failure_codes:
            raise RuleViolation("{recorded_failure_codes} must not hold OK")


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
    slow_call_duration_s: float
    """This breaker's slow-call threshold (see `BreakerConfig.slow_call_cap_fraction`)."""
    consecutive_slow_calls: int
    """Slow calls in flight in a row so far (CLOSED); `slow_calls_to_open` opens."""
