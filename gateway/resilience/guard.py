"""One logical call to one upstream, guarded: breaker -> bulkhead -> retries within budget.

The breaker sits outside the retries (Resilience4j's advice), so a logical call counts
once however many attempts it took. A full bulkhead or an open breaker rejects in
microseconds, without touching the upstream. Each attempt gets the time left minus the
reserve for whatever must still run after it, and none starts with less than the minimum.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc

from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.breaker_types import is_recorded_failure
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.deadline import Deadline
from gateway.resilience.hedge import LatencyTracker
from gateway.resilience.inflight import InFlight
from gateway.resilience.outcome import caused_by_request, error_reason, status_of
from gateway.resilience.recent import RecentCalls
from gateway.resilience.retry import Metadata, RetryBudget, RetryPolicy, RetryReason, decide_retry

T = TypeVar("T")

# Outcomes of attempts decided without (completing) a call.
BREAKER_OPEN = "BREAKER_OPEN"
BULKHEAD_FULL = "BULKHEAD_FULL"
NO_TIME = "NO_TIME"
HEDGE_LOST = "HEDGE_LOST"
HUNG = "HUNG"  # given up while waiting: the breaker opened on this upstream's hung calls


@dataclass
class AttemptRecord:
    upstream: str
    tier: int
    outcome: str  # gRPC status code name, or a decision such as BREAKER_OPEN
    latency_s: float
    error: str = ""
    retry: bool = False
    hedge: bool = False
    breaker_state: str = ""
    number: int = 0


@dataclass
class Guard:
    """Per-upstream resilience state. Every part is optional (`--bare` uses none)."""

    name: str
    tier: int
    breaker: CircuitBreaker | None = None
    bulkhead: Bulkhead | None = None
    budget: RetryBudget | None = None
    retry: RetryPolicy | None = None
    latency: LatencyTracker = field(default_factory=LatencyTracker)
    # The most recent request sent, replayed by the prober when an open breaker gets no
    # traffic (only set for requests that are safe to repeat).
    last_call: Callable[[float], Awaitable[Any]] | None = None
    # Every retry decision taken after a failed attempt, by reason (exported as metrics and
    # in GetSystemHealth; never reset).
    retry_decisions: collections.Counter[RetryReason] = field(default_factory=collections.Counter)
    # Calls in flight (for the watch) and recent outcomes (for the status); None: not kept.
    inflight: InFlight | None = None
    recent: RecentCalls | None = None
    # Calls slower than this are slow (the breaker's threshold when there is one).
    slow_call_s: float = float("inf")
    # Hedge races this upstream took part in, since start-up.
    hedges_won: int = 0
    hedges_lost: int = 0
    # When the upstream last answered anything (an answer or an error of its own, not a
    # timeout): a call is hang evidence only if nothing was answered since it started.
    answered_at: float = float("-inf")

    @property
    def breaker_state(self) -> str:
        return self.breaker.state.name if self.breaker is not None else ""

    def hedge_race(self, *, won: bool) -> None:
        if won:
            self.hedges_won += 1
        else:
            self.hedges_lost += 1
        if self.recent is not None:
            self.recent.hedge_race(won=won)

    def watch(self, now: float, lag_s: float = 0.0) -> int:
        """Records each call in flight past the slow-call threshold as a slow call, once;
        if that opens the breaker, the calls still waiting give up (`HUNG`). `lag_s` is how
        late the watch itself runs: a starved event loop delays answers and the watch alike,
        so that much of a call's age is not held against the upstream. Returns the number of
        calls newly seen slow."""
        if self.inflight is None:
            return 0
        slow = self.inflight.newly_slow(now - lag_s - self.slow_call_s)
        opened = False
        for call in slow:
            if self.recent is not None:
                self.recent.slow_in_flight()
            # Hang-like only if the upstream answered nothing since the call started: a
            # starved but healthy upstream still answers, slowly; such a call is left to
            # be recorded when it ends, like any other.
            if self.answered_at > call.started:
                continue
            if call.permit is not None and call.permit.on_slow_in_flight():
                opened = True
        if opened:
            self.inflight.abandon_waiting()
        return len(slow)

    def oldest_in_flight_s(self, now: float) -> float:
        """Age of the oldest call in flight (0 when none is or none are tracked)."""
        started = self.inflight.oldest_started() if self.inflight is not None else None
        return 0.0 if started is None else max(0.0, now - started)


class CallFailed(Exception):
    """The logical call failed; `outcome` is the last attempt's outcome."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class AttemptObserver(Protocol):
    """Opens a span (or anything) per attempt; telemetry plugs in here."""

    def start(self, record: AttemptRecord) -> AbstractContextManager[Any]: ...

    def finish(self, handle: Any, record: AttemptRecord) -> None: ...


