"""The generator as a real process: Generate and StreamGenerate over loopback, errors, SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from processes import service_process

from harag.errors import error_from_rpc
from harag.v1 import common_pb2, generator_pb2, generator_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
MAX_DOCS = 3
MODELS = {"primary": "extractive-v1", "fallback": "template-v1"}
DOCS = [
    "Bulkheads give each dependency its own pool, so one slow dependency cannot starve the others.",
    "A retry budget caps retries at a small fraction of all requests, for example ten "
    "percent. Once the budget is spent, failed calls are not retried.",
    "Jaeger stores traces as trees of spans with parents and children.",
]


@pytest.fixture(scope="module", params=["primary", "fallback"])
def generator(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with service_process("generator_svc", request.param, max_context_docs=str(MAX_DOCS)) as (
        _,
        address,
    ):
        yield request.param, address


def context_of(texts: list[str]) -> list[common_pb2.ScoredDocument]:
    return [
        common_pb2.ScoredDocument(document=common_pb2.Document(id=f"doc-{i}", text=text), score=1.0)
        for i, text in enumerate(texts)
    ]


async def generate(
    address: str, request: generator_pb2.GenerateRequest
) -> generator_pb2.GenerateResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        return await stub.Generate(request, timeout=10)


async def stream(
    address: str, request: generator_pb2.StreamGenerateRequest
) -> list[generator_pb2.StreamGenerateResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        return [event async for event in stub.StreamGenerate(request, timeout=10)]


def requests(query: str, texts: list[str], max_answer_chars: int = 0) -> tuple:
    fields = {"query": query, "context": context_of(texts), "max_answer_chars": max_answer_chars}
    return generator_pb2.GenerateRequest(**fields), generator_pb2.StreamGenerateRequest(**fields)


async def test_generate_answers_with_a_citation_of_the_right_document(
    generator: tuple[str, str],
) -> None:
    impl, address = generator
    unary, _ = requests("What is a retry budget?", DOCS)
    reply = await generate(address, unary)
    assert reply.model == MODELS[impl]
    assert reply.finish_reason == generator_pb2.FINISH_REASON_STOP
    assert "A retry budget caps retries" in reply.text
    assert "[2]" in reply.text
    assert 2 in reply.citations
    assert not reply.HasField("usage")  # a local generator calls no model


async def test_stream_deltas_concatenate_to_the_final_answer_of_generate(
    generator: tuple[str, str],
) -> None:
    _, address = generator
    unary, streamed = requests("What is a retry budget?", DOCS)
    events = await stream(address, streamed)
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[-1] == "final"
    assert kinds.count("final") == 1
    assert len(kinds) > 2  # the answer really arrives in several deltas
    final = events[-1].final
    assert "".join(event.delta for event in events[:-1]) == final.text
    assert final == await generate(address, unary)


async def test_no_context_is_reported(generator: tuple[str, str]) -> None:
    _, address = generator
    unary, _ = requests("What is a retry budget?", [])
    reply = await generate(address, unary)
    assert reply.finish_reason == generator_pb2.FINISH_REASON_NO_CONTEXT
    assert "couldn't find" in reply.text
    assert not reply.citations


async def test_answer_is_cut_at_max_answer_chars(generator: tuple[str, str]) -> None:
    _, address = generator
    unary, _ = requests("What is a retry budget?", DOCS, max_answer_chars=30)
    reply = await generate(address, unary)
    assert reply.finish_reason == generator_pb2.FINISH_REASON_LENGTH
    assert len(reply.text) <= 30


@pytest.mark.parametrize(
    ("query", "docs", "max_chars", "fields"),
    [
        ("", 1, 0, ["query"]),
        ("  ", 1, 0, ["query"]),
        ("q", MAX_DOCS + 1, 0, ["context"]),
        ("q", 1, -1, ["max_answer_chars"]),
        ("", MAX_DOCS + 1, -5, ["query", "context", "max_answer_chars"]),
    ],
)
@pytest.mark.parametrize("rpc", ["Generate", "StreamGenerate"])
async def test_bad_input_is_invalid_argument_naming_the_field(
    generator: tuple[str, str], rpc: str, query: str, docs: int, max_chars: int, fields: list[str]
) -> None:
    _, address = generator
    unary, streamed = requests(query, (DOCS * 2)[:docs], max_chars)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if rpc == "Generate":
            await generate(address, unary)
        else:
            await stream(address, streamed)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error_from_rpc(raised.value).field_violations] == fields


@pytest.mark.parametrize("impl", ["primary", "fallback"])
async def test_sigterm_exits_zero(impl: str) -> None:
    with service_process("generator_svc", impl) as (proc, address):
        await generate(address, requests("retry budget", DOCS)[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
