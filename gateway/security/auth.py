"""The gateway's authentication interceptor: API key -> ClientIdentity -> scope check.

A caller sends its key as `authorization: Bearer <key>` or `x-api-key: <key>` (both are
fine when equal; different values are refused). Answers, each with an ErrorInfo:

- no key: UNAUTHENTICATED, reason API_KEY_MISSING;
- an unknown id, a wrong secret, a malformed or revoked key: UNAUTHENTICATED, reason
  API_KEY_INVALID, one and the same message (nothing tells an id that exists from one
  that does not);
- the right secret of an expired key: UNAUTHENTICATED, reason API_KEY_EXPIRED;
- two different keys in one call: UNAUTHENTICATED, reason API_KEY_CONFLICT;
- a key without the method's scope: PERMISSION_DENIED, reason SCOPE_DENIED, the scope
  needed in the ErrorInfo's metadata.

grpc.health.v1 never needs a key (probes), reflection only when configured so. The identity
is set inside the wrapped behaviour, so the handler's task, and the interceptors after this
one (the rate limiter), read it with `current_client()`; the client name and key id (never
the key, its secret or hash) go on the request's span and on every log line of the call.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.security.identity import (
    ClientIdentity,
    Scope,
    current_client,
    reset_current_client,
    set_current_client,
)
from gateway.security.keys import KeySet, Verdict
from harag.v1 import admin_pb2, gateway_pb2
from servicekit.errors import ERROR_DOMAIN
from servicekit.interceptors import (
    Context,
    HandlerWrapper,
    StreamStream,
    StreamUnary,
    UnaryStream,
    UnaryUnary,
)
from servicekit.rpc_server_telemetry import request_span

log = logging.getLogger("harag.gateway.auth")

AUTHORIZATION = "authorization"
API_KEY_HEADER = "x-api-key"
BEARER = "bearer "
ATTR_CLIENT = "harag.client"
ATTR_KEY_ID = "harag.client.key_id"

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["GatewayAdminService"].full_name
METHOD_SCOPES: dict[str, Scope] = {
    **{
        f"/{GATEWAY}/{name}": "query"
        for name in ("Query", "StreamQuery", "GetSystemHealth", "ListDocuments", "SubmitFeedback")
    },
    **{
        f"/{GATEWAY}/{name}": "ingest"
        for name in ("Ingest", "DeleteDocuments", "StartIngestJob", "GetIngestJob")
    },
}
"""What each public method needs; GatewayAdminService needs `admin`, and any method not
named here needs `admin` too (a new RPC is closed until someone decides its scope)."""

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
INVALID_MESSAGE = "API key is not valid"


def required_scope(method: str) -> Scope | None:
    """The scope a method needs; None: any valid key (reflection when it is not open)."""
    if method.startswith(REFLECTION_PREFIX):
        return None
    return METHOD_SCOPES.get(method, "admin")


class AuthFailure(Exception):
    """Why a call is refused: its status, ready to abort with."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


def _status(
    code: int, message: str, reason: str, metadata: dict[str, str] | None = None
) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[info])
    )
    return status


def unauthenticated(message: str, reason: str) -> AuthFailure:
    return AuthFailure(_status(code_pb2.UNAUTHENTICATED, message, reason))


def presented_key(metadata: Any) -> str:
    """The key a call carries ("" for none); raises AuthFailure for conflicting keys."""
    found: set[str] = set()
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == AUTHORIZATION:
            if not value.lower().startswith(BEARER):
                raise unauthenticated(
                    "the authorization header must be `Bearer <API key>`", "API_KEY_INVALID"
                )
            found.add(value[len(BEARER) :].strip())
        elif key == API_KEY_HEADER:
            found.add(value.strip())
    if len(found) > 1:
        raise unauthenticated(
            "the call carries different API keys (authorization and x-api-key, or repeated "
            "headers); send one",
            "API_KEY_CONFLICT",
        )
    return found.pop() if found else ""


