"""The authentication decision: which header, which answer, which scope per method."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from gateway.security.auth import (
    METHOD_SCOPES,
    AuthFailure,
    authenticate,
    presented_key,
    required_scope,
)
from gateway.security.keys import key_entry, new_token, parse_document
from harag.v1 import admin_pb2, gateway_pb2

QUERY = "/harag.v1.RagGatewayService/Query"
INGEST = "/harag.v1.RagGatewayService/Ingest"


def reason_of(failure: AuthFailure) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The code, and the ErrorInfo's reason and metadata, as a client decodes them."""
    status = failure.status
    [(key, value)] = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    decoded = status_pb2.Status.FromString(value)
    info = error_details_pb2.ErrorInfo()
    decoded.details[0].Unpack(info)
    return status.code, info.reason, dict(info.metadata)


@pytest.fixture
def keyset():
    key_id, secret, token = new_token()
    keys = parse_document({"keys": [key_entry(key_id, secret, "acme", ["query"])]})
    return keys, token


def test_every_public_method_has_a_scope_and_admin_needs_admin():
    service = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"]
    for method in service.methods:
        assert f"/{service.full_name}/{method.name}" in METHOD_SCOPES, method.name
    admin = admin_pb2.DESCRIPTOR.services_by_name["GatewayAdminService"]
    for method in admin.methods:
        assert required_scope(f"/{admin.full_name}/{method.name}") == "admin"
    assert required_scope("/harag.v1.RagGatewayService/SomethingNew") == "admin"  # closed
    assert required_scope("/grpc.reflection.v1alpha.ServerReflection/Info") is None
    assert {m: s for m, s in METHOD_SCOPES.items() if s == "ingest"} == {
        INGEST: "ingest",
        "/harag.v1.RagGatewayService/DeleteDocuments": "ingest",
        "/harag.v1.RagGatewayService/StartIngestJob": "ingest",
        "/harag.v1.RagGatewayService/GetIngestJob": "ingest",
    }
    # Rating an answer is part of asking: a query key may do it, and nothing more is needed.
    assert {m: s for m, s in METHOD_SCOPES.items() if s == "query"} == {
        QUERY: "query",
        "/harag.v1.RagGatewayService/StreamQuery": "query",
        "/harag.v1.RagGatewayService/GetSystemHealth": "query",
        "/harag.v1.RagGatewayService/ListDocuments": "query",
        "/harag.v1.RagGatewayService/SubmitFeedback": "query",
    }


def test_the_key_is_read_from_either_header_and_two_different_keys_are_refused():
    assert presented_key([("authorization", "Bearer hrg_a_b")]) == "hrg_a_b"
    assert presented_key([("authorization", "bearer  hrg_a_b ")]) == "hrg_a_b"
    assert presented_key([("x-api-key", "hrg_a_b")]) == "hrg_a_b"
    assert presented_key([("x-api-key", "k"), ("authorization", "Bearer k")]) == "k"
    assert presented_key([("user-agent", "x")]) == ""
    with pytest.raises(AuthFailure) as conflict:
        presented_key([("x-api-key", "k1"), ("authorization", "Bearer k2")])
    assert reason_of(conflict.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_CONFLICT")
    with pytest.raises(AuthFailure) as basic:
        presented_key([("authorization", "Basic dXNlcjpwYXNz")])
    assert reason_of(basic.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")


def test_missing_invalid_and_scope_denied(keyset):
    keys, token = keyset
    identity = authenticate(keys, [("authorization", f"Bearer {token}")], QUERY, now=0)
    assert identity.client == "acme" and identity.key_id == token.split("_")[1]
    with pytest.raises(AuthFailure) as missing:
        authenticate(keys, [], QUERY, now=0)
    assert reason_of(missing.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")
    with pytest.raises(AuthFailure) as invalid:
        authenticate(keys, [("x-api-key", token + "x")], QUERY, now=0)
    assert reason_of(invalid.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
    with pytest.raises(AuthFailure) as denied:
        authenticate(keys, [("x-api-key", token)], INGEST, now=0)
    code, reason, metadata = reason_of(denied.value)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_DENIED")
    assert metadata["scope"] == "ingest" and metadata["method"].endswith("/Ingest")
    secret = token.rsplit("_", 1)[1]
    for failure in (missing.value, invalid.value, denied.value):
        assert secret not in failure.status.details
