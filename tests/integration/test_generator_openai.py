"""A generator process with backend=openai, against the fake provider (tests/fake_openai.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from fake_openai import FakeOpenAI, Script, rate_limited
from processes import service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, generator_pb2, generator_pb2_grpc

CONTEXT = [
    common_pb2.ScoredDocument(
        document=common_pb2.Document(id="d1", text="The retry budget is ten percent."), score=1.0
    )
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeOpenAI, str]]:
    key_file = tmp_path_factory.mktemp("secret") / "api-key"
    key_file.write_text("sk-from-a-file\n")
    with (
        FakeOpenAI() as fake,
        service_process(
            "generator_svc",
            "primary",
            backend="openai",
            openai_base_url=fake.base_url,
            openai_model="provider-a",
            openai_api_key_file=str(key_file),
        ) as (_, address),
    ):
        yield fake, address


async def test_stream_generate_passes_each_token_on_as_the_model_produces_it(served):
    fake, address = served
    fake.script(Script(tokens=["Ten ", "percent ", "[1]."], token_delay_s=0.3))
    arrivals: list[tuple[float, generator_pb2.StreamGenerateResponse]] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        request = generator_pb2.StreamGenerateRequest(query="Retry budget?", context=CONTEXT)
        async for event in stub.StreamGenerate(request, timeout=10):
            arrivals.append((time.monotonic(), event))
    deltas = [(t, e.delta) for t, e in arrivals if e.WhichOneof("event") == "delta"]
    assert [d for _, d in deltas] == ["Ten ", "percent ", "[1]."]
    assert deltas[-1][0] - deltas[0][0] >= 0.5  # streamed, not collected and replayed
    final = arrivals[-1][1].final
    assert (final.text, final.model, list(final.citations)) == (
        "Ten percent [1].",
        "provider-a",
        [1],
    )
    assert final.finish_reason == generator_pb2.FINISH_REASON_STOP
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (17, 3)
    assert fake.requests[-1]["headers"]["authorization"] == "Bearer sk-from-a-file"


async def test_generate_returns_the_whole_answer(served):
    fake, address = served
    fake.script(Script(tokens=["Ten percent", " [1]."]))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        response = await stub.Generate(
            generator_pb2.GenerateRequest(query="Retry budget?", context=CONTEXT), timeout=10
        )
    assert response.text == "Ten percent [1]."
    assert list(response.citations) == [1]


async def test_a_rate_limited_provider_is_resource_exhausted_with_its_retry_delay(served):
    fake, address = served
    fake.script(rate_limited(4))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Generate(
                generator_pb2.GenerateRequest(query="Retry budget?", context=CONTEXT), timeout=10
            )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = error_from_rpc(raised.value)
    assert error.reason == "PROVIDER_RATE_LIMITED"
    assert error.retry_delay_s == pytest.approx(4.0)


async def test_a_stream_cut_midway_ends_the_rpc_unavailable_after_the_tokens_sent(served):
    fake, address = served
    fake.script(Script(tokens=["Ten ", "percent ", "[1]."], cut_after=2))
    deltas: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        request = generator_pb2.StreamGenerateRequest(query="Retry budget?", context=CONTEXT)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for event in stub.StreamGenerate(request, timeout=10):
                deltas.append(event.delta)
    assert deltas == ["Ten ", "percent "]
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_from_rpc(raised.value).reason == "PROVIDER_STREAM_CUT"
