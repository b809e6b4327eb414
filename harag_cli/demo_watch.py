"""What the demo observes while it runs: every query's outcome, breaker transitions, and the
background traffic that gives the breakers something to count."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from harag.v1 import gateway_pb2, gateway_pb2_grpc
from harag_cli.meshctl import list_breakers, states_of
from servicekit.background import BackgroundTasks

OPEN_STATES = ("OPEN", "FORCED_OPEN")


@dataclass(frozen=True)
class QueryRecord:
    phase: int
    latency_s: float
    code: str  # OK or a gRPC status code name
    served: tuple[tuple[int, bool], ...] = ()  # per stage: (tier, served by a last resort)
    attempts: tuple[tuple[str, str], ...] = ()  # (upstream, outcome) of every attempt
    foreground: bool = False

    @property
    def ok(self) -> bool:
        return self.code == "OK"


def record_of(
    phase: int, reply: gateway_pb2.QueryResponse, latency_s: float, foreground: bool
) -> QueryRecord:
    return QueryRecord(
        phase,
        latency_s,
        "OK",
        tuple(
            (s.tier, s.served_by.startswith("local:") or s.served_by == "cache")
            for s in reply.stages
        ),
        tuple((a.upstream, a.outcome) for s in reply.stages for a in s.attempts),
        foreground,
    )


@dataclass
class Recorder:
    phase: int = 0
    records: list[QueryRecord] = field(default_factory=list)

    def of_phase(self, phase: int) -> list[QueryRecord]:
        return [r for r in self.records if r.phase == phase]


class BreakerWatch:
    """Polls ListBreakers every `interval_s`, keeping the latest states and every change."""

    def __init__(self, channel: grpc.aio.Channel, interval_s: float = 0.05) -> None:
        self._channel = channel
        self.interval_s = interval_s
        self.states: dict[str, str] = {}
        self.changes: list[tuple[float, str, str]] = []  # (monotonic time, upstream, state)
        self._tasks = BackgroundTasks("breaker watch")

    async def poll(self) -> dict[str, str]:
        states = states_of(await list_breakers(self._channel))
        now = time.monotonic()
        for upstream, state in states.items():
            if self.states.get(upstream) != state:
                self.changes.append((now, upstream, state))
            self.states[upstream] = state
        return self.states

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.poll()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._tasks.start("poll", self._loop)

    async def stop(self) -> None:
        await self._tasks.stop()

    def first(self, upstream: str, states: Sequence[str], after: float) -> float | None:
        """When `upstream` was first seen in one of `states` at or after `after`."""
        return next(
            (
                t
                for t, name, state in self.changes
                if name == upstream and state in states and t >= after
            ),
            None,
        )

    def state_at(self, upstream: str, at: float) -> str | None:
        """The last state seen for `upstream` at or before `at`."""
        seen = [state for t, name, state in self.changes if name == upstream and t <= at]
        return seen[-1] if seen else None

    def all_closed(self) -> bool:
        return bool(self.states) and all(s == "CLOSED" for s in self.states.values())


class BackgroundLoad:
    """A few workers sending unique queries, like the other users of a real system."""

    def __init__(
        self,
        stub: gateway_pb2_grpc.RagGatewayServiceStub,
        recorder: Recorder,
        questions: Sequence[str],
        workers: int = 3,
        pause_s: float = 0.05,
        deadline_s: float = 3.0,
    ) -> None:
        self._stub = stub
        self._recorder = recorder
        self._questions = list(questions)
        self._workers = workers
        self._pause_s = pause_s
        self._deadline_s = deadline_s
        self._counter = itertools.count()
        self._tasks = BackgroundTasks("background load")

    async def _worker(self) -> None:
        while True:
            n = next(self._counter)
            question = f"{self._questions[n % len(self._questions)]} (background {n})"
            phase = self._recorder.phase
            started = time.perf_counter()
            try:
                reply = await self._stub.Query(
                    gateway_pb2.QueryRequest(query=question), timeout=self._deadline_s
                )
                record = record_of(phase, reply, time.perf_counter() - started, False)
            except grpc.aio.AioRpcError as exc:
                record = QueryRecord(phase, time.perf_counter() - started, exc.code().name)
            self._recorder.records.append(record)
            await asyncio.sleep(self._pause_s)

    def start(self) -> None:
        for n in range(self._workers):
            self._tasks.start(f"worker {n}", self._worker)

    async def stop(self) -> None:
        await self._tasks.stop()
