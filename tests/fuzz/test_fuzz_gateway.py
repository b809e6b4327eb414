"""Every public RPC of the gateway with generated messages, plus the issue's edge cases,
against a real mesh (tests/fuzz/conftest.py holds the rule every response must follow)."""

from __future__ import annotations

import grpc

from fuzz.fuzz_support import HEAVY_EXAMPLES, call_stream, call_unary, check_response, fuzz
from fuzz.strategies import (
    delete_documents_request,
    ingest_request,
    list_documents_request,
    query_request,
    stream_query_request,
    transition_breaker_request,
)
from harag.errors import error_from_rpc
from harag.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)


def gateway(fuzz_mesh) -> gateway_pb2_grpc.RagGatewayServiceStub:
    return gateway_pb2_grpc.RagGatewayServiceStub(fuzz_mesh.channel("gateway"))


def admin(fuzz_mesh) -> admin_pb2_grpc.GatewayAdminServiceStub:
    return admin_pb2_grpc.GatewayAdminServiceStub(fuzz_mesh.admin_channel())


async def test_query(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    await fuzz(query_request(), lambda r: call_unary(stub.Query, r), "Query")


async def test_stream_query(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    await fuzz(stream_query_request(), lambda r: call_stream(stub.StreamQuery, r), "StreamQuery")


async def test_ingest(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    await fuzz(ingest_request, lambda r: call_unary(stub.Ingest, r, 60), "Ingest", HEAVY_EXAMPLES)


async def test_delete_documents(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    await fuzz(
        delete_documents_request, lambda r: call_unary(stub.DeleteDocuments, r), "DeleteDocuments"
    )


async def test_list_documents(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    await fuzz(list_documents_request, lambda r: call_unary(stub.ListDocuments, r), "ListDocuments")


async def test_admin(fuzz_mesh) -> None:
    stub = admin(fuzz_mesh)
    await fuzz(
        transition_breaker_request,
        lambda r: call_unary(stub.TransitionBreaker, r),
        "TransitionBreaker",
    )
    check_response(call_unary(stub.ListBreakers, admin_pb2.ListBreakersRequest()), "ListBreakers")
    health = gateway(fuzz_mesh).GetSystemHealth(gateway_pb2.GetSystemHealthRequest(), timeout=10)
    assert health.status == gateway_pb2.SYSTEM_STATUS_HEALTHY


# -- edge cases ---------------------------------------------------------------------------------


def expect(error: grpc.RpcError | None, code: grpc.StatusCode, *fields: str) -> None:
    check_response(error, "edge case")
    assert error is not None and error.code() == code, error
    if fields:
        assert [v.field for v in error_from_rpc(error).field_violations][: len(fields)] == list(
            fields
        )


async def test_a_message_past_the_size_limit_is_refused_before_any_handler(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    huge = gateway_pb2.QueryRequest(query="q" * (33 * 1024 * 1024))
    expect(call_unary(stub.Query, huge), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # A query under the message limit but over max_query_chars names the field.
    long = gateway_pb2.QueryRequest(query="q" * (5 * 1024 * 1024))
    expect(call_unary(stub.Query, long), grpc.StatusCode.INVALID_ARGUMENT, "query")


async def test_control_characters_and_odd_filter_keys(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    answer = stub.Query(
        gateway_pb2.QueryRequest(query="circuit\x00 breaker\u202e\x1b[31m open?"), timeout=30
    )
    assert answer.sources
    for key in ("tags!", "year>", "a b", "~x", "*"):
        request = gateway_pb2.QueryRequest(
            query="breakers", filters=[common_pb2.MetadataFilter(key=key, values=["v"])]
        )
        expect(call_unary(stub.Query, request), grpc.StatusCode.INVALID_ARGUMENT, "filters[0].key")
    hundred = [common_pb2.MetadataFilter(key="", values=[""]) for _ in range(100)]
    expect(
        call_unary(stub.Query, gateway_pb2.QueryRequest(query="x", filters=hundred)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "filters",
    )


async def test_duplicate_ids_in_one_ingest_fail_alone(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    documents = [
        common_pb2.Document(id="fuzz-dup", text="first version of the duplicate"),
        common_pb2.Document(id="fuzz-dup", text="second version of the duplicate"),
    ]
    reply = stub.Ingest(gateway_pb2.IngestRequest(documents=documents), timeout=60)
    statuses = [r.status for r in reply.results]
    assert statuses[0] == gateway_pb2.INGEST_STATUS_ACCEPTED
    assert statuses[1] == gateway_pb2.INGEST_STATUS_FAILED
    assert "duplicate id" in reply.results[1].reason


async def test_ten_thousand_documents_in_one_call(fuzz_mesh) -> None:
    stub = gateway(fuzz_mesh)
    documents = [common_pb2.Document(id=f"bulk-{i}", text=f"text {i}") for i in range(10_000)]
    expect(
        call_unary(stub.Ingest, gateway_pb2.IngestRequest(documents=documents)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "documents",
    )
