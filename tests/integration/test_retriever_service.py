"""The retriever as a real process: gRPC over loopback, error details, SIGKILL durability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from processes import free_port, service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc


def retriever_process(impl: str, data_dir: Path, **settings: str):
    """A retriever on `data_dir`, killed with SIGKILL on exit (crash-safety is the point)."""
    return service_process(
        "retriever_svc", impl, stop_signal=signal.SIGKILL, data_dir=str(data_dir), **settings
    )


REPO = Path(__file__).resolve().parents[2]
DIM = 24


def vector_for(doc_id: str) -> list[float]:
    return np.random.default_rng(zlib.crc32(doc_id.encode())).standard_normal(DIM).tolist()


def indexed(doc_id: str, text: str = "", embeddings: dict | None = None, **metadata: str):
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(
            id=doc_id, text=text or f"text of {doc_id}", metadata=metadata
        ),
        embeddings={
            model: common_pb2.Embedding(values=values)
            for model, values in (embeddings or {}).items()
        },
    )


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in error_from_rpc(error).field_violations]


def reason(error: grpc.aio.AioRpcError) -> str:
    info = error_from_rpc(error).error_info
    assert info is not None, "no ErrorInfo in the status details"
    return info.reason


async def expect_error(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[str]:
    with retriever_process("primary", tmp_path / "dense") as (_, address):
        yield address


@pytest.fixture
def fallback(tmp_path: Path) -> Iterator[str]:
    with retriever_process("fallback", tmp_path / "lexical") as (_, address):
        yield address


async def test_dense_upsert_search_delete_stats(primary: str) -> None:
    async with grpc.aio.insecure_channel(primary) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        docs = [
            indexed("a", embeddings={"big": [1, 0, 0], "small": [0, 1]}, lang="en"),
            indexed("b", embeddings={"big": [0, 1, 0], "small": [1, 0]}, lang="fr"),
            indexed("c", embeddings={"big": [0.8, 0.2, 0]}, lang="en"),
        ]
        reply = await stub.Upsert(retriever_pb2.UpsertRequest(documents=docs), timeout=10)
        assert reply.upserted == 3

        found = await stub.Search(
            retriever_pb2.SearchRequest(
                query_embedding=common_pb2.Embedding(values=[1, 0]), model="small", top_k=5
            ),
            timeout=10,
        )
        assert [d.document.id for d in found.documents] == ["b", "a"]
        assert found.documents[0].score == pytest.approx(1.0)
        assert found.mode == retriever_pb2.RETRIEVAL_MODE_DENSE and found.index_size == 2
        assert found.documents[0].document.metadata == {"lang": "fr"}

        english = await stub.Search(
            retriever_pb2.SearchRequest(
                query_embedding=common_pb2.Embedding(values=[0, 1, 0]),
                model="big",
                top_k=5,
                filters=[common_pb2.MetadataFilter(key="lang", values=["en"])],
            ),
            timeout=10,
        )
        assert [d.document.id for d in english.documents] == ["c", "a"]

        deleted = await stub.Delete(retriever_pb2.DeleteRequest(ids=["c", "nope"]), timeout=10)
        assert deleted.deleted == 1
        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        assert stats.documents == 2 and stats.mode == retriever_pb2.RETRIEVAL_MODE_DENSE
        assert [(m.model, m.dimension, m.vectors) for m in stats.models] == [
            ("big", 3, 2),
            ("small", 2, 2),
        ]
        assert stats.disk_bytes > 0


async def test_dense_rejects_bad_requests_with_field_names(primary: str) -> None:
    async with grpc.aio.insecure_channel(primary) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        await stub.Upsert(
            retriever_pb2.UpsertRequest(documents=[indexed("a", embeddings={"m": [1, 0]})]),
            timeout=10,
        )
        query = common_pb2.Embedding(values=[1, 0])

        error = await expect_error(
            stub.Search(
                retriever_pb2.SearchRequest(
                    query_embedding=query,
                    model="m",
                    top_k=51,
                    filters=[
                        common_pb2.MetadataFilter(key="", values=["x"]),
                        common_pb2.MetadataFilter(key="k"),
                    ],
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["top_k", "filters[0]", "filters[1]"]

        error = await expect_error(
            stub.Upsert(
                retriever_pb2.UpsertRequest(
                    documents=[
                        retriever_pb2.IndexedDocument(
                            document=common_pb2.Document(id="", text=" ")
                        ),
                        indexed("no-vectors"),
                        indexed("wrong-dim", embeddings={"m": [1, 0, 0]}),
                    ]
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == [
            "documents[0].document.id",
            "documents[0].document.text",
            "documents[0].embeddings",
            "documents[1].embeddings",
        ]
        error = await expect_error(
            stub.Upsert(
                retriever_pb2.UpsertRequest(
                    documents=[
                        indexed("ok", embeddings={"m": [0, 1]}),
                        indexed("wrong-dim", embeddings={"m": [1, 0, 0]}),
                    ]
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["documents[1].embeddings[m]"]

        # Many bad documents still give a deliverable error (details travel in trailers).
        error = await expect_error(
            stub.Upsert(retriever_pb2.UpsertRequest(documents=[indexed("")] * 500)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert len(bad_fields(error)) == 10 and bad_fields(error)[0] == "documents[0].document.id"
        too_many = [indexed(f"d{i}", embeddings={"m": [1, 0]}) for i in range(1025)]
        error = await expect_error(
            stub.Upsert(retriever_pb2.UpsertRequest(documents=too_many)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["documents"]

        error = await expect_error(
            stub.Search(retriever_pb2.SearchRequest(query_text="words", model="m", top_k=3)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason(error) == "NO_QUERY_EMBEDDING"

        error = await expect_error(
            stub.Search(retriever_pb2.SearchRequest(query_embedding=query, model="x", top_k=3)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason(error) == "UNKNOWN_MODEL" and "models held: m" in error.details()

        error = await expect_error(
            stub.Search(
                retriever_pb2.SearchRequest(
                    query_embedding=common_pb2.Embedding(values=[1, 0, 0]), model="m", top_k=3
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["query_embedding"]

        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        assert stats.documents == 1  # no rejected batch wrote anything


async def test_lexical_ranks_by_bm25_and_ignores_embeddings(fallback: str) -> None:
    async with grpc.aio.insecure_channel(fallback) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        docs = [
            indexed("breaker", "the circuit breaker opens after failures", kind="guide"),
            indexed("retry", "retries need a retry budget", embeddings={"m": [1, 0]}),
            indexed("both", "a retry storm trips the breaker", kind="faq"),
        ]
        await stub.Upsert(retriever_pb2.UpsertRequest(documents=docs), timeout=10)
        found = await stub.Search(
            retriever_pb2.SearchRequest(query_text="Circuit breaker", top_k=5), timeout=10
        )
        assert [d.document.id for d in found.documents] == ["breaker", "both"]
        assert found.mode == retriever_pb2.RETRIEVAL_MODE_LEXICAL and found.index_size == 3
        assert found.documents[0].score > found.documents[1].score > 0

        filtered = await stub.Search(
            retriever_pb2.SearchRequest(
                query_text="breaker",
                top_k=5,
                filters=[common_pb2.MetadataFilter(key="kind", values=["faq"])],
            ),
            timeout=10,
        )
        assert [d.document.id for d in filtered.documents] == ["both"]

        error = await expect_error(
            stub.Search(retriever_pb2.SearchRequest(query_text="  ", top_k=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["top_k", "query_text"]
        stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
        assert stats.documents == 3 and stats.mode == retriever_pb2.RETRIEVAL_MODE_LEXICAL
        assert list(stats.models) == []


async def write_until_killed(address: str, proc: subprocess.Popen) -> list[str]:
    """Upserts from several concurrent writers; SIGKILLs the process mid-stream.

    Returns the ids whose Upsert was acknowledged before the kill.
    """
    acknowledged: list[str] = []
    enough = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)

        async def writer(w: int) -> None:
            for n in range(100_000):
                doc_id = f"w{w}n{n}"
                request = retriever_pb2.UpsertRequest(
                    documents=[
                        indexed(doc_id, f"document unique{doc_id}", {"m": vector_for(doc_id)})
                    ]
                )
                await stub.Upsert(request, timeout=10)
                acknowledged.append(doc_id)
                if len(acknowledged) >= 120:
                    enough.set()

        writers = [asyncio.create_task(writer(w)) for w in range(4)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        proc.send_signal(signal.SIGKILL)
        results = await asyncio.gather(*writers, return_exceptions=True)
    assert all(isinstance(r, grpc.aio.AioRpcError) for r in results), results
    return list(acknowledged)


@pytest.mark.parametrize("impl", ["primary", "fallback"])
async def test_acknowledged_upserts_survive_sigkill(tmp_path: Path, impl: str) -> None:
    data_dir = tmp_path / impl
    # A small snapshot interval makes the kill land around compactions too.
    with retriever_process(impl, data_dir, snapshot_every="7") as (proc, address):
        acknowledged = await write_until_killed(address, proc)
        assert proc.wait(10) == -signal.SIGKILL

    with retriever_process(impl, data_dir, snapshot_every="7") as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            # Writes in flight at the kill may or may not have landed; acknowledged ones must.
            assert len(acknowledged) <= stats.documents <= len(acknowledged) + 4
            for doc_id in acknowledged:
                if impl == "primary":
                    request = retriever_pb2.SearchRequest(
                        query_embedding=common_pb2.Embedding(values=vector_for(doc_id)),
                        model="m",
                        top_k=1,
                    )
                else:
                    request = retriever_pb2.SearchRequest(query_text=f"unique{doc_id}", top_k=1)
                found = await stub.Search(request, timeout=10)
                assert [d.document.id for d in found.documents] == [doc_id]


def test_sigterm_exits_zero_and_a_second_process_cannot_share_the_directory(
    tmp_path: Path,
) -> None:
    with retriever_process("fallback", tmp_path / "shared") as (proc, _):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARAG_")}
        env |= {"HARAG_PORT": str(port), "HARAG_DATA_DIR": str(tmp_path / "shared")}
        second = subprocess.run(
            [sys.executable, "-m", "retriever_svc", "--impl", "fallback"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert b"in use by another retriever" in second.stderr + second.stdout

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
