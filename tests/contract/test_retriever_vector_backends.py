"""One retriever contract, every dense backend: the embedded index and a real Milvus server.

`dense_retriever` starts a real retriever process for a backend and yields its address;
the contract tests take it parametrised by backend, so another backend (the embedded ANN
index) joins by adding its name to BACKENDS and a branch to `dense_retriever`. Milvus runs
as the engine's own server process on free ports, started once for the module (it takes a
few seconds); each test gets collections of its own through a fresh collection prefix.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from milvus_server import MilvusServer
from processes import service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc

BACKENDS = ("embedded", "milvus")
MODEL = "test-model"


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    with MilvusServer(tmp_path_factory.mktemp("milvus")) as server:
        yield server


def milvus_settings(server: MilvusServer, prefix: str = "") -> dict[str, str]:
    return {
        "vector_backend": "milvus",
        "milvus_uri": server.uri,
        "milvus_collection_prefix": prefix or f"t{uuid.uuid4().hex[:12]}_",
        "milvus_timeout_s": "3",
    }


@pytest.fixture(params=BACKENDS)
def dense_retriever(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    settings = {"data_dir": str(tmp_path / "retriever")}
    if request.param == "milvus":
        settings |= milvus_settings(request.getfixturevalue("milvus_server"))
    with service_process("retriever_svc", "primary", stop_signal=signal.SIGKILL, **settings) as (
        _,
        address,
    ):
        yield address


def entry(doc_id: str, vector: list[float], text: str = "", model: str = MODEL, **meta: str):
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(id=doc_id, text=text or f"text of {doc_id}", metadata=meta),
        embeddings={model: common_pb2.Embedding(values=vector)},
    )


def search(
    stub: retriever_pb2_grpc.RetrieverServiceStub,
    vector: list[float],
    top_k: int = 10,
    model: str = MODEL,
    **filters: list[str],
):
    return stub.Search(
        retriever_pb2.SearchRequest(
            query_embedding=common_pb2.Embedding(values=vector),
            model=model,
            top_k=top_k,
            filters=[common_pb2.MetadataFilter(key=k, values=v) for k, v in filters.items()],
        ),
        timeout=10,
    )


def ids(reply: retriever_pb2.SearchResponse) -> list[str]:
    return [d.document.id for d in reply.documents]


CORPUS = [
    entry("north", [1.0, 0.0, 0.0], lang="en", team="maps"),
    entry("east", [0.0, 1.0, 0.0], lang="de", team="maps"),
    entry("up", [0.0, 0.0, 1.0], lang="en", team="sky"),
    entry("north-east", [0.7, 0.7, 0.0], lang="fr", team="maps"),
]


async def test_upsert_is_found_by_the_next_search_ranked_by_cosine(dense_retriever: str) -> None:
    async with grpc.aio.insecure_channel(dense_retriever) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        reply = await stub.Upsert(retriever_pb2.UpsertRequest(documents=CORPUS), timeout=150)
        assert reply.upserted == 4
        found = await search(stub, [2.0, 0.1, 0.0], top_k=3)  # no wait: acknowledged = visible
        assert ids(found) == ["north", "north-east", "east"]
        assert found.documents[0].score == pytest.approx(0.99875, abs=1e-3)
        assert found.documents[0].document.text == "text of north"
        assert dict(found.documents[0].document.metadata) == {"lang": "en", "team": "maps"}
        assert found.index_size == 4
        # An upsert of an existing id replaces it; the old vector is gone.
        await stub.Upsert(
            retriever_pb2.UpsertRequest(documents=[entry("north", [0.0, -1.0, 0.0], "moved")]),
            timeout=150,
        )
        assert ids(await search(stub, [1.0, 0.0, 0.0], top_k=1)) == ["north-east"]
        moved = await search(stub, [0.0, -1.0, 0.0], top_k=1)
        assert [(d.document.id, d.document.text) for d in moved.documents] == [("north", "moved")]
        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        assert (stats.documents, [(m.model, m.dimension, m.vectors) for m in stats.models]) == (
            4,
            [(MODEL, 3, 4)],
        )


async def test_filters_and_multi_valued_metadata(dense_retriever: str) -> None:
    tagged = entry("tagged", [0.9, 0.1, 0.0], lang="en")
    tagged.document.metadata_values["tags"].values.extend(["rag", "retrieval"])
    async with grpc.aio.insecure_channel(dense_retriever) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        await stub.Upsert(retriever_pb2.UpsertRequest(documents=[*CORPUS, tagged]), timeout=150)
        assert ids(await search(stub, [1.0, 0.0, 0.0], lang=["en"])) == ["north", "tagged", "up"]
        assert ids(await search(stub, [1.0, 0.0, 0.0], lang=["en", "fr"], team=["maps"])) == [
            "north",
            "north-east",
        ]
        assert ids(await search(stub, [1.0, 0.0, 0.0], tags=["retrieval"])) == ["tagged"]
        assert ids(await search(stub, [1.0, 0.0, 0.0], lang=["xx"])) == []


@pytest.mark.parametrize(
    "hostile",
    [
        '"]) or id != "',
        'en"]) or json_contains_any(meta["lang"], ["de',
        'line\nbreak "quoted" \\ back',
    ],
)
async def test_a_filter_value_cannot_inject_an_expression(
    dense_retriever: str, hostile: str
) -> None:
    """A filter value reaches the engine's expression only as an escaped literal: it matches
    exactly the document carrying that value, never widens the filter."""
    async with grpc.aio.insecure_channel(dense_retriever) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        carrier = entry("carrier", [0.5, 0.5, 0.5], lang=hostile)
        await stub.Upsert(retriever_pb2.UpsertRequest(documents=[*CORPUS, carrier]), timeout=150)
        assert ids(await search(stub, [1.0, 0.0, 0.0], lang=[hostile])) == ["carrier"]
        assert ids(await search(stub, [1.0, 0.0, 0.0], **{hostile: ["en"]})) == []


async def test_replace_remove_hashes_and_listing(dense_retriever: str) -> None:
    def chunks(doc_id: str, *vectors: list[float]) -> retriever_pb2.DocumentChunks:
        return retriever_pb2.DocumentChunks(
            document_id=doc_id,
            content_hash=f"hash-{doc_id}-{len(vectors)}",
            chunks=[entry(f"{doc_id}#{i}", v) for i, v in enumerate(vectors)],
        )

    async with grpc.aio.insecure_channel(dense_retriever) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        reply = await stub.ReplaceDocuments(
            retriever_pb2.ReplaceDocumentsRequest(
                documents=[chunks("a", [1, 0, 0], [0, 1, 0]), chunks("b", [0, 0, 1])]
            ),
            timeout=150,
        )
        assert [(r.document_id, r.stored, r.chunks) for r in reply.results] == [
            ("a", True, 2),
            ("b", True, 1),
        ]
        # A new version with fewer chunks leaves nothing of the old one behind.
        await stub.ReplaceDocuments(
            retriever_pb2.ReplaceDocumentsRequest(documents=[chunks("a", [0.9, 0.1, 0])]),
            timeout=150,
        )
        assert ids(await search(stub, [0.0, 1.0, 0.0])) == ["a#0", "b#0"]
        # A chunk id owned by another document is refused, the document alone.
        taken = await stub.ReplaceDocuments(
            retriever_pb2.ReplaceDocumentsRequest(
                documents=[
                    retriever_pb2.DocumentChunks(document_id="c", chunks=[entry("b#0", [1, 1, 1])])
                ]
            ),
            timeout=150,
        )
        assert not taken.results[0].stored and "belongs to document 'b'" in taken.results[0].reason
        hashes = await stub.GetDocumentHashes(
            retriever_pb2.GetDocumentHashesRequest(document_ids=["a", "b", "zz"]), timeout=10
        )
        assert dict(hashes.content_hashes) == {"a": "hash-a-1", "b": "hash-b-1"}
        page = await stub.ListStoredDocuments(
            retriever_pb2.ListStoredDocumentsRequest(page_size=1), timeout=10
        )
        assert [(d.document_id, d.chunks) for d in page.documents] == [("a", 1)]
        assert page.next_page_token == "a"
        rest = await stub.ListStoredDocuments(
            retriever_pb2.ListStoredDocumentsRequest(page_size=5, page_token="a"), timeout=10
        )
        assert [d.document_id for d in rest.documents] == ["b"] and not rest.next_page_token
        removed = await stub.RemoveDocuments(
            retriever_pb2.RemoveDocumentsRequest(document_ids=["a", "nope"]), timeout=30
        )
        assert (list(removed.removed), removed.chunks_removed) == (["a"], 1)
        deleted = await stub.Delete(retriever_pb2.DeleteRequest(ids=["b#0", "gone"]), timeout=150)
        assert deleted.deleted == 1
        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        assert stats.documents == 0 and all(m.vectors == 0 for m in stats.models)


async def test_callers_mistakes_are_invalid_argument_or_failed_precondition(
    dense_retriever: str,
) -> None:
    async with grpc.aio.insecure_channel(dense_retriever) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        await stub.Upsert(retriever_pb2.UpsertRequest(documents=CORPUS), timeout=150)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Upsert(
                retriever_pb2.UpsertRequest(documents=[entry("wide", [1.0, 2.0, 3.0, 4.0])]),
                timeout=150,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error_from_rpc(caught.value).field_violations] == [
            f"documents[0].embeddings[{MODEL}]"
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await search(stub, [1.0, 0.0], top_k=3)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await search(stub, [1.0, 0.0, 0.0], model="never-indexed")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_from_rpc(caught.value).error_info
        assert info is not None and info.reason == "UNKNOWN_MODEL"
