"""servicekit.interceptors.HandlerWrapper: wraps each kind of handler, keeps everything else;
and the interceptors built on it (fault injection, ending health watches on shutdown)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from harag.v1 import fault_injection_pb2 as fault_pb2
from servicekit.faults import FaultInterceptor, FaultState
from servicekit.interceptors import (
    Context,
    HandlerWrapper,
    StreamStream,
    StreamUnary,
    UnaryStream,
    UnaryUnary,
)
from servicekit.server import _EndWatchesOnShutdown


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def serialize(message: Any) -> bytes:
    return str(message).encode()


def deserialize(data: bytes) -> Any:
    return data.decode()


async def echo(request: Any, context: Context) -> Any:
    return f"echo {request}"


async def numbers(request: Any, context: Context) -> AsyncIterator[Any]:
    for n in range(2):
        yield f"{request} {n}"


async def total(requests: AsyncIterator[Any], context: Context) -> Any:
    return ",".join([r async for r in requests])


async def copy(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for request in requests:
        yield request


async def requests_of(*items: str) -> AsyncIterator[Any]:
    for item in items:
        yield item


class Tagging(HandlerWrapper):
    """Prefixes every answer with "tagged", on every method but /skip/..."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[str] = []

    def intercepts(self, method: str) -> bool:
        return not method.startswith("/skip/")

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary:
        self.built.append(method)

        async def tagged(request: Any, context: Context) -> Any:
            return f"tagged {await behaviour(request, context)}"

        return tagged

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream:
        async def tagged(request: Any, context: Context) -> AsyncIterator[Any]:
            async for item in behaviour(request, context):
                yield f"tagged {item}"

        return tagged

    def wrap_stream_unary(self, method: str, behaviour: StreamUnary) -> StreamUnary:
        async def tagged(requests: AsyncIterator[Any], context: Context) -> Any:
            return f"tagged {await behaviour(requests, context)}"

        return tagged

    def wrap_stream_stream(self, method: str, behaviour: StreamStream) -> StreamStream:
        async def tagged(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async for item in behaviour(requests, context):
                yield f"tagged {item}"

        return tagged


def continuation_returning(handler: Any) -> Any:
    async def continuation(details: Any) -> Any:
        return handler

    return continuation


UNARY = grpc.unary_unary_rpc_method_handler(echo, deserialize, serialize)


async def intercept(wrapper: HandlerWrapper, handler: Any, method: str = "/pkg.S/M") -> Any:
    return await wrapper.intercept_service(continuation_returning(handler), Details(method))


async def test_unary_unary_behaviour_is_wrapped_and_the_serializers_kept():
    wrapped = await intercept(Tagging(), UNARY)
    assert await wrapped.unary_unary("hi", None) == "tagged echo hi"
    assert not wrapped.request_streaming and not wrapped.response_streaming
    assert wrapped.request_deserializer is deserialize
    assert wrapped.response_serializer is serialize


async def test_every_streaming_kind_is_wrapped_as_the_same_kind():
    unary_stream = await intercept(
        Tagging(), grpc.unary_stream_rpc_method_handler(numbers, deserialize, serialize)
    )
    assert unary_stream.response_streaming and not unary_stream.request_streaming
    assert [i async for i in unary_stream.unary_stream("n", None)] == ["tagged n 0", "tagged n 1"]

    stream_unary = await intercept(
        Tagging(), grpc.stream_unary_rpc_method_handler(total, deserialize, serialize)
    )
    assert stream_unary.request_streaming and not stream_unary.response_streaming
    assert await stream_unary.stream_unary(requests_of("a", "b"), None) == "tagged a,b"

    stream_stream = await intercept(
        Tagging(), grpc.stream_stream_rpc_method_handler(copy, deserialize, serialize)
    )
    assert stream_stream.request_streaming and stream_stream.response_streaming
    got = [i async for i in stream_stream.stream_stream(requests_of("x"), None)]
    assert got == ["tagged x"]


async def test_methods_it_does_not_intercept_and_unknown_methods_pass_untouched():
    assert await intercept(Tagging(), UNARY, "/skip/M") is UNARY
    assert await intercept(Tagging(), None) is None


async def test_a_hook_that_declines_leaves_the_handler_as_it_is():
    class OnlyStreams(HandlerWrapper):
        pass  # no hook overridden: every hook declines

    assert await intercept(OnlyStreams(), UNARY) is UNARY


async def test_a_method_is_wrapped_once_while_the_handler_below_stays_the_same():
    wrapper = Tagging()
    first = await intercept(wrapper, UNARY)
    again = await intercept(wrapper, UNARY)
    assert again is first and wrapper.built == ["/pkg.S/M"]

    replaced = grpc.unary_unary_rpc_method_handler(echo, deserialize, serialize)
    fresh = await intercept(wrapper, replaced)
    assert fresh is not first and wrapper.built == ["/pkg.S/M", "/pkg.S/M"]
    other = await intercept(wrapper, UNARY, "/pkg.S/Other")
    assert other is not first and await other.unary_unary("x", None) == "tagged echo x"


class Aborted(Exception):
    pass


class FakeContext:
    """What FaultState.apply reads of a servicer context: the deadline, and abort."""

    def __init__(self) -> None:
        self.aborted_with: grpc.StatusCode | None = None

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        self.aborted_with = code
        raise Aborted(details)


EMBED = "/harag.v1.EmbedderService/Embed"


async def test_an_active_fault_fails_the_components_own_rpcs_of_both_kinds():
    state = FaultState()
    await state.set(fault_pb2.Fault(down=True))
    interceptor = FaultInterceptor(state)
    unary = await intercept(interceptor, UNARY, EMBED)
    context = FakeContext()
    with pytest.raises(Aborted):
        await unary.unary_unary("x", context)
    assert context.aborted_with == grpc.StatusCode.UNAVAILABLE

    stream = await intercept(
        interceptor, grpc.unary_stream_rpc_method_handler(numbers), "/harag.v1.GeneratorService/S"
    )
    context = FakeContext()
    with pytest.raises(Aborted):
        [i async for i in stream.unary_stream("x", context)]
    assert context.aborted_with == grpc.StatusCode.UNAVAILABLE


async def test_faults_spare_health_and_methods_they_do_not_name():
    state = FaultState()
    await state.set(fault_pb2.Fault(down=True, methods=["Search"]))
    interceptor = FaultInterceptor(state)
    assert await intercept(interceptor, UNARY, "/grpc.health.v1.Health/Check") is UNARY
    assert await intercept(interceptor, UNARY, "/harag.v1.FaultInjectionService/X") is UNARY
    unary = await intercept(interceptor, UNARY, EMBED)
    assert await unary.unary_unary("x", FakeContext()) == "echo x"  # Embed is not named

    await state.set(None)
    search = await intercept(interceptor, UNARY, "/harag.v1.RetrieverService/Search")
    assert await search.unary_unary("x", FakeContext()) == "echo x"  # cleared


async def test_a_stream_fault_breaks_streams_after_n_messages_and_spares_unary_calls():
    state = FaultState()
    await state.set(fault_pb2.Fault(fail_stream_after=1, error_code=13))
    interceptor = FaultInterceptor(state)
    stream = await intercept(
        interceptor, grpc.unary_stream_rpc_method_handler(numbers), "/harag.v1.G/StreamGenerate"
    )
    context, received = FakeContext(), []
    with pytest.raises(Aborted, match="after 1 stream messages"):
        async for item in stream.unary_stream("x", context):
            received.append(item)
    assert received == ["x 0"] and context.aborted_with == grpc.StatusCode.INTERNAL
    assert state.injected_total == 1
    unary = await intercept(interceptor, UNARY, "/harag.v1.G/Generate")
    assert await unary.unary_unary("x", FakeContext()) == "echo x"

    await state.set(fault_pb2.Fault(fail_stream_after=5))  # longer than the stream
    assert [i async for i in stream.unary_stream("x", FakeContext())] == ["x 0", "x 1"]


async def test_open_health_watches_end_once_shutdown_begins():
    end_watches = _EndWatchesOnShutdown()
    watching = asyncio.Event()
    cancelled = asyncio.Event()

    async def watch_forever(request: Any, context: Context) -> None:
        watching.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    handler = grpc.unary_stream_rpc_method_handler(watch_forever)
    wrapped = await intercept(end_watches, handler, _EndWatchesOnShutdown.WATCH)
    assert await intercept(end_watches, handler, "/grpc.health.v1.Health/Check") is handler
    call = asyncio.create_task(wrapped.unary_stream(None, FakeContext()))
    await watching.wait()
    assert not call.done()

    end_watches.stopping.set()
    await call  # returns: the stream ends with OK
    assert cancelled.is_set()
