"""The working mesh, end to end: real processes, real sockets, real failures."""

from __future__ import annotations

import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import wait_until

from harag.errors import error_from_rpc
from harag.v1 import (
    fault_injection_pb2,
    gateway_pb2,
    retriever_pb2,
    retriever_pb2_grpc,
)

DOWN = fault_injection_pb2.Fault(down=True)


def stage(reply: gateway_pb2.QueryResponse | gateway_pb2.FinalEvent, which: int):
    return next(s for s in reply.stages if s.stage == which)


async def ask(mesh, question: str, **kwargs) -> gateway_pb2.QueryResponse:
    return await mesh.gateway.Query(gateway_pb2.QueryRequest(query=question, **kwargs), timeout=10)


async def test_known_question_finds_its_document(clean_faults, known_questions):
    mesh = clean_faults
    hits = 0
    for item in known_questions:
        reply = await ask(mesh, item["question"])
        assert reply.answer and reply.request_id and not reply.degraded
        assert [s.served_by for s in reply.stages] == [
            "embedder-primary",
            "retriever-primary",
            "generator-primary",
        ]
        hits += reply.sources[0].id == item["expected"]
    # Dense hashed n-grams are not a neural model; most, not all, known questions must hit.
    assert hits >= len(known_questions) * 0.8, hits


async def test_answer_cites_top_source(clean_faults, known_questions):
    item = known_questions[0]
    reply = await ask(clean_faults, item["question"])
    assert reply.sources[0].citation == 1
    assert "[1]" in reply.answer or "[2]" in reply.answer
    assert reply.sources[0].metadata["title"]


async def test_embedder_primary_down_is_served_by_fallback(clean_faults, known_questions):
    mesh = clean_faults
    await mesh.set_fault("embedder-primary", DOWN)
    found = 0
    for item in known_questions:
        reply = await ask(mesh, item["question"])
        embed = stage(reply, gateway_pb2.STAGE_EMBED)
        assert embed.served_by == "embedder-fallback" and embed.tier == 1 and embed.degraded
        assert embed.detail == "hash-word-128"
        assert embed.attempts[0].upstream == "embedder-primary"
        assert embed.attempts[0].outcome == "NOT_SERVING"
        assert reply.degraded
        # The fallback model's vectors are searched in the fallback model's own index.
        retrieve = stage(reply, gateway_pb2.STAGE_RETRIEVE)
        assert retrieve.served_by == "retriever-primary"
        assert retrieve.detail.endswith("in the hash-word-128 space")
        found += item["expected"] in [s.id for s in reply.sources]
    # The cheap fallback model ranks less sharply than the primary, but still finds the
    # right document for most questions; comparing across vector spaces would not.
    assert found >= 0.75 * len(known_questions), found


async def test_both_embedders_down_retrieval_is_lexical(clean_faults, known_questions):
    mesh = clean_faults
    await mesh.set_fault("embedder-primary", DOWN)
    await mesh.set_fault("embedder-fallback", DOWN)
    reply = await ask(mesh, known_questions[2]["question"])
    assert stage(reply, gateway_pb2.STAGE_EMBED).served_by == "local:lexical"
    retrieve = stage(reply, gateway_pb2.STAGE_RETRIEVE)
    assert retrieve.served_by == "retriever-fallback"
    assert retrieve.detail.startswith("lexical")
    assert retrieve.attempts[0].outcome == "FAILED_PRECONDITION"  # dense needs a vector
    assert reply.sources[0].id == known_questions[2]["expected"]
    assert reply.degraded


async def test_both_generators_down_gives_static_answer_with_retry_after(clean_faults):
    mesh = clean_faults
    await mesh.set_fault("generator-primary", DOWN)
    await mesh.set_fault("generator-fallback", DOWN)
    reply = await ask(mesh, "What is a retry budget?")
    generate = stage(reply, gateway_pb2.STAGE_GENERATE)
    assert generate.served_by == "local:static-answer"
    assert reply.HasField("retry_after") and reply.retry_after.seconds > 0
    assert "temporarily unavailable" in reply.answer
    assert reply.sources, "retrieval still worked, so the sources are still shown"
    assert reply.degraded


