"""A real seven-process mesh on free loopback ports, started by the same Supervisor `harag
up` uses, and an extra gateway over it: what the fixtures in tests/conftest.py (and the
suites that start meshes of their own) are made of. A module of its own, so a test imports it
by a name no other conftest.py shadows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from processes import LogBook

from harag.v1 import admin_pb2_grpc, fault_injection_pb2, gateway_pb2, gateway_pb2_grpc
from harag_cli.localports import free_port
from harag_cli.meshctl import MeshControl, admin_address
from harag_cli.supervisor import ProcessSpec, Supervisor, mesh_specs
from servicekit.ports import COMPONENT_NAMES

REPO = Path(__file__).resolve().parent.parent
MESH_NAMES = ("gateway", *COMPONENT_NAMES)


class Mesh:
    def __init__(self, specs: list[ProcessSpec], supervisor: Supervisor, logs: LogBook) -> None:
        self.specs = {s.name: s for s in specs}
        self.supervisor = supervisor
        self.logs = logs
        self.gateway_address = self.specs["gateway"].address
        self.channel = grpc.aio.insecure_channel(self.gateway_address)
        self.gateway = gateway_pb2_grpc.RagGatewayServiceStub(self.channel)
        self.control = MeshControl(
            {name: spec.address for name, spec in self.specs.items()}, self.gateway_address
        )

    def address(self, name: str) -> str:
        return self.specs[name].address

    async def set_fault(self, name: str, fault: fault_injection_pb2.Fault) -> None:
        await self.control.set_fault(name, fault)
        await self.wait_gateway_sees(name, "NOT_SERVING" if fault.down else None)

    async def clear_faults(self, *names: str) -> None:
        await self.control.clear_faults(names)
        for name in names or self.control.components():
            await self.wait_gateway_sees(name, "SERVING")

    async def wait_gateway_sees(self, name: str, health: str | None, timeout_s: float = 10) -> None:
        """Waits until the gateway's health watch reports `health` for an upstream."""
        if health is None:
            return
        wanted = gateway_pb2.UpstreamHealthStatus.Value(f"UPSTREAM_HEALTH_STATUS_{health}")
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            reply = await self.gateway.GetSystemHealth(
                gateway_pb2.GetSystemHealthRequest(), timeout=5
            )
            if any(u.name == name and u.health == wanted for u in reply.upstreams):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"gateway never saw {name} as {health}")

    async def reset_breakers(self) -> None:
        await self.control.reset_breakers()

    async def wait_serving(self, name: str, timeout_s: float = 30) -> None:
        await self.supervisor.wait_serving(timeout_s, [name])


# The shared mesh answers every query fresh and never hedges, so which tier serves is
# decided by the faults a test injects alone; cache, stale, coalescing and hedging tests
# start their own gateway (`extra_gateway`).
NO_CACHE = {
    "HARAG_CACHE_TTL_S": "0",
    "HARAG_STALE_TTL_S": "0",
    "HARAG_COALESCE_ENABLED": "false",
    "HARAG_HEDGE_ENABLED": "false",
}


async def start_mesh(tmp: Path, logs: LogBook, env: dict[str, str] | None = None) -> Mesh:
    ports = {name: free_port() for name in MESH_NAMES}
    env = {**NO_CACHE, **(env or {})}
    specs = mesh_specs(ports=ports, data_dir=tmp / "data", fault_injection=True, env=env)
    supervisor = Supervisor(specs, sink=logs)
    await supervisor.start()
    try:
        await supervisor.wait_serving(timeout_s=60)
    except Exception:
        await supervisor.stop()
        print("\n".join(f"{n}| {line}" for n, line in logs.lines[-80:]))
        raise
    return Mesh(specs, supervisor, logs)


class ExtraGateway:
    """A second gateway process over the shared mesh's components, with its own settings."""

    def __init__(self, mesh: Mesh, env: dict[str, str]) -> None:
        base = mesh.specs["gateway"]
        port = free_port()
        spec = ProcessSpec(
            "gateway-extra", base.argv, port, {**base.env, "HARAG_PORT": str(port), **env}
        )
        self.supervisor = Supervisor([spec], sink=mesh.logs, restart=False)
        self.address = spec.address
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = gateway_pb2_grpc.RagGatewayServiceStub(self.channel)
        # GatewayAdminService is on the gateway's admin listener (its port + 1 by default).
        self.admin_channel = grpc.aio.insecure_channel(admin_address(self.address))
        self.admin = admin_pb2_grpc.GatewayAdminServiceStub(self.admin_channel)

    async def __aenter__(self) -> ExtraGateway:
        await self.supervisor.start()
        await self.supervisor.wait_serving(30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.admin_channel.close()
        codes = await self.supervisor.stop()
        assert codes == {"gateway-extra": 0}, codes
