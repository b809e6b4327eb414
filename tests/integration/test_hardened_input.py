"""Issue 16's hardened-input holes, against real processes.

The first test replays the issue's scenario on a mesh whose metadata bounds are raised so
that forty 1 MB-metadata documents get in (as they did before the bounds existed): queries
with top_k 50 used to make both retrievers fail `Sent message larger than max`, open both
breakers and leave unrelated questions without context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from meshes import Mesh, start_mesh
from processes import LogBook, service_process

from harag.errors import error_from_rpc
from harag.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    gateway_pb2,
    retriever_pb2,
    retriever_pb2_grpc,
)
from harag_cli.corpus import sample_corpus
from harag_cli.meshctl import admin_address
from servicekit.limits import CLIENT_DEFAULT_MAX_RECEIVE_BYTES

MB = 1024 * 1024
# The scenario needs documents the default bounds refuse.
PERMISSIVE = {
    "HARAG_MAX_METADATA_BYTES": str(2 * MB),
    "HARAG_MAX_METADATA_VALUE_CHARS": str(2 * MB),
    "HARAG_HEDGE_ENABLED": "false",
    "HARAG_ADMISSION_QUEUE_TARGET_S": "0",
}


def big_metadata_document(i: int) -> common_pb2.Document:
    return common_pb2.Document(
        id=f"inventory-{i}",
        text=f"Inventory record {i}: pallets of widgets stored in warehouse aisle {i}.",
        metadata={"blob": "x" * MB, "aisle": str(i)},
    )


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in error_from_rpc(error).field_violations]


@pytest.fixture(scope="module")
async def permissive_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    logs = LogBook()
    mesh = await start_mesh(tmp_path_factory.mktemp("hardened"), logs, PERMISSIVE)
    try:
        reply = await mesh.gateway.Ingest(
            gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
        )
        assert all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results)
        yield mesh
    finally:
        await mesh.channel.close()
        await mesh.supervisor.stop()


async def transitions(address: str) -> dict[str, tuple[int, int]]:
    async with grpc.aio.insecure_channel(admin_address(address)) as channel:
        reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=5
        )
    return {b.upstream: (b.breaker.state, b.breaker.transitions) for b in reply.breakers}


async def test_big_metadata_and_top_k_50_open_no_breaker_and_answers_fit_a_default_client(
    permissive_mesh: Mesh,
) -> None:
    mesh = permissive_mesh
    before = await transitions(mesh.gateway_address)
    for start in range(0, 40, 5):  # 5 MB per call: under the 32 MB message limit
        reply = await mesh.gateway.Ingest(
            gateway_pb2.IngestRequest(
                documents=[big_metadata_document(i) for i in range(start, start + 5)]
            ),
            timeout=120,
        )
        assert [r.status for r in reply.results] == [gateway_pb2.INGEST_STATUS_ACCEPTED] * 5

    # A client with gRPC's default 4 MB receive limit, as in the issue.
    async with grpc.aio.insecure_channel(mesh.gateway_address) as channel:
        from harag.v1 import gateway_pb2_grpc

        client = gateway_pb2_grpc.RagGatewayServiceStub(channel)
        for n in range(10):
            answer = await client.Query(
                gateway_pb2.QueryRequest(query=f"inventory widgets aisle {n}", top_k=50),
                timeout=30,
            )
            assert answer.ByteSize() < CLIENT_DEFAULT_MAX_RECEIVE_BYTES
            retrieve = next(s for s in answer.stages if s.stage == gateway_pb2.STAGE_RETRIEVE)
            assert retrieve.served_by == "retriever-primary", retrieve
            assert [a.outcome for a in retrieve.attempts] == ["OK"]
            assert "sources trimmed to fit" in retrieve.detail
            assert answer.sources  # trimmed, not emptied
        unrelated = await client.Query(
            gateway_pb2.QueryRequest(query="How does a circuit breaker decide to open?"),
            timeout=30,
        )
    assert unrelated.sources and not unrelated.degraded
    assert any("breaker" in s.text.lower() for s in unrelated.sources)
    assert await transitions(mesh.gateway_address) == before  # no breaker moved


async def test_the_default_bounds_refuse_big_metadata_naming_the_document(mesh: Mesh) -> None:
    documents = [
        common_pb2.Document(id="fine", text="a small document"),
        common_pb2.Document(id="big", text="a document", metadata={"blob": "x" * MB}),
        common_pb2.Document(id="many", text="another", metadata={f"k{i}": "v" for i in range(100)}),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=documents), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(raised.value) == ["documents[1].metadata", "documents[2].metadata"]


async def test_a_hundred_bad_filters_are_invalid_argument_not_oversized_trailers(
    mesh: Mesh,
) -> None:
    filters = [common_pb2.MetadataFilter(key="", values=[""]) for _ in range(100)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mesh.gateway.Query(
            gateway_pb2.QueryRequest(query="anything", filters=filters), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_fields(raised.value)
    assert fields[0] == "filters" and len(fields) == 10
    assert "more)" in (raised.value.details() or "")


async def test_an_unknown_breaker_action_is_refused_and_changes_nothing(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(admin_address(mesh.gateway_address)) as channel:
        admin = admin_pb2_grpc.GatewayAdminServiceStub(channel)
        await admin.TransitionBreaker(
            admin_pb2.TransitionBreakerRequest(
                upstream="generator-fallback", action=admin_pb2.BREAKER_ACTION_FORCE_OPEN
            ),
            timeout=5,
        )
        try:
            for action in (admin_pb2.BREAKER_ACTION_UNSPECIFIED, 99):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await admin.TransitionBreaker(
                        admin_pb2.TransitionBreakerRequest(
                            upstream="generator-fallback",
                            action=action,  # type: ignore[arg-type]
                        ),
                        timeout=5,
                    )
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert bad_fields(raised.value) == ["action"]
            listed = await admin.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5)
            state = next(
                b.breaker.state for b in listed.breakers if b.upstream == "generator-fallback"
            )
            assert state == gateway_pb2.CIRCUIT_STATE_FORCED_OPEN  # not silently reset
        finally:
            await mesh.reset_breakers()


def _indexed(doc_id: str, model: str, values: list[float], **metadata: str):
    return retriever_pb2.IndexedDocument(
        document=common_pb2.Document(id=doc_id, text=f"text of {doc_id}", metadata=metadata),
        embeddings={model: common_pb2.Embedding(values=values)},
    )


async def test_the_retriever_validates_as_strictly_as_the_gateway(tmp_path: Path) -> None:
    vector = np.ones(8).tolist()
    with service_process(
        "retriever_svc",
        "primary",
        data_dir=str(tmp_path),
        max_models="2",
        max_text_chars="1000",
        max_reply_bytes=str(256 * 1024),
        max_metadata_value_chars="40000",
        max_metadata_bytes="35000",
    ) as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            retriever = retriever_pb2_grpc.RetrieverServiceStub(channel)

            async def refused(request: retriever_pb2.UpsertRequest) -> list[str]:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await retriever.Upsert(request, timeout=10)
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                return bad_fields(raised.value)

            for model in ("m1", "m2"):
                await retriever.Upsert(
                    retriever_pb2.UpsertRequest(documents=[_indexed(f"d-{model}", model, vector)]),
                    timeout=10,
                )
            # A third model id would be a third index: refused, naming the embedding.
            assert await refused(
                retriever_pb2.UpsertRequest(documents=[_indexed("d3", "m3", vector)])
            ) == ["documents[0].embeddings[m3]"]
            long_text = _indexed("d4", "m1", vector)
            long_text.document.text = "t" * 1001
            assert await refused(retriever_pb2.UpsertRequest(documents=[long_text])) == [
                "documents[0].document.text"
            ]
            assert await refused(
                retriever_pb2.UpsertRequest(documents=[_indexed("d5", "m1", [float("nan")] * 8)])
            ) == ["documents[0].embeddings[m1]"]
            assert await refused(
                retriever_pb2.UpsertRequest(documents=[_indexed("d6", "m1", [1.0] * 9)])
            ) == ["documents[0].embeddings[m1]"]
            assert await refused(
                retriever_pb2.UpsertRequest(
                    documents=[_indexed("d7", "m1", vector, blob="x" * 40_000)]
                )
            ) == ["documents[0].document.metadata"]
            stats = await retriever.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
            assert sorted(m.model for m in stats.models) == ["m1", "m2"]

            # A reply over max_reply_bytes is trimmed, never failed.
            many = [_indexed(f"w{i}", "m1", vector, blob="y" * 30_000) for i in range(20)]
            await retriever.Upsert(retriever_pb2.UpsertRequest(documents=many), timeout=10)
            request = retriever_pb2.SearchRequest(top_k=50, model="m1")
            request.query_embedding.values.extend(vector)
            reply = await retriever.Search(request, timeout=10)
            assert reply.ByteSize() <= 256 * 1024
            assert 0 < len(reply.documents) < 21 and "sources dropped" in reply.trimmed
