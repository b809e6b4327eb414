"""Ingest retries idempotent writes (Embed, ReplaceDocuments) through the project's
RetryPolicy: which codes, how often and how long it waits. Fake stubs and a fake clock: no
sockets, no real waiting."""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from outbox_support import delivering

from gateway.config import IngestConfig
from gateway.ingest import ingest
from gateway.ingest_calls import Retrying
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Guard
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import common_pb2, embedder_pb2, gateway_pb2, retriever_pb2

CONFIG = IngestConfig(max_document_chars=10_000, timeout_s=5.0, batch_size=8)
S = grpc.StatusCode


def rpc_error(code: grpc.StatusCode, trailers: tuple[tuple[str, str], ...] = ()) -> Exception:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), "boom")


class FakeStub:
    """Fails with the scripted errors, in order, then answers; counts every call."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def _answer(self, reply: Any) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return reply

    # Like a grpc.aio stub: a plain method returning an awaitable call.
    def Embed(self, request: embedder_pb2.EmbedRequest, timeout: float) -> Awaitable[Any]:
        vectors = [common_pb2.Embedding(values=[1.0, 0.0]) for _ in request.texts]
        return self._answer(embedder_pb2.EmbedResponse(embeddings=vectors, model="m"))

    def GetModelInfo(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._GetModelInfo(request)

    async def _GetModelInfo(self, request: Any) -> Any:
        return embedder_pb2.GetModelInfoResponse(model="m", max_batch_size=64)

    def GetDocumentHashes(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._GetDocumentHashes(request)

    async def _GetDocumentHashes(self, request: Any) -> Any:
        return retriever_pb2.GetDocumentHashesResponse()

    def ReplaceDocuments(
        self, request: retriever_pb2.ReplaceDocumentsRequest, timeout: float
    ) -> Awaitable[Any]:
        results = [
            retriever_pb2.DocumentReplaceResult(
                document_id=d.document_id, stored=True, chunks=len(d.chunks)
            )
            for d in request.documents
        ]
        return self._answer(retriever_pb2.ReplaceDocumentsResponse(results=results))


class RecordingClock:
    """A fake clock whose sleeps return at once, moving fake time on and noting each wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class HighestDraw(random.Random):
    """Every jittered wait at the top of its range, so the test sees the bounds."""

    def uniform(self, a: float, b: float) -> float:
        return b


def upstream(name: str, component: str, stub: FakeStub) -> Upstream:
    no_channel: Any = None
    return Upstream(name, component, 0, "fake:1", no_channel, stub, Guard(name, 0))


async def run(
    embedder: FakeStub, retriever: FakeStub
) -> tuple[gateway_pb2.IngestResponse, list[float]]:
    clock = RecordingClock()
    upstreams = Upstreams(
        {
            "embedder": [upstream("embedder-primary", "embedder", embedder)],
            "retriever": [upstream("retriever-primary", "retriever", retriever)],
        }
    )
    documents = [common_pb2.Document(text="A breaker opens when calls keep failing.")]
    async with delivering(upstreams, CONFIG, max_deliveries=3) as delivery:
        reply = await ingest(
            upstreams,
            CONFIG,
            documents,
            delivery,
            Deadline.after(10),
            retrying=Retrying(clock=clock, rng=HighestDraw()),
        )
    return reply, clock.waits


@pytest.mark.parametrize("code", [S.UNAVAILABLE, S.DEADLINE_EXCEEDED])
async def test_a_transient_embed_failure_is_retried_with_bounded_backoff(code) -> None:
    embedder = FakeStub(rpc_error(code), rpc_error(code))
    reply, waits = await run(embedder, FakeStub())
    assert embedder.calls == 3
    assert waits == [0.1, 0.2]  # the caps of the first and second waits
    assert reply.results[0].status == gateway_pb2.INGEST_STATUS_ACCEPTED
    assert reply.models == ["m"]


async def test_an_upstream_that_keeps_failing_gets_three_attempts_then_is_missing() -> None:
    embedder = FakeStub(*(rpc_error(S.UNAVAILABLE) for _ in range(5)))
    retriever = FakeStub()
    reply, waits = await run(embedder, retriever)
    assert embedder.calls == 3 and len(waits) == 2
    assert reply.results[0].status == gateway_pb2.INGEST_STATUS_PARTIAL
    assert list(reply.results[0].missing) == ["embedder-primary"]
    assert retriever.calls == 1, "the document is still stored (its text, for lexical search)"


@pytest.mark.parametrize("code", [S.INVALID_ARGUMENT, S.INTERNAL, S.FAILED_PRECONDITION])
async def test_an_embed_failure_that_is_not_transient_is_not_retried(code) -> None:
    embedder = FakeStub(rpc_error(code))
    reply, waits = await run(embedder, FakeStub())
    assert embedder.calls == 1 and waits == []
    assert list(reply.results[0].missing) == ["embedder-primary"]


@pytest.mark.parametrize("code", [S.INVALID_ARGUMENT, S.INTERNAL, S.FAILED_PRECONDITION])
async def test_a_write_the_retriever_keeps_refusing_is_dead_lettered_and_failed(code) -> None:
    retriever = FakeStub(*(rpc_error(code) for _ in range(10)))
    reply, _ = await run(FakeStub(), retriever)
    assert retriever.calls == 3, "outbox_max_deliveries=3"
    result = reply.results[0]
    assert result.status == gateway_pb2.INGEST_STATUS_FAILED and reply.failed == 1
    assert result.writes[0].status == gateway_pb2.WRITE_STATUS_FAILED
    assert "dead-lettered" in result.writes[0].reason and code.name in result.writes[0].reason


@pytest.mark.parametrize("code", [S.UNAVAILABLE, S.RESOURCE_EXHAUSTED, S.DEADLINE_EXCEEDED])
async def test_a_transient_write_failure_waits_and_is_delivered(code) -> None:
    retriever = FakeStub(*(rpc_error(code) for _ in range(6)))
    reply, _ = await run(FakeStub(), retriever)
    assert retriever.calls == 7, "a retriever that cannot take writes yet costs no delivery"
    assert list(reply.results[0].missing) == []
    assert reply.succeeded == 1


async def test_a_server_that_refuses_retries_by_pushback_is_not_retried() -> None:
    refused = rpc_error(S.UNAVAILABLE, (("grpc-retry-pushback-ms", "-1"),))
    embedder = FakeStub(refused)
    _, waits = await run(embedder, FakeStub())
    assert embedder.calls == 1 and waits == []
