"""Log lines written inside a request carry that request's trace id, span id and request id."""

from __future__ import annotations

import re

from harag.v1 import gateway_pb2
from telemetry.support import breaker_forced_open, unique_question

HEX16 = re.compile(r"^[0-9a-f]{16}$")


async def test_request_log_lines_carry_the_trace_id(traced_mesh) -> None:
    async def ask() -> gateway_pb2.QueryResponse:
        request = gateway_pb2.QueryRequest(query=unique_question())
        return await traced_mesh.gateway.Query(request, timeout=10)

    async with breaker_forced_open(traced_mesh, "embedder-primary"):
        replies = [await ask(), await ask()]
    replies.append(await ask())
    assert [r.degraded for r in replies] == [True, True, False]
    assert len({r.trace_id for r in replies}) == 3

    lines = traced_mesh.logs.json_of("gateway")
    for reply in replies:
        mine = [line for line in lines if line.get("request_id") == reply.request_id]
        assert mine, f"no gateway log line for request {reply.request_id}"
        assert {line.get("trace_id") for line in mine} == {reply.trace_id}
        assert all(HEX16.match(line.get("span_id", "")) for line in mine)
        expected = "degraded answer" if reply.degraded else "answered"
        assert expected in {line["msg"] for line in mine}
