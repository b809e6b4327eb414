"""Fallback chain: try ordered tiers of upstreams until one succeeds, hedging when allowed.

Generic: a tier is any object that offers what the chain needs (`ChainTier`: its Guard,
whether to skip it now, and a place to hear of each attempt); the caller supplies the call.
Each tier gets the request's remaining time minus a reserve for the tiers (and later work)
after it, so a hanging tier can never starve the ones behind it. For idempotent calls, when
a tier has not answered after its hedge delay (default: its observed p95), the next tier is
started too; the first success wins and the loser is cancelled. Hedges spend the retry
budget of the tier that was slow. Every attempt, including those never made, is recorded
for the receipt.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Protocol, TypeVar, cast

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
from gateway.resilience.hedge import AttemptStatus, HedgeAttempt, hedged

T = TypeVar("T")


class ChainTier(Protocol):
    """What the chain needs of one tier (an upstream, to the gateway)."""

    @property
    def guard(self) -> Guard: ...

    def skip_reason(self) -> str | None:
        """Why not to call this tier now (e.g. it reports NOT_SERVING), or None to call it."""
        ...

    def record_attempt(self, record: AttemptRecord) -> None:
        """Hears of every attempt on this tier, made or decided, once it has settled."""
        ...


TierT = TypeVar("TierT", bound=ChainTier)


@dataclass(frozen=True)
class Served(Generic[TierT, T]):
    by: TierT
    value: T


@dataclass
class ChainResult(Generic[TierT, T]):
    served: Served[TierT, T] | None = None  # None: every tier failed or was skipped
    attempts: list[AttemptRecord] = field(default_factory=list)


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
    observer: AttemptObserver | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
) -> ChainResult[TierT, T]:
    """Calls `call(tier, timeout_s)` tier by tier until one returns."""
    attempts = Attempts(observer=observer)
    result: ChainResult[TierT, T] = ChainResult()

    def timing(position: int) -> Timing:
        reserve = (len(tiers) - position - 1) * policy.tier_reserve_s + policy.reserve_after_s
        return Timing(deadline, reserve, policy.min_attempt_s, policy.per_try_cap_s)

    def runner(position: int, hedge: bool = False) -> Callable[[], Awaitable[T]]:
        tier = tiers[position]
        return partial(
            guarded_call,
            tier.guard,
            partial(call, tier),
            timing(position),
            attempts,
            hedge=hedge,
            repeatable=policy.repeatable,
            rng=rng,
            clock=clock,
            on_attempt=tier.record_attempt,
        )

    def usable_after(position: int) -> int | None:
        for later in range(position + 1, len(tiers)):
            if tiers[later].skip_reason() is None:
                return later
        return None

    position = 0
    while position < len(tiers):
        tier = tiers[position]
        reason = tier.skip_reason()
        if reason is not None:
            record = attempts.begin(tier.guard, retry=False, hedge=False)
            attempts.decided(record, reason, "", tier.record_attempt)
            position += 1
            continue
        backup = usable_after(position) if policy.hedge else None
        delay = _hedge_delay(policy, tier.guard) if backup is not None else None
        if backup is not None and delay is not None:
            budget = tier.guard.budget
            outcome = await hedged(
                runner(position),
                runner(backup, hedge=True),
                delay,
                may_hedge=budget.try_spend if budget is not None else (lambda: True),
                clock=clock,
            )
            if outcome.ok and outcome.hedged:
                _count_race(outcome.attempts, (tier.guard, tiers[backup].guard))
            if outcome.ok:
                winner = tier if outcome.winner == 0 else tiers[backup]
                # A winner means its value is a T (None only while nobody has won).
                result.served = Served(winner, cast(T, outcome.value))
                break
            position = backup + 1 if outcome.hedged else position + 1
            continue
        try:
            value = await runner(position)()
        except CallFailed:
            position += 1
            continue
        result.served = Served(tier, value)
        break
    result.attempts = attempts.ordered()
    return result


def _count_race(attempts: Sequence[HedgeAttempt], guards: tuple[Guard, Guard]) -> None:
    """The winner won a race; the attempt cancelled because of it lost one (an attempt
    that had failed on its own lost nothing)."""
    for attempt in attempts:
        if attempt.status is AttemptStatus.SUCCEEDED:
            guards[attempt.index].hedge_race(won=True)
        elif attempt.status is AttemptStatus.CANCELLED:
            guards[attempt.index].hedge_race(won=False)


def _hedge_delay(policy: ChainPolicy, guard: Guard) -> float | None:
    delay = policy.hedge_delay_s if policy.hedge_delay_s is not None else guard.latency.p95()
    return None if delay is None else max(delay, policy.hedge_min_delay_s)
