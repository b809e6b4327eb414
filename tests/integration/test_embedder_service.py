"""The embedder as a real process: Embed over loopback, validation errors, clean SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from processes import service_process

from embedder_svc.backends import create
from harag.errors import error_from_rpc
from harag.v1 import embedder_pb2, embedder_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
MAX_BATCH = 8
MAX_CHARS = 100


@pytest.fixture(scope="module", params=["primary", "fallback"])
def embedder(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    limits = {"max_batch_size": str(MAX_BATCH), "max_text_chars": str(MAX_CHARS)}
    with service_process("embedder_svc", request.param, **limits) as (_, address):
        yield request.param, address


async def embed(address: str, texts: list[str]) -> embedder_pb2.EmbedResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        return await stub.Embed(embedder_pb2.EmbedRequest(texts=texts), timeout=10)


async def test_embed_returns_the_backend_vectors_in_order(embedder: tuple[str, str]) -> None:
    impl, address = embedder
    texts = ["circuit breaker states", "retry budgets", "x"]
    reply = await embed(address, texts)
    backend = create(impl)
    assert (reply.model, reply.dimension) == (backend.model, backend.dimension)
    vectors = np.array([e.values for e in reply.embeddings], dtype=np.float32)
    assert np.array_equal(vectors, backend.embed(texts))  # same vectors in another process
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)


async def test_model_info_reports_model_and_configured_limits(embedder: tuple[str, str]) -> None:
    impl, address = embedder
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        info = await stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=10)
    backend = create(impl)
    assert (info.model, info.dimension) == (backend.model, backend.dimension)
    assert (info.max_batch_size, info.max_text_chars) == (MAX_BATCH, MAX_CHARS)


async def test_default_limits_serve_a_full_batch_of_long_texts() -> None:
    # Big batches run in a worker thread; this exercises that path with the real defaults.
    with service_process("embedder_svc", "primary") as (_, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
            info = await stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=10)
        assert (info.max_batch_size, info.max_text_chars) == (256, 8192)
        texts = [f"document {i} " + "lorem ipsum dolor " * 450 for i in range(256)]
        assert max(map(len, texts)) <= 8192
        reply = await embed(address, texts)
    assert len(reply.embeddings) == 256
    assert list(reply.embeddings[7].values) == create("primary").embed([texts[7]])[0].tolist()


@pytest.mark.parametrize(
    ("texts", "fields"),
    [
        ([], ["texts"]),
        (["a"] * (MAX_BATCH + 1), ["texts"]),
        (["ok", ""], ["texts[1]"]),
        (["ok", " \n\t"], ["texts[1]"]),
        (["x" * (MAX_CHARS + 1)], ["texts[0]"]),
        (["", "ok", "y" * (MAX_CHARS + 1)], ["texts[0]", "texts[2]"]),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    embedder: tuple[str, str], texts: list[str], fields: list[str]
) -> None:
    _, address = embedder
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await embed(address, texts)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error_from_rpc(raised.value).field_violations] == fields


@pytest.mark.parametrize("impl", ["primary", "fallback"])
async def test_sigterm_exits_zero(impl: str) -> None:
    with service_process("embedder_svc", impl) as (proc, address):
        await embed(address, ["warm up"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
