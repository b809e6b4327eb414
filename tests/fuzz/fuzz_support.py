"""The one rule every fuzzed response is held to, and the loop that sends generated requests:
OK, or a canonical error whose details say what was wrong; never INTERNAL or UNKNOWN."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harag.errors import error_from_rpc

M = TypeVar("M")
# Generated calls per RPC: a few hundred for the cheap ones; writes (fsync'ed, indexed) and
# generation get fewer, so both modules stay around a minute on a 2-core machine.
EXAMPLES = 200
HEAVY_EXAMPLES = 75
FUZZ_SETTINGS = settings(
    deadline=None,  # a shared 2-core machine: latency is not what is tested here
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_response(error: grpc.RpcError | None, what: str) -> None:
    """OK, or a canonical error naming what was wrong (see the module doc)."""
    if error is None:
        return
    code = error.code()
    details = error.details()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (what, details)
    parsed = error_from_rpc(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert parsed.field_violations, (what, details)
        assert all(v.field for v in parsed.field_violations), (what, details)
    elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
        assert parsed.error_info is not None or details, (what, details)
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Only a message over the size limit (gRPC's own refusal, before any handler).
        assert "larger than max" in (details or ""), (what, details)
    else:
        raise AssertionError(f"{what}: unexpected {code.name}: {details}")


def call_unary(method: Callable[..., Any], request: Any, timeout_s: float = 30) -> Any:
    try:
        method(request, timeout=timeout_s)
    except grpc.RpcError as error:
        return error
    return None


def call_stream(method: Callable[..., Any], request: Any, timeout_s: float = 30) -> Any:
    try:
        for _ in method(request, timeout=timeout_s):
            pass
    except grpc.RpcError as error:
        return error
    return None


async def fuzz(
    strategy: st.SearchStrategy[M],
    send: Callable[[M], grpc.RpcError | None],
    what: str,
    examples: int = EXAMPLES,
) -> None:
    """Runs `send` on EXAMPLES generated requests (in a thread: the mesh's supervisor keeps
    reading the processes' logs on the event loop meanwhile) and checks every response."""

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(strategy)
    def property_holds(request: M) -> None:
        check_response(send(request), what)

    await asyncio.to_thread(property_holds)
