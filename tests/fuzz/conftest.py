"""The fuzz suites' mesh: one per module, started once, with the sample corpus; after each
test no process may have restarted and no breaker may have moved."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from meshes import Mesh, start_mesh
from processes import LogBook

from harag.v1 import admin_pb2, admin_pb2_grpc, gateway_pb2
from harag_cli.corpus import sample_corpus
from harag_cli.meshctl import admin_address

# The mesh answers every call fresh and never sheds: what a response is must depend on the
# request alone.
FUZZ_ENV = {"HARAG_ADMISSION_QUEUE_TARGET_S": "0", "HARAG_HEDGE_ENABLED": "false"}


class FuzzMesh:
    """The module's mesh with blocking stubs for the fuzzing thread."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.channels: dict[str, grpc.Channel] = {}

    def channel(self, name: str) -> grpc.Channel:
        if name not in self.channels:
            self.channels[name] = grpc.insecure_channel(
                self.mesh.address(name),
                options=[("grpc.max_send_message_length", -1)],
            )
        return self.channels[name]

    def admin_channel(self) -> grpc.Channel:
        """The gateway's admin listener (GatewayAdminService is never on the public port)."""
        if "gateway-admin" not in self.channels:
            self.channels["gateway-admin"] = grpc.insecure_channel(
                admin_address(self.mesh.address("gateway"))
            )
        return self.channels["gateway-admin"]

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


async def breaker_transitions(address: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(admin_address(address)) as channel:
        reply = await admin_pb2_grpc.GatewayAdminServiceStub(channel).ListBreakers(
            admin_pb2.ListBreakersRequest(), timeout=5
        )
    return {b.upstream: b.breaker.transitions for b in reply.breakers}


@pytest.fixture(scope="module")
async def fuzz_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzMesh]:
    logs = LogBook()
    mesh = await start_mesh(tmp_path_factory.mktemp("fuzz"), logs, FUZZ_ENV)
    fuzzing = FuzzMesh(mesh)
    try:
        reply = await mesh.gateway.Ingest(
            gateway_pb2.IngestRequest(documents=sample_corpus()), timeout=120
        )
        assert all(r.status == gateway_pb2.INGEST_STATUS_ACCEPTED for r in reply.results)
        yield fuzzing
    finally:
        fuzzing.close()
        await mesh.channel.close()
        codes = await mesh.supervisor.stop()
    assert all(code == 0 for code in codes.values()), codes  # every process drained cleanly


@pytest.fixture(autouse=True)
async def mesh_intact(fuzz_mesh: FuzzMesh) -> AsyncIterator[None]:
    """After each test: no process restarted, no breaker moved."""
    mesh = fuzz_mesh.mesh
    before = await breaker_transitions(mesh.gateway_address)
    yield
    assert all(n == 0 for n in mesh.supervisor.restarts.values()), mesh.supervisor.restarts
    await mesh.supervisor.wait_serving(10)
    assert await breaker_transitions(mesh.gateway_address) == before
