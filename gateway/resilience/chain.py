"""Fallback chain: try ordered tiers of upstreams until one succeeds.

Generic: a tier is anything with a `name` and a `tier`; the caller supplies the call.
Each attempt gets the request's remaining time minus a reserve for the tiers (and later
work) after it, capped per try, and no attempt starts with less than `min_attempt_s`, so a
hanging tier can never starve the ones behind it. Every attempt, including the ones not
made, is recorded so callers can show a receipt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import grpc

from gateway.resilience.deadline import Deadline

T = TypeVar("T")

# Outcomes of attempts that were decided without (completing) a call.
NO_TIME = "NO_TIME"
NOT_SERVING = "NOT_SERVING"


class Tier(Protocol):
    name: str
    tier: int


TierT = TypeVar("TierT", bound=Tier)


@dataclass
class AttemptRecord:
    upstream: str
    tier: int
    outcome: str  # gRPC status code name, or a decision such as NO_TIME
    latency_s: float
    error: str = ""
    retry: bool = False
    hedge: bool = False
    breaker_state: str = ""
    number: int = 0


@dataclass
class ChainResult(Generic[TierT, T]):
    value: T | None = None
    served_by: TierT | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.served_by is not None


@dataclass(frozen=True)
class ChainPolicy:
    per_try_cap_s: float  # longest single attempt
    min_attempt_s: float  # shortest attempt worth starting; also the reserve per later tier
    reserve_after_s: float = 0.0  # time kept for work after this chain (later stages)


def outcome_of(exc: BaseException) -> tuple[str, str]:
    """Maps an exception from a call to (outcome name, detail)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name, exc.details() or ""
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED.name, "attempt timed out"
    return grpc.StatusCode.UNKNOWN.name, f"{type(exc).__name__}: {exc}"


async def call_chain(
    tiers: Sequence[TierT],
    call: Callable[[TierT, float], Awaitable[T]],
    deadline: Deadline,
    policy: ChainPolicy,
    *,
    skip: Callable[[TierT], str | None] | None = None,
    on_attempt: Callable[[TierT, AttemptRecord], None] | None = None,
) -> ChainResult[TierT, T]:
    """Calls `call(tier, timeout_s)` on each tier in order until one returns."""
    result: ChainResult[TierT, T] = ChainResult()
    for position, tier in enumerate(tiers):
        number = len(result.attempts) + 1
        reserve = (len(tiers) - position - 1) * policy.min_attempt_s + policy.reserve_after_s
        reason = skip(tier) if skip else None
        timeout = (
            None
            if reason
            else deadline.attempt_timeout(reserve, policy.min_attempt_s, policy.per_try_cap_s)
        )
        if reason or timeout is None:
            record = AttemptRecord(
                tier.name,
                tier.tier,
                reason or NO_TIME,
                0.0,
                error="" if reason else f"{deadline.remaining() * 1000:.0f} ms left",
                number=number,
            )
            _note(result, tier, record, on_attempt)
            continue
        started = time.perf_counter()
        try:
            value = await call(tier, timeout)
        except Exception as exc:  # every failure moves on to the next tier
            outcome, detail = outcome_of(exc)
            record = AttemptRecord(
                tier.name, tier.tier, outcome, time.perf_counter() - started, detail, number=number
            )
            _note(result, tier, record, on_attempt)
            continue
        record = AttemptRecord(
            tier.name, tier.tier, "OK", time.perf_counter() - started, number=number
        )
        _note(result, tier, record, on_attempt)
        result.value, result.served_by = value, tier
        return result
    return result


def _note(
    result: ChainResult[TierT, T],
    tier: TierT,
    record: AttemptRecord,
    on_attempt: Callable[[TierT, AttemptRecord], None] | None,
) -> None:
    result.attempts.append(record)
    if on_attempt is not None:
        on_attempt(tier, record)
