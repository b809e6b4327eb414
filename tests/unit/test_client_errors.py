"""A failed call raises a HaragError subclass carrying the server's decoded google.rpc.Status."""

from __future__ import annotations

import grpc
import pytest
from client_fakes import FakeAioChannel, FakeChannel, FakeRpcError, bad_request, shed

import harag
from harag.errors import error_from_rpc


def test_bad_request_becomes_invalid_argument_naming_the_field():
    error = error_from_rpc(bad_request("top_k", "must be within 1..50"))
    assert isinstance(error, harag.InvalidArgument)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.field_violations == (harag.FieldViolation("top_k", "must be within 1..50"),)
    assert error.reason == "INVALID_ARGUMENT"
    assert error.retry_delay_s is None
    assert "INVALID_ARGUMENT" in str(error) and "top_k" in str(error)


def test_shed_call_carries_retry_delay_and_error_info():
    error = error_from_rpc(shed(0.25, reason="ADMISSION_SHED"))
    assert isinstance(error, harag.ResourceExhausted)
    assert error.retry_delay_s == pytest.approx(0.25)
    assert error.error_info == harag.ErrorInfo("ADMISSION_SHED", "harag.v1", {})
    assert error.message == "gateway at capacity"
    assert error.status is not None and len(error.status.details) == 2


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.DEADLINE_EXCEEDED, harag.DeadlineExceeded),
        (grpc.StatusCode.UNAVAILABLE, harag.Unavailable),
        (grpc.StatusCode.UNAUTHENTICATED, harag.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, harag.PermissionDenied),
        (grpc.StatusCode.FAILED_PRECONDITION, harag.FailedPrecondition),
        (grpc.StatusCode.DATA_LOSS, harag.HaragError),
    ],
)
def test_each_code_maps_to_its_category_and_all_are_harag_errors(code, cls):
    error = error_from_rpc(FakeRpcError(code, "boom"))
    assert type(error) is cls and isinstance(error, harag.HaragError)
    assert error.code == code and error.status is None and error.field_violations == ()


def test_garbled_status_trailer_does_not_hide_the_error():
    garbled = FakeRpcError(
        grpc.StatusCode.UNAVAILABLE, "down", (("grpc-status-details-bin", b"\xff\x00garbage"),)
    )
    error = error_from_rpc(garbled)
    assert isinstance(error, harag.Unavailable) and error.message == "down"
    assert error.status is None


def test_sync_client_raises_the_decoded_error_from_the_rpc_error():
    rpc_error = bad_request("query", "must not be empty")
    channel = FakeChannel({"Query": [rpc_error]})
    with harag.Client(channel=channel) as client, pytest.raises(harag.InvalidArgument) as caught:
        client.query("")
    assert [v.field for v in caught.value.field_violations] == ["query"]
    assert caught.value.__cause__ is rpc_error
    assert caught.value.attempts == 1


async def test_async_client_raises_the_decoded_error():
    channel = FakeAioChannel({"Ingest": [shed(1.0)]})
    client = harag.AsyncClient(channel=channel)
    with pytest.raises(harag.ResourceExhausted) as caught:
        await client.ingest([{"text": "hello"}])
    assert caught.value.retry_delay_s == pytest.approx(1.0)
    await client.close()
    assert not channel.closed  # a channel passed in belongs to the caller


def test_stream_error_mid_stream_is_raised_as_harag_error_after_the_events():
    from harag.v1 import gateway_pb2

    channel = FakeChannel(
        {
            "StreamQuery": [
                [
                    gateway_pb2.StreamQueryResponse(sources=gateway_pb2.SourcesEvent()),
                    FakeRpcError(grpc.StatusCode.INTERNAL, "generator crashed"),
                ]
            ]
        }
    )
    client = harag.Client(channel=channel)
    events = client.stream_query("q")
    assert isinstance(next(events), harag.SourcesEvent)
    with pytest.raises(harag.Internal, match="generator crashed"):
        next(events)
    assert channel.cancelled == 1
