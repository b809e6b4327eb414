"""The fallback chain on a fake clock: tier order, skips, time per tier, hedging.

Tiers are fakes that take scripted (fake) time and honour the timeout they are given the
way a gRPC call does: past it, they fail with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import pytest

from gateway.resilience.chain import ChainPolicy, ChainResult, call_chain
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import HEDGE_LOST, AttemptRecord, Guard
from gateway.resilience.retry import RetryBudget, RetryBudgetConfig


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


@dataclass
class FakeTier:
    """A ChainTier whose calls take `took` seconds, then return `answer` (or raise it)."""

    name: str
    tier: int
    clock: FakeClock
    took: float = 0.01
    answer: str | grpc.StatusCode = "ok"
    skip: str | None = None
    guard: Guard = field(init=False)
    heard: list[AttemptRecord] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    cancelled: int = 0

    def __post_init__(self) -> None:
        self.guard = Guard(self.name, self.tier, budget=RetryBudget())

    def skip_reason(self) -> str | None:
        return self.skip

    def record_attempt(self, record: AttemptRecord) -> None:
        self.heard.append(record)

    async def call(self, timeout_s: float) -> str:
        self.timeouts.append(timeout_s)
        try:
            await self.clock.sleep(min(self.took, timeout_s))
        except BaseException:
            self.cancelled += 1
            raise
        if self.took > timeout_s:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
        if isinstance(self.answer, grpc.StatusCode):
            raise RpcError(self.answer)
        return f"{self.answer} from {self.name}"


async def call(tier: FakeTier, timeout_s: float) -> str:
    return await tier.call(timeout_s)


def policy(**overrides: object) -> ChainPolicy:
    values: dict[str, object] = dict(per_try_cap_s=5.0, min_attempt_s=0.05, tier_reserve_s=0.3)
    values.update(overrides)
    return ChainPolicy(**values)  # type: ignore[arg-type]


async def walk(
    clock: FakeClock, tiers: list[FakeTier], seconds: float = 2.0, **overrides: object
) -> ChainResult[FakeTier, str]:
    deadline = Deadline.after(seconds, clock)
    return await clock.drive(call_chain(tiers, call, deadline, policy(**overrides), clock=clock))


def summary(result: ChainResult[FakeTier, str]) -> list[tuple[int, str, str, bool]]:
    return [(a.number, a.upstream, a.outcome, a.hedge) for a in result.attempts]


async def test_tiers_are_tried_in_order_until_one_answers() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, answer=grpc.StatusCode.UNAVAILABLE)
    fallback = FakeTier("fallback", 1, clock)
    spare = FakeTier("spare", 2, clock)
    result = await walk(clock, [primary, fallback, spare])
    assert result.served is not None
    assert result.served.by is fallback and result.served.value == "ok from fallback"
    assert summary(result) == [(1, "primary", "UNAVAILABLE", False), (2, "fallback", "OK", False)]
    assert spare.timeouts == []
    # Each tier hears of its own attempts, nothing else.
    assert [a.outcome for a in primary.heard] == ["UNAVAILABLE"]
    assert [a.outcome for a in fallback.heard] == ["OK"] and spare.heard == []


async def test_a_skipped_tier_is_recorded_but_never_called() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, skip="NOT_SERVING")
    fallback = FakeTier("fallback", 1, clock)
    result = await walk(clock, [primary, fallback])
    assert result.served is not None and result.served.by is fallback
    assert primary.timeouts == []
    assert summary(result) == [(1, "primary", "NOT_SERVING", False), (2, "fallback", "OK", False)]
    assert [a.outcome for a in primary.heard] == ["NOT_SERVING"]


async def test_every_tier_failing_leaves_no_winner_and_every_attempt() -> None:
    clock = FakeClock()
    tiers = [
        FakeTier("primary", 0, clock, answer=grpc.StatusCode.UNAVAILABLE),
        FakeTier("fallback", 1, clock, answer=grpc.StatusCode.INTERNAL),
    ]
    result = await walk(clock, tiers)
    assert result.served is None
    assert [a.outcome for a in result.attempts] == ["UNAVAILABLE", "INTERNAL"]


async def test_a_hanging_tier_cannot_starve_the_tiers_behind_it() -> None:
    clock = FakeClock()
    tiers = [
        FakeTier("primary", 0, clock, took=60.0),
        FakeTier("fallback", 1, clock, took=60.0),
        FakeTier("spare", 2, clock, took=0.1),
    ]
    result = await walk(clock, tiers, 2.0, reserve_after_s=0.2)
    # 2.0 s: the primary keeps 0.3 s for each later tier and 0.2 s for later stages.
    assert tiers[0].timeouts == [pytest.approx(1.2)]
    assert tiers[1].timeouts == [pytest.approx(0.8 - 0.3 - 0.2)]
    assert tiers[2].timeouts == [pytest.approx(0.5 - 0.2)]
    assert result.served is not None and result.served.by is tiers[2]
    assert [a.outcome for a in result.attempts] == ["DEADLINE_EXCEEDED"] * 2 + ["OK"]
    assert 2.0 - clock.monotonic() >= 0.2  # what later stages were promised is still there


async def test_a_tier_without_time_left_is_not_attempted() -> None:
    clock = FakeClock()
    tiers = [FakeTier("primary", 0, clock, took=60.0), FakeTier("fallback", 1, clock)]
    result = await walk(clock, tiers, 0.34)  # fallback would get 0.34 - 0.3 = 0.04 < 0.05
    assert result.served is not None and result.served.by is tiers[1]
    assert tiers[0].timeouts == []
    assert [a.outcome for a in result.attempts] == ["NO_TIME", "OK"]


async def test_a_slow_tier_is_hedged_after_the_delay_and_the_first_success_wins() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=1.0)
    fallback = FakeTier("fallback", 1, clock, took=0.05)
    result = await walk(clock, [primary, fallback], hedge=True, hedge_delay_s=0.1)
    assert result.served is not None and result.served.by is fallback
    assert clock.monotonic() == pytest.approx(0.15)  # hedge started at 0.1, answered at 0.15
    assert summary(result) == [(1, "primary", HEDGE_LOST, False), (2, "fallback", "OK", True)]
    assert primary.cancelled == 1  # the loser was cancelled, not left running
    assert result.attempts[0].latency_s == pytest.approx(0.15)


async def test_the_primary_still_wins_when_it_answers_first() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=0.2)
    fallback = FakeTier("fallback", 1, clock, took=1.0)
    result = await walk(clock, [primary, fallback], hedge=True, hedge_delay_s=0.1)
    assert result.served is not None and result.served.by is primary
    assert summary(result) == [(1, "primary", "OK", False), (2, "fallback", HEDGE_LOST, True)]
    assert fallback.cancelled == 1 and clock.monotonic() == pytest.approx(0.2)


async def test_a_fast_primary_is_not_hedged() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=0.05)
    fallback = FakeTier("fallback", 1, clock)
    result = await walk(clock, [primary, fallback], hedge=True, hedge_delay_s=0.1)
    assert result.served is not None and result.served.by is primary
    assert fallback.timeouts == [] and len(result.attempts) == 1
    assert primary.guard.budget.snapshot().spent == 0  # type: ignore[union-attr]


async def test_a_hedge_spends_the_slow_tiers_budget() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=1.0)
    fallback = FakeTier("fallback", 1, clock, took=0.05)
    await walk(clock, [primary, fallback], hedge=True, hedge_delay_s=0.1)
    assert primary.guard.budget.snapshot().spent == 1  # type: ignore[union-attr]
    assert fallback.guard.budget.snapshot().spent == 0  # type: ignore[union-attr]


async def test_no_hedge_when_the_slow_tiers_budget_is_spent() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=1.0)
    primary.guard.budget = RetryBudget(
        RetryBudgetConfig(budget_ratio=0.0, min_retries_per_second=0.0)
    )
    fallback = FakeTier("fallback", 1, clock, took=0.05)
    result = await walk(clock, [primary, fallback], hedge=True, hedge_delay_s=0.1)
    assert result.served is not None and result.served.by is primary
    assert fallback.timeouts == [] and clock.monotonic() == pytest.approx(1.0)


async def test_the_hedge_goes_to_the_next_tier_that_is_not_skipped() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=1.0)
    down = FakeTier("fallback", 1, clock, skip="NOT_SERVING")
    spare = FakeTier("spare", 2, clock, took=0.05)
    result = await walk(clock, [primary, down, spare], hedge=True, hedge_delay_s=0.1)
    assert result.served is not None and result.served.by is spare
    assert down.timeouts == []
    assert summary(result) == [(1, "primary", HEDGE_LOST, False), (2, "spare", "OK", True)]


async def test_without_a_configured_delay_hedging_waits_for_a_warm_p95() -> None:
    clock = FakeClock()
    primary = FakeTier("primary", 0, clock, took=1.0)
    fallback = FakeTier("fallback", 1, clock, took=0.01)
    result = await walk(clock, [primary, fallback], hedge=True)
    assert result.served is not None and result.served.by is primary
    assert fallback.timeouts == []  # cold: no latency estimate yet, no hedge
    primary.took = 0.05
    for _ in range(30):
        await walk(clock, [primary, fallback], hedge=True)
    primary.took = 1.0
    started = clock.monotonic()
    result = await walk(clock, [primary, fallback], hedge=True)
    assert result.served is not None and result.served.by is fallback
    # Warm: hedged once the primary ran past its p95 (0.05 s); the hedge took 0.01 s.
    assert clock.monotonic() - started == pytest.approx(0.06)
    assert result.attempts[1].hedge
