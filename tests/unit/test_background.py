"""servicekit.background: named tasks that start once, stop for good, and never fail silently."""

from __future__ import annotations

import asyncio
import logging

import pytest

from servicekit.background import BackgroundTasks


async def forever(started: asyncio.Event, stopped: list[str], name: str) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        stopped.append(name)


async def test_stop_cancels_every_task_and_returns_only_once_they_have_ended():
    tasks = BackgroundTasks("test")
    stopped: list[str] = []
    events = {name: asyncio.Event() for name in ("a", "b")}
    for name, event in events.items():
        tasks.start(name, lambda e=event, n=name: forever(e, stopped, n))
    await asyncio.gather(*(e.wait() for e in events.values()))
    assert sorted(tasks.names()) == ["a", "b"]

    await tasks.stop()

    assert sorted(stopped) == ["a", "b"]  # their cleanup ran before stop() returned
    assert tasks.names() == []


async def test_a_name_still_running_is_not_started_twice():
    tasks = BackgroundTasks("test")
    started = asyncio.Event()
    calls = 0

    async def run() -> None:
        nonlocal calls
        calls += 1
        await forever(started, [], "x")

    first = tasks.start("x", run)
    second = tasks.start("x", run)
    await started.wait()
    assert first is second and calls == 1
    await tasks.stop()


async def test_a_finished_name_can_start_again_and_is_not_kept():
    tasks = BackgroundTasks("test")
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    await tasks.start("probe", once)
    assert not tasks.running("probe") and tasks.names() == []
    await tasks.start("probe", once)
    assert runs == [1, 1]


async def test_stop_is_idempotent_and_fine_before_any_start():
    tasks = BackgroundTasks("test")
    await tasks.stop()
    started = asyncio.Event()
    tasks.start("x", lambda: forever(started, [], "x"))
    await started.wait()
    await tasks.stop()
    await tasks.stop()
    assert tasks.names() == []


async def test_a_task_that_dies_is_logged_with_its_traceback(caplog):
    tasks = BackgroundTasks("upstream health watch")

    async def broken() -> None:
        raise RuntimeError("watch exploded")

    with caplog.at_level(logging.ERROR, logger="harag.background"):
        task = tasks.start("embedder-primary", broken)
        await asyncio.wait([task])  # our done callback was registered first, so it has run

    [record] = [r for r in caplog.records if r.name == "harag.background"]
    assert record.owner == "upstream health watch" and record.task == "embedder-primary"
    assert record.exc_info is not None and "watch exploded" in str(record.exc_info[1])
    await tasks.stop()


async def test_cancellation_of_the_stopping_caller_is_not_swallowed():
    tasks = BackgroundTasks("test")
    running, cleaning_up = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning_up.set()
            await asyncio.Event().wait()  # takes its time to clean up

    task = tasks.start("slow", slow_to_stop)
    await running.wait()
    stopper = asyncio.create_task(tasks.stop())
    await cleaning_up.wait()  # stop() has cancelled it and is waiting for it to end
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    task.cancel()
    await asyncio.wait([task])
