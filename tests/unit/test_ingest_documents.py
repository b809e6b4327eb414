"""Ingest by documents: chunks, content hashes, UNCHANGED, failing alone, delete and list.
Fake embedder and retriever stubs (an in-memory store): no sockets."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from outbox_support import delivering
from waiting import wait_until

from gateway.config import ChunkingConfig, IngestConfig
from gateway.documents import ListingError, delete_documents, list_documents
from gateway.ingest import ingest
from gateway.resilience.deadline import Deadline
from gateway.resilience.guard import Guard
from gateway.upstreams import Upstream, Upstreams
from harag.v1 import common_pb2, embedder_pb2, gateway_pb2, retriever_pb2

CONFIG = IngestConfig(max_document_chars=50_000, timeout_s=5.0, batch_size=8)
CHUNKING = ChunkingConfig(chunk_size_tokens=64, chunk_overlap_tokens=8)
STATUS = gateway_pb2.IngestStatus
WRITE = gateway_pb2.WriteStatus
WAIT_S = 10.0


def unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
    )


class FakeEmbedder:
    def __init__(self, model: str = "m") -> None:
        self.model = model
        self.texts: list[str] = []
        self.embed_calls = 0
        self.input_types: list[int] = []

    def GetModelInfo(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._GetModelInfo(request)

    async def _GetModelInfo(self, request: Any) -> Any:
        return embedder_pb2.GetModelInfoResponse(
            model=self.model, dimension=2, max_batch_size=4, max_text_chars=8192
        )

    def Embed(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._Embed(request)

    async def _Embed(self, request: Any) -> Any:
        assert len(request.texts) <= 4, "batches respect the embedder's max_batch_size"
        self.embed_calls += 1
        self.texts += request.texts
        self.input_types.append(request.input_type)
        vectors = [common_pb2.Embedding(values=[1.0, 0.0]) for _ in request.texts]
        return embedder_pb2.EmbedResponse(embeddings=vectors, model=self.model, dimension=2)


class FakeRetriever:
    """Stores documents' chunks and hashes; refuses documents whose text has `refuse`."""

    def __init__(self, refuse: str = "", down: bool = False) -> None:
        self.docs: dict[str, tuple[str, list[retriever_pb2.IndexedDocument]]] = {}
        self.refuse = refuse
        self.down = down

    def GetDocumentHashes(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._GetDocumentHashes(request)

    async def _GetDocumentHashes(self, request: Any) -> Any:
        if self.down:
            raise unavailable()
        return retriever_pb2.GetDocumentHashesResponse(
            content_hashes={i: self.docs[i][0] for i in request.document_ids if i in self.docs}
        )

    def ReplaceDocuments(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._ReplaceDocuments(request)

    async def _ReplaceDocuments(self, request: Any) -> Any:
        if self.down:
            raise unavailable()
        results = []
        for d in request.documents:
            if self.refuse and any(self.refuse in c.document.text for c in d.chunks):
                results.append(
                    retriever_pb2.DocumentReplaceResult(
                        document_id=d.document_id, stored=False, reason="no word tokens"
                    )
                )
                continue
            self.docs[d.document_id] = (d.content_hash, list(d.chunks))
            results.append(
                retriever_pb2.DocumentReplaceResult(
                    document_id=d.document_id, stored=True, chunks=len(d.chunks)
                )
            )
        return retriever_pb2.ReplaceDocumentsResponse(results=results)

    def RemoveDocuments(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._RemoveDocuments(request)

    async def _RemoveDocuments(self, request: Any) -> Any:
        if self.down:
            raise unavailable()
        removed = [i for i in request.document_ids if self.docs.pop(i, None) is not None]
        return retriever_pb2.RemoveDocumentsResponse(removed=removed)

    def ListStoredDocuments(self, request: Any, timeout: float) -> Awaitable[Any]:
        return self._ListStoredDocuments(request)

    async def _ListStoredDocuments(self, request: Any) -> Any:
        if self.down:
            raise unavailable()
        return retriever_pb2.ListStoredDocumentsResponse(
            documents=[
                common_pb2.StoredDocument(document_id=i, chunks=len(c), content_hash=h)
                for i, (h, c) in sorted(self.docs.items())
            ]
        )


def upstream(name: str, component: str, stub: Any, tier: int = 0) -> Upstream:
    no_channel: Any = None
    return Upstream(name, component, tier, "fake:1", no_channel, stub, Guard(name, tier))


def mesh(embedders: list[FakeEmbedder], retrievers: list[FakeRetriever]) -> Upstreams:
    return Upstreams(
        {
            "embedder": [
                upstream(f"embedder-{n}", "embedder", e, n) for n, e in enumerate(embedders)
            ],
            "retriever": [
                upstream(f"retriever-{n}", "retriever", r, n) for n, r in enumerate(retrievers)
            ],
        }
    )


LONG = "# Runbook\n\n## Restart\n\n" + "\n\n".join(
    f"Step {n}: " + " ".join(f"word{n}x{k}" for k in range(30)) for n in range(8)
)


async def run(
    upstreams: Upstreams,
    docs: list[common_pb2.Document],
    changed: list[str] | None = None,
    chunking: ChunkingConfig = CHUNKING,
):
    async with delivering(upstreams, CONFIG) as delivery:
        return await ingest(
            upstreams,
            CONFIG,
            docs,
            delivery,
            Deadline.after(WAIT_S),
            chunking=chunking,
            on_changed=(changed.extend if changed is not None else None),
        )


async def delete(upstreams: Upstreams, ids: list[str], evict=None):
    async with delivering(upstreams, CONFIG) as delivery:
        return await delete_documents(upstreams, ids, delivery, Deadline.after(WAIT_S), evict)


async def test_a_long_document_is_stored_as_chunks_with_their_place() -> None:
    retriever = FakeRetriever()
    doc = common_pb2.Document(
        id="ops/runbook.md",
        text=LONG,
        metadata={"team": "sre"},
        metadata_values={"tags": common_pb2.MetadataValues(values=["ops", "restart"])},
    )
    reply = await run(mesh([FakeEmbedder()], [retriever]), [doc])
    result = reply.results[0]
    assert result.status == STATUS.INGEST_STATUS_ACCEPTED
    stored = retriever.docs["ops/runbook.md"][1]
    assert result.chunks == len(stored) == reply.chunks > 3
    first, last = stored[0].document, stored[-1].document
    assert first.id == "ops/runbook.md#0" and last.id == f"ops/runbook.md#{len(stored) - 1}"
    assert last.chunk.document_id == "ops/runbook.md" and last.chunk.count == len(stored)
    assert last.chunk.title == "Runbook"
    assert list(last.chunk.heading_path) == ["Runbook", "Restart"]
    assert last.metadata["team"] == "sre"
    assert list(last.metadata_values["tags"].values) == ["ops", "restart"]
    assert all(set(c.embeddings) == {"m"} for c in stored)


async def test_chunks_are_embedded_as_passages() -> None:
    embedder = FakeEmbedder()
    doc = common_pb2.Document(id="ops/runbook.md", text=LONG)
    await run(mesh([embedder], [FakeRetriever()]), [doc])
    assert embedder.input_types
    assert set(embedder.input_types) == {embedder_pb2.EMBED_INPUT_TYPE_PASSAGE}


async def test_reingesting_an_unchanged_document_embeds_nothing() -> None:
    embedder, retriever = FakeEmbedder(), FakeRetriever()
    upstreams = mesh([embedder], [retriever, FakeRetriever()])
    docs = [common_pb2.Document(id=f"d{n}", text=f"Document {n}. " + LONG) for n in range(3)]
    await run(upstreams, docs)
    calls = embedder.embed_calls
    changed: list[str] = []
    again = await run(upstreams, docs, changed)
    assert [r.status for r in again.results] == [STATUS.INGEST_STATUS_UNCHANGED] * 3
    assert again.unchanged == 3 and again.chunks == 0
    assert embedder.embed_calls == calls, "nothing re-embedded"
    assert changed == []


async def test_a_changed_document_replaces_its_chunks_and_is_reported_changed() -> None:
    retriever = FakeRetriever()
    upstreams = mesh([FakeEmbedder()], [retriever])
    await run(upstreams, [common_pb2.Document(id="a", text=LONG)])
    changed: list[str] = []
    reply = await run(upstreams, [common_pb2.Document(id="a", text="Short now.")], changed)
    assert reply.results[0].status == STATUS.INGEST_STATUS_ACCEPTED
    assert [c.document.id for c in retriever.docs["a"][1]] == ["a#0"], "no orphan chunk"
    assert changed == ["a"]


async def test_changing_the_chunking_or_the_model_changes_the_hash() -> None:
    retriever = FakeRetriever()
    doc = common_pb2.Document(id="a", text=LONG)
    await run(mesh([FakeEmbedder("m1")], [retriever]), [doc])
    reply = await run(mesh([FakeEmbedder("m2")], [retriever]), [doc])
    assert reply.results[0].status == STATUS.INGEST_STATUS_ACCEPTED
    other = await run(
        mesh([FakeEmbedder("m2")], [retriever]),
        [doc],
        chunking=ChunkingConfig(chunk_size_tokens=128, chunk_overlap_tokens=8),
    )
    assert other.results[0].status == STATUS.INGEST_STATUS_ACCEPTED


async def test_a_document_a_retriever_refuses_fails_alone_with_the_reason() -> None:
    retriever = FakeRetriever(refuse="\U0001f600")
    docs = [common_pb2.Document(id=f"d{n}", text=f"Plain text {n}.") for n in range(5)]
    docs.insert(2, common_pb2.Document(id="emoji", text="\U0001f600\U0001f600"))
    reply = await run(mesh([FakeEmbedder()], [retriever]), docs)
    statuses = {r.id: r.status for r in reply.results}
    assert statuses.pop("emoji") == STATUS.INGEST_STATUS_FAILED
    assert set(statuses.values()) == {STATUS.INGEST_STATUS_ACCEPTED}
    assert "no word tokens" in reply.results[2].reason
    assert reply.failed == 1 and reply.succeeded == 5


async def test_a_document_over_the_size_limit_fails_naming_the_setting() -> None:
    doc = common_pb2.Document(id="huge", text="x " * 30_000)
    reply = await run(mesh([FakeEmbedder()], [FakeRetriever()]), [doc])
    assert reply.results[0].status == STATUS.INGEST_STATUS_FAILED
    assert "max_document_chars" in reply.results[0].reason


async def test_a_document_longer_than_the_old_8192_limit_is_accepted() -> None:
    doc = common_pb2.Document(id="readme", text=LONG * 20)
    assert len(doc.text) > 8192
    reply = await run(mesh([FakeEmbedder()], [FakeRetriever()]), [doc])
    assert reply.results[0].status == STATUS.INGEST_STATUS_ACCEPTED


async def test_a_retriever_down_gets_the_document_queued_and_applied_when_back() -> None:
    down = FakeRetriever(down=True)
    up = FakeRetriever()
    upstreams = mesh([FakeEmbedder()], [up, down])
    doc = common_pb2.Document(id="a", text="Some text.")
    async with delivering(upstreams, CONFIG) as delivery:
        reply = await ingest(upstreams, CONFIG, [doc], delivery, Deadline.after(0.5))
        result = reply.results[0]
        assert result.status == STATUS.INGEST_STATUS_QUEUED
        assert reply.queued == 1 and reply.succeeded == 0 and list(result.missing) == []
        assert [(w.retriever, w.status) for w in result.writes] == [
            ("retriever-0", WRITE.WRITE_STATUS_INDEXED),
            ("retriever-1", WRITE.WRITE_STATUS_QUEUED),
        ]
        assert delivery.state["retriever-1"].backlog == 1 or "a" not in down.docs
        down.down = False
        await wait_until(lambda: "a" in down.docs, what="the queued write applied")
        again = await ingest(upstreams, CONFIG, [doc], delivery, Deadline.after(WAIT_S))
        assert again.results[0].status == STATUS.INGEST_STATUS_UNCHANGED


async def test_a_delete_queued_after_an_upsert_wins_when_the_retriever_is_back() -> None:
    down = FakeRetriever(down=True)
    upstreams = mesh([FakeEmbedder()], [FakeRetriever(), down])
    async with delivering(upstreams, CONFIG) as delivery:
        docs = [common_pb2.Document(id=i, text=f"Text of {i}.") for i in ("a", "b")]
        await ingest(upstreams, CONFIG, docs, delivery, Deadline.after(0.3))
        gone = await delete_documents(upstreams, ["a"], delivery, Deadline.after(0.3))
        assert [(w.retriever, w.status) for w in gone.results[0].writes] == [
            ("retriever-0", WRITE.WRITE_STATUS_INDEXED),
            ("retriever-1", WRITE.WRITE_STATUS_QUEUED),
        ]
        assert list(gone.results[0].missing) == ["retriever-1"]
        down.down = False
        await wait_until(lambda: "b" in down.docs, what="the queued writes applied")
        await wait_until(
            lambda: delivery.state["retriever-1"].backlog == 0, what="nothing left pending"
        )
        assert sorted(down.docs) == ["b"]


async def test_delete_removes_from_every_retriever_and_evicts() -> None:
    first, second = FakeRetriever(), FakeRetriever()
    upstreams = mesh([FakeEmbedder()], [first, second])
    await run(
        upstreams, [common_pb2.Document(id="a", text="A."), common_pb2.Document(id="b", text="B.")]
    )
    evicted: list[str] = []

    def evict(ids: list[str]) -> int:
        evicted.extend(ids)
        return 2

    reply = await delete(upstreams, ["a", "nope"], evict=evict)
    assert [(r.id, r.found) for r in reply.results] == [("a", True), ("nope", False)]
    assert reply.evicted_answers == 2 and evicted == ["a", "nope"]
    assert "a" not in first.docs and "a" not in second.docs and "b" in first.docs


async def test_delete_names_a_retriever_it_could_not_reach() -> None:
    upstreams = mesh([FakeEmbedder()], [FakeRetriever(), FakeRetriever(down=True)])
    async with delivering(upstreams, CONFIG) as delivery:
        reply = await delete_documents(upstreams, ["a"], delivery, Deadline.after(0.3))
    assert list(reply.results[0].missing) == ["retriever-1"]


async def test_list_comes_from_the_first_retriever_that_answers() -> None:
    primary, fallback = FakeRetriever(down=True), FakeRetriever()
    upstreams = mesh([FakeEmbedder()], [primary, fallback])
    await run(upstreams, [common_pb2.Document(id="a", text="A.")])
    reply = await list_documents(upstreams, CONFIG, 0, "")
    assert reply.served_by == "retriever-1"
    assert [d.document_id for d in reply.documents] == ["a"]
    fallback.down = True
    with pytest.raises(ListingError, match="no retriever could list"):
        await list_documents(upstreams, CONFIG, 0, "")


class FlakyEmbedder(FakeEmbedder):
    """Answers GetModelInfo but fails every Embed while `down`."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.down = True

    async def _Embed(self, request: Any) -> Any:
        if self.down:
            raise unavailable()
        return await super()._Embed(request)


async def test_a_document_that_missed_an_embedder_is_embedded_again_later() -> None:
    flaky = FlakyEmbedder()
    retriever = FakeRetriever()
    upstreams = mesh([FakeEmbedder(), flaky], [retriever])
    doc = common_pb2.Document(id="a", text="Some text.")
    first = await run(upstreams, [doc])
    assert first.results[0].status == STATUS.INGEST_STATUS_PARTIAL
    assert list(first.results[0].missing) == ["embedder-1"]
    flaky.down = False
    again = await run(upstreams, [doc])
    assert again.results[0].status == STATUS.INGEST_STATUS_ACCEPTED, "not UNCHANGED"
    assert set(retriever.docs["a"][1][0].embeddings) == {"m", "flaky"}
    third = await run(upstreams, [doc])
    assert third.results[0].status == STATUS.INGEST_STATUS_UNCHANGED
