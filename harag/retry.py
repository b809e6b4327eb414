"""Opt-in client retries that do what the server asks.

The gateway already walks its own fallback chains inside a call's deadline, so a client retry
is for the cases the server itself invites: a call shed under load (RESOURCE_EXHAUSTED) or
refused while the gateway cannot serve (UNAVAILABLE), each with a `google.rpc.RetryInfo`
saying how long to wait. A retry waits at least that long (plus jitter, so shed callers do
not return in lockstep), never past the call's deadline, and never for a caller's mistake:
INVALID_ARGUMENT sent again is INVALID_ARGUMENT again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from harag.errors import HaragError

# Codes that mean the request itself (or its credentials) is wrong: sending it again cannot help.
NEVER_RETRIED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how the client retries a failed call. Pass one as `retry=` to opt in.

    Attributes:
        max_attempts: calls in total, the first included (1 disables retries).
        retryable_codes: codes that may be retried, and only when the server attached a
            `RetryInfo` (or, for UNAVAILABLE, when `unavailable_backoff_s` is set).
        jitter: a retry waits the advised delay times (1 + jitter * U[0, 1)).
        max_delay_s: an advised delay longer than this ends the retries at once (the error
            is raised with `retry_delay_s` set, for the caller to decide).
        unavailable_backoff_s: when set, UNAVAILABLE *without* RetryInfo (the gateway cannot
            be reached, e.g. while it restarts) is retried too, after this delay doubled on
            each attempt. None (the default) retries only what the server invited.
    """

    max_attempts: int = 3
    retryable_codes: frozenset[grpc.StatusCode] = frozenset(
        {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
    )
    jitter: float = 0.2
    max_delay_s: float = 30.0
    unavailable_backoff_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")
        if not self.max_delay_s >= 0.0:
            raise ValueError(f"max_delay_s must be at least 0, got {self.max_delay_s}")
        if self.unavailable_backoff_s is not None and not self.unavailable_backoff_s > 0.0:
            raise ValueError(
                f"unavailable_backoff_s must be above 0 or None, got {self.unavailable_backoff_s}"
            )
        wrong = sorted(code.name for code in self.retryable_codes & NEVER_RETRIED)
        if wrong:
            raise ValueError(f"retryable_codes must not hold a caller's mistake: {wrong}")

    def decide(
        self, error: HaragError, attempt: int, remaining_s: float | None, random_01: float
    ) -> RetryDecision:
        """Whether to retry after `error` ended attempt number `attempt` (1-based).

        `remaining_s` is the time left before the call's deadline (None: no deadline) and
        `random_01` a draw from U[0, 1) for the jitter.
        """
        if attempt >= self.max_attempts:
            return RetryDecision.give_up(f"{attempt} of {self.max_attempts} attempts made")
        if error.code not in self.retryable_codes:
            return RetryDecision.give_up(f"{error.code.name} is not retryable")
        if error.retry_delay_s is not None:
            if error.retry_delay_s > self.max_delay_s:
                return RetryDecision.give_up(
                    f"server asks to wait {error.retry_delay_s:.3f} s, "
                    f"more than max_delay_s={self.max_delay_s}"
                )
            base = error.retry_delay_s
        elif error.code == grpc.StatusCode.UNAVAILABLE and self.unavailable_backoff_s:
            base = min(self.unavailable_backoff_s * 2 ** (attempt - 1), self.max_delay_s)
        else:
            return RetryDecision.give_up(f"{error.code.name} came without RetryInfo")
        delay = base * (1.0 + self.jitter * random_01)
        if remaining_s is not None and delay >= remaining_s:
            return RetryDecision.give_up(
                f"waiting {delay:.3f} s would pass the deadline ({remaining_s:.3f} s left)"
            )
        return RetryDecision(True, delay, f"{error.code.name}: retry after {delay:.3f} s")


@dataclass(frozen=True)
class RetryDecision:
    """The outcome of `RetryPolicy.decide`: retry after `delay_s`, or not, and why."""

    retry: bool
    delay_s: float
    reason: str

    @staticmethod
    def give_up(reason: str) -> RetryDecision:
        return RetryDecision(False, 0.0, reason)


class CallBudget:
    """One logical call's attempts and deadline, shared by the sync and the asyncio client.

    The deadline covers the whole call, retries and waits included: each attempt gets what
    is left of it.
    """

    def __init__(
        self,
        timeout_s: float | None,
        policy: RetryPolicy | None,
        clock: Callable[[], float],
        random_01: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.random_01 = random_01
        self.deadline = None if timeout_s is None else clock() + timeout_s
        self.attempts = 0

    def next_timeout(self) -> float | None:
        """Starts an attempt and returns its timeout: the time left (None: no deadline)."""
        self.attempts += 1
        if self.deadline is None:
            return None
        # grpcio treats 0 as "expired"; keep it positive so the call fails as DEADLINE_EXCEEDED.
        return max(self.deadline - self.clock(), 1e-6)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def delay_before_retry(self, error: HaragError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `error`."""
        error.attempts = self.attempts
        if self.policy is None:
            return None
        decision = self.policy.decide(error, self.attempts, self.remaining(), self.random_01())
        return decision.delay_s if decision.retry else None
