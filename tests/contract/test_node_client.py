"""The Node client (clients/node, built from protos/ alone) against the real mesh.

If a Node user gets the same answers, stream order, deadlines, field errors and degradation
receipts as a Python user, the contract is the .proto files and nothing else.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from harag.v1 import (
    fault_injection_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
)

from .conftest import NodeClient

STAGES = ["STAGE_EMBED", "STAGE_RETRIEVE", "STAGE_GENERATE"]
UPSTREAMS = {
    f"{component}-{tier}"
    for component in ("embedder", "retriever", "generator")
    for tier in ("primary", "fallback")
}


def stage(reply: dict[str, Any], name: str) -> dict[str, Any]:
    (report,) = [s for s in reply["stages"] if s["stage"] == name]
    return report


async def test_query_answers_a_known_question_from_its_document(
    node_client: NodeClient, known_question: dict[str, str], mesh: Any
) -> None:
    run = await node_client.ok(
        "query", known_question["question"], "--deadline-ms", "5000", "--json"
    )
    reply = run.json()

    assert reply["answer"].strip()
    assert re.search(r"\[\d+\]", reply["answer"]), "the answer cites its sources"
    assert reply["sources"][0]["id"] == known_question["expected"]
    assert [s["citation"] for s in reply["sources"]] == list(range(1, len(reply["sources"]) + 1))
    assert [s["stage"] for s in reply["stages"]] == STAGES
    assert reply["requestId"]

    # One contract, two languages: the generated Python stubs see the same answer.
    async with grpc.aio.insecure_channel(mesh.gateway_address) as channel:
        stub = gateway_pb2_grpc.RagGatewayServiceStub(channel)
        python_reply = await stub.Query(
            gateway_pb2.QueryRequest(query=known_question["question"]), timeout=5
        )
    assert python_reply.answer == reply["answer"]
    assert [s.id for s in python_reply.sources] == [s["id"] for s in reply["sources"]]


async def test_human_output_shows_answer_sources_and_receipt(
    node_client: NodeClient, known_question: dict[str, str]
) -> None:
    run = await node_client.ok("query", known_question["question"])

    assert "Sources:" in run.stdout
    assert known_question["expected"] in run.stdout
    assert all(name in run.stdout for name in ("EMBED", "RETRIEVE", "GENERATE"))


async def test_stream_sends_sources_then_chunks_then_final(
    node_client: NodeClient, known_question: dict[str, str]
) -> None:
    run = await node_client.ok("stream", known_question["question"], "--json")
    events = run.json_lines()
    kinds = [event["event"] for event in events]

    assert kinds[0] == "sources", kinds
    assert kinds[-1] == "final", kinds
    assert len(kinds) >= 3 and set(kinds[1:-1]) == {"chunk"}, kinds
    assert events[0]["sources"]["sources"][0]["id"] == known_question["expected"]
    final = events[-1]["final"]
    assert "".join(event["chunk"] for event in events[1:-1]) == final["answer"]
    assert final["answer"].strip()
    assert [s["stage"] for s in final["stages"]] == STAGES


@pytest.mark.parametrize("command", ["query", "stream"])
async def test_an_expired_deadline_is_deadline_exceeded(
    node_client: NodeClient, known_question: dict[str, str], command: str
) -> None:
    run = await node_client.failing(
        command, known_question["question"], "--deadline-ms", "1", "--json"
    )

    assert run.error()["codeName"] == "DEADLINE_EXCEEDED", run.explain()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["query", ""], "query"),
        (["stream", ""], "query"),
        (["query", "What is BM25?", "--top-k", "0"], "top_k"),
        (["query", "What is BM25?", "--top-k", "51"], "top_k"),
    ],
)
async def test_bad_request_details_name_the_wrong_field(
    node_client: NodeClient, args: list[str], field: str
) -> None:
    error = (await node_client.failing(*args, "--json")).error()

    assert error["codeName"] == "INVALID_ARGUMENT"
    bad_requests = [d for d in error["details"] if d["@type"].endswith("/google.rpc.BadRequest")]
    assert [v["field"] for d in bad_requests for v in d["fieldViolations"]] == [field]

    # Without --json a person reads the same thing.
    human = await node_client.failing(*args)
    assert f"invalid field `{field}`" in human.stderr, human.explain()


async def test_ingest_stores_a_document_the_next_query_finds(
    node_client: NodeClient, mesh: Any, tmp_path: Path
) -> None:
    doc_id = f"node-contract-{uuid.uuid4().hex[:8]}"
    text = "The zorblax quokka regatta is sailed on tangerine rafts every vernal equinox."
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        json.dumps({"id": doc_id, "text": text, "metadata": {"source": "node"}}) + "\n"
    )
    try:
        report = (await node_client.ok("ingest", str(jsonl), "--json")).json()
        assert report["succeeded"] == 1 and report["failed"] == 0, report
        assert [(r["id"], r["status"]) for r in report["results"]] == [
            (doc_id, "INGEST_STATUS_ACCEPTED")
        ]

        reply = (
            await node_client.ok("query", "When is the zorblax quokka regatta?", "--json")
        ).json()
        assert reply["sources"][0]["id"] == doc_id
    finally:
        # Leave the shared corpus as the other tests expect it.
        for name in ("retriever-primary", "retriever-fallback"):
            async with grpc.aio.insecure_channel(mesh.address(name)) as channel:
                retriever = retriever_pb2_grpc.RetrieverServiceStub(channel)
                await retriever.Delete(retriever_pb2.DeleteRequest(ids=[doc_id]), timeout=10)


async def test_health_lists_every_upstream(node_client: NodeClient, mesh: Any) -> None:
    # The address comes from HARAG_GATEWAY here, as a deployed Node app would get it.
    run = await node_client.run("health", "--json", env={"HARAG_GATEWAY": mesh.gateway_address})
    assert run.returncode == 0, run.explain()
    health = run.json()

    assert health["status"] in {"SYSTEM_STATUS_HEALTHY", "SYSTEM_STATUS_DEGRADED"}
    assert UPSTREAMS <= {u["name"] for u in health["upstreams"]}
    assert all(u["health"].startswith("UPSTREAM_HEALTH_STATUS_") for u in health["upstreams"])


async def test_receipt_shows_the_fallback_when_the_primary_embedder_is_down(
    node_client: NodeClient, clean_faults: Any, known_question: dict[str, str]
) -> None:
    mesh = clean_faults
    # A question nobody asked yet, so the answer cannot come from the cache.
    question = f"{known_question['question']} ({uuid.uuid4().hex[:8]})"
    await mesh.set_fault("embedder-primary", fault_injection_pb2.Fault(down=True))
    try:
        reply = (await node_client.ok("query", question, "--json")).json()
    finally:
        await mesh.clear_faults()

    embed = stage(reply, "STAGE_EMBED")
    assert embed["servedBy"] == "embedder-fallback", embed
    assert embed["tier"] == 1 and embed["degraded"], embed
    assert reply["degraded"]
    assert all(
        a["outcome"] != "OK" for a in embed["attempts"] if a["upstream"] == "embedder-primary"
    ), embed
    assert reply["answer"].strip()
