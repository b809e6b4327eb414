"""Per-document RPCs against real retriever processes (both impls): replace, remove, hashes,
listing, restart and SIGKILL durability, documents that fail alone, blank vectors."""

from __future__ import annotations

import asyncio
import signal
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from processes import service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc

DIM = 16
IMPLS = ["primary", "fallback"]


def retriever(impl: str, data_dir: Path, **settings: str):
    return service_process(
        "retriever_svc", impl, stop_signal=signal.SIGKILL, data_dir=str(data_dir), **settings
    )


def vector_for(word: str) -> list[float]:
    return np.random.default_rng(zlib.crc32(word.encode())).standard_normal(DIM).tolist()


def chunk(
    document_id: str,
    position: int,
    count: int,
    text: str,
    vector: list[float] | None = None,
    **values: list[str],
) -> retriever_pb2.IndexedDocument:
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(
            id=f"{document_id}#{position}",
            text=text,
            metadata={"source": document_id},
            metadata_values={k: common_pb2.MetadataValues(values=v) for k, v in values.items()},
            chunk=common_pb2.Chunk(
                document_id=document_id,
                position=position,
                count=count,
                title=f"Title of {document_id}",
                heading_path=["Guide", f"Part {position}"],
            ),
        ),
        embeddings={"m": common_pb2.Embedding(values=vector or vector_for(text))},
    )


def document(document_id: str, content_hash: str, texts: list[str], **values: list[str]):
    return retriever_pb2.DocumentChunks(
        document_id=document_id,
        content_hash=content_hash,
        chunks=[chunk(document_id, i, len(texts), t, **values) for i, t in enumerate(texts)],
    )


def search_request(text: str, top_k: int = 10, **filters: str) -> retriever_pb2.SearchRequest:
    return retriever_pb2.SearchRequest(
        query_text=text,
        query_embedding=common_pb2.Embedding(values=vector_for(text)),
        model="m",
        top_k=top_k,
        filters=[common_pb2.MetadataFilter(key=k, values=[v]) for k, v in filters.items()],
    )


async def found_ids(stub, text: str, **filters: str) -> list[str]:
    reply = await stub.Search(search_request(text, **filters), timeout=10)
    return [d.document.id for d in reply.documents]


async def listing(stub, page_size: int) -> list[list[tuple[str, str, int, str]]]:
    pages, token = [], ""
    while True:
        reply = await stub.ListStoredDocuments(
            retriever_pb2.ListStoredDocumentsRequest(page_size=page_size, page_token=token),
            timeout=10,
        )
        pages.append([(d.document_id, d.title, d.chunks, d.content_hash) for d in reply.documents])
        token = reply.next_page_token
        if not token:
            return pages


