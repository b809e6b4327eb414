"""Admission control: shed new queries while they queue inside the gateway before running.

A grpc.aio server asks gRPC core for the next call of each method one at a time, and each
ask takes several trips through the event loop. While the loop is busy with the queries
it already runs, new queries wait in core's queue of unmatched calls, where neither the
handler's in-flight count nor its latency can see them: the handler stays fast while
callers wait seconds and then time out. (Each method has its own queue, so a health check
stays fast and cannot measure the Query queue.)

`QueueDelayProbe` measures that wait the only way a server can without help from its
callers: while queries are arriving, every `probe_interval_s` it sends itself a Query over
loopback, marked with a secret header, and times the answer. `AdmissionInterceptor`, the
first code a call meets, answers a probe at once, so probes are never traced, counted or
run through the pipeline. The probe waits in the same queue as every real Query (gRPC
hands calls to interceptors only once they are taken), so its round trip is what a query
arriving now waits before the gateway starts on it.

`SheddingController` turns those delays into a shed probability with PIE (RFC 8033), the
queue-delay controller routers use: the probability rises while the delay is above the
target and while it is growing, and falls otherwise. `AdmissionInterceptor` sheds that
share of new queries before any other work is done on them (no span, no parsing) with
RESOURCE_EXHAUSTED + RetryInfo, so the loop keeps its time for the queries it took on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeAlias

import grpc

from gateway.resilience.clock import SYSTEM_CLOCK, Clock, done_within
from harag.v1 import gateway_pb2, gateway_pb2_grpc
from servicekit.background import BackgroundTasks
from servicekit.errors import resource_exhausted
from servicekit.rpc_client_telemetry import plain_insecure_channel

log = logging.getLogger("harag.admission")

PROBE_HEADER = "x-harag-self-probe"
IDLE_AFTER_S = 1.0  # no query for this long: stop probing (an idle gateway has no queue)
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["RagGatewayService"].full_name
QUERY_METHODS = {f"/{SERVICE}/Query": "unary", f"/{SERVICE}/StreamQuery": "stream"}


class SheddingController:
    """PIE (RFC 8033): p += alpha * (delay - target) + beta * (delay - previous delay).

    The alpha term (per second of excess delay) sheds harder the longer the queue stays
    above the target; the beta term reacts to the queue growing or draining before it
    gets there. As in the RFC, both are scaled down while p is small, so that noise in the
    measurements cannot creep p up from zero (it takes a sustained queue: about half a
    second of 0.5 s delays to reach 10%), a rise is capped at 2 points per update once p
    is past 10%, and p decays while the queue stays empty. Also as in the RFC, nothing is
    shed during the first `max_burst_s` of a queue that follows an empty one: a burst that
    drains within it is absorbed.
    """

    def __init__(
        self,
        target_s: float,
        alpha: float = 0.125,
        beta: float = 1.25,
        max_p: float = 0.99,
        max_burst_s: float = 0.15,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.target_s = target_s
        self.alpha = alpha
        self.beta = beta
        self.max_p = max_p
        self.max_burst_s = max_burst_s
        self.clock = clock
        # Seeded per process by the OS unless given: replicas shed different queries.
        self.rng = rng or random.Random()
        self.probability = 0.0
        self.delay_s: float | None = None  # the latest measurement; None after a pause
        self.burst_allowance_s = max_burst_s
        self._updated_at: float | None = None

    def update(self, delay_s: float) -> None:
        now = self.clock.monotonic()
        if self._updated_at is not None:
            self.burst_allowance_s = max(0.0, self.burst_allowance_s - (now - self._updated_at))
        self._updated_at = now
        previous = delay_s if self.delay_s is None else self.delay_s
        change = self.alpha * (delay_s - self.target_s) + self.beta * (delay_s - previous)
        change *= _pie_scale(self.probability)
        if self.probability >= 0.1:
            change = min(change, 0.02)
        self.probability = min(self.max_p, max(0.0, self.probability + change))
        if delay_s < self.target_s / 2 and previous < self.target_s / 2:
            self.probability *= 0.98
            if self.probability < 1e-6:
                self.burst_allowance_s = self.max_burst_s  # the queue is empty again
        self.delay_s = delay_s

    def pause(self) -> None:
        """No measurements for a while (no queries): the next one starts afresh."""
        self.delay_s = None
        self._updated_at = None

    def shed(self) -> bool:
        if self.burst_allowance_s > 0 or self.probability <= 0.0:
            return False
        return self.rng.random() < self.probability


def _pie_scale(probability: float) -> float:
    """RFC 8033 section 4.2: smaller steps while the drop probability is small."""
    for bound, scale in ((1e-6, 1 / 2048), (1e-5, 1 / 512), (1e-4, 1 / 128), (1e-3, 1 / 32)):
        if probability < bound:
            return scale
    if probability < 0.01:
        return 1 / 8
    return 1 / 2 if probability < 0.1 else 1.0


class QueueDelayProbe:
    """Times a marked Query sent to this process's own gRPC port, again and again."""

    def __init__(
        self,
        address: str,
        interval_s: float,
        controller: SheddingController,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.address = address
        self.interval_s = interval_s
        self.controller = controller
        self.clock = clock
        self.token = secrets.token_hex(16)  # only this process's probes carry it
        self.last_query_at = float("-inf")  # noted by the admission check of each query
        self.last_round_trip_s = 0.0
        self._tasks = BackgroundTasks("queue delay probe")
        self._channel: grpc.aio.Channel | None = None

    def start(self) -> None:
        # Untraced (a probe is a measurement, not a request), on a connection of its own.
        self._channel = plain_insecure_channel(
            self.address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self._tasks.start("probe loop", self._run)

    async def stop(self) -> None:
        await self._tasks.stop()
        if self._channel is not None:
            await self._channel.close()

    def is_probe(self, metadata: Iterable[tuple[str, str | bytes]]) -> bool:
        return any(key == PROBE_HEADER and value == self.token for key, value in metadata)

    async def _run(self) -> None:
        assert self._channel is not None
        await self.probe_forever(gateway_pb2_grpc.RagGatewayServiceStub(self._channel))

    async def probe_forever(self, stub: QueryStub) -> None:
        """Probes every interval while queries arrive; pauses the controller while none do."""
        request = gateway_pb2.QueryRequest()
        metadata = ((PROBE_HEADER, self.token),)
        while True:
            await self.clock.sleep(self.interval_s)
            if self.clock.monotonic() - self.last_query_at > IDLE_AFTER_S:
                self.controller.pause()
                self.last_round_trip_s = 0.0
                continue
            try:
                await self.probe_once(stub, request, metadata)
            except Exception:  # a dead probe would silently switch admission control off
                log.exception("queue probe failed")

    async def probe_once(
        self,
        stub: QueryStub,
        request: gateway_pb2.QueryRequest,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        """One probe. Until it is answered, the estimate is the last round trip, or this
        probe's age once that is longer (the queue is at least that long now); then it is
        this probe's round trip. The controller gets the estimate every interval."""
        now = self.clock.monotonic
        sent = now()
        answer = asyncio.ensure_future(stub.Query(request, timeout=60, metadata=metadata))
        try:
            while not await done_within(answer, self.interval_s, self.clock):
                self.controller.update(max(self.last_round_trip_s, now() - sent))
            answer.result()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # not serving yet, or shutting down: nothing was measured
        self.last_round_trip_s = now() - sent
        self.controller.update(self.last_round_trip_s)


class ShedLog:
    """One warning per second at most, with the count since the last: a line per shed
    request would spend, at the worst moment, the CPU that shedding saves."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._count = 0
        self._last = float("-inf")

    def shed(self, reason: str, **fields: object) -> None:
        self._count += 1
        now = self._clock.monotonic()
        if now - self._last >= 1.0:
            log.warning(
                "shedding requests", extra={"reason": reason, "shed": self._count, **fields}
            )
            self._count = 0
            self._last = now


class QueryStub(Protocol):
    """The one method of the gateway's stub that the probe calls."""

    def Query(
        self,
        request: gateway_pb2.QueryRequest,
        *,
        timeout: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> Awaitable[gateway_pb2.QueryResponse]: ...


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: answers the probe's Queries, and sheds the controller's share
    of new queries at the door."""

    def __init__(
        self,
        controller: SheddingController,
        probe: QueueDelayProbe,
        retry_after_s: float,
        on_shed: Callable[[str], None],
        shed_log: ShedLog,
    ) -> None:
        self.controller = controller
        self.probe = probe
        self.on_shed = on_shed
        self.shed_log = shed_log
        self._now = probe.clock.monotonic
        self._status = resource_exhausted(
            "gateway overloaded: new queries wait too long to start; retry later",
            retry_after_s,
            "GATEWAY_OVERLOADED",
        )
        self._probe_answer: Handler = grpc.unary_unary_rpc_method_handler(
            self._answer_probe, response_serializer=gateway_pb2.QueryResponse.SerializeToString
        )
        self._shed_handlers: dict[str, Handler] = {
            "unary": grpc.unary_unary_rpc_method_handler(self._shed_unary),
            "stream": grpc.unary_stream_rpc_method_handler(self._shed_stream),
        }

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        kind = QUERY_METHODS.get(handler_call_details.method)
        if kind is None:
            return await continuation(handler_call_details)
        if kind == "unary" and self.probe.is_probe(handler_call_details.invocation_metadata):
            return self._probe_answer
        self.probe.last_query_at = self._now()
        if self.controller.shed():
            self.on_shed(handler_call_details.method)
            self.shed_log.shed("queue_delay", probability=round(self.controller.probability, 3))
            return self._shed_handlers[kind]
        return await continuation(handler_call_details)

    async def _answer_probe(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gateway_pb2.QueryResponse:
        return gateway_pb2.QueryResponse()  # the wait to get here was the measurement

    async def _shed_unary(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(self._status.code, self._status.details, self._status.trailing_metadata)

    async def _shed_stream(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(self._status.code, self._status.details, self._status.trailing_metadata)
        yield  # pragma: no cover - unreachable: abort raises; this makes it a generator
