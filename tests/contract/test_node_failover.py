"""The Node client sees a mid-stream failover as the contract says: the withdrawn event
(upstream, tier, reason, withdrawnChars) after the partial chunks, then the fallback's
answer from scratch, and the human output marks the withdrawal."""

from __future__ import annotations

from typing import Any

import grpc

from harag.v1 import fault_injection_pb2

from .conftest import NodeClient

BREAK_AFTER_2 = fault_injection_pb2.Fault(
    fail_stream_after=2, error_code=grpc.StatusCode.INTERNAL.value[0]
)


async def test_node_stream_sees_the_withdrawal_then_the_fallbacks_answer(
    node_client: NodeClient, clean_faults: Any, known_question: dict[str, str]
) -> None:
    await clean_faults.set_fault("generator-primary", BREAK_AFTER_2)
    run = await node_client.ok("stream", known_question["question"], "--json")
    events = run.json_lines()
    kinds = [event["event"] for event in events]
    assert kinds[:4] == ["sources", "chunk", "chunk", "withdrawn"], kinds
    assert kinds[-1] == "final" and set(kinds[4:-1]) == {"chunk"}, kinds
    withdrawn = events[3]["withdrawn"]
    assert withdrawn["upstream"] == "generator-primary" and withdrawn["tier"] == 0
    assert withdrawn["withdrawnChars"] == len(events[1]["chunk"] + events[2]["chunk"])
    assert withdrawn["reason"].startswith("INTERNAL: injected fault")
    final = events[-1]["final"]
    assert "".join(event["chunk"] for event in events[4:-1]) == final["answer"]
    generate = final["stages"][-1]
    assert generate["servedBy"] == "generator-fallback"
    assert [a["upstream"] for a in generate["attempts"]] == [
        "generator-primary",
        "generator-fallback",
    ]

    human = await node_client.ok("stream", known_question["question"])
    assert "[answer withdrawn: generator-primary (tier 0) failed mid-stream" in human.stdout