@pytest.mark.parametrize("impl", IMPLS)
async def test_replace_search_remove_list_and_restart(tmp_path: Path, impl: str) -> None:
    data_dir = tmp_path / impl
    with retriever(impl, data_dir) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[
                        document("guide.md", "h1", ["alpha", "bravo", "charlie"]),
                        document("notes/a.md", "h2", ["delta"], tags=["rag", "retrieval"]),
                        document("notes/b.md", "h3", ["echo"]),
                    ]
                ),
                timeout=10,
            )
            assert [(r.document_id, r.stored, r.chunks, r.reason) for r in reply.results] == [
                ("guide.md", True, 3, ""),
                ("notes/a.md", True, 1, ""),
                ("notes/b.md", True, 1, ""),
            ]
            hit = (await stub.Search(search_request("bravo", top_k=1), timeout=10)).documents[0]
            assert hit.document.id == "guide.md#1"
            assert hit.document.chunk.document_id == "guide.md"
            assert hit.document.chunk.title == "Title of guide.md"
            assert list(hit.document.chunk.heading_path) == ["Guide", "Part 1"]
            assert (await found_ids(stub, "delta", tags="retrieval")) == ["notes/a.md#0"]
            delta = (await stub.Search(search_request("delta", top_k=1), timeout=10)).documents
            assert list(delta[0].document.metadata_values["tags"].values) == ["rag", "retrieval"]

            # The new version has fewer chunks: the old ones are gone, none is left behind.
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[document("guide.md", "h1b", ["foxtrot"])]
                ),
                timeout=10,
            )
            assert reply.results[0].stored and reply.results[0].chunks == 1
            assert "guide.md#1" not in await found_ids(stub, "bravo")
            assert "guide.md#0" in await found_ids(stub, "foxtrot")

            removed = await stub.RemoveDocuments(
                retriever_pb2.RemoveDocumentsRequest(document_ids=["notes/b.md", "nope"]),
                timeout=10,
            )
            assert list(removed.removed) == ["notes/b.md"] and removed.chunks_removed == 1
            assert "notes/b.md#0" not in await found_ids(stub, "echo")

            hashes = await stub.GetDocumentHashes(
                retriever_pb2.GetDocumentHashesRequest(
                    document_ids=["guide.md", "notes/a.md", "notes/b.md"]
                ),
                timeout=10,
            )
            assert dict(hashes.content_hashes) == {"guide.md": "h1b", "notes/a.md": "h2"}
            expected = [
                ("guide.md", "Title of guide.md", 1, "h1b"),
                ("notes/a.md", "Title of notes/a.md", 1, "h2"),
            ]
            assert await listing(stub, 1) == [[expected[0]], [expected[1]]]
            assert await listing(stub, 0) == [expected]
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert stats.documents == 2

    with retriever(impl, data_dir) as (_, address):  # after a SIGKILL, all of it is back
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            assert await listing(stub, 0) == [expected]
            assert "guide.md#0" in await found_ids(stub, "foxtrot")
            assert "guide.md#1" not in await found_ids(stub, "bravo")
            assert (await found_ids(stub, "delta", tags="rag")) == ["notes/a.md#0"]


@pytest.mark.parametrize("impl", IMPLS)
async def test_bad_requests_and_documents_that_fail_alone(tmp_path: Path, impl: str) -> None:
    with retriever(impl, tmp_path / impl, max_upsert_batch="4") as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ReplaceDocuments(
                    retriever_pb2.ReplaceDocumentsRequest(
                        documents=[document("a", "h", ["x"]), document("a", "h", ["y"])]
                    ),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields = [v.field for v in error_from_rpc(caught.value).field_violations]
            assert fields == ["documents[1].document_id"]

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ReplaceDocuments(
                    retriever_pb2.ReplaceDocumentsRequest(
                        documents=[
                            document("a", "h", ["1", "2", "3"]),
                            document("b", "h", list("45")),
                        ]
                    ),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "at most 4 per call" in (caught.value.details() or "")

            foreign = document("thief", "h", ["stolen"])
            foreign.chunks[0].document.chunk.document_id = "someone-else"
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[
                        document("good", "h", ["fine words"]),
                        retriever_pb2.DocumentChunks(document_id="", chunks=[]),
                        foreign,
                        document("empty-text", "h", ["   "]),
                    ]
                ),
                timeout=10,
            )
            outcomes = [(r.document_id, r.stored) for r in reply.results]
            assert outcomes == [
                ("good", True),
                ("", False),
                ("thief", False),
                ("empty-text", False),
            ]
            assert reply.results[1].reason == "document_id must not be empty"
            assert "not the document's id" in reply.results[2].reason
            assert "chunks[0].document.text: must not be empty" in reply.results[3].reason
            assert await listing(stub, 0) == [[("good", "Title of good", 1, "h")]]

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListStoredDocuments(
                    retriever_pb2.ListStoredDocumentsRequest(page_size=1001), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            # An empty chunk list removes the document.
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[retriever_pb2.DocumentChunks(document_id="good")]
                ),
                timeout=10,
            )
            assert reply.results[0].stored and reply.results[0].chunks == 0
            assert await listing(stub, 0) == [[]]


