"""Drives the chaos suite: query traffic, the fault schedule, and the checks afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from chaos.schedule import Action, Episode
from harag.v1 import (
    admin_pb2,
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli.meshctl import MeshControl


@dataclass(frozen=True)
class Answer:
    at_s: float  # when it was sent, since the chaos began
    latency_s: float
    code: str  # OK or a gRPC status code name
    degraded: bool = False
    stream: bool = False
    detail: str = ""


@dataclass
class Traffic:
    """Workers sending a mix of repeated and unique questions, some of them streamed."""

    stub: gateway_pb2_grpc.RagGatewayServiceStub
    questions: list[str]
    deadline_s: float
    origin: float
    answers: list[Answer] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=itertools.count)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _enough: asyncio.Event = field(default_factory=asyncio.Event)
    minimum: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _query(self, text: str, stream: bool) -> Answer:
        sent = time.monotonic()
        at = sent - self.origin
        degraded, detail = False, ""
        try:
            if stream:
                final = None
                async for event in self.stub.StreamQuery(
                    gateway_pb2.StreamQueryRequest(query=text), timeout=self.deadline_s
                ):
                    if event.HasField("final"):
                        final = event.final
                if final is None:
                    return Answer(at, time.monotonic() - sent, "NO_FINAL_EVENT", stream=True)
                degraded = final.degraded
            else:
                reply = await self.stub.Query(
                    gateway_pb2.QueryRequest(query=text), timeout=self.deadline_s
                )
                degraded = reply.degraded
                if not reply.answer:
                    return Answer(at, time.monotonic() - sent, "EMPTY_ANSWER")
        except grpc.aio.AioRpcError as exc:
            code, detail = exc.code().name, exc.details() or ""
            return Answer(at, time.monotonic() - sent, code, stream=stream, detail=detail)
        return Answer(at, time.monotonic() - sent, "OK", degraded, stream)

    async def _worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            n = next(self._counter)
            text = rng.choice(self.questions)
            if rng.random() < 0.5:  # the rest repeat, so the cache and coalescing take part
                text = f"{text} (chaos {n})"
            self.answers.append(await self._query(text, stream=rng.random() < 0.2))
            if len(self.answers) >= self.minimum:
                self._enough.set()

    def start(self, workers: int, seed: int) -> None:
        self._tasks = [asyncio.create_task(self._worker(seed + i)) for i in range(workers)]

    async def wait_for(self, minimum: int) -> None:
        """Returns once at least `minimum` answers are in."""
        self.minimum = minimum
        if len(self.answers) < minimum:
            self._enough.clear()
            await self._enough.wait()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


class Chaos:
    """Applies a schedule to a conftest Mesh; remembers what it did and when."""

    def __init__(self, mesh, origin: float) -> None:
        self.mesh = mesh
        self.origin = origin
        self.log: list[str] = []
        self.kills = 0

    async def _call(self, name: str, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """A fault RPC, waiting out a restart in progress (a killed process comes back).

        The mesh's control opens a channel per call, so a restarted process is reached."""
        for _ in range(3):
            try:
                await call()
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            await self.mesh.wait_serving(name, timeout_s=30)
        raise AssertionError(f"{name} never took {what}")

    async def _clear(self, name: str) -> None:
        await self._call(name, "ClearFaults", lambda: self.mesh.control.clear_faults([name]))

    async def _apply(self, action: Action) -> None:
        self.log.append(f"{time.monotonic() - self.origin:6.2f}s {action.describe()}")
        if action.fault is None:
            self.mesh.supervisor.kill(action.upstream)
            self.kills += 1
        else:
            fault = action.fault
            await self._call(
                action.upstream,
                "SetFault",
                lambda: self.mesh.control.set_fault(action.upstream, fault),
            )

    async def run(self, episodes: list[Episode]) -> None:
        for episode in episodes:
            await asyncio.sleep(max(0.0, self.origin + episode.start_s - time.monotonic()))
            await asyncio.gather(*(self._apply(a) for a in episode.actions))
            await asyncio.sleep(episode.hold_s)
            for action in episode.actions:
                if action.fault is not None:
                    await self._clear(action.upstream)

    async def clear_everything(self, names: list[str]) -> float:
        """Clears every fault and waits for every process to serve; returns that moment."""
        for name in names:
            await self.mesh.wait_serving(name, timeout_s=30)
            await self._clear(name)
        return time.monotonic()


class BreakerTrips:
    """Polls the breakers while the chaos runs and counts how often each was seen opening."""

    def __init__(self, control: MeshControl) -> None:
        self.control = control
        self.opened: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                for name, state in (await self.control.breaker_states()).items():
                    if state == "OPEN" and self._last.get(name) != "OPEN":
                        self.opened[name] = self.opened.get(name, 0) + 1
                    self._last[name] = state
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_closed(
    control: MeshControl, names: list[str], limit_s: float
) -> tuple[float | None, dict[str, str]]:
    """Seconds until every breaker in `names` reads CLOSED (None if not within `limit_s`)."""
    started = time.monotonic()
    states: dict[str, str] = {}
    while time.monotonic() - started < limit_s:
        states = await control.breaker_states()
        if all(states[n] == "CLOSED" for n in names):
            return time.monotonic() - started, states
        await asyncio.sleep(0.1)
    return None, states


async def route_through(control: MeshControl, fallback: str, limit_s: float) -> float | None:
    """Seconds until `fallback`'s breaker closes once it gets traffic.

    A breaker closes only on calls, and a healthy primary leaves its fallback none (only
    the odd hedge, whose losing calls say nothing). So the primary is drained for a moment
    by hand (FORCED_OPEN, an operator action, not a fault), then reset.
    """
    primary = fallback.replace("-fallback", "-primary")
    await control.transition_breaker(primary, admin_pb2.BREAKER_ACTION_FORCE_OPEN)
    try:
        took, _ = await wait_closed(control, [fallback], limit_s)
    finally:
        await control.transition_breaker(primary, admin_pb2.BREAKER_ACTION_RESET)
    return took


async def missing_documents(mesh, documents: list[common_pb2.Document]) -> list[str]:
    """Ids (per retriever and model) that a filtered search for their own text cannot find."""
    missing: list[str] = []
    texts = [d.text[:500] for d in documents]
    vectors: dict[str, list] = {}
    models: dict[str, str] = {}
    for name in ("embedder-primary", "embedder-fallback"):
        async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            vecs: list = []
            for start in range(0, len(texts), 64):
                reply = await stub.Embed(
                    embedder_pb2.EmbedRequest(texts=texts[start : start + 64]), timeout=30
                )
                vecs.extend(reply.embeddings)
                models[name] = reply.model
            vectors[name] = vecs
    for retriever in ("retriever-primary", "retriever-fallback"):
        async with grpc.aio.insecure_channel(mesh.address(retriever)) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            spaces = list(vectors) if retriever == "retriever-primary" else [None]
            for space in spaces:
                for i, doc in enumerate(documents):
                    request = retriever_pb2.SearchRequest(
                        query_text=texts[i],
                        top_k=1,
                        filters=[
                            common_pb2.MetadataFilter(key="source", values=[doc.metadata["source"]])
                        ],
                    )
                    if space is not None:
                        request.query_embedding.values.extend(vectors[space][i].values)
                        request.model = models[space]
                    reply = await stub.Search(request, timeout=10)
                    # The retrievers store chunks: a document's id is its chunk's document_id.
                    found = [d.document.chunk.document_id or d.document.id for d in reply.documents]
                    if found != [doc.id]:
                        missing.append(f"{retriever}/{space or 'lexical'}/{doc.id}")
    return missing
