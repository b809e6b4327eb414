"""Admission control: the PIE controller's arithmetic, and the queue probe over real gRPC."""

from __future__ import annotations

import asyncio
import logging
import random
import time

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
from harag.v1 import gateway_pb2, gateway_pb2_grpc
from servicekit.errors import details_of


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
    now = [0.0]
    controller = SheddingController(target_s=0.1, clock=lambda: now[0])
    controller.update(0.01)
    for _ in range(7):  # 140 ms of a 0.6 s queue: p rises, but the burst allowance holds
        now[0] += 0.02
        controller.update(0.6)
    assert controller.probability > 0.01
    assert not any(controller.shed() for _ in range(1000))
    for _ in range(20):  # the queue persists past the 150 ms allowance: shedding starts
        now[0] += 0.02
        controller.update(0.6)
    assert sum(controller.shed() for _ in range(1000)) > 100
    for _ in range(200):  # drained: p back to zero, and the next burst is allowed again
        now[0] += 0.02
        controller.update(0.01)
    assert controller.probability == 0.0 and controller.burst_allowance_s == 0.15


def test_shed_log_writes_at_most_a_line_a_second_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shed_log = ShedLog()
    with caplog.at_level(logging.WARNING, logger="harag.admission"):
        for _ in range(500):
            shed_log.shed("queue_delay")
    lines = [r for r in caplog.records if r.getMessage() == "shedding requests"]
    assert len(lines) == 1 and lines[0].shed == 1  # the first one at once
    shed_log._last -= 1.0  # a second later
    with caplog.at_level(logging.WARNING, logger="harag.admission"):
        shed_log.shed("queue_delay")
    assert caplog.records[-1].shed == 500


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
    servicer = _HeldGateway()
    server, address = await _serve(servicer)
    recorder = _Recorder()
    probe = QueueDelayProbe(address, interval_s=0.02, controller=recorder)
    probe.last_query_at = time.monotonic() + 3600  # busy: probe
    probe.start()
    try:
        await asyncio.sleep(0.3)
        held = list(recorder.seen)
        assert len(held) >= 5 and held == sorted(held)  # one probe, older at every interval
        assert held[-1] >= 0.2
        servicer.gate.set()
        await asyncio.sleep(0.2)
        after = recorder.seen[len(held) :]
        assert after[0] >= held[-1]  # the answered probe's round trip: it waited all along
        assert len(after) >= 3 and after[-1] < 0.1  # and the next ones are answered at once
    finally:
        await probe.stop()
        await server.stop(0)


async def test_probe_sends_nothing_while_no_queries_arrive() -> None:
    servicer = _HeldGateway()
    servicer.gate.set()
    server, address = await _serve(servicer)
    recorder = _Recorder()
    probe = QueueDelayProbe(address, interval_s=0.01, controller=recorder)
    probe.start()
    try:
        await asyncio.sleep(0.2)
        assert servicer.calls == 0 and recorder.seen == [] and recorder.pauses > 5
        probe.last_query_at = time.monotonic()
        await asyncio.sleep(0.2)
        assert servicer.calls >= 3 and len(recorder.seen) >= 3
    finally:
        await probe.stop()
        await server.stop(0)


async def test_interceptor_sheds_queries_with_retry_info_and_lets_the_rest_through() -> None:
    servicer = _HeldGateway()
    servicer.gate.set()
    controller = SheddingController(target_s=0.05)
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
            details = details_of(caught.value)
            retry = [d for d in details if hasattr(d, "retry_delay")]
            assert retry and retry[0].retry_delay.ToMilliseconds() == 250
            assert any(getattr(d, "reason", "") == "GATEWAY_OVERLOADED" for d in details)
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
