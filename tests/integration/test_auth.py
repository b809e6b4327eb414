"""API keys at a real gateway process: codes and reasons, scopes, the admin listener, and the
key file replaced or half-written under a running gateway."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from waiting import wait_until

from gateway.security.keys import key_entry, new_token
from harag.v1 import admin_pb2, admin_pb2_grpc, gateway_pb2
from harag_cli.meshctl import admin_address

QUESTION = gateway_pb2.QueryRequest(query="How does a circuit breaker decide to open?")


class Keys:
    """A key file the test edits under the gateway, and the tokens of its keys."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "keys.json"
        self.entries: list[dict[str, Any]] = []
        self.tokens: dict[str, str] = {}

    def add(self, name: str, scopes: list[str]) -> str:
        key_id, secret, token = new_token()
        self.entries.append(key_entry(key_id, secret, name, scopes))
        self.tokens[name] = token
        return token

    def remove(self, name: str) -> None:
        self.entries = [e for e in self.entries if e["client"] != name]

    def write(self) -> None:
        """Replaces the file atomically, as `harag keys` and a Secret update do."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"keys": self.entries}))
        os.replace(temporary, self.path)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {error}")


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    keys = Keys(tmp_path_factory.mktemp("keys"))
    keys.add("reader", ["query"])
    keys.add("writer", ["query", "ingest"])
    keys.add("operator", ["admin"])
    keys.write()
    return keys


@pytest.fixture(scope="module")
async def gateway(mesh: Any, keys: Keys, gateway_over: Any) -> AsyncIterator[Any]:
    async with gateway_over(
        mesh,
        {
            "HARAG_AUTH_ENABLED": "true",
            "HARAG_AUTH_KEY_FILE": str(keys.path),
            "HARAG_AUTH_KEY_RELOAD_S": "0.1",
        },
    ) as gw:
        gw.admin_channel = grpc.aio.insecure_channel(admin_address(gw.address))
        yield gw
        await gw.admin_channel.close()


async def test_a_query_without_a_key_is_unauthenticated(gateway):
    error = await refused(gateway.stub.Query(QUESTION, timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "API_KEY_MISSING"


async def test_a_wrong_secret_and_an_unknown_id_get_the_same_answer(gateway, keys):
    real = keys.tokens["reader"]
    wrong_secret = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    _, _, unknown = new_token()
    errors = [
        await refused(gateway.stub.Query(QUESTION, timeout=10, metadata=bearer(token)))
        for token in (wrong_secret, unknown, "not-a-key-at-all")
    ]
    assert {e.code() for e in errors} == {grpc.StatusCode.UNAUTHENTICATED}
    assert {error_info(e).reason for e in errors} == {"API_KEY_INVALID"}
    assert len({e.details() for e in errors}) == 1, [e.details() for e in errors]


async def test_a_key_answers_queries_and_names_its_client_in_the_log_never_its_secret(
    gateway, keys, mesh
):
    token = keys.tokens["reader"]
    reply = await gateway.stub.Query(QUESTION, timeout=10, metadata=bearer(token))
    assert reply.answer and reply.sources
    # x-api-key works as well, and both headers with the same key are fine.
    same = (("x-api-key", token), *bearer(token))
    assert (await gateway.stub.Query(QUESTION, timeout=10, metadata=same)).answer

    def answered_lines() -> list[dict[str, Any]]:
        return [
            line
            for line in mesh.logs.json_of("gateway-extra")
            if line.get("request_id") == reply.request_id and line.get("msg") == "answered"
        ]

    [line] = await wait_until(answered_lines, what="the answer's log line")
    assert line["client"] == "reader"
    secret = token.rsplit("_", 1)[1]
    assert not any(secret in text for text in mesh.logs.of("gateway-extra"))


async def test_a_key_without_the_ingest_scope_cannot_ingest(gateway, keys):
    document = gateway_pb2.IngestRequest(documents=[{"id": "auth-test", "text": "some text"}])
    error = await refused(
        gateway.stub.Ingest(document, timeout=10, metadata=bearer(keys.tokens["reader"]))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(error)
    assert info.reason == "SCOPE_DENIED"
    assert info.metadata["scope"] == "ingest"
    # A key with the scope passes authorisation (and the call reaches the handler).
    deleted = await gateway.stub.DeleteDocuments(
        gateway_pb2.DeleteDocumentsRequest(ids=["auth-test-none"]),
        timeout=30,
        metadata=bearer(keys.tokens["writer"]),
    )
    assert [r.id for r in deleted.results] == ["auth-test-none"]


async def test_two_different_keys_in_one_call_are_refused(gateway, keys):
    metadata = (("x-api-key", keys.tokens["writer"]), *bearer(keys.tokens["reader"]))
    error = await refused(gateway.stub.Query(QUESTION, timeout=10, metadata=metadata))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "API_KEY_CONFLICT"


async def test_health_and_reflection_need_no_key(gateway):
    health = health_pb2_grpc.HealthStub(gateway.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(gateway.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]), timeout=5)]
    names = {s.name for s in responses[0].list_services_response.service}
    assert "harag.v1.RagGatewayService" in names
    assert "harag.v1.GatewayAdminService" not in names


async def test_admin_is_only_on_the_admin_port_and_needs_the_admin_scope(gateway, keys):
    operator = bearer(keys.tokens["operator"])
    public = admin_pb2_grpc.GatewayAdminServiceStub(gateway.channel)
    error = await refused(
        public.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5, metadata=operator)
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED

    admin = admin_pb2_grpc.GatewayAdminServiceStub(gateway.admin_channel)
    reply = await admin.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5, metadata=operator)
    assert {b.upstream for b in reply.breakers} >= {"embedder-primary", "generator-fallback"}
    denied = await refused(
        admin.ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=5, metadata=bearer(keys.tokens["writer"])
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied).metadata["scope"] == "admin"
    missing = await refused(admin.ListBreakers(admin_pb2.ListBreakersRequest(), timeout=5))
    assert error_info(missing).reason == "API_KEY_MISSING"
    # The operator key is for admin only.
    error = await refused(gateway.stub.Query(QUESTION, timeout=10, metadata=operator))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_replacing_the_key_file_revokes_a_key_within_a_second(gateway, keys):
    token = keys.add("short-lived", ["query"])
    keys.write()

    async def works() -> bool:
        try:
            await gateway.stub.GetSystemHealth(
                gateway_pb2.GetSystemHealthRequest(), timeout=5, metadata=bearer(token)
            )
        except grpc.aio.AioRpcError as exc:
            assert error_info(exc).reason == "API_KEY_INVALID"
            return False
        return True

    await wait_until(works, what="a new key works without a restart", timeout_s=1)
    keys.remove("short-lived")
    keys.write()

    async def revoked() -> bool:
        return not await works()

    await wait_until(revoked, what="the removed key is refused", timeout_s=1)


async def test_a_half_written_key_file_keeps_the_old_keys(gateway, keys, mesh):
    token = keys.tokens["reader"]
    text = json.dumps({"keys": keys.entries})
    keys.path.write_text(text[: len(text) // 2])  # a writer caught halfway, in place

    await wait_until(
        lambda: any(
            line.get("msg") == "key file not reloaded; the previous keys stay in force"
            for line in mesh.logs.json_of("gateway-extra")
        ),
        what="the gateway logs the bad key file",
        timeout_s=5,
    )
    reply = await gateway.stub.GetSystemHealth(
        gateway_pb2.GetSystemHealthRequest(), timeout=5, metadata=bearer(token)
    )
    assert reply.upstreams
    keys.write()  # finished: the file is whole again
