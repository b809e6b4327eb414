"""Breaker transitions a gateway made during a scenario: a healthy mesh under load, however
heavy, should see none (CPU starvation must not open a healthy upstream's breaker)."""

from __future__ import annotations

import grpc

from harag.v1 import admin_pb2, admin_pb2_grpc
from harag_cli.meshctl import admin_address


async def breaker_transitions(address: str) -> dict[str, int]:
    """Transitions since start-up per upstream of the gateway at `address` (asked on its
    admin listener)."""
    async with grpc.aio.insecure_channel(admin_address(address)) as channel:
        reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=10
        )
    return {b.upstream: b.breaker.transitions for b in reply.breakers}


def made_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Transitions per upstream between two readings, upstreams with none left out."""
    return {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}