async def test_hard_error_rate_falls_through_to_fallback(clean_faults):
    mesh = clean_faults
    fault = fault_injection_pb2.Fault(error_rate=1.0, error_code=grpc.StatusCode.INTERNAL.value[0])
    await mesh.set_fault("retriever-primary", fault)
    reply = await ask(mesh, "How do hedged requests cut tail latency?")
    retrieve = stage(reply, gateway_pb2.STAGE_RETRIEVE)
    assert retrieve.served_by == "retriever-fallback"
    assert retrieve.attempts[0].outcome == "INTERNAL"


async def test_retriever_sigkill_and_restart_keeps_documents(clean_faults, known_questions):
    mesh = clean_faults
    async with grpc.aio.insecure_channel(mesh.address("retriever-primary")) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        before = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=5)
    assert before.documents >= 40
    old_pid = mesh.supervisor.procs["retriever-primary"].pid
    mesh.supervisor.kill("retriever-primary", signal.SIGKILL)
    await wait_until(  # the supervisor restarts it, as an orchestrator would
        lambda: mesh.supervisor.procs["retriever-primary"].pid != old_pid,
        what="retriever-primary restarted",
    )
    await mesh.wait_serving("retriever-primary")
    async with grpc.aio.insecure_channel(mesh.address("retriever-primary")) as channel:
        stub = retriever_pb2_grpc.RetrieverServiceStub(channel)
        after = await stub.GetStats(retriever_pb2.GetStatsRequest(), timeout=5)
    assert after.documents == before.documents
    assert {(m.model, m.vectors) for m in after.models} == {
        (m.model, m.vectors) for m in before.models
    }
    await mesh.wait_gateway_sees("retriever-primary", "SERVING")
    reply = await ask(mesh, known_questions[3]["question"])
    assert stage(reply, gateway_pb2.STAGE_RETRIEVE).served_by == "retriever-primary"


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"query": "ok", "top_k": 0}, "top_k"),
        ({"query": "ok", "top_k": 51}, "top_k"),
        ({"query": "ok", "top_k": -3}, "top_k"),
    ],
)
async def test_bad_query_input_is_invalid_argument_naming_the_field(mesh, request_fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.gateway.Query(gateway_pb2.QueryRequest(**request_fields), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error_from_rpc(caught.value).field_violations] == [field]


async def test_bad_stream_query_input_is_invalid_argument(mesh):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in mesh.gateway.StreamQuery(
            gateway_pb2.StreamQueryRequest(query=""), timeout=5
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ingest_reports_bad_documents_alone(mesh):
    docs = [
        {"id": "ingest-ok-1", "text": "Quokkas are small marsupials found on Rottnest Island."},
        {"id": "ingest-empty", "text": "   "},
        {"id": "", "text": "A document without an id gets one derived from its text."},
        {"id": "ingest-ok-1", "text": "duplicate id in one request"},
        {"id": "ingest-huge", "text": "y " * 500_001},  # past max_document_chars
    ]
    reply = await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=docs), timeout=30)
    statuses = [gateway_pb2.IngestStatus.Name(r.status) for r in reply.results]
    assert statuses == [
        "INGEST_STATUS_ACCEPTED",
        "INGEST_STATUS_FAILED",
        "INGEST_STATUS_ACCEPTED",
        "INGEST_STATUS_FAILED",
        "INGEST_STATUS_FAILED",
    ]
    assert reply.succeeded == 2 and reply.failed == 3 and reply.elapsed_ms > 0
    assert reply.results[2].id.startswith("doc-")
    assert "empty" in reply.results[1].reason and "duplicate" in reply.results[3].reason
    assert set(reply.models) == {"hash-ngram-384", "hash-word-128"}
    found = await ask(mesh, "Where do quokkas live?")
    assert found.sources[0].id == "ingest-ok-1"


