"""The client library against a real mesh: what a Python user of ha-rag sees.

The sync client blocks, so its calls run in a worker thread: the mesh's supervisor shares
this event loop and must keep draining the processes' logs meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

import harag
from harag.v1 import gateway_pb2

T = TypeVar("T")
STAGES = [gateway_pb2.STAGE_EMBED, gateway_pb2.STAGE_RETRIEVE, gateway_pb2.STAGE_GENERATE]


def in_thread(address: str, use: Callable[[harag.Client], T]) -> asyncio.Future[T]:
    def run() -> T:
        with harag.Client(address, timeout=10, api_key="not-checked-yet") as client:
            return use(client)

    return asyncio.ensure_future(asyncio.to_thread(run))


async def test_sync_query_answers_with_sources_and_stages(clean_faults, known_questions):
    item = known_questions[0]
    reply = await in_thread(
        clean_faults.gateway_address, lambda c: c.query(item["question"], top_k=3)
    )
    assert reply.answer and reply.request_id and not reply.degraded
    assert len(reply.sources) == 3 and reply.sources[0].id == item["expected"]
    assert [s.stage for s in reply.stages] == STAGES


async def test_async_query_answers_with_sources_and_stages(clean_faults, known_questions):
    item = known_questions[1]
    async with harag.AsyncClient(clean_faults.gateway_address, timeout=10) as client:
        reply = await client.query(item["question"], request_id="client-test-1")
    assert reply.answer and reply.sources and reply.request_id == "client-test-1"
    assert [s.served_by for s in reply.stages] == [
        "embedder-primary",
        "retriever-primary",
        "generator-primary",
    ]


def check_stream(events: list[harag.StreamEvent]) -> None:
    first, *chunks, last = events
    assert isinstance(first, harag.SourcesEvent) and first.sources
    assert chunks and all(isinstance(c, harag.AnswerChunk) for c in chunks)
    assert isinstance(last, harag.FinalEvent)
    assert "".join(c.text for c in chunks if isinstance(c, harag.AnswerChunk)) == last.answer
    assert [s.stage for s in last.stages] == STAGES and last.request_id


async def test_sync_stream_query_yields_sources_chunks_then_final(clean_faults, known_questions):
    question = known_questions[0]["question"]
    events = await in_thread(clean_faults.gateway_address, lambda c: list(c.stream_query(question)))
    check_stream(events)


async def test_async_stream_query_yields_sources_chunks_then_final(clean_faults, known_questions):
    async with harag.AsyncClient(clean_faults.gateway_address) as client:
        events = [e async for e in client.stream_query(known_questions[2]["question"])]
    check_stream(events)


async def test_ingest_reports_each_document(clean_faults):
    async with harag.AsyncClient(clean_faults.gateway_address, timeout=30) as client:
        reply = await client.ingest(
            [
                {"id": "client-ok", "text": "Axolotls regrow lost limbs within weeks."},
                harag.Document(id="client-empty", text="   "),
            ]
        )
    assert [(r.id, r.status) for r in reply.results] == [
        ("client-ok", gateway_pb2.INGEST_STATUS_ACCEPTED),
        ("client-empty", gateway_pb2.INGEST_STATUS_FAILED),
    ]
    assert reply.results[1].reason == "text is empty"
    assert (reply.succeeded, reply.failed) == (1, 1)


@pytest.mark.parametrize(
    ("question", "top_k", "field"),
    [("What is BM25?", 0, "top_k"), ("   ", None, "query")],
)
async def test_invalid_request_raises_invalid_argument_naming_the_field(
    clean_faults, question, top_k, field
):
    async with harag.AsyncClient(clean_faults.gateway_address, retry=harag.RetryPolicy()) as client:
        with pytest.raises(harag.InvalidArgument) as caught:
            await client.query(question, top_k=top_k)
    assert [v.field for v in caught.value.field_violations] == [field]
    assert caught.value.reason == "INVALID_ARGUMENT" and caught.value.attempts == 1


async def test_sync_invalid_request_raises_invalid_argument(clean_faults):
    def ask(client: harag.Client) -> harag.InvalidArgument:
        with pytest.raises(harag.InvalidArgument) as caught:
            client.query("What is BM25?", top_k=51)
        return caught.value

    error = await in_thread(clean_faults.gateway_address, ask)
    assert [v.field for v in error.field_violations] == ["top_k"]


async def test_tiny_timeout_raises_deadline_exceeded(clean_faults):
    async with harag.AsyncClient(clean_faults.gateway_address) as client:
        with pytest.raises(harag.DeadlineExceeded):
            await client.query("What is BM25?", timeout=0.001)

    def ask(client: harag.Client) -> None:
        with pytest.raises(harag.DeadlineExceeded):
            client.query("What is BM25?", timeout=0.001)

    await in_thread(clean_faults.gateway_address, ask)


async def test_system_health_lists_every_upstream(clean_faults):
    async with harag.AsyncClient(clean_faults.gateway_address) as client:
        health = await client.get_system_health()
    assert {u.name for u in health.upstreams} == {
        f"{component}-{tier}"
        for component in ("embedder", "retriever", "generator")
        for tier in ("primary", "fallback")
    }
    assert health.status == gateway_pb2.SYSTEM_STATUS_HEALTHY


async def test_unreachable_gateway_raises_unavailable():
    async with harag.AsyncClient("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(harag.Unavailable):
            await client.get_system_health()


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("### Python\n") : text.index("### Node\n")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


async def test_readme_python_examples_run_against_the_mesh(clean_faults):
    """The README's Python section is code that works, not prose that drifts."""
    examples = readme_python_examples()
    assert len(examples) == 2
    for example in examples:
        code = example.replace("127.0.0.1:50051", clean_faults.gateway_address)
        await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
