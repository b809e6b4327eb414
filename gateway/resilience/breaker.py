"""Circuit breaker with Resilience4j semantics, tuned for a hot path.

`try_acquire()` is synchronous and allocation-light: in CLOSED/DISABLED it does not even read
the clock, and in OPEN it is one clock read and one comparison. Logging and listener calls
happen only on state transitions.

Not thread-safe: one breaker belongs to one asyncio event loop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import grpc

from gateway.resilience.breaker_types import (
    DEFAULT_RECORDED_FAILURE_CODES,
    DEFAULT_RECORDED_FAILURE_REASONS,
    BreakerConfig,
    BreakerSnapshot,
    BreakerTransition,
    CircuitState,
    TransitionReason,
    is_recorded_failure,
)
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.window import CountWindow, OutcomeWindow, TimeWindow

_log = logging.getLogger("harag.breaker")

_OK = grpc.StatusCode.OK

__all__ = [
    "DEFAULT_RECORDED_FAILURE_CODES",
    "DEFAULT_RECORDED_FAILURE_REASONS",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerTransition",
    "CircuitBreaker",
    "CircuitState",
    "Listener",
    "Permit",
    "TransitionReason",
]

Listener = Callable[[BreakerTransition], None]


class Permit:
    """One admitted call. Settle it exactly once: `on_result` or `release_unused`.

    Extra settlements are no-ops. A permit that is never settled only matters in HALF_OPEN,
    where `max_half_open_s` eventually reclaims its probe slot.
    """

    __slots__ = ("_breaker", "_settled", "generation", "hung", "probe")

    def __init__(self, breaker: CircuitBreaker, generation: int, probe: bool) -> None:
        self._breaker = breaker
        self.generation = generation
        self.probe = probe
        self._settled = False
        self.hung = False  # already recorded as slow while in flight

    def on_slow_in_flight(self) -> bool:
        """The call is still in flight past the slow-call threshold: records it as a slow
        call now, once (its eventual result is then not recorded again). True when this
        opened the breaker."""
        if self._settled or self.hung:
            return False
        self.hung = True
        return self._breaker._on_slow_in_flight(self)

    def on_result(
        self, code: grpc.StatusCode | None, duration_s: float, reason: str | None = None
    ) -> None:
        """Records the call outcome; `None` or OK means success. `reason` is the error's
        ErrorInfo reason, if any (a configuration failure counts even as FAILED_PRECONDITION)."""
        if self._settled:
            return
        self._settled = True
        self._breaker._on_result(self, code, duration_s, reason)

    def release_unused(self) -> None:
        """The call was never made (bulkhead full, deadline too short): give the slot back."""
        if self._settled:
            return
        self._settled = True
        self._breaker._release(self)


class CircuitBreaker:
    """See module docstring and `BreakerConfig` for semantics."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        slow_call_duration_s: float | None = None,
    ) -> None:
        """`slow_call_duration_s` overrides the config's (an upstream's stage-derived one)."""
        self.name = name
        self.config = cfg = config or BreakerConfig()
        self._clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        self._window: OutcomeWindow
        if cfg.window_type == "count":
            self._window = CountWindow(cfg.window_size)
            self._min_calls = min(cfg.minimum_calls, cfg.window_size)
        else:
            self._window = TimeWindow(cfg.window_size, self._clock)
            self._min_calls = cfg.minimum_calls
        self._probes = CountWindow(cfg.permitted_calls_in_half_open)
        self._failure_threshold = cfg.failure_rate_threshold
        self._slow_threshold = cfg.slow_call_rate_threshold
        self._slow_s = slow_call_duration_s or cfg.slow_call_duration_s
        self._slow_to_open = cfg.slow_calls_to_open
        self._consecutive_slow = 0  # slow-in-flight calls since the last quicker result
        self._recorded = cfg.recorded_failure_codes
        self._recorded_reasons = cfg.recorded_failure_reasons
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._entered_at = self._clock.monotonic()
        self._open_until = 0.0
        self._consecutive_trips = 0
        self._probes_issued = 0  # outstanding + recorded probes of the current HALF_OPEN
        self._trip_rates = (0.0, 0.0, 0)  # failure rate, slow rate, calls at the last trip
        self._rejected = 0
        self._late = 0
        self._listeners: list[Listener] = []

    # -- hot path -----------------------------------------------------------------------

    def try_acquire(self) -> Permit | None:
        """A permit for one call, or None when the call must not be made."""
        state = self._state
        if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
            return Permit(self, self._generation, False)
        if state is CircuitState.FORCED_OPEN:
            self._rejected += 1
            return None
        now = self._clock.monotonic()
        if state is CircuitState.OPEN:
            if now < self._open_until:
                self._rejected += 1
                return None
            self._transition(CircuitState.HALF_OPEN, TransitionReason.OPEN_WAIT_ELAPSED, now)
        # HALF_OPEN
        if now - self._entered_at >= self.config.max_half_open_s:
            self._trip(TransitionReason.HALF_OPEN_TIMEOUT, now, self._probes)
            self._rejected += 1
            return None
        if self._probes_issued >= self.config.permitted_calls_in_half_open:
            self._rejected += 1
            return None
        self._probes_issued += 1
        return Permit(self, self._generation, True)

    def _on_result(
        self,
        permit: Permit,
        code: grpc.StatusCode | None,
        duration_s: float,
        reason: str | None = None,
    ) -> None:
        if permit.generation != self._generation:
            self._late += 1
            return
        state = self._state
        if state is CircuitState.DISABLED:
            return
        if code is None or code is _OK:
            failure = False
        elif is_recorded_failure(code, reason, self._recorded, self._recorded_reasons):
            failure = True
        else:
            if state is CircuitState.HALF_OPEN:
                self._probes_issued -= 1
            return
        if permit.hung:  # recorded as slow while in flight already
            return
        slow = duration_s > self._slow_s
        if not slow:
            self._consecutive_slow = 0
        if state is CircuitState.CLOSED:
            window = self._window
            window.record(failure=failure, slow=slow)
            if window.calls >= self._min_calls:
                reason = self._exceeded(window)
                if reason is not None:
                    self._trip(reason, self._clock.monotonic(), window)
            return
        # HALF_OPEN (same generation, so the state cannot be OPEN/FORCED_OPEN here)
        self._record_probe(failure, slow)

    def _on_slow_in_flight(self, permit: Permit) -> bool:
        if permit.generation != self._generation:
            return False
        state = self._state
        now = self._clock.monotonic()
        if state is CircuitState.CLOSED:
            window = self._window
            window.record(failure=False, slow=True)
            self._consecutive_slow += 1
            if self._consecutive_slow >= self._slow_to_open:
                self._trip(TransitionReason.CONSECUTIVE_SLOW_CALLS, now, window)
                return True
            if window.calls >= self._min_calls and (reason := self._exceeded(window)):
                self._trip(reason, now, window)
                return True
            return False
        if state is CircuitState.HALF_OPEN:
            # A probe hanging past the threshold: the upstream has not recovered.
            self._probes.record(failure=False, slow=True)
            self._trip(TransitionReason.HALF_OPEN_PROBES_SLOW, now, self._probes)
            return True
        return False

    def _record_probe(self, failure: bool, slow: bool) -> None:
        now = self._clock.monotonic()
        if now - self._entered_at >= self.config.max_half_open_s:
            self._trip(TransitionReason.HALF_OPEN_TIMEOUT, now, self._probes)
            return
        probes = self._probes
        probes.record(failure=failure, slow=slow)
        if probes.calls >= self.config.permitted_calls_in_half_open:
            reason = self._exceeded(probes)
            if reason is None:
                self._consecutive_trips = 0
                self._transition(
                    CircuitState.CLOSED,
                    TransitionReason.HALF_OPEN_PROBES_PASSED,
                    now,
                    probes.failure_rate,
                    probes.slow_rate,
                )
            else:
                if reason is TransitionReason.FAILURE_RATE_EXCEEDED:
                    reason = TransitionReason.HALF_OPEN_PROBES_FAILED
                else:
                    reason = TransitionReason.HALF_OPEN_PROBES_SLOW
                self._trip(reason, now, probes)

    def _release(self, permit: Permit) -> None:
        if permit.probe and permit.generation == self._generation:
            self._probes_issued -= 1

    def _exceeded(self, window: OutcomeWindow) -> TransitionReason | None:
        if window.failure_rate >= self._failure_threshold:
            return TransitionReason.FAILURE_RATE_EXCEEDED
        if window.slow_rate >= self._slow_threshold:
            return TransitionReason.SLOW_CALL_RATE_EXCEEDED
        return None

    # -- transitions ----------------------------------------------------------------------

    def _trip(self, reason: TransitionReason, now: float, window: OutcomeWindow) -> None:
        cfg = self.config
        self._consecutive_trips += 1
        self._consecutive_slow = 0
        try:
            base = cfg.wait_in_open_s * cfg.wait_multiplier ** (self._consecutive_trips - 1)
        except OverflowError:  # absurd trip counts: the cap applies anyway
            base = cfg.max_wait_in_open_s
        base = min(base, cfg.max_wait_in_open_s)
        jitter = cfg.wait_jitter
        wait = base * (1.0 + self._rng.uniform(-jitter, jitter)) if jitter else base
        self._open_until = now + wait
        fr, sr = window.failure_rate, window.slow_rate
        self._trip_rates = (fr, sr, window.calls)
        self._transition(CircuitState.OPEN, reason, now, fr, sr, open_wait_s=wait)

    def _transition(
        self,
        to: CircuitState,
        reason: TransitionReason,
        now: float,
        failure_rate: float | None = None,
        slow_rate: float | None = None,
        *,
        open_wait_s: float | None = None,
    ) -> None:
        from_state = self._state
        if failure_rate is None or slow_rate is None:
            failure_rate, slow_rate = self._window.failure_rate, self._window.slow_rate
        self._state = to
        self._generation += 1
        self._entered_at = now
        if to is CircuitState.HALF_OPEN:
            self._probes.reset()
            self._probes_issued = 0
        elif to is CircuitState.CLOSED:
            self._window.reset()
            self._consecutive_slow = 0
        event = BreakerTransition(
            breaker=self.name,
            from_state=from_state,
            to_state=to,
            reason=reason,
            at=now,
            failure_rate=failure_rate,
            slow_rate=slow_rate,
            generation=self._generation,
            consecutive_trips=self._consecutive_trips,
            open_wait_s=open_wait_s,
        )
        _log.info(
            "breaker transition",
            extra={
                "event": "breaker_transition",
                "breaker": self.name,
                "from_state": from_state.value,
                "to_state": to.value,
                "reason": reason.value,
                "failure_rate": round(failure_rate, 2),
                "slow_rate": round(slow_rate, 2),
                "generation": self._generation,
                "consecutive_trips": self._consecutive_trips,
                "open_wait_s": None if open_wait_s is None else round(open_wait_s, 3),
            },
        )
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken metrics hook must not break the breaker
                _log.exception("breaker listener failed", extra={"breaker": self.name})

    # -- manual control -------------------------------------------------------------------

    def probe_now(self) -> bool:
        """OPEN -> HALF_OPEN without waiting out the open wait: the upstream says it is
        SERVING again (a restart), so the next calls are probes. True if it transitioned."""
        if self._state is not CircuitState.OPEN:
            return False
        self._transition(
            CircuitState.HALF_OPEN, TransitionReason.HEALTH_SERVING, self._clock.monotonic()
        )
        return True

    def open_remotely(self, wait_s: float) -> bool:
        """Another replica's breaker for this upstream opened: stop calling for `wait_s`
        (what is left of its open wait), then probe like after a local trip. Applies to
        CLOSED and HALF_OPEN; an OPEN breaker only waits longer if the remote wait ends
        later; FORCED_OPEN and DISABLED are an operator's and stay. The local trip count is
        not raised: the next local trip's wait does not grow because of a remote one.
        True if the breaker is now OPEN until later than before."""
        if wait_s <= 0:
            return False
        state = self._state
        now = self._clock.monotonic()
        until = now + wait_s
        if state is CircuitState.OPEN:
            if until <= self._open_until:
                return False
            self._open_until = until
            return True
        if state is not CircuitState.CLOSED and state is not CircuitState.HALF_OPEN:
            return False
        self._open_until = until
        self._consecutive_slow = 0
        window = self._probes if state is CircuitState.HALF_OPEN else self._window
        self._trip_rates = (window.failure_rate, window.slow_rate, window.calls)
        self._transition(CircuitState.OPEN, TransitionReason.REMOTE_OPEN, now, open_wait_s=wait_s)
        return True

    def force_open(self) -> None:
        """Rejects everything until `reset()`; no automatic probing."""
        if self._state is not CircuitState.FORCED_OPEN:
            self._transition(
                CircuitState.FORCED_OPEN, TransitionReason.FORCED_OPEN, self._clock.monotonic()
            )

    def disable(self) -> None:
        """Admits everything and records nothing until `reset()`."""
        if self._state is not CircuitState.DISABLED:
            self._transition(
                CircuitState.DISABLED, TransitionReason.DISABLED, self._clock.monotonic()
            )

    def reset(self) -> None:
        """Back to a fresh CLOSED: window cleared, trip count zeroed, in-flight results
        dropped (new generation). Always emits a transition, even from CLOSED."""
        self._consecutive_trips = 0
        self._transition(CircuitState.CLOSED, TransitionReason.RESET, self._clock.monotonic())

    # -- observability --------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> CircuitState:
        """Stored state; OPEN->HALF_OPEN happens lazily in `try_acquire`."""
        return self._state

    @property
    def generation(self) -> int:
        return self._generation

    def snapshot(self) -> BreakerSnapshot:
        """Side-effect free: reports lazily-due transitions without performing them."""
        now = self._clock.monotonic()
        state = self._state
        next_probe: float | None = None
        if state is CircuitState.OPEN:
            fr, sr, calls = self._trip_rates
            next_probe = max(0.0, self._open_until - now)
        else:
            window = self._probes if state is CircuitState.HALF_OPEN else self._window
            fr, sr, calls = window.failure_rate, window.slow_rate, window.calls
        return BreakerSnapshot(
            name=self.name,
            state=state,
            failure_rate=fr,
            slow_rate=sr,
            calls_in_window=calls,
            time_in_state_s=now - self._entered_at,
            next_probe_in_s=next_probe,
            consecutive_trips=self._consecutive_trips,
            generation=self._generation,
            half_open_in_flight=(
                self._probes_issued - self._probes.calls if state is CircuitState.HALF_OPEN else 0
            ),
            rejected_calls=self._rejected,
            late_results=self._late,
            slow_call_duration_s=self._slow_s,
            consecutive_slow_calls=self._consecutive_slow,
        )

    @property
    def slow_call_duration_s(self) -> float:
        return self._slow_s
