"""Fake grpcio channels for unit-testing harag.Client and harag.AsyncClient without sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2


class FakeRpcError(grpc.RpcError):
    """What grpcio raises for a failed call: code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple = ()) -> None:
        super().__init__(message)
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple:
        return self._trailers


def rich_error(code: grpc.StatusCode, message: str, *details: Any) -> FakeRpcError:
    """An error whose trailer carries a google.rpc.Status with `details`, as the gateway sends."""
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return FakeRpcError(code, message, (("grpc-status-details-bin", status.SerializeToString()),))


def shed(delay_s: float, reason: str = "GATEWAY_OVERLOADED") -> FakeRpcError:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(delay_s * 1e9))
    return rich_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "gateway at capacity",
        error_details_pb2.RetryInfo(retry_delay=delay),
        error_details_pb2.ErrorInfo(reason=reason, domain="harag.v1"),
    )


def bad_request(field_name: str, description: str) -> FakeRpcError:
    return rich_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field_name}: {description}",
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=field_name, description=description
                )
            ]
        ),
        error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="harag.v1"),
    )


@dataclass
class Sent:
    method: str
    request: Any
    timeout: float | None
    metadata: tuple


@dataclass
class FakeChannel:
    """Answers each call with the next scripted outcome of its method.

    An outcome is a response message, an exception to raise, or (for a stream) a list of
    messages optionally ending with an exception.
    """

    script: dict[str, list[Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False

    def _next(self, method: str, request: Any, timeout: float | None, metadata: Any) -> Any:
        self.sent.append(Sent(method.rsplit("/", 1)[-1], request, timeout, tuple(metadata or ())))
        return self.script[method.rsplit("/", 1)[-1]].pop(0)

    def unary_unary(self, method: str, request_serializer: Any, response_deserializer: Any):
        def call(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
            outcome = self._next(method, request, timeout, metadata)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return call

    def unary_stream(self, method: str, request_serializer: Any, response_deserializer: Any):
        channel = self

        class Stream:
            def __init__(self, outcome: list[Any]) -> None:
                self.outcome = outcome

            def __iter__(self) -> Iterator[Any]:
                for item in self.outcome:
                    if isinstance(item, BaseException):
                        raise item
                    yield item

            def cancel(self) -> bool:
                channel.cancelled += 1
                return True

        def call(request: Any, timeout: float | None = None, metadata: Any = None) -> Stream:
            return Stream(self._next(method, request, timeout, metadata))

        return call

    def stream_unary(self, method: str, request_serializer: Any, response_deserializer: Any):
        """A client stream: recorded as the list of the messages sent."""
        unary = self.unary_unary(method, request_serializer, response_deserializer)

        def call(requests: Any, timeout: float | None = None, metadata: Any = None) -> Any:
            return unary(list(requests), timeout=timeout, metadata=metadata)

        return call

    def close(self) -> None:
        self.closed = True


class FakeAioChannel(FakeChannel):
    """The asyncio flavour: unary calls are awaitable, streams are async iterators."""

    def unary_unary(self, method: str, request_serializer: Any, response_deserializer: Any):
        sync_call = super().unary_unary(method, request_serializer, response_deserializer)

        def call(request: Any, *, timeout: float | None = None, metadata: Any = None) -> Any:
            async def run() -> Any:
                return sync_call(request, timeout=timeout, metadata=metadata)

            return run()

        return call

    def unary_stream(self, method: str, request_serializer: Any, response_deserializer: Any):
        channel = self

        class Stream:
            def __init__(self, outcome: list[Any]) -> None:
                self.outcome = outcome

            async def __aiter__(self) -> AsyncIterator[Any]:
                for item in self.outcome:
                    if isinstance(item, BaseException):
                        raise item
                    yield item

            def cancel(self) -> bool:
                channel.cancelled += 1
                return True

        def call(request: Any, *, timeout: float | None = None, metadata: Any = None) -> Stream:
            return Stream(self._next(method, request, timeout, metadata))

        return call

    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


class FakeTime:
    """A clock that only moves when the client sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
