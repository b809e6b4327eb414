"""An attempt that makes an RPC is one span, the RPC's CLIENT span, on every path.

In-process: a tiny gRPC server, a channel with the client telemetry interceptors, and the
gateway's attempt observer around each call, as gateway.resilience.guard uses it. What
matters to someone reading a trace: one span per attempt, ended (so exported) even when
the caller gave up first, with the attempt's outcome deciding whether it is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from waiting import wait_until

from gateway.resilience.guard import HEDGE_LOST, AttemptRecord, Attempts
from gateway.telemetry import AttemptTelemetry, stage_span
from servicekit.rpc_client_telemetry import client_interceptors


@dataclass
class Rig:
    spans: InMemorySpanExporter
    channel: grpc.aio.Channel
    hung: asyncio.Event  # set once the server is inside a Hang call

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "primary is down")
    raise AssertionError("abort returns by raising")


async def _chunks(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for chunk in (b"a", b"b", b"c"):
        yield chunk


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    hung = asyncio.Event()

    async def hang(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        hung.set()
        await asyncio.Event().wait()
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.v1.Echo",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
                    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
                    "Hang": grpc.unary_unary_rpc_method_handler(hang),
                    "Chunks": grpc.unary_stream_rpc_method_handler(_chunks),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target, interceptors=client_interceptors(target, provider))
    yield Rig(spans, channel, hung)
    await channel.close()
    await server.stop(None)


def _record(**flags: bool) -> AttemptRecord:
    return AttemptRecord("echo-primary", 0, "", 0.0, number=1, breaker_state="CLOSED", **flags)


async def _attempt(rig: Rig, method: str, record: AttemptRecord) -> None:
    """One attempt, as guarded_call makes it: the outcome is set inside the span."""
    attempts = Attempts(observer=AttemptTelemetry())
    with stage_span("embed"), attempts.span(record):
        try:
            await rig.channel.unary_unary(method)(b"hello", timeout=5)
            record.outcome = "OK"
        except asyncio.CancelledError:
            record.outcome, record.error = HEDGE_LOST, "cancelled: another attempt won"
            raise
        except grpc.aio.AioRpcError as exc:
            record.outcome, record.error = exc.code().name, exc.details() or ""


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [(s.name, s.kind) for s in spans]
    return spans[0]


async def test_a_successful_attempt_is_one_client_span_with_the_attempt_in_it(rig: Rig) -> None:
    await _attempt(rig, "/test.v1.Echo/Echo", _record())
    span = only(rig.finished())
    assert (span.name, span.kind) == ("test.v1.Echo/Echo", SpanKind.CLIENT)
    attributes = dict(span.attributes or {})
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["harag.upstream"] == "echo-primary"
    assert attributes["harag.stage"] == "embed"
    assert attributes["harag.outcome"] == "OK"
    assert attributes["harag.breaker.state"] == "CLOSED"
    assert attributes["harag.retry"] is False and attributes["harag.hedge"] is False
    assert span.status.status_code == StatusCode.UNSET


async def test_a_failed_attempt_is_an_error_with_the_code_and_the_reason(rig: Rig) -> None:
    await _attempt(rig, "/test.v1.Echo/Fail", _record(retry=True))
    span = only(rig.finished())
    attributes = dict(span.attributes or {})
    assert attributes["harag.outcome"] == "UNAVAILABLE"
    assert attributes["harag.error"] == "primary is down"
    assert attributes["harag.retry"] is True
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert span.status.status_code == StatusCode.ERROR


async def test_a_lost_hedge_ends_its_span_and_is_no_error(rig: Rig) -> None:
    hedge = asyncio.create_task(_attempt(rig, "/test.v1.Echo/Hang", _record(hedge=True)))
    await wait_until(rig.hung.is_set, what="the hedge reached the server")
    hedge.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hedge
    # The call's own end may come after the caller's: the span ends when both are done.
    span = only(await wait_until(rig.finished, what="the lost hedge's span ended"))
    attributes = dict(span.attributes or {})
    assert span.kind == SpanKind.CLIENT
    assert attributes["harag.outcome"] == HEDGE_LOST
    assert attributes["harag.hedge"] is True
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert span.status.status_code == StatusCode.UNSET


async def test_a_streaming_attempt_ends_with_the_stream_status(rig: Rig) -> None:
    attempts = Attempts(observer=AttemptTelemetry())
    record = _record()
    with stage_span("generate"), attempts.span(record):
        chunks = [c async for c in rig.channel.unary_stream("/test.v1.Echo/Chunks")(b"")]
        record.outcome = "OK"
    assert chunks == [b"a", b"b", b"c"]
    span = only(await wait_until(rig.finished, what="the streaming attempt's span ended"))
    attributes = dict(span.attributes or {})
    assert (span.name, attributes["harag.stage"]) == ("test.v1.Echo/Chunks", "generate")
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["harag.outcome"] == "OK"


async def test_a_second_call_in_one_attempt_is_a_child_span(rig: Rig) -> None:
    attempts = Attempts(observer=AttemptTelemetry())
    record = _record()
    with attempts.span(record):
        await rig.channel.unary_unary("/test.v1.Echo/Echo")(b"1")
        await rig.channel.unary_unary("/test.v1.Echo/Echo")(b"2")
        record.outcome = "OK"
    spans = rig.finished()
    assert len(spans) == 2
    first = next(s for s in spans if "harag.outcome" in (s.attributes or {}))
    second = next(s for s in spans if s is not first)
    assert second.parent is not None
    assert second.parent.span_id == first.context.span_id
    assert "harag.upstream" not in (second.attributes or {})


async def test_a_call_outside_an_attempt_is_a_plain_client_span(rig: Rig) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await rig.channel.unary_unary("/test.v1.Echo/Fail")(b"", timeout=5)
    span = only(rig.finished())
    assert span.kind == SpanKind.CLIENT
    assert "harag.outcome" not in (span.attributes or {})
    assert span.status.status_code == StatusCode.ERROR  # no attempt to say otherwise


async def test_an_attempt_outside_a_stage_names_no_stage(rig: Rig) -> None:
    attempts = Attempts(observer=AttemptTelemetry())
    record = _record()
    with attempts.span(record):
        await rig.channel.unary_unary("/test.v1.Echo/Echo")(b"")
        record.outcome = "OK"
    span = only(rig.finished())
    assert "harag.stage" not in (span.attributes or {})
    assert (span.attributes or {})["harag.upstream"] == "echo-primary"
