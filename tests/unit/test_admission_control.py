"""Admission control: the PIE controller and the queue probe on a fake clock (with a seeded
random), and the shedding interceptor over real gRPC."""

from __future__ import annotations

import asyncio
import logging
import random

import grpc
import pytest

from gateway.admission import (
    PROBE_HEADER,
    AdmissionInterceptor,
    QueueDelayProbe,
    SheddingController,
    ShedLog,
    _pie_scale,
)
from gateway.resilience.clock import FakeClock
from harag.errors import error_from_rpc
from harag.v1 import gateway_pb2, gateway_pb2_grpc


async def drain(rounds: int = 20) -> None:
    """Lets every task that can run do so (the fake clock only moves when told)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def updates_until(controller: SheddingController, delay_s: float, probability: float) -> int:
    for n in range(1, 10_000):
        controller.update(delay_s)
        if controller.probability >= probability:
            return n
    raise AssertionError(f"never reached {probability} at {delay_s}s")


def test_noise_below_the_target_sheds_nothing() -> None:
    rng = random.Random(7)
    controller = SheddingController(target_s=0.1)
    for _ in range(5000):  # 100 s of 20 ms updates, delays jittering up to ~2x the target
        controller.update(abs(rng.gauss(0.04, 0.05)))
    assert controller.probability < 0.001


def test_a_standing_queue_ramps_shedding_up_within_a_fraction_of_a_second() -> None:
    controller = SheddingController(target_s=0.1)
    # 0.5 s of delay: 10% shed within ~10 updates (0.2 s at 20 ms), half within ~30.
    assert updates_until(controller, 0.5, 0.1) <= 12
    assert updates_until(controller, 0.5, 0.5) <= 25
    assert updates_until(controller, 0.5, 0.99) <= 60
    for _ in range(100):
        controller.update(0.5)
    assert controller.probability == 0.99  # never sheds everything: probes of recovery


def test_shedding_eases_off_once_the_queue_drains() -> None:
    controller = SheddingController(target_s=0.1)
    updates_until(controller, 0.6, 0.9)
    for _ in range(40):
        controller.update(0.02)
    assert controller.probability < 0.05


def test_small_probabilities_move_in_small_steps_as_rfc_8033_says() -> None:
    assert _pie_scale(0.0) == 1 / 2048
    assert _pie_scale(5e-6) == 1 / 512
    assert _pie_scale(0.005) == 1 / 8
    assert _pie_scale(0.05) == 1 / 2
    assert _pie_scale(0.5) == 1.0
    controller = SheddingController(target_s=0.1)
    controller.probability = 0.5
    controller.delay_s = 0.1
    controller.update(2.0)  # a sudden 2 s spike: the rise is capped at 2 points
    assert controller.probability == pytest.approx(0.52)


def test_the_first_measurement_after_a_pause_has_no_trend() -> None:
    controller = SheddingController(target_s=0.1)
    controller.update(0.0)
    controller.pause()
    controller.probability = 0.05  # steps are halved below 10%
    controller.update(0.3)  # no beta term for a "jump" from the stale 0: alpha's share only
    assert controller.probability == pytest.approx(0.05 + 0.5 * 0.125 * (0.3 - 0.1))


def test_a_burst_that_drains_within_the_allowance_sheds_nothing() -> None:
    clock = FakeClock()
    controller = SheddingController(target_s=0.1, clock=clock, rng=random.Random(3))
    controller.update(0.01)
    for _ in range(7):  # 140 ms of a 0.6 s queue: p rises, but the burst allowance holds
        clock.advance(0.02)
        controller.update(0.6)
    assert controller.probability > 0.01
    assert not any(controller.shed() for _ in range(1000))
    for _ in range(20):  # the queue persists past the 150 ms allowance: shedding starts
        clock.advance(0.02)
        controller.update(0.6)
    shed_share = sum(controller.shed() for _ in range(10_000)) / 10_000
    assert shed_share == pytest.approx(controller.probability, abs=0.02)
    for _ in range(200):  # drained: p back to zero, and the next burst is allowed again
        clock.advance(0.02)
        controller.update(0.01)
    assert controller.probability == 0.0 and controller.burst_allowance_s == 0.15
    assert not any(controller.shed() for _ in range(1000))


def test_the_same_seed_sheds_the_same_queries() -> None:
    def decisions(seed: int) -> list[bool]:
        controller = SheddingController(target_s=0.1, rng=random.Random(seed))
        controller.probability, controller.burst_allowance_s = 0.3, 0.0
        return [controller.shed() for _ in range(200)]

    assert decisions(5) == decisions(5) and decisions(5) != decisions(6)
    assert 30 < sum(decisions(5)) < 90  # about 30% of 200


def test_shed_log_writes_at_most_a_line_a_second_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    shed_log = ShedLog(clock)
    with caplog.at_level(logging.WARNING, logger="harag.admission"):
        for _ in range(500):
            shed_log.shed("queue_delay")
            clock.advance(0.001)
    lines = [r for r in caplog.records if r.getMessage() == "shedding requests"]
    assert len(lines) == 1 and lines[0].shed == 1  # the first one at once
    clock.advance(0.5)  # 1 s after the first line
    with caplog.at_level(logging.WARNING, logger="harag.admission"):
        shed_log.shed("queue_delay")
    lines = [r for r in caplog.records if r.getMessage() == "shedding requests"]
    assert len(lines) == 2 and lines[-1].shed == 500


class _HeldGateway(gateway_pb2_grpc.RagGatewayServiceServicer):
    """Answers Query only once `gate` is set; counts the calls it saw."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def Query(self, request, context):
        self.calls += 1
        await self.gate.wait()
        return gateway_pb2.QueryResponse(answer="held")

    async def StreamQuery(self, request, context):
        self.calls += 1
        yield gateway_pb2.StreamQueryResponse(chunk="held")


