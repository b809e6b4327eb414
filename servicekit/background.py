"""Background tasks owned by one object: start them by name, stop them all with one await.

Health watchers, probe loops and demo load generators all need the same three things: start
a task without starting it twice, stop it by cancelling it and waiting until it has really
ended (so nothing runs after `stop()` returns), and hear about a task that died of an
exception instead of losing it until someone awaits the task, which for a loop that should
run forever is never.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("harag.background")

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class BackgroundTasks:
    """Named tasks of one owner (e.g. "upstream health watch").

    `start(name, run)` starts `run()` unless a task of that name is still running, so a
    repeated start, or a probe asked for while the last one is in flight, is one task.
    `stop()` cancels every running task and waits for all of them; calling it again, or
    on an owner that never started anything, does nothing. A task that ends with an
    exception other than cancellation is logged at once with its traceback.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, run: TaskFactory) -> asyncio.Task[None]:
        """Starts `run()` as task `name`, or returns the task of that name still running."""
        running = self._tasks.get(name)
        if running is not None and not running.done():
            return running
        task = asyncio.create_task(run(), name=f"{self.owner}: {name}")
        self._tasks[name] = task
        task.add_done_callback(functools.partial(self._finished, name))
        return task

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def names(self) -> list[str]:
        """The names of the tasks still running."""
        return [name for name, task in self._tasks.items() if not task.done()]

    async def stop(self) -> None:
        """Cancels every task and returns once all have ended."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait, not gather: a task's exception was already logged by _finished,
            # and if the caller is cancelled while waiting, that cancellation is its own.
            await asyncio.wait(tasks)

    def _finished(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]  # finished tasks are not kept: probes come and go forever
        if task.cancelled():
            return
        error = task.exception()  # also marks it retrieved: no "never retrieved" warning
        if error is not None:
            log.error(
                "background task failed",
                exc_info=error,
                extra={"owner": self.owner, "task": name},
            )
