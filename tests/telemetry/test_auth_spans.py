"""The caller's client name is on the request's SERVER span; its key never is."""

from __future__ import annotations

import json

from gateway.security.keys import key_entry, new_token
from harag.v1 import gateway_pb2
from telemetry.support import server_spans, unique_question, wait_for_trace


async def test_the_server_span_names_the_client_and_never_carries_the_key(
    traced_mesh, viewer, tmp_path, gateway_over
):
    key_id, secret, token = new_token()
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"keys": [key_entry(key_id, secret, "traced-app", ["query"])]}))
    env = {"HARAG_AUTH_ENABLED": "true", "HARAG_AUTH_KEY_FILE": str(key_file)}
    async with gateway_over(traced_mesh, env) as gateway:
        reply = await gateway.stub.Query(
            gateway_pb2.QueryRequest(query=unique_question()),
            timeout=10,
            metadata=(("authorization", f"Bearer {token}"),),
        )
    spans = await wait_for_trace(
        viewer.store, reply.trace_id, lambda s: bool(server_spans(s, "gateway"))
    )
    [root] = server_spans(spans, "gateway")
    assert root.attributes["harag.client"] == "traced-app"
    assert root.attributes["harag.client.key_id"] == key_id
    for span in spans:
        for value in span.attributes.values():
            assert secret not in str(value), span.name
