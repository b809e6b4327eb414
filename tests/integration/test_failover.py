"""Mid-stream failover against the real mesh: generator-primary breaks its stream after a few
deltas (the fail_stream_after fault); the client sees the partial answer withdrawn, then the
fallback's answer from scratch, and a receipt listing both attempts."""

from __future__ import annotations

import grpc
from processes import run_harag as harag

import harag as client_lib
from harag.v1 import fault_injection_pb2, gateway_pb2

INTERNAL = grpc.StatusCode.INTERNAL.value[0]
BREAK_AFTER_2 = fault_injection_pb2.Fault(fail_stream_after=2, error_code=INTERNAL)


async def test_a_stream_broken_midway_is_withdrawn_then_the_fallback_answers(
    clean_faults, known_questions
):
    mesh = clean_faults
    await mesh.set_fault("generator-primary", BREAK_AFTER_2)
    async with client_lib.AsyncClient(mesh.gateway_address, timeout=10) as client:
        events = [e async for e in client.stream_query(known_questions[4]["question"])]
    assert isinstance(events[0], client_lib.SourcesEvent)
    withdrawn = [i for i, e in enumerate(events) if isinstance(e, client_lib.Withdrawn)]
    assert withdrawn == [3]  # after the two deltas the primary sent
    partial = "".join(e.text for e in events[1:3] if isinstance(e, client_lib.AnswerChunk))
    event = events[3]
    assert isinstance(event, client_lib.Withdrawn)
    assert (event.upstream, event.tier) == ("generator-primary", 0)
    assert event.withdrawn_chars == len(partial) > 0
    assert event.reason.startswith("INTERNAL: injected fault")
    after = [e.text for e in events[4:-1] if isinstance(e, client_lib.AnswerChunk)]
    assert len(after) == len(events[4:-1]) >= 1
    final = events[-1]
    assert isinstance(final, client_lib.FinalEvent)
    assert final.answer == "".join(after) and final.degraded  # the fallback's answer alone
    generate = final.stages[-1]
    assert generate.served_by == "generator-fallback"
    assert [(a.upstream, a.outcome) for a in generate.attempts] == [
        ("generator-primary", "INTERNAL"),
        ("generator-fallback", "OK"),
    ]
    # The unary Query never streams: it shows no partial text, only a whole answer.
    reply = await mesh.gateway.Query(
        gateway_pb2.QueryRequest(query=known_questions[4]["question"]), timeout=10
    )
    assert reply.answer and reply.stages[-1].served_by == "generator-primary"


async def test_the_cli_marks_the_withdrawn_answer_and_restarts_it(clean_faults):
    mesh = clean_faults
    await mesh.set_fault("generator-primary", BREAK_AFTER_2)
    code, out, err = await harag("stream", "What is BM25?", "--addr", mesh.gateway_address)
    assert code == 0, err
    partial, marker, rest = out.partition("[answer withdrawn: generator-primary (tier 0)")
    assert partial.strip() and marker
    assert "restarting with the next tier]\n" in rest
    answer, _, receipt = rest.split("restarting with the next tier]\n", 1)[1].partition(
        "\nSources:\n"
    )
    assert answer.strip() and "generator-fallback" in receipt


async def test_three_generator_tiers_two_broken_midway_two_withdrawals(
    clean_faults, extra_gateway, known_questions
):
    mesh = clean_faults
    primary, fallback = mesh.address("generator-primary"), mesh.address("generator-fallback")
    chain = f"provider-a={primary},provider-b={primary},generator-fallback={fallback}"
    await mesh.set_fault("generator-primary", BREAK_AFTER_2)
    async with (
        extra_gateway(HARAG_GENERATOR_CHAIN=chain, HARAG_HEDGE_ENABLED="false") as gateway,
        client_lib.AsyncClient(gateway.address, timeout=10) as client,
    ):
        events = [e async for e in client.stream_query(known_questions[4]["question"])]
    kinds = [type(e).__name__ for e in events]
    assert kinds[:7] == [
        "SourcesEvent",
        "AnswerChunk",
        "AnswerChunk",
        "Withdrawn",
        "AnswerChunk",
        "AnswerChunk",
        "Withdrawn",
    ]
    assert [e.upstream for e in events if isinstance(e, client_lib.Withdrawn)] == [
        "provider-a",
        "provider-b",
    ]
    final = events[-1]
    assert isinstance(final, client_lib.FinalEvent)
    after = [e.text for e in events[7:-1] if isinstance(e, client_lib.AnswerChunk)]
    assert final.answer == "".join(after) != ""
    generate = final.stages[-1]
    assert (generate.served_by, generate.tier) == ("generator-fallback", 2)
    assert [a.upstream for a in generate.attempts] == [
        "provider-a",
        "provider-b",
        "generator-fallback",
    ]
