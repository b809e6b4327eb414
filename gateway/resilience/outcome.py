"""Maps an attempt's exception to a gRPC status code, the one outcome vocabulary of the layer.

Breakers and retry policies classify by `grpc.StatusCode` only, so callers that catch a
non-gRPC exception (a local timeout, a cancelled task, a bug) convert it here first.
"""

from __future__ import annotations

import asyncio

import grpc


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
