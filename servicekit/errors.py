"""Rich gRPC errors (google.rpc.Status details) built with grpcio-status.

Callers' mistakes get INVALID_ARGUMENT with a BadRequest naming every bad field; shed load
gets RESOURCE_EXHAUSTED with RetryInfo. Each carries an ErrorInfo with a stable reason.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "harag.v1"


def _status(code: int, message: str, *details: object) -> grpc.Status:
    packed = []
    for detail in details:
        any_msg = any_pb2.Any()
        any_msg.Pack(detail)  # type: ignore[arg-type]
        packed.append(any_msg)
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=packed)
    )
    return status


def _error_info(reason: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)


# Google's error model carries the details in trailing metadata, which a client accepts up
# to 8 KiB by default (past it the call fails RESOURCE_EXHAUSTED "metadata size exceeds soft
# limit" instead of INVALID_ARGUMENT): a status reports at most this many violations, each
# field and description cut to these lengths, and its message repeats only the first few.
MAX_VIOLATIONS = 10
MAX_FIELD_CHARS = 120
MAX_DESCRIPTION_CHARS = 240
MESSAGE_VIOLATIONS = 3


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class FieldViolations:
    """Collects the bad fields of a request, so the caller learns all of them at once (the
    first MAX_VIOLATIONS of them; `omitted` counts the rest)."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []
        self.omitted = 0

    def add(self, field: str, description: str) -> None:
        if len(self.violations) >= MAX_VIOLATIONS:
            self.omitted += 1
            return
        self.violations.append(
            (_clip(field, MAX_FIELD_CHARS), _clip(description, MAX_DESCRIPTION_CHARS))
        )

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self.add(field, description)

    def __bool__(self) -> bool:
        return bool(self.violations)

    def status(self) -> grpc.Status:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in self.violations
            ]
        )
        message = "; ".join(f"{f}: {d}" for f, d in self.violations[:MESSAGE_VIOLATIONS])
        more = len(self.violations) - MESSAGE_VIOLATIONS + self.omitted
        if more > 0:
            message += f" (and {more} more)"
        return _status(code_pb2.INVALID_ARGUMENT, message, bad, _error_info("INVALID_ARGUMENT"))

    async def abort_if_any(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.violations:
            await abort(context, self.status())


def resource_exhausted(message: str, retry_after_s: float, reason: str) -> grpc.Status:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after_s * 1e9))
    return _status(
        code_pb2.RESOURCE_EXHAUSTED,
        message,
        error_details_pb2.RetryInfo(retry_delay=delay),
        _error_info(reason),
    )


def error_status(code: int, message: str, reason: str) -> grpc.Status:
    """A status of `code` (a google.rpc.Code) carrying ErrorInfo with `reason`."""
    return _status(code, message, _error_info(reason))


def failed_precondition(message: str, reason: str) -> grpc.Status:
    return _status(code_pb2.FAILED_PRECONDITION, message, _error_info(reason))


def unavailable(message: str, reason: str) -> grpc.Status:
    return _status(code_pb2.UNAVAILABLE, message, _error_info(reason))


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> NoReturn:
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


def quota_exceeded(
    message: str, retry_after_s: float | None, subject: str, description: str, reason: str
) -> grpc.Status:
    """RESOURCE_EXHAUSTED for a caller over its quota: a QuotaFailure naming the subject
    (e.g. "client:acme") and the limit, RetryInfo when waiting helps (None: it never will,
    e.g. one call larger than the whole allowance)."""
    quota = error_details_pb2.QuotaFailure(
        violations=[
            error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)
        ]
    )
    details: list[object] = [quota, _error_info(reason)]
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        details.insert(0, error_details_pb2.RetryInfo(retry_delay=delay))
    return _status(code_pb2.RESOURCE_EXHAUSTED, message, *details)