AttemptListener = Callable[[AttemptRecord], None]


@dataclass
class Attempts:
    """Attempt records of one stage, numbered in start order, reported as they settle."""

    records: list[AttemptRecord] = field(default_factory=list)
    observer: AttemptObserver | None = None
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def begin(self, guard: Guard, *, retry: bool, hedge: bool) -> AttemptRecord:
        return AttemptRecord(
            guard.name,
            guard.tier,
            "",
            0.0,
            retry=retry,
            hedge=hedge,
            breaker_state=guard.breaker_state,
            number=next(self._numbers),
        )

    @contextmanager
    def span(
        self, record: AttemptRecord, on_attempt: AttemptListener | None = None
    ) -> Iterator[None]:
        """Wraps one attempt so an observer's span is the parent of the RPC made inside;
        `on_attempt` hears of the attempt once it has settled."""
        handle = self.observer.start(record) if self.observer is not None else nullcontext()
        with handle as opened:
            try:
                yield
            finally:
                if self.observer is not None:
                    self.observer.finish(opened, record)
                self.records.append(record)
                if on_attempt is not None:
                    on_attempt(record)

    def decided(
        self,
        record: AttemptRecord,
        outcome: str,
        error: str,
        on_attempt: AttemptListener | None = None,
    ) -> None:
        """Records an attempt decided without a call (it still gets its span)."""
        record.outcome, record.error = outcome, error
        with self.span(record, on_attempt):
            pass

    def ordered(self) -> list[AttemptRecord]:
        return sorted(self.records, key=lambda r: r.number)


@dataclass(frozen=True)
class Timing:
    deadline: Deadline
    reserve_s: float  # kept back for later tiers and stages
    min_attempt_s: float
    per_try_cap_s: float


AttemptFn = Callable[[float], Awaitable[T]]  # called with the attempt's timeout in seconds


_RNG = random.Random()


