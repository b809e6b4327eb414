"""Server side of RPC telemetry for grpc.aio: one SERVER span and one latency sample per RPC.

Why not opentelemetry-instrumentation-grpc's aio interceptor: on grpc.aio it leaves
`rpc.grpc.status_code` at 0 (OK) for cancelled and deadline-exceeded calls and for handlers
that raise, sets no `server.address`/`server.port`, and its client half loses spans of
cancelled calls (see servicekit.rpc_client_telemetry). This one reads the final status from
the servicer context, so aborts, cancellations and crashes all get the right code.

The incoming W3C `traceparent`/`tracestate` metadata is the parent. Health checks and
reflection are not traced or measured. The span is also stored in the context under
`REQUEST_SPAN_KEY`, so code deep inside the request (e.g. the gateway pipeline, in child
tasks) can annotate the request's server span directly.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from servicekit.interceptors import Context, HandlerWrapper, UnaryStream, UnaryUnary
from servicekit.metrics import rpc_server_duration

UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
REQUEST_SPAN_KEY = otel_context.create_key("harag.request_span")
# Server spans are errors only for codes that point at the server (OTel RPC conventions).
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

AsyncGeneratorBehaviour = Callable[[Any, Context], AsyncGenerator[Any, None]]

# (full method "/pkg.Service/Method", status code name, seconds) after every traced RPC.
RpcObserver = Callable[[str, str, float], None]


def traced(method: str) -> bool:
    return not method.startswith(UNTRACED_PREFIXES)


def request_span() -> Span:
    """The SERVER span of the RPC being handled, or an invalid span outside one."""
    span = otel_context.get_value(REQUEST_SPAN_KEY)
    return span if isinstance(span, Span) else trace.INVALID_SPAN


def split_method(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    set_code = context.code()
    if isinstance(set_code, grpc.StatusCode):
        return set_code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class ServerTelemetryInterceptor(HandlerWrapper):
    def __init__(self, host: str, port: int, observers: Sequence[RpcObserver] = ()) -> None:
        super().__init__()
        self._tracer = trace.get_tracer("harag.rpc.server")
        self._base_attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "server.address": host,
            "server.port": port,
        }
        self._observers = tuple(observers)

    # Client-streaming RPCs (none in harag.v1) and handlers of the sync API are left alone.
    def intercepts(self, method: str) -> bool:
        return traced(method)

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary | None:
        return self._unary(method, behaviour) if inspect.iscoroutinefunction(behaviour) else None

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream | None:
        if not inspect.isasyncgenfunction(behaviour):
            return None
        return self._stream(method, cast(AsyncGeneratorBehaviour, behaviour))

    def _start(self, method: str, context: Context) -> tuple[Span, otel_context.Context]:
        carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        parent = propagate.extract(carrier)
        service, name = split_method(method)
        span = self._tracer.start_span(
            f"{service}/{name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={**self._base_attributes, "rpc.service": service, "rpc.method": name},
        )
        ctx = trace.set_span_in_context(span, parent)
        return span, otel_context.set_value(REQUEST_SPAN_KEY, span, ctx)

    def _finish(
        self,
        method: str,
        span: Span,
        context: Context,
        error: BaseException | None,
        started: float,
    ) -> None:
        seconds = time.perf_counter() - started
        code = _final_code(context, error)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERROR_CODES:
            details = context.details() if hasattr(context, "details") else None
            span.set_status(Status(StatusCode.ERROR, str(details or code.name)))
        if error is not None and code == grpc.StatusCode.UNKNOWN:
            span.record_exception(error)
        span.end()
        service, name = split_method(method)
        rpc_server_duration.record(
            seconds,
            {"rpc.service": service, "rpc.method": name, "rpc.grpc.status_code": code.value[0]},
        )
        for observe in self._observers:
            observe(method, code.name, seconds)

    def _unary(self, method: str, behavior: UnaryUnary) -> UnaryUnary:
        async def unary(request: Any, context: Context) -> Any:
            started = time.perf_counter()
            span, ctx = self._start(method, context)
            token = otel_context.attach(ctx)
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                otel_context.detach(token)
                self._finish(method, span, context, error, started)

        return unary

    def _stream(self, method: str, behavior: AsyncGeneratorBehaviour) -> UnaryStream:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            started = time.perf_counter()
            span, ctx = self._start(method, context)
            inner = behavior(request, context)
            error: BaseException | None = None
            try:
                while True:
                    # Attach only while the handler runs, never across our own `yield`, so a
                    # generator closed later from another context cannot detach the wrong one.
                    token = otel_context.attach(ctx)
                    try:
                        item = await inner.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(token)
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                try:
                    await inner.aclose()
                finally:
                    self._finish(method, span, context, error, started)

        return stream
