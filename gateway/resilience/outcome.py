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
