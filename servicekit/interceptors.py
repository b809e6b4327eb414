"""The one way a ha-rag server interceptor wraps a grpc.aio handler's behaviour.

Fault injection, RPC telemetry and the end-of-Watch-streams-on-shutdown hook all do the same
thing: take the handler gRPC found for a call, wrap its behaviour in an async function of
their own, and hand back a handler of the same kind with the same (de)serializers. A
subclass of `HandlerWrapper` says only which methods it wraps and how it wraps each kind
of behaviour; this module does the rest.

Per call it does less than wrapping by hand: a method's handler is the same object on
every call (gRPC looks it up in a dict of the registered services), so its wrapped
handler is built on the first call and reused, and a call costs one dict lookup instead of
new closures and a new handler object. When the handler from further down the chain is a
different object than last time, the wrapper is built afresh.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
# The four behaviours of a grpc.aio handler. A response-streaming behaviour is an async
# generator, or a coroutine that writes its responses with `context.write`.
UnaryUnary = Callable[[Any, Context], Awaitable[Any]]
UnaryStream = Callable[[Any, Context], AsyncIterator[Any] | Awaitable[None]]
StreamUnary = Callable[[AsyncIterator[Any], Context], Awaitable[Any]]
StreamStream = Callable[[AsyncIterator[Any], Context], AsyncIterator[Any] | Awaitable[None]]
# Quoted: grpc.RpcMethodHandler is generic only in the type stubs.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class HandlerWrapper(grpc.aio.ServerInterceptor):
    """Base of the interceptors that wrap handler behaviour.

    Override `intercepts` to choose methods (by full name, "/pkg.Service/Method") and the
    `wrap_*` hook of each kind of RPC to wrap; a hook that returns None (the default)
    leaves that handler as it is.
    """

    def __init__(self) -> None:
        # full method name -> (the handler from down the chain, what we made of it)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def intercepts(self, method: str) -> bool:
        return True

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary | None:
        return None

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream | None:
        return None

    def wrap_stream_unary(self, method: str, behaviour: StreamUnary) -> StreamUnary | None:
        return None

    def wrap_stream_stream(self, method: str, behaviour: StreamStream) -> StreamStream | None:
        return None

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.intercepts(method):
            return handler
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        # The grpc stubs type behaviours as the sync API's; on a grpc.aio server they are
        # the async callables named above, hence the casts.
        serializers: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary_unary = self.wrap_unary_unary(method, cast(UnaryUnary, handler.unary_unary))
            if unary_unary is not None:
                return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
        elif handler.unary_stream is not None:
            unary_stream = self.wrap_unary_stream(method, cast(UnaryStream, handler.unary_stream))
            if unary_stream is not None:
                return grpc.unary_stream_rpc_method_handler(unary_stream, **serializers)
        elif handler.stream_unary is not None:
            stream_unary = self.wrap_stream_unary(method, cast(StreamUnary, handler.stream_unary))
            if stream_unary is not None:
                return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
        elif handler.stream_stream is not None:
            stream_stream = self.wrap_stream_stream(
                method, cast(StreamStream, handler.stream_stream)
            )
            if stream_stream is not None:
                return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
        return handler
