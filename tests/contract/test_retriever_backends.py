"""The retriever contract every dense backend keeps, run against each backend as a real process.

One suite, parametrised by backend name. A backend is a way of starting a retriever process
(`open_retriever` below): the built-in exact scan, the built-in ANN index with its query
planner, and (added by the vector-database work) an external engine. Adding a backend is one
name in BACKENDS plus one branch in `open_retriever`; every test here then runs against it.

The tests hold a backend to what a caller sees: ranking against a brute-force reference on
structured vectors (recall), updates and deletes that take effect at once, metadata filters
(one key, several values, several keys, multi-valued metadata), separate model spaces, the
per-document RPCs, statistics, and everything still there after the process is SIGKILLed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from processes import service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc

BACKENDS = ["exact", "ann"]
DIM = 32
CLUSTERS = 12

OpenRetriever = Callable[[Path], AbstractContextManager[str]]


@contextmanager
def _builtin(data_dir: Path, dense_index: str) -> Iterator[str]:
    # SIGKILL on exit: every restart in this suite is a crash, the harder case.
    with service_process(
        "retriever_svc",
        "primary",
        stop_signal=signal.SIGKILL,
        data_dir=str(data_dir),
        dense_index=dense_index,
    ) as (_, address):
        yield address


@pytest.fixture(params=BACKENDS)
def open_retriever(request: pytest.FixtureRequest) -> OpenRetriever:
    """A function starting the backend's retriever on a data location; entering it twice
    with the same location is a restart that must find everything acknowledged before."""
    name = request.param
    if name == "exact":
        return lambda data_dir: _builtin(data_dir, "exact")
    if name == "ann":
        # hnsw, not auto: the index is searched even at this suite's small sizes.
        return lambda data_dir: _builtin(data_dir, "hnsw")
    raise AssertionError(f"no way to start retriever backend {name!r}")


def clustered(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Unit vectors around a few shared centres, so neighbours are close but distinct."""
    centres = np.random.default_rng(1234).standard_normal((CLUSTERS, dim))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, CLUSTERS, count)] + 0.6 * rng.standard_normal((count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def indexed(
    doc_id: str, vectors: dict[str, np.ndarray], tags: list[str] | None = None, **metadata: str
) -> retriever_pb2.IndexedDocument:
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(
            id=doc_id,
            text=f"text of {doc_id}",
            metadata=metadata,
            metadata_values={"tags": common_pb2.MetadataValues(values=tags)} if tags else {},
        ),
        embeddings={m: common_pb2.Embedding(values=v.tolist()) for m, v in vectors.items()},
    )


def search(
    vector: np.ndarray, top_k: int = 10, model: str = "m", **filters: list[str]
) -> retriever_pb2.SearchRequest:
    return retriever_pb2.SearchRequest(
        query_text="q",
        query_embedding=common_pb2.Embedding(values=vector.tolist()),
        model=model,
        top_k=top_k,
        filters=[common_pb2.MetadataFilter(key=k, values=v) for k, v in filters.items()],
    )


async def ids_of(stub: retriever_pb2_grpc.RetrieverServiceStub, request: object) -> list[str]:
    reply = await stub.Search(request, timeout=10)
    return [d.document.id for d in reply.documents]


def reference(
    vectors: np.ndarray, query: np.ndarray, top_k: int, allowed: np.ndarray | None = None
) -> list[str]:
    """Brute-force cosine ranking: what a perfect backend returns."""
    rows = np.arange(len(vectors)) if allowed is None else np.flatnonzero(allowed)
    scores = vectors[rows] @ (query / np.linalg.norm(query))
    return [f"d{rows[i]}" for i in np.argsort(-scores, kind="stable")[:top_k]]


def overlap(found: list[str], expected: list[str]) -> float:
    return len(set(found) & set(expected)) / len(expected)


CORPUS = 900
QUERIES = 20


async def load_corpus(stub: retriever_pb2_grpc.RetrieverServiceStub) -> np.ndarray:
    vectors = clustered(CORPUS, seed=1)
    for start in range(0, CORPUS, 300):
        docs = [
            indexed(f"d{i}", {"m": vectors[i]}, tags=[f"t{i % 7}"], shard=f"s{i % 30}")
            for i in range(start, min(start + 300, CORPUS))
        ]
        reply = await stub.Upsert(retriever_pb2.UpsertRequest(documents=docs), timeout=30)
        assert reply.upserted == len(docs)
    return vectors


async def test_ranking_matches_brute_force_with_and_without_filters(
    open_retriever: OpenRetriever, tmp_path: Path
) -> None:
    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            vectors = await load_corpus(stub)
            queries = clustered(QUERIES, seed=2)
            shard = np.array([i % 30 == 3 for i in range(CORPUS)])  # 30 of 900: selective
            tag = np.array([i % 7 in (1, 2) for i in range(CORPUS)])  # 2/7: broad
            recalls: dict[str, list[float]] = {"all": [], "shard": [], "tags": []}
            for query in queries:
                reply = await stub.Search(search(query), timeout=10)
                scores = [d.score for d in reply.documents]
                assert scores == sorted(scores, reverse=True)
                found = [d.document.id for d in reply.documents]
                recalls["all"].append(overlap(found, reference(vectors, query, 10)))
                found = await ids_of(stub, search(query, shard=["s3"]))
                assert all(int(i[1:]) % 30 == 3 for i in found)
                recalls["shard"].append(overlap(found, reference(vectors, query, 10, shard)))
                found = await ids_of(stub, search(query, tags=["t1", "t2"]))
                assert all(int(i[1:]) % 7 in (1, 2) for i in found)
                recalls["tags"].append(overlap(found, reference(vectors, query, 10, tag)))
            mean = {k: float(np.mean(v)) for k, v in recalls.items()}
            assert min(mean.values()) >= 0.95, mean

            # A document's own vector finds it first, with cosine similarity 1.
            top = (await stub.Search(search(vectors[17], top_k=1), timeout=10)).documents[0]
            assert top.document.id == "d17" and top.score == pytest.approx(1.0, abs=1e-3)
            assert top.document.metadata["shard"] == "s17"
            assert list(top.document.metadata_values["tags"].values) == ["t3"]
            # Filters on two keys are an AND; nothing matching is an empty answer.
            found = await ids_of(stub, search(vectors[17], shard=["s17"], tags=["t3"]))
            assert found[0] == "d17" and all(int(i[1:]) % 210 == 17 for i in found)
            assert await ids_of(stub, search(vectors[17], shard=["nope"])) == []


async def test_updates_and_deletes_take_effect_and_survive_sigkill(
    open_retriever: OpenRetriever, tmp_path: Path
) -> None:
    vectors = clustered(CORPUS, seed=1)
    moved = clustered(1, seed=99)[0]
    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            await load_corpus(stub)
            # d5 moves to a new place; d6 and d7 are deleted.
            await stub.Upsert(
                retriever_pb2.UpsertRequest(documents=[indexed("d5", {"m": moved}, shard="new")]),
                timeout=10,
            )
            deleted = await stub.Delete(retriever_pb2.DeleteRequest(ids=["d6", "d7", "x"]))
            assert deleted.deleted == 2
            assert (await ids_of(stub, search(moved, top_k=1))) == ["d5"]
            assert "d5" not in await ids_of(stub, search(vectors[5], shard=["s5"]))
            assert "d6" not in await ids_of(stub, search(vectors[6]))
            assert (await ids_of(stub, search(vectors[7], top_k=1))) != ["d7"]
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert stats.documents == CORPUS - 2

    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            assert (await ids_of(stub, search(moved, top_k=1, shard=["new"]))) == ["d5"]
            assert (await ids_of(stub, search(moved, top_k=1))) == ["d5"]
            assert "d6" not in await ids_of(stub, search(vectors[6]))
            assert (await ids_of(stub, search(vectors[300], top_k=1))) == ["d300"]
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert stats.documents == CORPUS - 2
            assert [(m.model, m.dimension, m.vectors) for m in stats.models] == [
                ("m", DIM, CORPUS - 2)
            ]


async def test_model_spaces_are_separate(open_retriever: OpenRetriever, tmp_path: Path) -> None:
    small = clustered(40, seed=3, dim=8)
    large = clustered(40, seed=4)
    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            docs = [indexed(f"both{i}", {"a": small[i], "b": large[i]}) for i in range(20)]
            docs += [indexed(f"a{i}", {"a": small[i]}) for i in range(20, 40)]
            await stub.Upsert(retriever_pb2.UpsertRequest(documents=docs), timeout=10)
            found = await ids_of(stub, search(large[3], top_k=30, model="b"))
            assert found[0] == "both3" and len(found) == 20
            assert all(i.startswith("both") for i in found)
            assert (await ids_of(stub, search(small[25], top_k=1, model="a"))) == ["a25"]
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert [(m.model, m.dimension, m.vectors) for m in stats.models] == [
                ("a", 8, 40),
                ("b", DIM, 20),
            ]
            assert all(m.index for m in stats.models) and stats.memory_bytes > 0

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Search(search(large[0], model="c"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            info = error_from_rpc(caught.value).error_info
            assert info is not None and info.reason == "UNKNOWN_MODEL"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Search(search(large[0], model="a"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields = [v.field for v in error_from_rpc(caught.value).field_violations]
            assert fields == ["query_embedding"]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Upsert(
                    retriever_pb2.UpsertRequest(documents=[indexed("bad", {"a": large[0]})]),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            fields = [v.field for v in error_from_rpc(caught.value).field_violations]
            assert fields == ["documents[0].embeddings[a]"]


def chunks_of(document_id: str, content_hash: str, vectors: np.ndarray) -> object:
    return retriever_pb2.DocumentChunks(
        document_id=document_id,
        content_hash=content_hash,
        chunks=[
            retriever_pb2.IndexedDocument(
                document=common_pb2.Document(
                    id=f"{document_id}#{i}",
                    text=f"chunk {i} of {document_id}",
                    chunk=common_pb2.Chunk(
                        document_id=document_id, position=i, count=len(vectors), title=document_id
                    ),
                ),
                embeddings={"m": common_pb2.Embedding(values=v.tolist())},
            )
            for i, v in enumerate(vectors)
        ],
    )


async def test_document_rpcs_replace_remove_hashes_and_listing(
    open_retriever: OpenRetriever, tmp_path: Path
) -> None:
    vectors = clustered(12, seed=5)
    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            reply = await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[
                        chunks_of("guide", "h1", vectors[0:3]),
                        chunks_of("notes", "h2", vectors[3:5]),
                        chunks_of("faq", "h3", vectors[5:6]),
                    ]
                ),
                timeout=10,
            )
            assert [(r.document_id, r.stored, r.chunks) for r in reply.results] == [
                ("guide", True, 3),
                ("notes", True, 2),
                ("faq", True, 1),
            ]
            assert (await ids_of(stub, search(vectors[1], top_k=1))) == ["guide#1"]
            # A new version with fewer chunks leaves none of the old ones behind.
            await stub.ReplaceDocuments(
                retriever_pb2.ReplaceDocumentsRequest(
                    documents=[chunks_of("guide", "h1b", vectors[6:7])]
                ),
                timeout=10,
            )
            found = await ids_of(stub, search(vectors[1], top_k=12))
            assert "guide#1" not in found and "guide#2" not in found and "guide#0" in found
            assert (await ids_of(stub, search(vectors[6], top_k=1))) == ["guide#0"]
            removed = await stub.RemoveDocuments(
                retriever_pb2.RemoveDocumentsRequest(document_ids=["faq", "nope"]), timeout=10
            )
            assert list(removed.removed) == ["faq"] and removed.chunks_removed == 1
            assert "faq#0" not in await ids_of(stub, search(vectors[5], top_k=12))

    with open_retriever(tmp_path / "data") as address:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            hashes = await stub.GetDocumentHashes(
                retriever_pb2.GetDocumentHashesRequest(document_ids=["guide", "notes", "faq"]),
                timeout=10,
            )
            assert dict(hashes.content_hashes) == {"guide": "h1b", "notes": "h2"}
            listing = await stub.ListStoredDocuments(
                retriever_pb2.ListStoredDocumentsRequest(page_size=1), timeout=10
            )
            assert [(d.document_id, d.chunks) for d in listing.documents] == [("guide", 1)]
            assert listing.next_page_token == "guide"
            listing = await stub.ListStoredDocuments(
                retriever_pb2.ListStoredDocumentsRequest(page_size=1, page_token="guide"),
                timeout=10,
            )
            assert [(d.document_id, d.chunks) for d in listing.documents] == [("notes", 2)]
            assert listing.next_page_token == ""
            found = await ids_of(stub, search(vectors[3], top_k=12))
            assert found[0] == "notes#0" and sorted(found) == ["guide#0", "notes#0", "notes#1"]
