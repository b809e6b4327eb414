"""The generator as a real process: Generate and StreamGenerate over loopback, errors, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from harag.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from servicekit.errors import details_of
from servicekit.healthcheck import check

REPO = Path(__file__).resolve().parents[2]
MAX_DOCS = 3
MODELS = {"primary": "extractive-v1", "fallback": "template-v1"}
DOCS = [
    "Bulkheads give each dependency its own pool, so one slow dependency cannot starve "
    "the others.",
    "A retry budget caps retries at a small fraction of all requests, for example ten "
    "percent. Once the budget is spent, failed calls are not retried.",
    "Jaeger stores traces as trees of spans with parents and children.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service_process(
    module: str, impl: str, **settings: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Starts `python -m module --impl impl` on a free port and waits until it is SERVING."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARAG_")}
    env |= {"HARAG_PORT": str(port), **{f"HARAG_{k.upper()}": v for k, v in settings.items()}}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--impl", impl], cwd=REPO, env=env, stderr=log
        )
        address = f"127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while check(address, timeout_s=0.5) != "SERVING":
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"{module} did not become SERVING:\n{log.read().decode()}")
                time.sleep(0.05)
            yield proc, address
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


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
    bad = [d for d in details_of(raised.value) if isinstance(d, error_details_pb2.BadRequest)]
    assert [v.field for v in bad[0].field_violations] == fields


@pytest.mark.parametrize("impl", ["primary", "fallback"])
async def test_sigterm_exits_zero(impl: str) -> None:
    with service_process("generator_svc", impl) as (proc, address):
        await generate(address, requests("retry budget", DOCS)[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
