"""Exceptions the client raises for a failed call, with the server's decoded error details.

The gateway answers a failed call with a gRPC status code, a message and, in the
`grpc-status-details-bin` trailer, a `google.rpc.Status` whose details explain it: a
`BadRequest` naming every bad field, a `RetryInfo` saying when to try again, an `ErrorInfo`
with a stable machine-readable reason. `HaragError` carries all of them, decoded; its
subclasses let a caller catch a category (`except harag.Unavailable:`) without comparing
status codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (from `google.rpc.BadRequest`), e.g. `top_k`."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorInfo:
    """Why a call failed, as a stable reason (e.g. `GATEWAY_OVERLOADED`) within a domain."""

    reason: str
    domain: str
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class HaragError(Exception):
    """A call to the gateway failed. Subclasses name the category; `code` is exact.

    Attributes:
        code: the gRPC status code.
        message: the server's (or grpcio's) error message.
        field_violations: every bad request field the server named (INVALID_ARGUMENT).
        retry_delay_s: how long the server asks the caller to wait before retrying, or None
            when it sent no `RetryInfo` (then it did not invite a retry).
        error_info: the server's stable reason, or None.
        status: the whole decoded `google.rpc.Status`, or None when the trailer was absent
            (e.g. a deadline that expired on the client, or a gateway that cannot be reached).
        attempts: how many calls were made before giving up (more than 1 with a retry policy).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay_s: float | None = None,
        error_info: ErrorInfo | None = None,
        status: Any = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay_s = retry_delay_s
        self.error_info = error_info
        self.status: status_pb2.Status | None = status
        self.attempts = attempts

    @property
    def reason(self) -> str | None:
        """The `ErrorInfo` reason, e.g. "GATEWAY_OVERLOADED", or None."""
        return self.error_info.reason if self.error_info else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"


class InvalidArgument(HaragError):
    """The request is wrong (see `field_violations`); retrying it unchanged cannot help."""


class DeadlineExceeded(HaragError):
    """The call's deadline passed before an answer arrived."""


class Unavailable(HaragError):
    """The gateway cannot be reached or cannot serve now."""


class ResourceExhausted(HaragError):
    """The gateway shed the call under load; `retry_delay_s` says when to try again."""


class Unauthenticated(HaragError):
    """The call carried no valid credentials."""


class PermissionDenied(HaragError):
    """The credentials are valid but do not allow this call."""


class FailedPrecondition(HaragError):
    """The system is not in a state that allows this call."""


class NotFound(HaragError):
    """Something the call names does not exist."""


class Cancelled(HaragError):
    """The call was cancelled, usually by the caller."""


class Internal(HaragError):
    """The server failed in a way it did not expect."""


class Unimplemented(HaragError):
    """The server does not implement this method (an older or different gateway)."""


ERROR_CLASSES: Mapping[grpc.StatusCode, type[HaragError]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.CANCELLED: Cancelled,
        grpc.StatusCode.INTERNAL: Internal,
        grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    }
)


def _duration_s(duration: Any) -> float:
    return float(duration.seconds) + float(duration.nanos) / 1e9


def _status_from_trailers(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> Any:
    """The `google.rpc.Status` in the trailer, or None when absent or unreadable.

    A garbled trailer must not hide the error it came with, so it is dropped, not raised.
    """
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except protobuf_message.DecodeError:
                return None
            return status
    return None


def error_from_status(
    code: grpc.StatusCode, message: str, status: Any, attempts: int = 1
) -> HaragError:
    """Builds the exception for a status code, message and decoded `google.rpc.Status`.

    Details of kinds the client does not know stay available in `status.details`.
    """
    violations: list[FieldViolation] = []
    retry_delay_s: float | None = None
    info: ErrorInfo | None = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay_s = max(0.0, _duration_s(retry.retry_delay))
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            raw = error_details_pb2.ErrorInfo()
            detail.Unpack(raw)
            info = ErrorInfo(raw.reason, raw.domain, MappingProxyType(dict(raw.metadata)))
    cls = ERROR_CLASSES.get(code, HaragError)
    return cls(
        code,
        message,
        field_violations=violations,
        retry_delay_s=retry_delay_s,
        error_info=info,
        status=status,
        attempts=attempts,
    )


def error_from_rpc(error: grpc.RpcError, attempts: int = 1) -> HaragError:
    """Turns a grpcio error (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) into a HaragError."""
    code_of = getattr(error, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(error, "details", None)
    message = details_of() if callable(details_of) else str(error)
    trailers_of = getattr(error, "trailing_metadata", None)
    trailers = trailers_of() if callable(trailers_of) else None
    return error_from_status(
        code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
        message or "",
        _status_from_trailers(trailers),
        attempts,
    )
