"""Only the allowed peers may call: the client certificate's SAN, checked on every call.

TLS (servicekit.tls) proves that the client holds a certificate the mesh CA signed; this
says which of those certificates may call a component at all. The check reads the SANs
gRPC puts in the call's auth context after the handshake, so it costs a dict lookup and
a set intersection per call. A call from a certificate with no allowed identity ends
PERMISSION_DENIED with ErrorInfo reason PEER_NOT_ALLOWED, naming what the peer presented.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from typing import Any

from google.rpc import code_pb2

from servicekit.errors import abort, error_status
from servicekit.interceptors import (
    Context,
    HandlerWrapper,
    StreamStream,
    StreamUnary,
    UnaryStream,
    UnaryUnary,
)

SAN_PROPERTY = "x509_subject_alternative_name"
PEER_NOT_ALLOWED = "PEER_NOT_ALLOWED"


def peer_names(context: Context) -> frozenset[str]:
    """The SANs of the client certificate of this call (empty: no certificate, no TLS)."""
    auth = context.auth_context()
    return frozenset(v.decode(errors="replace") for v in auth.get(SAN_PROPERTY, ()))


class PeerIdentityInterceptor(HandlerWrapper):
    """Turns away every call whose client certificate names none of `allowed`."""

    def __init__(self, allowed: Iterable[str]) -> None:
        super().__init__()
        self.allowed = frozenset(allowed)

    async def check(self, context: Context) -> None:
        names = peer_names(context)
        if names & self.allowed:
            return
        presented = ", ".join(sorted(names)) or "no certificate identity"
        await abort(
            context,
            error_status(
                code_pb2.PERMISSION_DENIED,
                f"peer {presented} may not call this service "
                f"(allowed: {', '.join(sorted(self.allowed))})",
                PEER_NOT_ALLOWED,
            ),
        )

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary:
        async def unary(request: Any, context: Context) -> Any:
            await self.check(context)
            return await behaviour(request, context)

        return unary

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream:
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await self.check(context)
                async for item in behaviour(request, context):
                    yield item

            return stream

        # A coroutine that writes its replies with context.write (health Watch).
        async def writing(request: Any, context: Context) -> None:
            await self.check(context)
            await behaviour(request, context)  # type: ignore[misc]

        return writing

    def wrap_stream_unary(self, method: str, behaviour: StreamUnary) -> StreamUnary:
        async def unary(requests: AsyncIterator[Any], context: Context) -> Any:
            await self.check(context)
            return await behaviour(requests, context)

        return unary

    def wrap_stream_stream(self, method: str, behaviour: StreamStream) -> StreamStream:
        if inspect.isasyncgenfunction(behaviour):

            async def stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
                await self.check(context)
                async for item in behaviour(requests, context):
                    yield item

            return stream

        async def writing(requests: AsyncIterator[Any], context: Context) -> None:
            await self.check(context)
            await behaviour(requests, context)  # type: ignore[misc]

        return writing
