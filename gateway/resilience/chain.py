"""Fallback chain: try ordered tiers of upstreams until one succeeds, hedging when allowed.

Generic: a tier is anything with a `name` and a `tier`; the caller supplies the call and
each tier's Guard (breaker, bulkhead, retry budget). Each tier gets the request's
remaining time minus a reserve for the tiers (and later work) after it, so a hanging tier
can never starve the ones behind it. For idempotent calls, when a tier has not answered
after its hedge delay (default: its observed p95), the next tier is started too; the first
success wins and the loser is cancelled. Hedges spend the retry budget of the tier that
was slow. Every attempt, including those never made, is recorded for the receipt.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Protocol, TypeVar

from gateway.resilience.clock import SYSTEM_CLOCK, Clock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import (
    AttemptObserver,
    AttemptRecord,
    Attempts,
    CallFailed,
    Guard,
    Timing,
    guarded_call,
)
from gateway.resilience.hedge import hedged

T = TypeVar("T")


class Tier(Protocol):
    name: str
    tier: int


TierT = TypeVar("TierT", bound=Tier)


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
    min_attempt_s: float  # shortest attempt worth starting
    tier_reserve_s: float  # time left for each later tier
    reserve_after_s: float = 0.0  # time kept for work after this chain (later stages)
    hedge: bool = False  # only for idempotent calls
    repeatable: bool = False  # safe to replay as a breaker probe
    hedge_delay_s: float | None = None  # None: the slow tier's observed p95
    hedge_min_delay_s: float = 0.005


async def call_chain(
    tiers: Sequence[TierT],
    call: Callable[[TierT, float], Awaitable[T]],
    deadline: Deadline,
    policy: ChainPolicy,
    *,
    guard_of: Callable[[TierT], Guard],
    skip: Callable[[TierT], str | None] | None = None,
    on_attempt: Callable[[AttemptRecord], None] | None = None,
    observer: AttemptObserver | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
) -> ChainResult[TierT, T]:
    """Calls `call(tier, timeout_s)` tier by tier until one returns."""
    attempts = Attempts(on_attempt=on_attempt, observer=observer)
    result: ChainResult[TierT, T] = ChainResult()

    def timing(position: int) -> Timing:
        reserve = (len(tiers) - position - 1) * policy.tier_reserve_s + policy.reserve_after_s
        return Timing(deadline, reserve, policy.min_attempt_s, policy.per_try_cap_s)

    def runner(position: int, hedge: bool = False) -> Callable[[], Awaitable[T]]:
        tier = tiers[position]
        return partial(
            guarded_call,
            guard_of(tier),
            partial(call, tier),
            timing(position),
            attempts,
            hedge=hedge,
            repeatable=policy.repeatable,
            rng=rng,
            clock=clock,
        )

    def usable_after(position: int) -> int | None:
        for later in range(position + 1, len(tiers)):
            if skip is None or skip(tiers[later]) is None:
                return later
        return None

    position = 0
    while position < len(tiers):
        tier = tiers[position]
        reason = skip(tier) if skip is not None else None
        if reason is not None:
            attempts.decided(attempts.begin(guard_of(tier), retry=False, hedge=False), reason, "")
            position += 1
            continue
        backup = usable_after(position) if policy.hedge else None
        delay = _hedge_delay(policy, guard_of(tier)) if backup is not None else None
        if backup is not None and delay is not None:
            budget = guard_of(tier).budget
            outcome = await hedged(
                runner(position),
                runner(backup, hedge=True),
                delay,
                may_hedge=budget.try_spend if budget is not None else (lambda: True),
                clock=clock,
            )
            if outcome.ok:
                winner = tier if outcome.winner == 0 else tiers[backup]
                result.value, result.served_by = outcome.value, winner
                break
            position = backup + 1 if outcome.hedged else position + 1
            continue
        try:
            result.value = await runner(position)()
        except CallFailed:
            position += 1
            continue
        result.served_by = tier
        break
    result.attempts = attempts.ordered()
    return result


def _hedge_delay(policy: ChainPolicy, guard: Guard) -> float | None:
    delay = policy.hedge_delay_s if policy.hedge_delay_s is not None else guard.latency.p95()
    return None if delay is None else max(delay, policy.hedge_min_delay_s)
