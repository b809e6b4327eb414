"""Shared fixtures: a real seven-process mesh on free loopback ports, started by the same
Supervisor `harag up` uses, with fault injection enabled and the sample corpus ingested."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from processes import LogBook
from redis_support import redis_server  # noqa: F401 - a fixture: a real redis-server per test

from harag.v1 import admin_pb2_grpc, fault_injection_pb2, gateway_pb2, gateway_pb2_grpc
from harag_cli.corpus import SAMPLE_CORPUS, sample_corpus
from harag_cli.localports import free_port
from harag_cli.meshctl import MeshControl, admin_address
from harag_cli.supervisor import ProcessSpec, Supervisor, mesh_specs, probe
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


@pytest.fixture(scope="session")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    logs = LogBook()
    running = await start_mesh(tmp_path_factory.mktemp("mesh"), logs)
    # Every document in every embedding model's index of both retrievers: the tests compare
    # vector spaces. On a busy machine one embedder may miss the ingest's per-call timeout
    # (PARTIAL); an upsert is idempotent, so ingest again rather than run on a partial index.
    for _ in range(3):
        reply = await running.gateway.Ingest(
            gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
        )
        if all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results):
            break
    else:
        raise AssertionError([f"{r.id}: {r.reason}" for r in reply.results if r.reason])
    for name in MESH_NAMES:
        await running.wait_gateway_sees(name, "SERVING") if name != "gateway" else None
    yield running
    await running.channel.close()
    codes = await running.supervisor.stop()
    assert all(code == 0 for code in codes.values()), codes


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


@pytest.fixture(scope="session")
def gateway_over() -> type[ExtraGateway]:
    """`gateway_over(mesh, env)`: an extra gateway over any mesh, for module- and package-scoped
    fixtures and other packages' meshes (a `from conftest import` can meet another conftest)."""
    return ExtraGateway


@pytest.fixture
def extra_gateway(mesh: Mesh):
    """Factory: `async with extra_gateway(HARAG_X="1") as gw: gw.stub.Query(...)`."""
    return lambda **env: ExtraGateway(mesh, env)


@pytest.fixture
async def clean_faults(mesh: Mesh) -> AsyncIterator[Mesh]:
    """A mesh with no faults before and after the test."""
    await mesh.clear_faults()
    await mesh.reset_breakers()
    yield mesh
    await mesh.clear_faults()
    await mesh.reset_breakers()
    for name in MESH_NAMES:
        if await probe(mesh.address(name)) != "SERVING":
            await mesh.wait_serving(name)


@pytest.fixture(scope="session")
def known_questions() -> Iterator[list[dict]]:
    yield json.loads((SAMPLE_CORPUS / "questions.json").read_text())
