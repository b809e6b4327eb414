"""Fault injection: a FaultInjectionService plus the server interceptor that applies it.

Off unless the process is started with fault injection enabled; then the component's own
RPCs (never health, reflection or this service) can be made to fail, slow down, hang,
go "down" or break a stream after N messages on demand, for demos and chaos tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

from harag.v1 import fault_injection_pb2 as pb
from harag.v1 import fault_injection_pb2_grpc as pb_grpc
from servicekit.interceptors import Context, HandlerWrapper, UnaryStream, UnaryUnary

log = logging.getLogger("harag.faults")

# Hanging calls without a client deadline give up after this long so nothing leaks forever.
MAX_HANG_S = 300.0
EXEMPT_SERVICES = ("grpc.health.v1.", "grpc.reflection.", "harag.v1.FaultInjectionService")


class FaultState:
    """The active fault, shared by the servicer (writes) and the interceptor (reads)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.fault: pb.Fault | None = None
        self.injected_total = 0
        self._rng = rng or random.Random()
        self._listeners: list[Callable[[pb.Fault | None], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[pb.Fault | None], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def set(self, fault: pb.Fault | None) -> None:
        self.fault = fault
        log.warning(
            "fault changed",
            extra={"fault": None if fault is None else str(fault).replace("\n", " ")},
        )
        for listener in self._listeners:
            await listener(fault)

    @property
    def down(self) -> bool:
        return self.fault is not None and self.fault.down

    def _applies(self, method: str) -> bool:
        fault = self.fault
        return fault is not None and (not fault.methods or method in fault.methods)

    async def apply(self, method: str, context: Context) -> None:
        """Runs before the real handler; aborts, delays or hangs as the fault says."""
        if not self._applies(method):
            return
        fault = self.fault
        assert fault is not None
        latency = fault.latency.ToTimedelta().total_seconds()
        rate = fault.latency_rate if fault.HasField("latency_rate") else 1.0
        if latency > 0 and self._rng.random() < rate:
            await asyncio.sleep(latency)
        if fault.down:
            self.injected_total += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: service down")
        if fault.hang:
            self.injected_total += 1
            remaining = context.time_remaining()
            await asyncio.sleep(MAX_HANG_S if remaining is None else remaining + 1.0)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: hang ended")
        if fault.error_rate > 0 and self._rng.random() < fault.error_rate:
            self.injected_total += 1
            code = _status_code(fault.error_code or grpc.StatusCode.UNAVAILABLE.value[0])
            await context.abort(code, f"injected fault: {code.name}")

    def stream_fails_after(self, method: str) -> int:
        """How many messages a stream of this method may send before it fails; 0: no limit."""
        if not self._applies(method):
            return 0
        assert self.fault is not None
        return self.fault.fail_stream_after

    async def fail_stream(self, context: Context, sent: int) -> None:
        """Ends a stream mid-way with the fault's error (a provider failing after N deltas)."""
        assert self.fault is not None
        self.injected_total += 1
        code = _status_code(self.fault.error_code or grpc.StatusCode.UNAVAILABLE.value[0])
        await context.abort(code, f"injected fault: {code.name} after {sent} stream messages")


def _status_code(number: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNAVAILABLE


def validate_fault(fault: pb.Fault) -> list[tuple[str, str]]:
    problems = []
    if not 0.0 <= fault.error_rate <= 1.0:
        problems.append(("fault.error_rate", "must be within 0..1"))
    if fault.HasField("latency_rate") and not 0.0 <= fault.latency_rate <= 1.0:
        problems.append(("fault.latency_rate", "must be within 0..1"))
    if fault.error_code and not any(c.value[0] == fault.error_code for c in grpc.StatusCode):
        problems.append(("fault.error_code", "must be a canonical gRPC status code (1..16)"))
    if fault.latency.seconds < 0 or fault.latency.ToTimedelta().total_seconds() > MAX_HANG_S:
        problems.append(("fault.latency", f"must be within 0..{MAX_HANG_S:g}s"))
    return problems


class FaultInjectionServicer(pb_grpc.FaultInjectionServiceServicer):
    def __init__(self, state: FaultState) -> None:
        self.state = state

    async def SetFault(self, request: pb.SetFaultRequest, context: Context) -> pb.SetFaultResponse:
        from servicekit.errors import FieldViolations

        violations = FieldViolations()
        for field, description in validate_fault(request.fault):
            violations.add(field, description)
        await violations.abort_if_any(context)
        await self.state.set(request.fault)
        return pb.SetFaultResponse(fault=request.fault)

    async def ClearFaults(
        self, request: pb.ClearFaultsRequest, context: Context
    ) -> pb.ClearFaultsResponse:
        await self.state.set(None)
        return pb.ClearFaultsResponse()

    async def GetFaults(
        self, request: pb.GetFaultsRequest, context: Context
    ) -> pb.GetFaultsResponse:
        return pb.GetFaultsResponse(
            fault=self.state.fault, injected_total=self.state.injected_total
        )


class FaultInterceptor(HandlerWrapper):
    """Applies the active fault before every non-exempt unary or server-streaming handler."""

    def __init__(self, state: FaultState) -> None:
        super().__init__()
        self.state = state

    def intercepts(self, method: str) -> bool:
        return not method.lstrip("/").startswith(EXEMPT_SERVICES)

    def wrap_unary_unary(self, method: str, behaviour: UnaryUnary) -> UnaryUnary:
        state, name = self.state, _method_name(method)

        async def unary(request: Any, context: Context) -> Any:
            await state.apply(name, context)
            return await behaviour(request, context)

        return unary

    def wrap_unary_stream(self, method: str, behaviour: UnaryStream) -> UnaryStream:
        state, name = self.state, _method_name(method)

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await state.apply(name, context)
            limit = state.stream_fails_after(name)
            sent = 0
            async for item in cast(AsyncIterator[Any], behaviour(request, context)):
                if limit and sent >= limit:
                    await state.fail_stream(context, sent)
                yield item
                sent += 1

        return stream


def _method_name(method: str) -> str:
    """The method's own name, as a fault lists it: "/harag.v1.EmbedderService/Embed" -> "Embed"."""
    return method.rsplit("/", 1)[-1]
