"""StreamQuery events are typed, inputs are converted or refused clearly, metadata is merged."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from client_fakes import FakeAioChannel, FakeChannel
from google.protobuf import duration_pb2

import harag
from harag.types import stream_event, to_document, to_filters
from harag.v1 import common_pb2, gateway_pb2


def test_each_stream_message_becomes_its_typed_event():
    source = gateway_pb2.Source(id="bm25", text="...", score=0.9, citation=1)
    stage = gateway_pb2.StageReport(stage=gateway_pb2.STAGE_EMBED, served_by="embedder-fallback")
    final = gateway_pb2.FinalEvent(
        answer="BM25 [1]",
        degraded=True,
        stages=[stage],
        request_id="r1",
        model="extractive",
        retry_after=duration_pb2.Duration(seconds=2, nanos=500_000_000),
    )
    events = [
        stream_event(
            gateway_pb2.StreamQueryResponse(sources=gateway_pb2.SourcesEvent(sources=[source]))
        ),
        stream_event(gateway_pb2.StreamQueryResponse(chunk="BM25 ")),
        stream_event(gateway_pb2.StreamQueryResponse(final=final)),
    ]
    assert events[0] == harag.SourcesEvent((source,))
    assert events[1] == harag.AnswerChunk("BM25 ")
    last = events[2]
    assert isinstance(last, harag.FinalEvent)
    assert last.answer == "BM25 [1]" and last.degraded and last.stages == (stage,)
    assert last.retry_after_s == pytest.approx(2.5) and last.request_id == "r1"


def test_a_withdrawal_becomes_a_typed_withdrawn_event_and_the_cli_marks_it():
    from harag_cli import render

    message = gateway_pb2.StreamQueryResponse(
        withdrawn=gateway_pb2.Withdrawal(
            upstream="generator-primary", tier=0, reason="UNAVAILABLE: reset", withdrawn_chars=42
        )
    )
    event = stream_event(message)
    assert event == harag.Withdrawn("generator-primary", 0, "UNAVAILABLE: reset", 42)
    assert render.withdrawn(event) == (
        "[answer withdrawn: generator-primary (tier 0) failed mid-stream after 42 characters: "
        "UNAVAILABLE: reset; restarting with the next tier]"
    )


def test_final_event_without_retry_after_says_none():
    event = stream_event(gateway_pb2.StreamQueryResponse(final=gateway_pb2.FinalEvent()))
    assert isinstance(event, harag.FinalEvent) and event.retry_after_s is None


def test_an_event_kind_this_client_does_not_know_is_skipped():
    assert stream_event(gateway_pb2.StreamQueryResponse()) is None


def test_stream_query_yields_typed_events_in_order_and_skips_unknown_ones():
    channel = FakeChannel(
        {
            "StreamQuery": [
                [
                    gateway_pb2.StreamQueryResponse(sources=gateway_pb2.SourcesEvent()),
                    gateway_pb2.StreamQueryResponse(),
                    gateway_pb2.StreamQueryResponse(chunk="a"),
                    gateway_pb2.StreamQueryResponse(final=gateway_pb2.FinalEvent(answer="a")),
                ]
            ]
        }
    )
    kinds = [type(e).__name__ for e in harag.Client(channel=channel).stream_query("q", top_k=2)]
    assert kinds == ["SourcesEvent", "AnswerChunk", "FinalEvent"]
    assert channel.sent[0].request.top_k == 2


@dataclass
class Note:
    id: str
    text: str
    metadata: dict


def test_documents_come_as_messages_dicts_or_objects():
    message = common_pb2.Document(id="m", text="message")
    assert to_document(message) is message
    assert to_document({"text": "t", "metadata": {"source": "wiki"}}) == common_pb2.Document(
        text="t", metadata={"source": "wiki"}
    )
    assert to_document(Note("n", "note", {"k": "v"})) == common_pb2.Document(
        id="n", text="note", metadata={"k": "v"}
    )


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"id": "a"}, "text must be a str"),
        ({"text": "t", "title": "x"}, "unknown keys ['title']"),
        ({"text": "t", "metadata": {"n": 1}}, "metadata must map str to str"),
    ],
)
def test_a_malformed_document_is_refused_by_its_index(document, complaint):
    channel = FakeChannel({"Ingest": []})
    with pytest.raises(TypeError, match=r"documents\[1\]: " + complaint.replace("[", r"\[")):
        harag.Client(channel=channel).ingest([{"text": "fine"}, document])
    assert channel.sent == []


def test_filters_from_a_mapping_or_messages():
    assert to_filters({"source": "wiki", "lang": ["en", "de"]}) == [
        common_pb2.MetadataFilter(key="source", values=["wiki"]),
        common_pb2.MetadataFilter(key="lang", values=["en", "de"]),
    ]
    given = [common_pb2.MetadataFilter(key="k", values=["v"])]
    assert to_filters(given) == given
    with pytest.raises(TypeError):
        to_filters(["source=wiki"])


def test_api_key_and_metadata_are_sent_and_a_call_can_override_them():
    answer = gateway_pb2.QueryResponse(answer="a")
    channel = FakeChannel({"Query": [answer, answer]})
    client = harag.Client(channel=channel, api_key="k-123", metadata={"X-Tenant": "acme"})
    client.query("q")
    client.query("q", metadata=[("x-tenant", "other")], request_id="req-7")
    assert channel.sent[0].metadata == (("x-tenant", "acme"), ("authorization", "Bearer k-123"))
    assert channel.sent[1].metadata == (
        ("authorization", "Bearer k-123"),
        ("x-tenant", "other"),
        ("x-request-id", "req-7"),
    )


def test_the_api_key_comes_from_harag_api_key_unless_given(monkeypatch):
    monkeypatch.setenv("HARAG_API_KEY", "hrg_from_env")
    answer = gateway_pb2.QueryResponse(answer="a")
    channel = FakeChannel({"Query": [answer, answer]})
    harag.Client(channel=channel).query("q")
    harag.Client(channel=channel, api_key="hrg_given").query("q")
    assert channel.sent[0].metadata == (("authorization", "Bearer hrg_from_env"),)
    assert channel.sent[1].metadata == (("authorization", "Bearer hrg_given"),)


def test_default_timeout_applies_unless_the_call_sets_its_own():
    channel = FakeChannel({"GetSystemHealth": [gateway_pb2.GetSystemHealthResponse()] * 3})
    client = harag.Client(channel=channel, timeout=7.0)
    client.get_system_health()
    client.get_system_health(timeout=0.5)
    client.get_system_health(timeout=None)
    assert [round(s.timeout, 3) if s.timeout else None for s in channel.sent] == [7.0, 0.5, None]


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_timeout_that_is_not_positive_is_refused(timeout):
    with pytest.raises(ValueError, match="timeout"):
        harag.Client(channel=FakeChannel(), timeout=timeout)


def test_importing_the_contract_does_not_load_the_client():
    code = (
        "import sys, harag.v1.gateway_pb2; "
        "print(sorted(m for m in sys.modules if m.startswith('harag') and m != 'harag.v1' "
        "and not m.startswith('harag.v1.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['harag']"


def test_client_library_imports_nothing_of_the_project_but_the_contract():
    code = (
        "import sys, harag; harag.Client; harag.AsyncClient; harag.RetryPolicy; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'gateway', 'servicekit', 'harag_cli', 'embedder_svc', 'retriever_svc', 'generator_svc'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_bad_stream_argument_raises_at_the_call_not_at_the_first_event():
    sync_channel, aio_channel = FakeChannel(), FakeAioChannel()
    with pytest.raises(TypeError, match="filters"):
        harag.Client(channel=sync_channel).stream_query("q", filters=["source=wiki"])
    with pytest.raises(ValueError, match="timeout"):
        harag.AsyncClient(channel=aio_channel).stream_query("q", timeout=-1)
    assert sync_channel.sent == [] and aio_channel.sent == []


def test_model_usage_sums_the_tokens_each_model_reported_on_the_receipt() -> None:
    from harag import ModelUsage, model_usage
    from harag.v1 import generator_pb2

    def attempt(model: str, prompt: int | None, completion: int = 0) -> gateway_pb2.Attempt:
        usage = (
            generator_pb2.GenerationUsage(prompt_tokens=prompt, completion_tokens=completion)
            if prompt is not None
            else None
        )
        return gateway_pb2.Attempt(upstream="u", outcome="OK", model=model, usage=usage)

    stages = [
        gateway_pb2.StageReport(attempts=[attempt("e5", None)]),  # an embed: no usage
        gateway_pb2.StageReport(
            attempts=[attempt("", None), attempt("gpt", 100, 20), attempt("gpt", 5, 1)]
        ),
    ]
    assert model_usage(stages) == [ModelUsage("gpt", 105, 21, 2)]
    assert model_usage([]) == []