async def test_ingest_with_a_retriever_down_is_queued_for_it_then_applied(clean_faults):
    mesh = clean_faults
    await mesh.set_fault("retriever-fallback", DOWN)
    doc = {"id": "queued-doc", "text": "Axolotls regrow limbs and live in Mexican lakes."}
    reply = await mesh.gateway.Ingest(gateway_pb2.IngestRequest(documents=[doc]), timeout=30)
    result = reply.results[0]
    assert result.status == gateway_pb2.INGEST_STATUS_QUEUED
    assert reply.queued == 1 and reply.succeeded == 0 and list(result.missing) == []
    assert {w.retriever: w.status for w in result.writes} == {
        "retriever-primary": gateway_pb2.WRITE_STATUS_INDEXED,
        "retriever-fallback": gateway_pb2.WRITE_STATUS_QUEUED,
    }
    await mesh.clear_faults("retriever-fallback")

    async def applied() -> bool:
        health = await mesh.gateway.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
        return all(o.backlog == 0 for o in health.outboxes)

    await wait_until(applied, what="the queued write applied", timeout_s=30)


async def test_empty_ingest_is_invalid_argument(mesh):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.gateway.Ingest(gateway_pb2.IngestRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_query_sends_sources_then_chunks_then_final(clean_faults, known_questions):
    mesh = clean_faults
    kinds, chunks, final = [], [], None
    request = gateway_pb2.StreamQueryRequest(query=known_questions[4]["question"])
    async for event in mesh.gateway.StreamQuery(request, timeout=10):
        kind = event.WhichOneof("event")
        kinds.append(kind)
        if kind == "chunk":
            chunks.append(event.chunk)
        elif kind == "final":
            final = event.final
        elif kind == "sources":
            assert event.sources.sources[0].id == known_questions[4]["expected"]
    assert kinds[0] == "sources" and kinds[-1] == "final"
    assert set(kinds[1:-1]) == {"chunk"} and len(chunks) >= 2
    assert final is not None and "".join(chunks) == final.answer
    assert [s.served_by for s in final.stages][-1] == "generator-primary"


async def test_stream_query_falls_back_when_generator_primary_down(clean_faults):
    mesh = clean_faults
    await mesh.set_fault("generator-primary", DOWN)
    events = [
        e
        async for e in mesh.gateway.StreamQuery(
            gateway_pb2.StreamQueryRequest(query="What is a bulkhead?"), timeout=10
        )
    ]
    final = events[-1].final
    assert stage(final, gateway_pb2.STAGE_GENERATE).served_by == "generator-fallback"
    assert final.degraded
    assert "".join(e.chunk for e in events if e.WhichOneof("event") == "chunk") == final.answer


async def test_system_health_reports_every_upstream(clean_faults):
    mesh = clean_faults
    reply = await mesh.gateway.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
    assert reply.status == gateway_pb2.SYSTEM_STATUS_HEALTHY
    names = [u.name for u in reply.upstreams]
    assert names == [
        "embedder-primary",
        "embedder-fallback",
        "retriever-primary",
        "retriever-fallback",
        "generator-primary",
        "generator-fallback",
    ]
    assert all(u.address.startswith("127.0.0.1:") for u in reply.upstreams)
    await mesh.set_fault("generator-primary", DOWN)
    reply = await mesh.gateway.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
    assert reply.status == gateway_pb2.SYSTEM_STATUS_DEGRADED
    primary = next(u for u in reply.upstreams if u.name == "generator-primary")
    assert primary.health == gateway_pb2.UPSTREAM_HEALTH_STATUS_NOT_SERVING
    await mesh.set_fault("generator-fallback", DOWN)
    reply = await mesh.gateway.GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=5)
    assert reply.status == gateway_pb2.SYSTEM_STATUS_CRITICAL


async def test_health_watch_sees_not_serving_on_sigterm(mesh):
    """Watch on a component sees SERVING, then NOT_SERVING when it gets SIGTERM."""
    name = "generator-fallback"
    seen: list[str] = []
    async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        async for reply in stream:
            seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            if seen == ["SERVING"]:
                mesh.supervisor.kill(name, signal.SIGTERM)
            if seen[-1] == "NOT_SERVING":
                break
    assert seen == ["SERVING", "NOT_SERVING"]
    proc = mesh.supervisor.procs[name]
    # The supervisor restarts it; the original process itself exited 0.
    exit_codes = await wait_until(
        lambda: [line for line in mesh.logs.of("supervisor") if line.startswith(name)],
        what=f"the supervisor reported {name}'s exit",
    )
    assert "exited with 0" in exit_codes[-1], exit_codes
    del proc
    await mesh.wait_serving(name)
    await mesh.wait_gateway_sees(name, "SERVING")
