"""Every component RPC (embedder, retriever, generator; primary and fallback) with generated
messages, plus the issue's edge cases, against the real processes of one mesh."""

from __future__ import annotations

import grpc
import pytest

from fuzz.fuzz_support import HEAVY_EXAMPLES, call_stream, call_unary, check_response, fuzz
from fuzz.strategies import (
    document_hashes_request,
    embed_request,
    generate_request,
    list_stored_request,
    remove_documents_request,
    replace_documents_request,
    retriever_delete_request,
    search_request,
    stream_generate_request,
    upsert_request,
)
from harag.errors import error_from_rpc
from harag.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    generator_pb2,
    generator_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)

IMPLS = ("primary", "fallback")


def embedder(fuzz_mesh, impl: str) -> embedder_pb2_grpc.EmbedderServiceStub:
    return embedder_pb2_grpc.EmbedderServiceStub(fuzz_mesh.channel(f"embedder-{impl}"))


def retriever(fuzz_mesh, impl: str) -> retriever_pb2_grpc.RetrieverServiceStub:
    return retriever_pb2_grpc.RetrieverServiceStub(fuzz_mesh.channel(f"retriever-{impl}"))


def generator(fuzz_mesh, impl: str) -> generator_pb2_grpc.GeneratorServiceStub:
    return generator_pb2_grpc.GeneratorServiceStub(fuzz_mesh.channel(f"generator-{impl}"))


@pytest.mark.parametrize("impl", IMPLS)
async def test_embedder(fuzz_mesh, impl: str) -> None:
    stub = embedder(fuzz_mesh, impl)
    await fuzz(embed_request, lambda r: call_unary(stub.Embed, r), f"embedder-{impl} Embed")
    check_response(
        call_unary(stub.GetModelInfo, embedder_pb2.GetModelInfoRequest()), "GetModelInfo"
    )


@pytest.mark.parametrize("impl", IMPLS)
async def test_retriever_reads(fuzz_mesh, impl: str) -> None:
    stub = retriever(fuzz_mesh, impl)
    name = f"retriever-{impl}"
    await fuzz(search_request(), lambda r: call_unary(stub.Search, r), f"{name} Search")
    await fuzz(
        document_hashes_request,
        lambda r: call_unary(stub.GetDocumentHashes, r),
        f"{name} GetDocumentHashes",
    )
    await fuzz(
        list_stored_request,
        lambda r: call_unary(stub.ListStoredDocuments, r),
        f"{name} ListStoredDocuments",
    )
    check_response(call_unary(stub.GetStats, retriever_pb2.GetStatsRequest()), "GetStats")


@pytest.mark.parametrize("impl", IMPLS)
async def test_retriever_writes(fuzz_mesh, impl: str) -> None:
    stub = retriever(fuzz_mesh, impl)
    name = f"retriever-{impl}"
    await fuzz(
        upsert_request, lambda r: call_unary(stub.Upsert, r), f"{name} Upsert", HEAVY_EXAMPLES
    )
    await fuzz(
        replace_documents_request,
        lambda r: call_unary(stub.ReplaceDocuments, r),
        f"{name} ReplaceDocuments",
        HEAVY_EXAMPLES,
    )
    await fuzz(retriever_delete_request, lambda r: call_unary(stub.Delete, r), f"{name} Delete")
    await fuzz(
        remove_documents_request,
        lambda r: call_unary(stub.RemoveDocuments, r),
        f"{name} RemoveDocuments",
    )
    stats = stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
    assert len(stats.models) <= 8  # max_models: generated model ids made no new indexes


@pytest.mark.parametrize("impl", IMPLS)
async def test_generator(fuzz_mesh, impl: str) -> None:
    stub = generator(fuzz_mesh, impl)
    name = f"generator-{impl}"
    await fuzz(
        generate_request, lambda r: call_unary(stub.Generate, r), f"{name} Generate", HEAVY_EXAMPLES
    )
    await fuzz(
        stream_generate_request,
        lambda r: call_stream(stub.StreamGenerate, r),
        f"{name} StreamGenerate",
        HEAVY_EXAMPLES,
    )


# -- edge cases ---------------------------------------------------------------------------------


def fields(error: grpc.RpcError | None) -> list[str]:
    check_response(error, "edge case")
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    return [v.field for v in error_from_rpc(error).field_violations]


def search(values: list[float], model: str = "hash-ngram-384") -> retriever_pb2.SearchRequest:
    request = retriever_pb2.SearchRequest(query_text="breaker", model=model, top_k=4)
    request.query_embedding.values.extend(values)
    return request


