"""ha-rag's Python client library: a typed client and the generated contract in `harag.v1`.

    import harag

    with harag.Client("127.0.0.1:50051", timeout=5) as client:
        reply = client.query("What is BM25?", top_k=3)

`harag.Client` (blocking) and `harag.AsyncClient` (asyncio) call the public API; failures
raise `harag.HaragError` subclasses carrying the server's decoded details; `harag.RetryPolicy`
opts in to retries the server invites. `harag.v1` is a leaf: generated code that imports
nothing of the project. The operator tooling (the `harag` CLI, the local supervisor, the demo
and the trace viewer) lives in `harag_cli`, apart from what a service image or a client
application installs.

Names are loaded on first use, so a service that imports only `harag.v1` does not pay for
the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harag.aio import AsyncClient
    from harag.client import Client
    from harag.errors import (
        Cancelled,
        DeadlineExceeded,
        ErrorInfo,
        FailedPrecondition,
        FieldViolation,
        HaragError,
        Internal,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
        Unimplemented,
    )
    from harag.retry import RetryDecision, RetryPolicy
    from harag.types import (
        AnswerChunk,
        Document,
        DocumentLike,
        FinalEvent,
        MetadataFilter,
        ModelUsage,
        SourcesEvent,
        StreamEvent,
        Withdrawn,
        model_usage,
    )

__all__ = [
    "AnswerChunk",
    "AsyncClient",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "Document",
    "DocumentLike",
    "ErrorInfo",
    "FailedPrecondition",
    "FieldViolation",
    "FinalEvent",
    "HaragError",
    "Internal",
    "InvalidArgument",
    "MetadataFilter",
    "ModelUsage",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryDecision",
    "RetryPolicy",
    "SourcesEvent",
    "StreamEvent",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Withdrawn",
    "model_usage",
]

# Where each public name lives; imported on first use.
_EXPORTS = {
    name: module
    for module, names in (
        ("harag.client", ("Client",)),
        ("harag.aio", ("AsyncClient",)),
        (
            "harag.errors",
            (
                "Cancelled",
                "DeadlineExceeded",
                "ErrorInfo",
                "FailedPrecondition",
                "FieldViolation",
                "HaragError",
                "Internal",
                "InvalidArgument",
                "NotFound",
                "PermissionDenied",
                "ResourceExhausted",
                "Unauthenticated",
                "Unavailable",
                "Unimplemented",
            ),
        ),
        (
            "harag.retry",
            (
                "RetryDecision",
                "RetryPolicy",
            ),
        ),
        (
            "harag.types",
            (
                "AnswerChunk",
                "Document",
                "DocumentLike",
                "FinalEvent",
                "MetadataFilter",
                "ModelUsage",
                "SourcesEvent",
                "StreamEvent",
                "Withdrawn",
                "model_usage",
            ),
        ),
    )
    for name in names
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
