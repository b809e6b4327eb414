"""vector_backend=milvus against a real Milvus server process: what survives the engine's
crash, and what the mesh answers while it is down.

The engine is SIGKILLed (no flush, no graceful stop) and started again on the same data
and ports, as a cluster's pod would be; the retriever is never restarted for it.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from meshes import Mesh, start_mesh
from milvus_server import MilvusServer
from processes import LogBook, service_process
from waiting import wait_until

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, gateway_pb2, retriever_pb2, retriever_pb2_grpc
from harag_cli.corpus import sample_corpus

MODEL = "restart-model"


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    with MilvusServer(tmp_path_factory.mktemp("milvus")) as server:
        yield server


def settings_for(server: MilvusServer) -> dict[str, str]:
    return {
        "vector_backend": "milvus",
        "milvus_uri": server.uri,
        "milvus_collection_prefix": f"t{uuid.uuid4().hex[:12]}_",
        "milvus_timeout_s": "2",
    }


def entry(doc_id: str, vector: list[float]) -> retriever_pb2.IndexedDocument:
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(id=doc_id, text=f"text of {doc_id}"),
        embeddings={MODEL: common_pb2.Embedding(values=vector)},
    )


def search_request(vector: list[float]) -> retriever_pb2.SearchRequest:
    return retriever_pb2.SearchRequest(
        query_embedding=common_pb2.Embedding(values=vector), model=MODEL, top_k=5
    )


async def test_engine_sigkill_unavailable_then_restart_keeps_every_acknowledged_document(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    settings = settings_for(milvus_server)
    with service_process("retriever_svc", "primary", stop_signal=signal.SIGKILL, **settings) as (
        _,
        address,
    ):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            docs = [entry(f"doc-{i}", [1.0, float(i), 0.5]) for i in range(20)]
            await stub.Upsert(retriever_pb2.UpsertRequest(documents=docs), timeout=150)
            milvus_server.kill()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Search(search_request([1.0, 3.0, 0.5]), timeout=15)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            info = error_from_rpc(caught.value).error_info
            assert info is not None and info.reason == "INDEX_ENGINE_UNAVAILABLE"
            milvus_server.start()

            async def once_back(call):  # None while the engine is still recovering
                try:
                    return await call
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                    return None

            async def found() -> list[str] | None:
                reply = await once_back(stub.Search(search_request([1.0, 3.0, 0.5]), timeout=10))
                return [d.document.id for d in reply.documents] if reply else None

            hits = await wait_until(found, what="search after the engine restart", timeout_s=90)
            assert hits[0] == "doc-3"
            stats = await wait_until(
                lambda: once_back(stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)),
                what="stats after the engine restart",
                timeout_s=60,
            )
            assert (stats.documents, stats.models[0].vectors) == (20, 20)
    # A new retriever process holds nothing of its own: it serves what the engine kept.
    with service_process("retriever_svc", "primary", **settings) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
            reply = await stub.Search(search_request([1.0, 7.0, 0.5]), timeout=10)
            assert reply.documents[0].document.id == "doc-7" and reply.index_size == 20


@pytest.fixture(scope="module")
async def milvus_mesh(
    milvus_server: MilvusServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    env = {f"HARAG_{k.upper()}": v for k, v in settings_for(milvus_server).items()}
    mesh = await start_mesh(tmp_path_factory.mktemp("milvus-mesh"), LogBook(), env)
    try:
        reply = await mesh.gateway.Ingest(
            gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=180
        )
        assert all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results), [
            r.reason for r in reply.results
        ]
        yield mesh
    finally:
        await mesh.channel.close()
        await mesh.supervisor.stop()


def retrieve_stage(reply: gateway_pb2.QueryResponse) -> gateway_pb2.StageReport:
    return next(s for s in reply.stages if s.stage == gateway_pb2.STAGE_RETRIEVE)


async def test_engine_sigkill_under_queries_the_gateway_answers_through_its_fallback(
    milvus_server: MilvusServer, milvus_mesh: Mesh
) -> None:
    async def ask(i: int) -> gateway_pb2.QueryResponse:
        return await milvus_mesh.gateway.Query(
            gateway_pb2.QueryRequest(query=f"how does the gateway fall back? ({i})"), timeout=15
        )

    before = await ask(0)
    assert retrieve_stage(before).served_by == "retriever-primary" and before.sources
    stop = asyncio.Event()
    replies: list[gateway_pb2.QueryResponse] = []

    async def load() -> None:
        i = 1
        while not stop.is_set():
            replies.append(await ask(i))  # any error here fails the test: none is allowed
            i += 1

    task = asyncio.create_task(load())
    await wait_until(lambda: len(replies) >= 3, what="queries before the kill", timeout_s=30)
    milvus_server.kill()
    killed_at = len(replies)
    await wait_until(
        lambda: len(replies) >= killed_at + 5, what="queries after the kill", timeout_s=90
    )
    stop.set()
    await task
    after = replies[killed_at:]
    assert all(r.answer and r.sources for r in after)
    fallback = [r for r in after if retrieve_stage(r).served_by == "retriever-fallback"]
    assert fallback and all(r.degraded for r in fallback)
    milvus_server.start()  # leave the engine up for the module's other users