async def test_non_finite_and_wrong_dimension_vectors(fuzz_mesh) -> None:
    stub = retriever(fuzz_mesh, "primary")
    for bad in ([float("nan")] * 384, [float("inf")] * 384, [1.0, float("-inf")] * 192):
        assert fields(call_unary(stub.Search, search(bad))) == ["query_embedding"]
    assert fields(call_unary(stub.Search, search([1.0] * 383))) == ["query_embedding"]
    assert fields(call_unary(stub.Search, search([1.0] * 100_000))) == ["query_embedding"]
    item = retriever_pb2.IndexedDocument(
        document=common_pb2.Document(id="edge-nan", text="a vector with NaN in it"),
        embeddings={"hash-ngram-384": common_pb2.Embedding(values=[float("nan")] * 384)},
    )
    upsert = retriever_pb2.UpsertRequest(documents=[item])
    assert fields(call_unary(stub.Upsert, upsert)) == ["documents[0].embeddings[hash-ngram-384]"]
    item.embeddings["hash-ngram-384"].values[:] = [1.0] * 7
    assert fields(call_unary(stub.Upsert, upsert)) == ["documents[0].embeddings[hash-ngram-384]"]


async def test_unknown_model_ids(fuzz_mesh) -> None:
    stub = retriever(fuzz_mesh, "primary")
    error = call_unary(stub.Search, search([1.0] * 384, model="no-such-model"))
    check_response(error, "unknown model")
    assert error is not None and error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_from_rpc(error).reason == "UNKNOWN_MODEL"
    # Ids past max_models (8 by default) would each be a new index: refused.
    for n in range(10):
        item = retriever_pb2.IndexedDocument(
            document=common_pb2.Document(id=f"edge-model-{n}", text="a document"),
            embeddings={f"edge-model-{n}": common_pb2.Embedding(values=[1.0] * 4)},
        )
        call_unary(stub.Upsert, retriever_pb2.UpsertRequest(documents=[item]))
    stats = stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=10)
    assert len(stats.models) == 8


async def test_messages_past_the_components_limits(fuzz_mesh) -> None:
    huge = "w " * (17 * 1024 * 1024)  # 34 MB: past the 32 MB message limit
    error = call_unary(
        embedder(fuzz_mesh, "primary").Embed, embedder_pb2.EmbedRequest(texts=[huge])
    )
    check_response(error, "Embed past the message limit")
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    five_mb = "why " * (5 * 256 * 1024)
    for impl in IMPLS:
        assert fields(
            call_unary(embedder(fuzz_mesh, impl).Embed, embedder_pb2.EmbedRequest(texts=[five_mb]))
        ) == ["texts[0]"]
        assert fields(
            call_unary(
                generator(fuzz_mesh, impl).Generate, generator_pb2.GenerateRequest(query=five_mb)
            )
        ) == ["query"]
        long_text = retriever_pb2.IndexedDocument(
            document=common_pb2.Document(id="edge-long", text=five_mb),
            embeddings={"hash-word-128": common_pb2.Embedding(values=[1.0] * 128)},
        )
        assert fields(
            call_unary(
                retriever(fuzz_mesh, impl).Upsert,
                retriever_pb2.UpsertRequest(documents=[long_text]),
            )
        ) == ["documents[0].document.text"]


async def test_ten_thousand_documents_in_one_call(fuzz_mesh) -> None:
    texts = [f"text {i}" for i in range(10_000)]
    assert fields(
        call_unary(embedder(fuzz_mesh, "primary").Embed, embedder_pb2.EmbedRequest(texts=texts))
    ) == ["texts"]
    items = [
        retriever_pb2.IndexedDocument(document=common_pb2.Document(id=f"bulk-{i}", text=t))
        for i, t in enumerate(texts)
    ]
    assert fields(
        call_unary(
            retriever(fuzz_mesh, "fallback").Upsert, retriever_pb2.UpsertRequest(documents=items)
        )
    ) == ["documents"]
    context = [
        common_pb2.ScoredDocument(document=common_pb2.Document(id=str(i), text=t))
        for i, t in enumerate(texts)
    ]
    assert fields(
        call_unary(
            generator(fuzz_mesh, "primary").Generate,
            generator_pb2.GenerateRequest(query="q", context=context),
        )
    ) == ["context"]


async def test_duplicate_ids_in_one_replace(fuzz_mesh) -> None:
    chunk = retriever_pb2.IndexedDocument(
        document=common_pb2.Document(id="edge-dup#0", text="a chunk"),
        embeddings={"hash-word-128": common_pb2.Embedding(values=[1.0] * 128)},
    )
    twice = [retriever_pb2.DocumentChunks(document_id="edge-dup", chunks=[chunk]) for _ in range(2)]
    request = retriever_pb2.ReplaceDocumentsRequest(documents=twice)
    assert fields(call_unary(retriever(fuzz_mesh, "fallback").ReplaceDocuments, request)) == [
        "documents[1].document_id"
    ]