async def guarded_call(
    guard: Guard,
    attempt_fn: AttemptFn[T],
    timing: Timing,
    attempts: Attempts,
    *,
    hedge: bool = False,
    repeatable: bool = False,
    rng: random.Random | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_attempt: AttemptListener | None = None,
) -> T:
    """Runs one logical call; returns its value or raises CallFailed (or CancelledError).

    `repeatable` requests (reads) are remembered for probing an idle open breaker.
    `on_attempt` hears of every attempt, made or decided, once it has settled.
    """
    rng = rng or _RNG
    replaced_call = guard.last_call
    if repeatable:
        guard.last_call = attempt_fn
    permit = guard.breaker.try_acquire() if guard.breaker is not None else None
    if guard.breaker is not None and permit is None:
        attempts.decided(
            attempts.begin(guard, retry=False, hedge=hedge),
            BREAKER_OPEN,
            "circuit breaker is open",
            on_attempt,
        )
        raise CallFailed(BREAKER_OPEN)
    if guard.bulkhead is not None and not guard.bulkhead.try_enter():
        if permit is not None:
            permit.release_unused()
        attempts.decided(
            attempts.begin(guard, retry=False, hedge=hedge),
            BULKHEAD_FULL,
            f"{guard.bulkhead.in_flight} calls in flight",
            on_attempt,
        )
        raise CallFailed(BULKHEAD_FULL)

    if guard.budget is not None:
        guard.budget.record_request()
    started = clock.monotonic()
    tracked = guard.inflight.begin(started, permit) if guard.inflight is not None else None
    made = 0
    reached = False  # an attempt went to the upstream
    code = grpc.StatusCode.OK
    request_fault = False  # the request caused the failure (e.g. a reply over the size limit)
    reason: str | None = None  # the last failure's ErrorInfo reason
    try:
        while True:
            record = attempts.begin(guard, retry=made > 0, hedge=hedge)
            timeout = timing.deadline.attempt_timeout(
                timing.reserve_s, timing.min_attempt_s, timing.per_try_cap_s
            )
            if timeout is None:
                attempts.decided(
                    record,
                    NO_TIME,
                    f"{timing.deadline.remaining() * 1000:.0f} ms left",
                    on_attempt,
                )
                if made == 0 and permit is not None:
                    permit.release_unused()
                    permit = None
                raise CallFailed(NO_TIME if made == 0 else code.name)
            attempt_started = clock.monotonic()
            failure: BaseException | None = None
            reached = True
            with attempts.span(record, on_attempt):
                try:
                    if tracked is not None:
                        tracked.awaiting = True
                    value = await attempt_fn(timeout)
                    record.outcome = "OK"
                    guard.answered_at = clock.monotonic()
                except asyncio.CancelledError:
                    if tracked is None or not tracked.abandoned or _uncancel() > 0:
                        record.outcome, record.error = HEDGE_LOST, "cancelled: another attempt won"
                        raise
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    record.outcome = HUNG
                    record.error = "given up: the breaker opened on this upstream's hung calls"
                except Exception as exc:
                    failure, code, reason = exc, status_of(exc), error_reason(exc)
                    detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                    record.outcome, record.error = code.name, detail or ""
                    if caused_by_request(exc):
                        # The receipt keeps the real code; health and retries see a caller's
                        # mistake: not recorded by the breaker, not retried.
                        request_fault = True
                        code = REQUEST_FAULT
                    if code not in _NO_ANSWER:
                        guard.answered_at = clock.monotonic()
                    if tracked is not None and tracked.abandoned:
                        # The cancellation surfaced as an error (e.g. gRPC's CANCELLED):
                        # still ours to take back, and still a give-up.
                        _uncancel()
                        record.outcome = HUNG
                finally:
                    if tracked is not None:
                        tracked.awaiting = False
                    record.latency_s = clock.monotonic() - attempt_started
            if record.outcome == HUNG:
                raise CallFailed(HUNG)
            if failure is None:
                guard.latency.record(record.latency_s)
                code = grpc.StatusCode.OK
                return value
            made += 1
            decision = (
                decide_retry(
                    code,
                    attempts_made=made,
                    policy=guard.retry,
                    rng=rng,
                    trailing_metadata=_trailers(failure),
                    budget=guard.budget,
                    time_left_s=timing.deadline.remaining() - timing.reserve_s,
                    min_attempt_s=timing.min_attempt_s,
                )
                if guard.retry is not None
                else None
            )
            if decision is not None:
                guard.retry_decisions[decision.reason] += 1
            if decision is None or not decision.retry:
                raise CallFailed(code.name) from failure
            await clock.sleep(decision.delay_s)
    except asyncio.CancelledError:
        # Abandoned unanswered (a hedge won, or the caller left). Losing a race says little
        # about health: under load a busy primary loses many, and counting them would open
        # healthy breakers. A hung primary still trips once the retry budget stops paying
        # for hedges and its calls wait past the slow-call threshold (Guard.watch).
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        duration = clock.monotonic() - started
        if request_fault and guard.last_call is attempt_fn:
            # Never replay it as a probe (the prober's own replay forgets it too).
            guard.last_call = None if replaced_call is attempt_fn else replaced_call
        if permit is not None:
            permit.on_result(code, duration, reason)
        if tracked is not None:
            tracked.done = True
        recent = guard.recent
        # A call seen slow in flight was counted then; a cancelled one says nothing.
        if recent is not None and reached and code is not grpc.StatusCode.CANCELLED:
            if tracked is None or not tracked.slow:
                recent.call(
                    failure=is_recorded_failure(code, reason),
                    slow=duration > guard.slow_call_s,
                )
        if guard.bulkhead is not None:
            guard.bulkhead.leave()


# What the breaker, the status and the retry policy are told of a failure the request caused:
# a caller's mistake, which none of them counts.
REQUEST_FAULT = grpc.StatusCode.INVALID_ARGUMENT

# Outcomes that are no answer from the upstream (it may be hung).
_NO_ANSWER = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


def _uncancel() -> int:
    """Takes back the watch's cancellation; > 0 means someone else cancelled too."""
    task = asyncio.current_task()
    return task.uncancel() if task is not None else 0


def _trailers(exc: BaseException) -> Metadata | None:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.trailing_metadata()
    return None
