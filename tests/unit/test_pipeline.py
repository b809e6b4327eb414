"""A query through the pipeline, with fake upstream stubs on a fake clock.

Each upstream is a fake stub (async Embed / Search / Generate / StreamGenerate) that takes
scripted fake time and answers with real protos or fails like a gRPC call. This proves
what a client sees, stage by stage, when parts of the mesh are down, without a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from gateway.config import GatewayConfig
from gateway.pipeline import (
    LOCAL_EMPTY_CONTEXT,
    LOCAL_LEXICAL,
    LOCAL_STATIC_ANSWER,
    STALE_CACHE,
    Pipeline,
)
from gateway.query import QueryInput, QueryResult, StreamEvent
from gateway.resilience.clock import FakeClock
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Guard
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import common_pb2, embedder_pb2, generator_pb2, retriever_pb2
from servicekit.config import load_config

DOCS = [
    common_pb2.ScoredDocument(document=common_pb2.Document(id="d1", text="Raft elects"), score=0.9),
    common_pb2.ScoredDocument(document=common_pb2.Document(id="d2", text="leaders"), score=0.5),
]


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


@dataclass
class FakeStub:
    """One upstream process: answers after `took` fake seconds, or fails with `down`."""

    name: str
    clock: FakeClock
    took: float = 0.01
    down: grpc.StatusCode | None = None
    stream: list[str] = field(default_factory=lambda: ["Raft ", "elects ", "leaders."])
    fail_after_chunks: int | None = None  # streaming: fail after sending this many chunks
    requests: list[Any] = field(default_factory=list)

    async def _answer(self, request: Any, timeout_s: float) -> None:
        """Like a gRPC call: past its timeout it fails with DEADLINE_EXCEEDED."""
        self.requests.append(request)
        await self.clock.sleep(min(self.took, timeout_s))
        if self.took > timeout_s:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
        if self.down is not None:
            raise RpcError(self.down)

    async def Embed(self, request: embedder_pb2.EmbedRequest, timeout: float) -> Any:  # noqa: ASYNC109
        await self._answer(request, timeout)
        embedding = common_pb2.Embedding(values=[0.1, 0.2, 0.3])
        return embedder_pb2.EmbedResponse(embeddings=[embedding], model=f"{self.name}-model")

    async def Search(self, request: retriever_pb2.SearchRequest, timeout: float) -> Any:  # noqa: ASYNC109
        await self._answer(request, timeout)
        dense = request.HasField("query_embedding")
        mode = retriever_pb2.RETRIEVAL_MODE_DENSE if dense else retriever_pb2.RETRIEVAL_MODE_LEXICAL
        return retriever_pb2.SearchResponse(documents=DOCS, mode=mode, index_size=2)

    async def Generate(self, request: generator_pb2.GenerateRequest, timeout: float) -> Any:  # noqa: ASYNC109
        await self._answer(request, timeout)
        return generator_pb2.GenerateResponse(
            text=f"answer from {self.name}", model=f"{self.name}-model"
        )

    def StreamGenerate(
        self, request: generator_pb2.StreamGenerateRequest, timeout: float
    ) -> AsyncIterator[generator_pb2.StreamGenerateResponse]:
        return self._stream(request)

    async def _stream(self, request: Any) -> AsyncIterator[generator_pb2.StreamGenerateResponse]:
        self.requests.append(request)
        for sent, delta in enumerate(self.stream):
            if self.down is not None and sent == (self.fail_after_chunks or 0):
                raise RpcError(self.down)
            await self.clock.sleep(self.took)
            yield generator_pb2.StreamGenerateResponse(delta=delta)
        if self.down is not None:
            raise RpcError(self.down)
        final = generator_pb2.GenerateResponse(model=f"{self.name}-model")
        yield generator_pb2.StreamGenerateResponse(final=final)


class Mesh:
    """Primary and fallback of each component, as fake stubs behind a real Pipeline."""

    def __init__(self, generators: tuple[str, ...] = ("primary", "fallback"), **overrides: Any):
        self.clock = FakeClock()
        self.stubs: dict[str, FakeStub] = {}
        chains: dict[str, list[Upstream]] = {}
        for component in ("embedder", "retriever", "generator"):
            chains[component] = []
            roles = generators if component == "generator" else ("primary", "fallback")
            for tier, role in enumerate(roles):
                name = f"{component}-{role}"
                stub = self.stubs[name] = FakeStub(name, self.clock)
                upstream = Upstream(
                    name,
                    component,
                    tier,
                    "fake",
                    None,
                    stub,
                    Guard(name, tier),  # type: ignore[arg-type]
                )
                chains[component].append(upstream)
        self.upstreams = Upstreams(chains)
        self.cfg = load_config(GatewayConfig, env={}, overrides=overrides).config
        self.pipeline = Pipeline(self.upstreams, self.cfg, clock=self.clock)

    def down(self, *names: str) -> None:
        for name in names:
            self.stubs[name].down = grpc.StatusCode.UNAVAILABLE

    def calls(self, name: str) -> int:
        return len(self.stubs[name].requests)

    async def query(self, text: str = "How does Raft elect a leader?") -> QueryResult:
        deadline = Deadline.after(5.0, self.clock)
        return await self.clock.drive(self.pipeline.run(QueryInput(text, 2), deadline))

    async def stream(self, text: str = "How does Raft elect a leader?") -> list[StreamEvent]:
        deadline = Deadline.after(5.0, self.clock)

        async def collect() -> list[StreamEvent]:
            return [e async for e in self.pipeline.run_streaming(QueryInput(text, 2), deadline)]

        return await self.clock.drive(collect())


def served(result: QueryResult) -> list[tuple[str, int]]:
    return [(stage.served_by, stage.tier) for stage in result.stages]


async def test_a_healthy_mesh_serves_every_stage_from_its_primary() -> None:
    mesh = Mesh()
    result = await mesh.query()
    assert served(result) == [
        ("embedder-primary", 0),
        ("retriever-primary", 0),
        ("generator-primary", 0),
    ]
    assert result.answer == "answer from generator-primary"
    assert result.model == "generator-primary-model"
    assert not result.degraded and not result.cached and result.retry_after_s is None
    assert [s.document.id for s in result.sources] == ["d1", "d2"]
    search = mesh.stubs["retriever-primary"].requests[0]
    assert list(search.query_embedding.values) == pytest.approx([0.1, 0.2, 0.3])
    assert search.model == "embedder-primary-model"
    assert (
        result.stages[1].detail
        == "dense search over 2 documents in the embedder-primary-model space"
    )
    generate = mesh.stubs["generator-primary"].requests[0]
    assert [d.document.id for d in generate.context] == ["d1", "d2"]
    assert [a.outcome for stage in result.stages for a in stage.attempts] == ["OK"] * 3


async def test_a_failed_primary_is_served_by_its_fallback() -> None:
    mesh = Mesh()
    mesh.down("retriever-primary")
    result = await mesh.query()
    assert served(result)[1] == ("retriever-fallback", 1) and result.degraded
    attempts = result.stages[1].attempts
    assert [(a.upstream, a.outcome) for a in attempts] == [
        ("retriever-primary", "UNAVAILABLE"),
        ("retriever-fallback", "OK"),
    ]
    upstream = mesh.upstreams.by_name("retriever-primary")
    assert upstream is not None and upstream.last_outcome == "UNAVAILABLE"


async def test_without_an_embedder_retrieval_goes_lexical() -> None:
    mesh = Mesh()
    mesh.down("embedder-primary", "embedder-fallback")
    result = await mesh.query()
    assert served(result) == [
        (LOCAL_LEXICAL, 2),
        ("retriever-primary", 0),
        ("generator-primary", 0),
    ]
    assert result.degraded and result.stages[0].value is None
    search = mesh.stubs["retriever-primary"].requests[0]
    assert not search.HasField("query_embedding") and search.model == ""
    assert result.stages[1].detail == "lexical search over 2 documents"
    assert result.answer == "answer from generator-primary"


async def test_without_a_retriever_the_answer_has_no_context() -> None:
    mesh = Mesh()
    mesh.down("retriever-primary", "retriever-fallback")
    result = await mesh.query()
    assert served(result)[1] == (LOCAL_EMPTY_CONTEXT, 2)
    assert result.sources == [] and list(mesh.stubs["generator-primary"].requests[0].context) == []
    assert result.answer == "answer from generator-primary"


async def test_without_a_generator_the_last_good_answer_is_served_stale() -> None:
    mesh = Mesh()
    good = await mesh.query()
    mesh.clock.advance(mesh.cfg.cache.ttl_s + 1)  # no longer fresh, still within stale_ttl
    mesh.down("generator-primary", "generator-fallback")
    result = await mesh.query()
    assert served(result)[2] == (STALE_CACHE, 2) and result.degraded
    assert result.answer == good.answer and result.model == good.model
    assert result.sources == good.sources
    assert mesh.calls("retriever-primary") == 2  # the stages before still ran afresh


async def test_without_a_generator_or_a_stale_answer_a_static_answer_says_when_to_retry() -> None:
    mesh = Mesh()
    mesh.down("generator-primary", "generator-fallback")
    result = await mesh.query()
    assert served(result)[2] == (LOCAL_STATIC_ANSWER, 2)
    assert result.retry_after_s == mesh.cfg.query.retry_after_s and result.model == "static"
    assert "temporarily unavailable" in result.answer
    assert [s.document.id for s in result.sources] == ["d1", "d2"]  # what the search found


async def test_a_fresh_answer_is_served_from_the_cache() -> None:
    mesh = Mesh()
    first = await mesh.query()
    again = await mesh.query("  how does RAFT elect a leader?")  # same query, other spelling
    assert again.cached and not first.cached and again.answer == first.answer
    assert mesh.calls("embedder-primary") == 1 and mesh.calls("generator-primary") == 1


async def test_degraded_answers_are_not_cached() -> None:
    mesh = Mesh()
    mesh.down("generator-primary")
    first = await mesh.query()
    assert first.degraded and served(first)[2] == ("generator-fallback", 1)
    mesh.stubs["generator-primary"].down = None  # recovered
    second = await mesh.query()
    assert not second.cached and not second.degraded
    assert second.answer == "answer from generator-primary"


async def test_identical_concurrent_queries_share_one_run() -> None:
    mesh = Mesh()

    async def both() -> list[QueryResult]:
        deadline = Deadline.after(5.0, mesh.clock)
        runs = [mesh.pipeline.run(QueryInput("Raft?", 2), deadline) for _ in range(5)]
        return await asyncio.gather(*runs)

    results = await mesh.clock.drive(both())
    assert mesh.calls("embedder-primary") == 1 and mesh.calls("generator-primary") == 1
    assert all(r is results[0] for r in results)


async def test_a_stream_sends_sources_then_chunks_then_the_final_receipt() -> None:
    mesh = Mesh()
    events = await mesh.stream()
    assert events[0].sources is not None and [s.document.id for s in events[0].sources] == [
        "d1",
        "d2",
    ]
    chunks = [e.chunk for e in events[1:-1]]
    assert chunks == ["Raft ", "elects ", "leaders."]
    final = events[-1].final
    assert final is not None and final.answer == "Raft elects leaders."
    assert final.model == "generator-primary-model" and not final.degraded
    assert isinstance(
        mesh.stubs["generator-primary"].requests[0], generator_pb2.StreamGenerateRequest
    )


async def test_a_stream_that_fails_midway_withdraws_its_partial_answer_then_falls_back() -> None:
    mesh = Mesh()
    broken = mesh.stubs["generator-primary"]
    broken.down, broken.fail_after_chunks = grpc.StatusCode.UNAVAILABLE, 2
    mesh.stubs["generator-fallback"].stream = ["Leaders ", "are elected."]
    events = await mesh.stream()
    assert events[0].sources is not None
    assert [e.chunk for e in events[1:3]] == ["Raft ", "elects "]
    withdrawn = events[3].withdrawn
    assert withdrawn is not None
    assert (withdrawn.upstream, withdrawn.tier) == ("generator-primary", 0)
    assert withdrawn.withdrawn_chars == len("Raft elects ")
    assert withdrawn.reason == "UNAVAILABLE: UNAVAILABLE"
    assert [e.chunk for e in events[4:-1]] == ["Leaders ", "are elected."]
    final = events[-1].final
    assert final is not None and final.answer == "Leaders are elected."  # the fallback's only
    assert final.model == "generator-fallback-model" and final.degraded
    assert served(final)[2] == ("generator-fallback", 1)
    attempts = [(a.upstream, a.outcome) for a in final.stages[2].attempts]
    assert attempts == [("generator-primary", "UNAVAILABLE"), ("generator-fallback", "OK")]


async def test_a_stream_failing_before_any_text_sends_no_withdrawal() -> None:
    mesh = Mesh()
    mesh.down("generator-primary")  # fails before its first delta
    events = await mesh.stream()
    assert not any(e.withdrawn for e in events)
    final = events[-1].final
    assert final is not None and final.answer == "Raft elects leaders."
    assert served(final)[2] == ("generator-fallback", 1)


async def test_three_generator_tiers_each_failing_midway_are_each_withdrawn() -> None:
    mesh = Mesh(generators=("a", "b", "c"))
    for name in ("generator-a", "generator-b"):
        stub = mesh.stubs[name]
        stub.down, stub.fail_after_chunks = grpc.StatusCode.INTERNAL, 1
    mesh.stubs["generator-c"].stream = ["Third ", "time."]
    events = await mesh.stream()
    kinds = [
        "sources" if e.sources is not None else "withdrawn" if e.withdrawn else "chunk"
        for e in events[:-1]
    ]
    assert kinds == ["sources", "chunk", "withdrawn", "chunk", "withdrawn", "chunk", "chunk"]
    assert [e.withdrawn.upstream for e in events if e.withdrawn] == ["generator-a", "generator-b"]
    final = events[-1].final
    assert final is not None and final.answer == "Third time."
    assert served(final)[2] == ("generator-c", 2)
    assert [a.upstream for a in final.stages[2].attempts] == [
        "generator-a",
        "generator-b",
        "generator-c",
    ]


async def test_a_stream_whose_every_generator_fails_midway_ends_with_the_static_answer() -> None:
    mesh = Mesh()
    for name in ("generator-primary", "generator-fallback"):
        stub = mesh.stubs[name]
        stub.down, stub.fail_after_chunks = grpc.StatusCode.UNAVAILABLE, 1
    events = await mesh.stream()
    final = events[-1].final
    assert final is not None and served(final)[2] == (LOCAL_STATIC_ANSWER, 2)
    assert [e.withdrawn.upstream for e in events if e.withdrawn] == [
        "generator-primary",
        "generator-fallback",
    ]
    assert events[-2].chunk == final.answer  # the static answer alone, after the withdrawals


async def test_a_unary_query_hides_a_mid_stream_failover() -> None:
    mesh = Mesh()
    mesh.down("generator-primary")
    result = await mesh.query()
    assert result.answer == "answer from generator-fallback"


async def test_a_stream_with_no_generator_ends_with_the_static_answer_as_a_chunk() -> None:
    mesh = Mesh()
    mesh.down("generator-primary", "generator-fallback")
    events = await mesh.stream()
    final = events[-1].final
    assert final is not None and served(final)[2] == (LOCAL_STATIC_ANSWER, 2)
    assert [e.chunk for e in events[1:-1]] == [final.answer]
    assert final.retry_after_s == mesh.cfg.query.retry_after_s


async def test_a_hanging_primary_leaves_time_for_its_fallback() -> None:
    mesh = Mesh()
    mesh.stubs["generator-primary"].took = 60.0  # hangs past any timeout
    result = await mesh.query()
    assert served(result)[2] == ("generator-fallback", 1)
    [hung, answered] = result.stages[2].attempts
    assert hung.outcome == "DEADLINE_EXCEEDED" and answered.outcome == "OK"
    assert hung.latency_s == pytest.approx(mesh.cfg.deadlines.generate_timeout_s)  # the per-try cap
    assert mesh.clock.monotonic() < 5.0  # answered within the caller's deadline
