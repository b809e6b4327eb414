"""Client side of RPC telemetry for grpc.aio: one CLIENT span per call, W3C context injected.

Why not opentelemetry-instrumentation-grpc's aio client interceptors (0.66b2): a unary call
whose awaiting task is cancelled (a hedge that lost, an `asyncio.wait_for` timeout) never
ends its span, so the span is never exported; a server-streaming call is handed back as a
bare async generator whose span ends only when that generator is garbage-collected, and
never gets a status code on success. The gateway cancels calls on purpose (hedging,
deadlines), so it needs spans that end on every path. This interceptor ends the span when
the call completes, whatever ended it, and returns the real call object.

The span is started in the context current when the stub is called; grpc.aio runs
interceptors in a task that copies that context. Health checks and reflection are not traced.

A caller whose own unit of work is one RPC (the gateway's attempt at an upstream) can have
that RPC's CLIENT span *be* its span rather than the parent of another one: it opens an
`RpcSpanSlot` with its attributes around the call (`with RpcSpanSlot(attributes)`). The
interceptor then starts the CLIENT span with those attributes added, leaves the span's
status to the caller, and the span ends once both the RPC and the caller are done. One span
instead of two per attempt is a sixth of a query's spans through the Python SDK.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from servicekit.rpc_server_telemetry import UNTRACED_PREFIXES, split_method

_pending: set[asyncio.Task[None]] = set()  # keeps span-ending tasks alive until they run

AttributeValue = str | bool | int | float


class RpcSpanSlot:
    """A caller's span that the next RPC made in its context fills as that RPC's CLIENT span.

    `with RpcSpanSlot(attributes) as slot:` around the call. `span` is None until an RPC
    claims the slot; a caller that made no RPC records its work its own way. A claimed span
    has two holders, the caller and the RPC, and ends when the later one lets go (the
    caller calls `release()` once it has recorded its outcome): a hedge that lost is
    cancelled in the caller first while its call may still be finishing, and a stream's
    final status arrives in a callback. All on the event loop's thread, so no lock.
    """

    __slots__ = ("_holders", "_token", "attributes", "span")

    def __init__(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes = attributes
        self.span: Span | None = None
        self._holders = 1  # the caller
        self._token: contextvars.Token[RpcSpanSlot | None] | None = None

    def __enter__(self) -> RpcSpanSlot:
        self._token = _slot.set(self)
        return self

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _slot.reset(self._token)
            self._token = None

    def claim(self, span: Span) -> None:
        self.span = span
        self._holders += 1

    def release(self) -> None:
        """One holder is done; the last one ends the span."""
        self._holders -= 1
        if self._holders == 0 and self.span is not None:
            self.span.end()


_slot: contextvars.ContextVar[RpcSpanSlot | None] = contextvars.ContextVar(
    "harag_rpc_span_slot", default=None
)


def _end(span: Span, code: grpc.StatusCode, details: str | None, slot: RpcSpanSlot | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if slot is not None:
        slot.release()  # the caller's outcome decides the status (a lost hedge is no error)
        return
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, details or code.name))
    span.end()


def _target_attributes(target: str) -> dict[str, Any]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return {"server.address": target}
    return {"server.address": host.strip("[]"), "server.port": int(port)}


class _ClientTelemetry:
    def __init__(self, target: str, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("harag.rpc.client", tracer_provider=tracer_provider)
        self._attributes = {"rpc.system": "grpc", **_target_attributes(target)}

    def _start(
        self, details: grpc.aio.ClientCallDetails
    ) -> tuple[Span, grpc.aio.ClientCallDetails, RpcSpanSlot | None] | None:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if method.startswith(UNTRACED_PREFIXES):
            return None
        service, name = split_method(method)
        attributes = {**self._attributes, "rpc.service": service, "rpc.method": name}
        slot = _slot.get()
        parent = None
        if slot is not None and slot.span is not None:
            # A second RPC in one slot: an ordinary CLIENT span, a child of the first.
            parent, slot = trace.set_span_in_context(slot.span), None
        elif slot is not None:
            attributes.update(slot.attributes)
        span = self._tracer.start_span(
            method.lstrip("/"), context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        if slot is not None:
            slot.claim(span)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        for key, value in carrier.items():
            metadata.add(key.lower(), value)
        return (
            span,
            grpc.aio.ClientCallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
            ),
            slot,
        )


class UnaryUnaryTelemetry(_ClientTelemetry, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        started = self._start(client_call_details)
        if started is None:
            return await continuation(client_call_details, request)
        span, details, slot = started
        call = None
        try:
            call = await continuation(details, request)
            code = await call.code()
            text = await call.details()
        except asyncio.CancelledError:
            if call is not None:
                call.cancel()
            _end(span, grpc.StatusCode.CANCELLED, "cancelled by the caller", slot)
            raise
        except grpc.aio.AioRpcError as exc:
            _end(span, exc.code(), exc.details(), slot)
            raise
        except BaseException as exc:
            span.record_exception(exc)
            _end(span, grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}", slot)
            raise
        _end(span, code, text, slot)
        return call


class UnaryStreamTelemetry(_ClientTelemetry, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        started = self._start(client_call_details)
        if started is None:
            return await continuation(client_call_details, request)
        span, details, slot = started
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
            _end(span, code, str(exc), slot)
            raise

        async def end_when_done() -> None:
            _end(span, await call.code(), await call.details(), slot)

        def done(_: Any) -> None:
            task = asyncio.get_running_loop().create_task(end_when_done())
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        call.add_done_callback(done)
        return call


def client_interceptors(
    target: str, tracer_provider: trace.TracerProvider | None = None
) -> Sequence[grpc.aio.ClientInterceptor]:
    """Interceptors to pass to `grpc.aio.insecure_channel(target, interceptors=...)`;
    spans go to the global tracer provider unless another is given."""
    return (
        UnaryUnaryTelemetry(target, tracer_provider),
        UnaryStreamTelemetry(target, tracer_provider),
    )


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