class _HeldStub:
    """Stands in for the gateway's own stub: a Query waits in the "queue" until `gate` opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[tuple[tuple[str, str], ...]] = []

    def Query(self, request, *, timeout, metadata):  # like grpc's: returns an awaitable call
        self.calls.append(metadata)
        return self._answer()

    async def _answer(self) -> gateway_pb2.QueryResponse:
        await self.gate.wait()
        return gateway_pb2.QueryResponse()


class _Recorder(SheddingController):
    def __init__(self) -> None:
        super().__init__(target_s=0.05)
        self.seen: list[float] = []
        self.pauses = 0

    def update(self, delay_s: float) -> None:
        self.seen.append(delay_s)

    def pause(self) -> None:
        self.pauses += 1


async def _serve(servicer: gateway_pb2_grpc.RagGatewayServiceServicer, *interceptors):
    server = grpc.aio.server(interceptors=interceptors)
    gateway_pb2_grpc.add_RagGatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_probe_reports_a_stuck_query_by_its_growing_age_then_its_round_trip() -> None:
    clock, stub, recorder = FakeClock(), _HeldStub(), _Recorder()
    probe = QueueDelayProbe("unused:1", interval_s=0.02, controller=recorder, clock=clock)
    probe.last_round_trip_s = 0.03  # the previous probe's
    metadata = ((PROBE_HEADER, probe.token),)
    probing = asyncio.create_task(probe.probe_once(stub, gateway_pb2.QueryRequest(), metadata))
    await drain()
    assert stub.calls == [metadata] and recorder.seen == []
    for _ in range(5):
        clock.advance(0.02)
        await drain()
    # Unanswered: at least the last round trip, then the probe's age at every interval.
    assert recorder.seen == pytest.approx([0.03, 0.04, 0.06, 0.08, 0.10])
    clock.advance(0.005)
    stub.gate.set()
    await probing
    assert recorder.seen[-1] == pytest.approx(0.105)  # answered: its whole round trip
    assert probe.last_round_trip_s == pytest.approx(0.105)
    await probe.probe_once(stub, gateway_pb2.QueryRequest(), metadata)  # answered at once
    assert recorder.seen[-1] == 0.0 and len(recorder.seen) == 7


async def test_probe_counts_only_answers_and_deadlines() -> None:
    class Failing:
        def __init__(self, code: grpc.StatusCode) -> None:
            self.code = code

        def Query(self, request, *, timeout, metadata):
            return self._fail()

        async def _fail(self) -> gateway_pb2.QueryResponse:
            raise _rpc_error(self.code)

    recorder = _Recorder()
    probe = QueueDelayProbe("unused:1", interval_s=0.02, controller=recorder, clock=FakeClock())
    await probe.probe_once(Failing(grpc.StatusCode.UNAVAILABLE), gateway_pb2.QueryRequest(), ())
    assert recorder.seen == []  # not serving yet: nothing was measured
    await probe.probe_once(
        Failing(grpc.StatusCode.DEADLINE_EXCEEDED), gateway_pb2.QueryRequest(), ()
    )
    assert recorder.seen == [0.0]  # a probe that timed out waited its whole round trip


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


async def test_probe_sends_nothing_while_no_queries_arrive() -> None:
    clock, stub, recorder = FakeClock(), _HeldStub(), _Recorder()
    stub.gate.set()
    probe = QueueDelayProbe("unused:1", interval_s=0.125, controller=recorder, clock=clock)
    looping = asyncio.create_task(probe.probe_forever(stub))
    await drain()
    try:
        for _ in range(10):
            clock.advance(0.125)
            await drain()
        assert stub.calls == [] and recorder.seen == [] and recorder.pauses == 10
        probe.last_query_at = clock.monotonic()  # a query arrived: probe while they come
        for _ in range(4):
            clock.advance(0.125)
            await drain()
        assert len(stub.calls) == 4 and len(recorder.seen) == 4
        clock.advance(1.0)  # the last query came 1.5 s ago: idle again, nothing sent
        await drain()
        assert len(stub.calls) == 4 and recorder.pauses == 11
    finally:
        looping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await looping


async def test_interceptor_sheds_queries_with_retry_info_and_lets_the_rest_through() -> None:
    servicer = _HeldGateway()
    servicer.gate.set()
    controller = SheddingController(target_s=0.05, rng=random.Random(1))
    probe = QueueDelayProbe("unused:1", interval_s=1, controller=controller)
    shed: list[str] = []
    interceptor = AdmissionInterceptor(controller, probe, 0.25, shed.append, ShedLog())
    server, address = await _serve(servicer, interceptor)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = gateway_pb2_grpc.RagGatewayServiceStub(channel)
            assert (await stub.Query(gateway_pb2.QueryRequest(), timeout=5)).answer == "held"
            controller.probability = 0.99
            controller.burst_allowance_s = 0.0
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                for _ in range(50):  # 0.99 each: shed within a few
                    await stub.Query(gateway_pb2.QueryRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            decoded = error_from_rpc(caught.value)
            assert decoded.retry_delay_s == pytest.approx(0.25)
            assert decoded.reason == "GATEWAY_OVERLOADED"
            assert shed and shed[0].endswith("/Query")
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                for _ in range(50):
                    async for _event in stub.StreamQuery(gateway_pb2.StreamQueryRequest()):
                        pass
            assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert shed[-1].endswith("/StreamQuery")
            # The probe's own Queries are never shed (they must measure the queue), and are
            # answered at the door: they never reach the servicer.
            calls = servicer.calls
            metadata = ((PROBE_HEADER, probe.token),)
            for _ in range(20):
                reply = await stub.Query(gateway_pb2.QueryRequest(), timeout=5, metadata=metadata)
                assert reply == gateway_pb2.QueryResponse()
            assert servicer.calls == calls
    finally:
        await server.stop(0)