async def test_all_zero_vectors_fail_nothing_on_the_dense_retriever(tmp_path: Path) -> None:
    """A text with no word tokens embeds to zeros: its chunk is kept, the batch is not lost,
    and a zero query finds nothing instead of failing."""
    zero = [0.0] * DIM
    with retriever("primary", tmp_path / "dense") as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            emoji = retriever_pb2.DocumentChunks(
                document_id="emoji.md",
                content_hash="he",
                chunks=[chunk("emoji.md", 0, 2, "🙂🙂🙂", zero), chunk("emoji.md", 1, 2, "words")],
            )
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[emoji, document("fine.md", "hf", ["golf"])]
                ),
                timeout=10,
            )
            assert [(r.stored, r.chunks) for r in reply.results] == [(True, 2), (True, 1)]
            assert reply.results[0].reason.startswith("no word tokens: 1 of 2 chunks")
            assert reply.results[1].reason == ""
            assert "emoji.md#1" in await found_ids(stub, "words")

            # The older Upsert takes the rest of the batch too.
            upsert = await stub.Upsert(
                retriever_pb2.UpsertRequest(
                    documents=[
                        chunk("up", 0, 1, "🎉", zero),
                        chunk("up2", 0, 1, "hotel"),
                    ]
                ),
                timeout=10,
            )
            assert upsert.upserted == 2
            assert "up2#0" in await found_ids(stub, "hotel")

            blank = await stub.Search(
                retriever_pb2.SearchRequest(
                    query_text="🙂 ?!",
                    query_embedding=common_pb2.Embedding(values=zero),
                    model="m",
                    top_k=5,
                ),
                timeout=10,
            )
            assert list(blank.documents) == [] and blank.index_size > 0


@pytest.mark.parametrize("impl", IMPLS)
async def test_acknowledged_replaces_survive_sigkill(tmp_path: Path, impl: str) -> None:
    data_dir = tmp_path / impl
    acknowledged: dict[str, int] = {}  # document -> version last acknowledged
    with retriever(impl, data_dir, snapshot_every="5") as (proc, address):
        enough = asyncio.Event()
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)

            async def writer(w: int) -> None:
                for n in range(100_000):
                    doc_id, version = f"w{w}d{n % 7}", n
                    texts = [f"v{version}c{i} unique{doc_id}" for i in range(1 + n % 3)]
                    reply = await stub.ReplaceDocuments(
                        retriever_pb2.ReplaceDocumentsRequest(
                            documents=[document(doc_id, f"h{version}", texts)]
                        ),
                        timeout=10,
                    )
                    assert reply.results[0].stored
                    acknowledged[doc_id] = version
                    if n >= 40:
                        enough.set()

            writers = [asyncio.create_task(writer(w)) for w in range(3)]
            await asyncio.wait_for(enough.wait(), timeout=60)
            proc.send_signal(signal.SIGKILL)
            results = await asyncio.gather(*writers, return_exceptions=True)
        assert all(isinstance(r, grpc.aio.AioRpcError) for r in results), results
        assert proc.wait(10) == -signal.SIGKILL

    with retriever(impl, data_dir) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            hashes = await stub.GetDocumentHashes(
                retriever_pb2.GetDocumentHashesRequest(document_ids=list(acknowledged)),
                timeout=10,
            )
            listed = {d[0]: d for page in await listing(stub, 5) for d in page}
            for doc_id, version in acknowledged.items():
                # A replace in flight at the kill may have landed: the last acknowledged
                # version or the one after it, never an older one, never a mix.
                stored = int(hashes.content_hashes[doc_id].removeprefix("h"))
                assert stored in (version, version + 7), (doc_id, version, stored)
                assert listed[doc_id][2] == 1 + stored % 3
