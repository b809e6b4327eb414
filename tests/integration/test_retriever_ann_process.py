"""The HNSW retriever as a real process: a SIGKILL after the graph was saved and more writes
were acknowledged; the restarted process answers exactly as the store says."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import numpy as np
from processes import service_process

from harag.v1 import common_pb2, retriever_pb2, retriever_pb2_grpc

DIM = 32


def vectors(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def upsert(ids: list[str], rows: np.ndarray) -> retriever_pb2.UpsertRequest:
    return retriever_pb2.UpsertRequest(
        documents=[
            retriever_pb2.IndexedDocument(
                document=common_pb2.Document(id=i, text=f"text {i}"),
                embeddings={"m": common_pb2.Embedding(values=v.tolist())},
            )
            for i, v in zip(ids, rows, strict=True)
        ]
    )


async def nearest(
    stub: retriever_pb2_grpc.RetrieverServiceStub, vector: np.ndarray, k: int
) -> list[str]:
    reply = await stub.Search(
        retriever_pb2.SearchRequest(
            query_embedding=common_pb2.Embedding(values=vector.tolist()), model="m", top_k=k
        ),
        timeout=10,
    )
    return [d.document.id for d in reply.documents]


def hnsw_retriever(data_dir: Path):
    return service_process(
        "retriever_svc",
        "primary",
        stop_signal=signal.SIGKILL,
        data_dir=str(data_dir),
        dense_index="hnsw",
        snapshot_every="4",
    )


async def test_graph_is_consistent_with_the_store_after_sigkill(tmp_path: Path) -> None:
    base = vectors(2_000, 1)
    moved = vectors(3, 2)
    data_dir = tmp_path / "dense"
    with hnsw_retriever(data_dir) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            for start in range(0, 2_000, 500):  # the fourth write compacts: graph saved
                ids = [f"d{i}" for i in range(start, start + 500)]
                await stub.Upsert(upsert(ids, base[start : start + 500]), timeout=30)
            assert list((data_dir / "ann").glob("*.usearch"))
            # acknowledged after the saved graph: in the write-ahead log only
            await stub.Upsert(upsert(["d1", "d2", "extra"], moved), timeout=10)
            await stub.Delete(retriever_pb2.DeleteRequest(ids=["d3", "d4"]), timeout=10)
            assert await nearest(stub, moved[0], 1) == ["d1"]
    # SIGKILLed: nothing saved on the way out
    with hnsw_retriever(data_dir) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            assert await nearest(stub, moved[0], 1) == ["d1"]
            assert await nearest(stub, moved[1], 1) == ["d2"]
            assert await nearest(stub, moved[2], 1) == ["extra"]
            assert "d1" not in await nearest(stub, base[1], 5)
            assert not {"d3", "d4"} & set(await nearest(stub, base[3], 20))
            assert not {"d3", "d4"} & set(await nearest(stub, base[4], 20))
            assert await nearest(stub, base[1500], 1) == ["d1500"]
            stats = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert stats.documents == 1_999
            (model,) = stats.models
            assert (model.model, model.vectors, model.index) == ("m", 1_999, "hnsw")
            assert 0 < model.memory_bytes < stats.memory_bytes