def authenticate(keys: KeySet, metadata: Any, method: str, now: float) -> ClientIdentity:
    """The caller of a call with `metadata`, allowed `method`; raises AuthFailure."""
    presented = presented_key(metadata)
    if not presented:
        raise unauthenticated(
            "an API key is required: send `authorization: Bearer <key>` or `x-api-key: <key>`",
            "API_KEY_MISSING",
        )
    verdict, key = keys.verify(presented, now)
    if verdict is Verdict.EXPIRED and key is not None:
        raise unauthenticated(f"API key {key.key_id} has expired", "API_KEY_EXPIRED")
    if verdict is not Verdict.ACCEPTED or key is None:
        raise unauthenticated(INVALID_MESSAGE, "API_KEY_INVALID")
    scope = required_scope(method)
    if scope is not None and scope not in key.scopes:
        service, _, name = method.lstrip("/").rpartition("/")
        raise AuthFailure(
            _status(
                code_pb2.PERMISSION_DENIED,
                f"API key {key.key_id} lacks the {scope!r} scope that {name} needs",
                "SCOPE_DENIED",
                {"scope": scope, "method": f"{service}/{name}", "key_id": key.key_id},
            )
        )
    return key.identity()


class ClientLogFilter(logging.Filter):
    """Adds the caller's client name to every log line written during an authenticated call."""

    def filter(self, record: logging.LogRecord) -> bool:
        identity = current_client()
        if identity.key_id and not hasattr(record, "client"):
            record.client = identity.client
        return True


class AuthInterceptor(HandlerWrapper):
    """Authenticates every call but health checks (and reflection when it is open)."""

    def __init__(
        self,
        keys: Callable[[], KeySet],
        open_reflection: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._keys = keys
        self._open_reflection = open_reflection
        self._clock = clock

    def intercepts(self, method: str) -> bool:
        if method.startswith(HEALTH_PREFIX):
            return False
        return not (self._open_reflection and method.startswith(REFLECTION_PREFIX))

    async def _admit(self, method: str, context: Context) -> ClientIdentity:
        try:
            identity = authenticate(
                self._keys(), context.invocation_metadata(), method, self._clock()
            )
        except AuthFailure as failure:
            status = failure.status
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise AssertionError("unreachable: abort raises") from None
        span = request_span()
        if span.is_recording():
            span.set_attributes({ATTR_CLIENT: identity.client, ATTR_KEY_ID: identity.key_id})
        return identity

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary:
        async def unary(request: Any, context: Context) -> Any:
            token = set_current_client(await self._admit(method, context))
            try:
                return await behaviour(request, context)
            finally:
                reset_current_client(token)

        return unary

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream:
        return cast(UnaryStream, self._streaming(method, behaviour))

    def wrap_stream_unary(self, method: str, behaviour: StreamUnary) -> StreamUnary:
        return cast(StreamUnary, self._streaming(method, behaviour, unary_reply=True))

    def wrap_stream_stream(self, method: str, behaviour: StreamStream) -> StreamStream:
        return cast(StreamStream, self._streaming(method, behaviour))

    def _streaming(
        self, method: str, behaviour: Callable[[Any, Context], Any], unary_reply: bool = False
    ) -> Callable[[Any, Context], Any]:
        """A wrapper of the same shape as `behaviour`: an async generator for a generator,
        else a coroutine (a handler that writes with `context.write`, or a unary reply)."""
        if inspect.isasyncgenfunction(behaviour) and not unary_reply:

            async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
                # The RPC's task runs this generator throughout, so the identity set here
                # is seen by the handler's every step; the task ends with the call.
                set_current_client(await self._admit(method, context))
                async for item in behaviour(request, context):
                    yield item

            return generator

        async def coroutine(request: Any, context: Context) -> Any:
            token = set_current_client(await self._admit(method, context))
            try:
                return await cast(Awaitable[Any], behaviour(request, context))
            finally:
                reset_current_client(token)

        return coroutine
