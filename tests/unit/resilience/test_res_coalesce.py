from __future__ import annotations

import asyncio

import pytest

from gateway.resilience.coalesce import Coalescer


async def drain(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_concurrent_identical_keys_share_one_run() -> None:
    co: Coalescer[str, int] = Coalescer()
    gate = asyncio.Event()
    runs = 0

    async def factory() -> int:
        nonlocal runs
        runs += 1
        await gate.wait()
        return 42

    tasks = [asyncio.create_task(co.run("q", factory)) for _ in range(20)]
    await drain()
    assert co.in_flight == 1 and co.waiters("q") == 20
    gate.set()
    results = await asyncio.gather(*tasks)
    assert runs == 1
    assert [r.value for r in results] == [42] * 20
    assert sum(r.leader for r in results) == 1
    await drain()
    assert co.in_flight == 0  # released once the run ended


@pytest.mark.asyncio
async def test_exception_reaches_every_waiter() -> None:
    co: Coalescer[str, int] = Coalescer()
    gate = asyncio.Event()

    async def factory() -> int:
        await gate.wait()
        raise ConnectionError("upstream down")

    tasks = [asyncio.create_task(co.run("q", factory)) for _ in range(20)]
    await drain()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


@pytest.mark.asyncio
async def test_cancelled_follower_does_not_cancel_leader() -> None:
    co: Coalescer[str, str] = Coalescer()
    gate = asyncio.Event()
    runs = 0

    async def factory() -> str:
        nonlocal runs
        runs += 1
        await gate.wait()
        return "answer"

    leader = asyncio.create_task(co.run("q", factory))
    await drain()
    follower = asyncio.create_task(co.run("q", factory))
    await drain()
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    result = await leader
    assert result.value == "answer" and result.leader and runs == 1


@pytest.mark.asyncio
async def test_cancelled_leader_does_not_cancel_followers() -> None:
    co: Coalescer[str, str] = Coalescer()
    gate = asyncio.Event()

    async def factory() -> str:
        await gate.wait()
        return "answer"

    leader = asyncio.create_task(co.run("q", factory))
    await drain()
    followers = [asyncio.create_task(co.run("q", factory)) for _ in range(3)]
    await drain()
    leader.cancel()
    await drain()
    gate.set()
    results = await asyncio.gather(*followers)
    assert all(r.value == "answer" and not r.leader for r in results)
    assert leader.cancelled()


@pytest.mark.asyncio
async def test_abandoned_run_is_cancelled_unless_configured_otherwise() -> None:
    for cancel_when_abandoned in (True, False):
        co: Coalescer[str, str] = Coalescer(cancel_when_abandoned=cancel_when_abandoned)
        gate = asyncio.Event()
        finished = False
        cancelled = False

        async def factory(g: asyncio.Event = gate) -> str:
            nonlocal finished, cancelled
            try:
                await g.wait()
            except asyncio.CancelledError:
                cancelled = True
                raise
            finished = True
            return "x"

        task = asyncio.create_task(co.run("q", factory))
        await drain()
        task.cancel()
        await drain()
        gate.set()
        await drain()
        assert cancelled is cancel_when_abandoned
        assert finished is not cancel_when_abandoned
        assert co.in_flight == 0


@pytest.mark.asyncio
async def test_sequential_calls_and_distinct_keys_run_separately() -> None:
    co: Coalescer[str, str] = Coalescer()
    runs: list[str] = []

    async def make(key: str) -> str:
        runs.append(key)
        await asyncio.sleep(0)
        return key.upper()

    first = await co.run("a", lambda: make("a"))
    second = await co.run("a", lambda: make("a"))
    assert first.leader and second.leader and runs == ["a", "a"]
    both = await asyncio.gather(co.run("b", lambda: make("b")), co.run("c", lambda: make("c")))
    assert [r.value for r in both] == ["B", "C"] and all(r.leader for r in both)
