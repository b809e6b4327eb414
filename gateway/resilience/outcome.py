"""Maps an attempt's exception to a gRPC status code, the one outcome vocabulary of the layer.

Breakers and retry policies classify by `grpc.StatusCode` only, so callers that catch a
non-gRPC exception (a local timeout, a cancelled task, a bug) convert it here first.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def status_of(exc: BaseException | None) -> grpc.StatusCode:
    """Best-effort status code for an attempt's outcome.

    - `None` -> OK.
    - Anything exposing `code() -> grpc.StatusCode` (grpc.aio.AioRpcError, grpc.RpcError
      subclasses, servicekit errors) -> that code.
    - `asyncio.CancelledError` -> CANCELLED (ignored by breakers: a caller giving up says
      nothing about upstream health).
    - `TimeoutError` (incl. `asyncio.TimeoutError`) -> DEADLINE_EXCEEDED.
    - anything else -> UNKNOWN (recorded as a failure by the default breaker config).
    """
    if exc is None:
        return grpc.StatusCode.OK
    code_fn = getattr(exc, "code", None)
    if callable(code_fn):
        try:
            code = code_fn()
        except Exception:  # a foreign `code()` must never break classification
            code = None
        if isinstance(code, grpc.StatusCode):
            return code
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.UNKNOWN


# Failures the request itself caused: the upstream is healthy and would fail the same
# request again, so such a failure never counts against it, is never retried and is never
# replayed as a breaker probe.
REQUEST_FAULT_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})
# gRPC reports a message over a max_(send|receive)_message_length - on either side, for
# the request or the reply - as RESOURCE_EXHAUSTED "Sent message larger than max (N vs. M)"
# or "Received message larger than max ..."; only that text tells it apart from an
# overloaded upstream's RESOURCE_EXHAUSTED, which is the upstream's own state.
OVERSIZED_MESSAGE = "message larger than max"


def caused_by_request(exc: BaseException | None) -> bool:
    """True when `exc` says the request was at fault, not the upstream (see above)."""
    code = status_of(exc)
    if code in REQUEST_FAULT_CODES:
        return True
    if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    details_fn = getattr(exc, "details", None)
    details = details_fn() if callable(details_fn) else str(exc)
    return isinstance(details, str) and OVERSIZED_MESSAGE in details.lower()


def error_reason(exc: BaseException | None) -> str | None:
    """The ErrorInfo reason an upstream attached to its error (google.rpc.Status in the
    trailers), or None when there is none or it cannot be read. Lets a breaker tell a
    FAILED_PRECONDITION that says "this upstream cannot serve anyone" (a rejected API key)
    from one that says "your request does not fit" without parsing messages."""
    trailers = getattr(exc, "trailing_metadata", None)
    if exc is None or not callable(trailers):
        return None
    try:
        metadata = trailers() or ()
    except Exception:  # a foreign `trailing_metadata()` must never break classification
        return None
    for key, value in metadata:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except protobuf_message.DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info.reason or None
    return None
