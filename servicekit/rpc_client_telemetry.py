"""Client side of RPC telemetry for grpc.aio: one CLIENT span per call, W3C context injected.

Why not opentelemetry-instrumentation-grpc's aio client interceptors (0.66b2): a unary call
whose awaiting task is cancelled (a hedge that lost, an `asyncio.wait_for` timeout) never
ends its span, so the span is never exported; a server-streaming call is handed back as a
bare async generator whose span ends only when that generator is garbage-collected, and
never gets a status code on success. The gateway cancels calls on purpose (hedging,
deadlines), so it needs spans that end on every path. This interceptor ends the span when
the call completes, whatever ended it, and returns the real call object.

The span is started in the context current when the stub is called; grpc.aio runs
interceptors in a task that copies that context, so a call made inside the gateway's
attempt span is that span's child. Health checks and reflection are not traced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from servicekit.rpc_server_telemetry import UNTRACED_PREFIXES, split_method

_pending: set[asyncio.Task[None]] = set()  # keeps span-ending tasks alive until they run


def _end(span: Span, code: grpc.StatusCode, details: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, details or code.name))
    span.end()


def _target_attributes(target: str) -> dict[str, Any]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return {"server.address": target}
    return {"server.address": host.strip("[]"), "server.port": int(port)}


class _ClientTelemetry:
    def __init__(self, target: str) -> None:
        self._tracer = trace.get_tracer("harag.rpc.client")
        self._attributes = {"rpc.system": "grpc", **_target_attributes(target)}

    def _start(
        self, details: grpc.aio.ClientCallDetails
    ) -> tuple[Span, grpc.aio.ClientCallDetails] | None:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.startswith(UNTRACED_PREFIXES):
            return None
        service, name = split_method(method)
        span = self._tracer.start_span(
            f"{service}/{name}",
            kind=SpanKind.CLIENT,
            attributes={**self._attributes, "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        for key, value in carrier.items():
            metadata.add(key.lower(), value)
        return span, grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class UnaryUnaryTelemetry(_ClientTelemetry, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        started = self._start(client_call_details)
        if started is None:
            return await continuation(client_call_details, request)
        span, details = started
        call = None
        try:
            call = await continuation(details, request)
            code = await call.code()
            text = await call.details()
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()
            _end(span, grpc.StatusCode.CANCELLED, "cancelled by the caller")
            raise
        except grpc.aio.AioRpcError as exc:
            _end(span, exc.code(), exc.details())
            raise
        except BaseException as exc:
            span.record_exception(exc)
            _end(span, grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
            raise
        _end(span, code, text)
        return call


class UnaryStreamTelemetry(_ClientTelemetry, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        started = self._start(client_call_details)
        if started is None:
            return await continuation(client_call_details, request)
        span, details = started
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
            _end(span, code, str(exc))
            raise

        async def end_when_done() -> None:
            _end(span, await call.code(), await call.details())

        def done(_: Any) -> None:
            task = asyncio.get_running_loop().create_task(end_when_done())
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        call.add_done_callback(done)
        return call


def client_interceptors(target: str) -> Sequence[grpc.aio.ClientInterceptor]:
    """Interceptors to pass to `grpc.aio.insecure_channel(target, interceptors=...)`."""
    return (UnaryUnaryTelemetry(target), UnaryStreamTelemetry(target))


_instrumented = False
_plain_insecure_channel = grpc.aio.insecure_channel  # captured before any instrumenting


def plain_insecure_channel(target: str, options: Any = None) -> grpc.aio.Channel:
    """A channel without the telemetry interceptors, for a process's calls to itself."""
    return _plain_insecure_channel(target, options)


def instrument_aio_channels() -> None:
    """Makes every grpc.aio channel this process opens afterwards carry the interceptors.

    The same approach as opentelemetry-instrumentation-grpc's GrpcAioInstrumentorClient, so
    channel-creating code (the gateway's upstreams) needs no change.
    """
    global _instrumented
    if _instrumented:
        return
    _instrumented = True
    insecure, secure = grpc.aio.insecure_channel, grpc.aio.secure_channel

    def insecure_channel(
        target: str,
        options: Any = None,
        compression: Any = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        chain = [*client_interceptors(target), *(interceptors or ())]
        return insecure(target, options, compression, chain)

    def secure_channel(
        target: str,
        credentials: grpc.ChannelCredentials,
        options: Any = None,
        compression: Any = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        chain = [*client_interceptors(target), *(interceptors or ())]
        return secure(target, credentials, options, compression, chain)

    grpc.aio.insecure_channel = insecure_channel
    grpc.aio.secure_channel = secure_channel
